# GCP: Data Access audit logs for Cloud KMS (every Encrypt/Decrypt/sign call; Admin Activity
# logs are always on) → a log sink → Pub/Sub topic (CMEK) → a pull subscription with a
# dead-letter topic. kmswatch has no Pub/Sub source: a bridge (Pub/Sub source connector for
# Kafka Connect, or any subscriber) forwards messages unchanged to a Kafka topic that kmswatch
# consumes; the normalizer reads Pub/Sub pull envelopes and bare LogEntry JSON alike
# (docs/deploy-gcp.md). A responder service account holds a custom role with exactly the
# Cloud KMS permissions of the enabled playbook actions.

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_iam_audit_config" "kms" {
  project = var.project_id
  service = "cloudkms.googleapis.com"
  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# ---------------------------------------------------------------- topic encryption

resource "google_kms_key_ring" "logs" {
  name     = "${var.name}-logs"
  project  = var.project_id
  location = var.region
}

module "topic_key" {
  source        = "./kms_key"
  name          = "${var.name}-pubsub"
  key_ring_id   = google_kms_key_ring.logs.id
  rotation_days = 90
  hsm           = true
  owner         = "security"
  labels        = var.labels
}

resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  crypto_key_id = module.topic_key.key_id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# ---------------------------------------------------------------- sink → topic → subscription

resource "google_pubsub_topic" "audit" {
  name                       = "${var.name}-kms-audit"
  project                    = var.project_id
  kms_key_name               = module.topic_key.key_id
  message_retention_duration = "604800s"
  labels                     = var.labels
  depends_on                 = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "dead_letter" {
  name         = "${var.name}-kms-audit-dead-letter"
  project      = var.project_id
  kms_key_name = module.topic_key.key_id
  labels       = var.labels
  depends_on   = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_logging_project_sink" "audit" {
  name                   = "${var.name}-kms-audit"
  project                = var.project_id
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.audit.id}"
  unique_writer_identity = true
  # Cloud KMS audit logs, plus the changes that could blind them: sinks and exclusions
  # changed or deleted, audit configs changed (SetIamPolicy carries auditConfigs).
  filter = <<-EOT
    logName:"cloudaudit.googleapis.com" AND (
      protoPayload.serviceName="cloudkms.googleapis.com" OR
      (protoPayload.serviceName="logging.googleapis.com" AND protoPayload.methodName:("Sink" OR "Exclusion" OR "Settings")) OR
      protoPayload.methodName="SetIamPolicy"
    )
  EOT
}

resource "google_pubsub_topic_iam_member" "sink_writer" {
  project = var.project_id
  topic   = google_pubsub_topic.audit.name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.audit.writer_identity
}

resource "google_pubsub_subscription" "kmswatch" {
  name                       = "${var.name}-kms-audit"
  project                    = var.project_id
  topic                      = google_pubsub_topic.audit.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  enable_message_ordering    = false
  expiration_policy {
    ttl = ""
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 10
  }
  labels = var.labels
}

# The Pub/Sub service agent forwards undeliverable messages to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.kmswatch.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account" "reader" {
  count        = length(var.reader_members) == 0 ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name}-reader"
  display_name = "kmswatch: pull the Cloud KMS audit subscription"
}

locals {
  readers = length(var.reader_members) > 0 ? var.reader_members : ["serviceAccount:${google_service_account.reader[0].email}"]
}

resource "google_pubsub_subscription_iam_member" "reader" {
  for_each     = toset(local.readers)
  project      = var.project_id
  subscription = google_pubsub_subscription.kmswatch.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# ---------------------------------------------------------------- responder

locals {
  # Cloud KMS permissions of each playbook action and of its undo
  # (crates/kmswatch-respond/src/gcp.rs); every plan reads the key and its versions first.
  read = [
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
  ]
  calls = {
    disable         = ["cloudkms.cryptoKeyVersions.update"]
    enable          = ["cloudkms.cryptoKeyVersions.update"]
    rotate          = ["cloudkms.cryptoKeyVersions.create", "cloudkms.cryptoKeys.update"]
    enable_rotation = ["cloudkms.cryptoKeys.update"]
    cancel_deletion = ["cloudkms.cryptoKeyVersions.restore", "cloudkms.cryptoKeyVersions.update"]
    tag             = ["cloudkms.cryptoKeys.update"]
  }
  responder_permissions = distinct(concat(local.read, flatten([for a in var.responder_actions : local.calls[a]])))
}

resource "google_project_iam_custom_role" "responder" {
  count       = var.responder ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_kms_responder"
  title       = "kmswatch Cloud KMS responder"
  description = "kmswatch respond: the Cloud KMS calls of the enabled playbook actions; never destroy."
  permissions = local.responder_permissions
}

resource "google_service_account" "responder" {
  count        = var.responder ? 1 : 0
  project      = var.project_id
  account_id   = "${var.name}-responder"
  display_name = "kmswatch: key response actions (disable, rotate, restore)"
}

resource "google_project_iam_member" "responder" {
  count   = var.responder ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.responder[0].id
  member  = "serviceAccount:${google_service_account.responder[0].email}"
}
