# kmswatch on GCP: Cloud KMS Data Access audit logs → log sink → Pub/Sub (CMEK) → subscription
# for the Pub/Sub → Kafka bridge, a responder service account, and a baseline HSM key.
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = { source = "hashicorp/google", version = ">= 5.0" }
  }
}

provider "google" {
  project = "kmswatch-demo"
  region  = "europe-west1"
}

module "kmswatch" {
  source            = "../../gcp"
  project_id        = "kmswatch-demo"
  region            = "europe-west1"
  responder_actions = ["disable", "cancel_deletion", "tag"]
}

resource "google_kms_key_ring" "app" {
  name     = "payments"
  location = "europe-west1"
}

module "payments_key" {
  source        = "../../gcp/kms_key"
  name          = "payments-prod"
  key_ring_id   = google_kms_key_ring.app.id
  rotation_days = 90
  hsm           = true
  owner         = "payments"
}

output "subscription" {
  value = module.kmswatch.subscription
}

output "responder_service_account" {
  value = module.kmswatch.responder_service_account
}
