output "kafka_brokers" {
  description = "sources[].brokers of the kafka source (the namespace's Kafka endpoint)."
  value       = ["${azurerm_eventhub_namespace.this.name}.servicebus.windows.net:9093"]
}

output "topic" {
  description = "sources[].topics: the event hub name."
  value       = azurerm_eventhub.audit.name
}

output "consumer_group" {
  value = azurerm_eventhub_consumer_group.kmswatch.name
}

output "listen_connection_string" {
  description = "EVENTHUBS_CONNECTION_STRING for kmswatch (listen-only, this event hub): store it in a secret."
  value       = azurerm_eventhub_authorization_rule.kmswatch.primary_connection_string
  sensitive   = true
}

output "responder_role_definition_id" {
  value = var.responder_principal_id == null ? null : azurerm_role_definition.responder[0].role_definition_resource_id
}
