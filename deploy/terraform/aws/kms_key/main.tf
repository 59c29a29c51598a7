# Baseline AWS KMS key: kms_key(name, rotation_days, hsm).
#
# - automatic rotation on, every `rotation_days` (90..2560);
# - a 30-day deletion window: a ScheduleKeyDeletion can be cancelled for 30 days (kmswatch's
#   kms_schedule_key_deletion rule fires at once; its cancel_deletion playbook undoes it);
# - HSM: every AWS KMS key lives in AWS KMS's FIPS 140-3 Level 3 HSMs. `hsm = true` records
#   that the key is production material (tag) and forbids deriving it from imported material
#   (origin AWS_KMS, which is what rotation needs). A CloudHSM custom key store cannot rotate
#   automatically, so it is not offered here;
# - the tags kmswatch's response policy reads: `kmswatch:break-glass = "true"` marks a key that
#   no kmswatch action may ever touch (crates/kmswatch-respond/src/action.rs BREAK_GLASS_TAG);
#   `environment` and `owner` are what deny/allow lists usually select on (`env=prod*`).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.70" }
  }
}

variable "name" {
  description = "Key name; the alias is alias/NAME."
  type        = string
}

variable "rotation_days" {
  description = "Automatic rotation period, days (AWS allows 90..2560)."
  type        = number
  default     = 90
  validation {
    condition     = var.rotation_days >= 90 && var.rotation_days <= 2560
    error_message = "rotation_days must be between 90 and 2560."
  }
}

variable "hsm" {
  description = "Production key material (see the module header for what this means on AWS)."
  type        = bool
  default     = true
}

variable "break_glass" {
  description = "Tag the key kmswatch:break-glass=true: kmswatch never acts on it."
  type        = bool
  default     = false
}

variable "environment" {
  description = "Value of the environment tag (prod, staging...)."
  type        = string
  default     = "prod"
}

variable "owner" {
  description = "Value of the owner tag (team)."
  type        = string
  default     = ""
}

variable "policy" {
  description = "Key policy JSON. Default: the account's IAM policies decide (root statement only)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "default" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key itself; the root statement delegates to IAM policies, the AWS default
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" is the key itself; the root statement delegates to IAM policies, the AWS default
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" is the key itself
  statement {
    sid       = "AccountIAMPolicies"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "this" {
  description              = var.name
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  enable_key_rotation      = true
  rotation_period_in_days  = var.rotation_days
  deletion_window_in_days  = 30
  is_enabled               = true
  multi_region             = false
  policy                   = coalesce(var.policy, data.aws_iam_policy_document.default.json)
  tags = merge(var.tags, {
    Name           = var.name
    environment    = var.environment
    owner          = var.owner
    "kmswatch:hsm" = tostring(var.hsm)
  }, var.break_glass ? { "kmswatch:break-glass" = "true" } : {})
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

output "key_arn" {
  value = aws_kms_key.this.arn
}

output "key_id" {
  value = aws_kms_key.this.key_id
}

output "alias" {
  value = aws_kms_alias.this.name
}
