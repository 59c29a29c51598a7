# kmswatch on AWS: the CloudTrail → S3 → SQS pipeline, kmswatch's read-only role (assumed by the
# EKS pods through IRSA / Pod Identity), a responder role for the default playbooks, and two
# baseline keys. `terraform output -raw kmswatch_config` prints the config sections.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.70" }
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "kmswatch" {
  source                   = "../../aws"
  name                     = "kmswatch"
  kmswatch_principal_arns  = ["arn:aws:iam::111122223333:role/eks-kmswatch-pods"]
  responder_principal_arns = ["arn:aws:iam::111122223333:role/eks-kmswatch-pods"]
  responder_actions        = ["disable", "cancel_deletion", "tag"]
  tags                     = { owner = "security", app = "kmswatch" }
}

module "payments_key" {
  source        = "../../aws/kms_key"
  name          = "payments-prod"
  rotation_days = 90
  hsm           = true
  owner         = "payments"
}

# A key kmswatch must never act on, whatever a playbook says.
module "root_of_trust" {
  source        = "../../aws/kms_key"
  name          = "root-of-trust"
  rotation_days = 365
  hsm           = true
  break_glass   = true
  owner         = "security"
}

output "kmswatch_config" {
  value = module.kmswatch.kmswatch_config
}

output "dead_letter_queue_url" {
  value = module.kmswatch.dead_letter_queue_url
}
