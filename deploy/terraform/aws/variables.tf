variable "name" {
  description = "Prefix of every resource name (bucket names add the account id)."
  type        = string
  default     = "kmswatch"
}

variable "kmswatch_principal_arns" {
  description = "Principals allowed to assume the read-only kmswatch role (the IRSA/EKS Pod Identity role of the pods, an EC2 instance role...)."
  type        = list(string)
}

variable "responder_principal_arns" {
  description = "Principals allowed to assume the responder role (often the same workload as kmswatch_principal_arns). Empty: no responder role."
  type        = list(string)
  default     = []
}

variable "responder_actions" {
  description = "Playbook action kinds the responder may perform (respond.playbooks[].actions[].kind): disable, enable, rotate, enable_rotation, cancel_deletion, revoke_grant, retire_grant, tag. Each grants exactly the KMS calls of the action and of its undo."
  type        = list(string)
  default     = ["disable", "cancel_deletion", "tag"]
  validation {
    condition     = alltrue([for a in var.responder_actions : contains(["disable", "enable", "rotate", "enable_rotation", "cancel_deletion", "revoke_grant", "retire_grant", "tag"], a)])
    error_message = "responder_actions: disable, enable, rotate, enable_rotation, cancel_deletion, revoke_grant, retire_grant, tag."
  }
}

variable "responder_key_arns" {
  description = "Keys the responder may change. Default: every key of this account (keys tagged kmswatch:break-glass=true are always denied)."
  type        = list(string)
  default     = []
}

variable "s3_data_event_bucket_arns" {
  description = "Buckets whose object-level (data) events the trail also records, e.g. buckets whose objects are encrypted with KMS keys you watch. Empty: management events only (which is where every KMS call is)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days CloudTrail files are kept in the bucket (noncurrent versions: 30 more)."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
