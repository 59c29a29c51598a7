# kmswatch on Azure: Key Vault AuditEvent logs → Event Hubs (Kafka endpoint), a listen-only
# rule for kmswatch, the responder role on the vault, and a baseline HSM key in its own vault.
terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = ">= 3.100" }
  }
}

provider "azurerm" {
  features {}
}

resource "azurerm_resource_group" "security" {
  name     = "rg-kmswatch"
  location = "westeurope"
}

module "payments_key" {
  source              = "../../azure/kms_key"
  name                = "payments-prod"
  vault_name          = "kv-payments-prod-01"
  rotation_days       = 90
  hsm                 = true
  owner               = "payments"
  resource_group_name = azurerm_resource_group.security.name
  location            = azurerm_resource_group.security.location
}

# The managed identity kmswatch's pods use (Azure Workload Identity) for response actions.
resource "azurerm_user_assigned_identity" "kmswatch" {
  name                = "id-kmswatch"
  resource_group_name = azurerm_resource_group.security.name
  location            = azurerm_resource_group.security.location
}

module "kmswatch" {
  source                 = "../../azure"
  resource_group_name    = azurerm_resource_group.security.name
  location               = azurerm_resource_group.security.location
  key_vault_ids          = [module.payments_key.vault_id]
  responder_principal_id = azurerm_user_assigned_identity.kmswatch.principal_id
  responder_actions      = ["disable", "cancel_deletion", "tag"]
}

output "kafka_source" {
  value = {
    brokers  = module.kmswatch.kafka_brokers
    topics   = [module.kmswatch.topic]
    group_id = module.kmswatch.consumer_group
  }
}

output "eventhubs_connection_string" {
  value     = module.kmswatch.listen_connection_string
  sensitive = true
}
