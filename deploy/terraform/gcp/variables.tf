variable "project_id" {
  description = "Project whose Cloud KMS audit logs kmswatch reads."
  type        = string
}

variable "name" {
  description = "Prefix of resource names."
  type        = string
  default     = "kmswatch"
}

variable "region" {
  description = "Location of the key ring that encrypts the Pub/Sub topics."
  type        = string
  default     = "europe-west1"
}

variable "reader_members" {
  description = "Who may pull the audit subscription (the Pub/Sub → Kafka bridge's or kmswatch's identity), e.g. serviceAccount:bridge@P.iam.gserviceaccount.com. Empty: a kmswatch-reader service account is created."
  type        = list(string)
  default     = []
}

variable "responder_actions" {
  description = "Playbook action kinds the responder may perform: disable, enable, rotate, enable_rotation, cancel_deletion, tag."
  type        = list(string)
  default     = ["disable", "cancel_deletion", "tag"]
  validation {
    condition     = alltrue([for a in var.responder_actions : contains(["disable", "enable", "rotate", "enable_rotation", "cancel_deletion", "tag"], a)])
    error_message = "responder_actions: disable, enable, rotate, enable_rotation, cancel_deletion, tag."
  }
}

variable "responder" {
  description = "Create the responder service account and its custom role."
  type        = bool
  default     = true
}

variable "labels" {
  type    = map(string)
  default = {}
}
