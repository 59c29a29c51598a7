variable "name" {
  description = "Prefix of resource names."
  type        = string
  default     = "kmswatch"
}

variable "resource_group_name" {
  description = "Resource group of the Event Hubs namespace."
  type        = string
}

variable "location" {
  type = string
}

variable "key_vault_ids" {
  description = "Key Vaults whose AuditEvent logs kmswatch reads."
  type        = list(string)
}

variable "subscription_activity_log" {
  description = "Also stream the subscription's Activity Log (Administrative, Policy) — vault deletion, access-policy and diagnostic-setting changes — to the same event hub."
  type        = bool
  default     = true
}

variable "partition_count" {
  description = "Event hub partitions (kmswatch detect instances: at most one per partition)."
  type        = number
  default     = 4
}

variable "responder_principal_id" {
  description = "Object id of the identity kmswatch's responder uses (managed identity or app registration). Null: no role assignment."
  type        = string
  default     = null
}

variable "responder_actions" {
  description = "Playbook action kinds the responder may perform on the vaults: disable, enable, rotate, enable_rotation, cancel_deletion, tag."
  type        = list(string)
  default     = ["disable", "cancel_deletion", "tag"]
  validation {
    condition     = alltrue([for a in var.responder_actions : contains(["disable", "enable", "rotate", "enable_rotation", "cancel_deletion", "tag"], a)])
    error_message = "responder_actions: disable, enable, rotate, enable_rotation, cancel_deletion, tag."
  }
}

variable "tags" {
  type    = map(string)
  default = {}
}
