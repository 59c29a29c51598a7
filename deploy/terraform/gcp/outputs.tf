output "topic" {
  value = google_pubsub_topic.audit.id
}

output "subscription" {
  description = "The subscription the Pub/Sub → Kafka bridge pulls."
  value       = google_pubsub_subscription.kmswatch.id
}

output "dead_letter_topic" {
  value = google_pubsub_topic.dead_letter.id
}

output "reader_service_account" {
  value = length(google_service_account.reader) > 0 ? google_service_account.reader[0].email : null
}

output "responder_service_account" {
  description = "Use with respond.gcp (workload identity or a key file)."
  value       = var.responder ? google_service_account.responder[0].email : null
}
