# Baseline Google Cloud KMS key: kms_key(name, rotation_days, hsm).
#
# - automatic rotation every `rotation_days` (a new primary version);
# - destroy_scheduled_duration 30 days: a version scheduled for destruction can be restored for
#   30 days (kmswatch's cancel_deletion playbook restores and re-enables it);
# - hsm = true: protection level HSM (FIPS 140-2 Level 3), else SOFTWARE;
# - prevent_destroy: Terraform refuses to destroy the key;
# - the labels kmswatch's response policy reads: `kmswatch-break-glass = "true"` (label keys
#   cannot contain ":") marks a key no kmswatch action may ever touch; `environment`, `owner`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = { source = "hashicorp/google", version = ">= 5.0" }
  }
}

variable "name" {
  description = "Crypto key name."
  type        = string
}

variable "rotation_days" {
  description = "Automatic rotation period, days."
  type        = number
  default     = 90
  validation {
    condition     = var.rotation_days >= 1 && var.rotation_days <= 3650
    error_message = "rotation_days must be between 1 and 3650."
  }
}

variable "hsm" {
  description = "HSM protection level (production)."
  type        = bool
  default     = true
}

variable "key_ring_id" {
  description = "projects/P/locations/L/keyRings/R"
  type        = string
}

variable "break_glass" {
  description = "Label the key kmswatch-break-glass=true: kmswatch never acts on it."
  type        = bool
  default     = false
}

variable "environment" {
  type    = string
  default = "prod"
}

variable "owner" {
  type    = string
  default = ""
}

variable "labels" {
  type    = map(string)
  default = {}
}

resource "google_kms_crypto_key" "this" {
  #checkov:skip=CKV_GCP_43:rotation_period is var.rotation_days (default 90) in seconds; checkov does not evaluate the multiplication in module calls
  name                       = var.name
  key_ring                   = var.key_ring_id
  purpose                    = "ENCRYPT_DECRYPT"
  rotation_period            = "${var.rotation_days * 86400}s"
  destroy_scheduled_duration = "2592000s"

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.hsm ? "HSM" : "SOFTWARE"
  }

  labels = merge(var.labels, {
    environment  = var.environment
    owner        = var.owner
    kmswatch-hsm = tostring(var.hsm)
  }, var.break_glass ? { kmswatch-break-glass = "true" } : {})

  lifecycle {
    prevent_destroy = true
  }
}

output "key_id" {
  description = "projects/P/locations/L/keyRings/R/cryptoKeys/K (respond --key)."
  value       = google_kms_crypto_key.this.id
}
