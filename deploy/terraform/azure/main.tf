# Azure: Key Vault diagnostic setting (AuditEvent) → an event hub in a Standard (Kafka-enabled)
# Event Hubs namespace → kmswatch (`type: kafka`, SASL PLAIN with the connection string of a
# listen-only rule). A custom data-plane role with exactly the Key Vault operations of the
# enabled playbook actions, assigned on each vault to the responder's identity.

data "azurerm_subscription" "current" {}

resource "azurerm_eventhub_namespace" "this" {
  name                          = "${var.name}-audit"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  sku                           = "Standard" # Kafka endpoint: Standard and above
  capacity                      = 1
  minimum_tls_version           = "1.2"
  local_authentication_enabled  = true # SASL PLAIN with a connection string (kmswatch's kafka source)
  public_network_access_enabled = true
  tags                          = var.tags
}

resource "azurerm_eventhub" "audit" {
  name                = "${var.name}-keyvault-audit"
  namespace_name      = azurerm_eventhub_namespace.this.name
  resource_group_name = var.resource_group_name
  partition_count     = var.partition_count
  message_retention   = 7
}

resource "azurerm_eventhub_consumer_group" "kmswatch" {
  name                = "kmswatch"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.audit.name
  resource_group_name = var.resource_group_name
}

# Diagnostic settings need a namespace rule with Manage, Send and Listen.
resource "azurerm_eventhub_namespace_authorization_rule" "diagnostics" {
  name                = "diagnostic-settings"
  namespace_name      = azurerm_eventhub_namespace.this.name
  resource_group_name = var.resource_group_name
  listen              = true
  send                = true
  manage              = true
}

# kmswatch: listen on this one event hub, nothing else.
resource "azurerm_eventhub_authorization_rule" "kmswatch" {
  name                = "kmswatch-listen"
  namespace_name      = azurerm_eventhub_namespace.this.name
  eventhub_name       = azurerm_eventhub.audit.name
  resource_group_name = var.resource_group_name
  listen              = true
  send                = false
  manage              = false
}

resource "azurerm_monitor_diagnostic_setting" "vault" {
  for_each                       = toset(var.key_vault_ids)
  name                           = "${var.name}-auditevent"
  target_resource_id             = each.value
  eventhub_name                  = azurerm_eventhub.audit.name
  eventhub_authorization_rule_id = azurerm_eventhub_namespace_authorization_rule.diagnostics.id
  enabled_log {
    category = "AuditEvent"
  }
}

resource "azurerm_monitor_diagnostic_setting" "activity_log" {
  count                          = var.subscription_activity_log ? 1 : 0
  name                           = "${var.name}-activity"
  target_resource_id             = data.azurerm_subscription.current.id
  eventhub_name                  = azurerm_eventhub.audit.name
  eventhub_authorization_rule_id = azurerm_eventhub_namespace_authorization_rule.diagnostics.id
  enabled_log {
    category = "Administrative"
  }
  enabled_log {
    category = "Policy"
  }
}

locals {
  # Key Vault data actions of each playbook action and of its undo
  # (crates/kmswatch-respond/src/azure.rs); every plan reads the key first.
  read = [
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/deletedKeys/read",
    "Microsoft.KeyVault/vaults/keyrotationpolicies/read",
  ]
  calls = {
    disable         = ["Microsoft.KeyVault/vaults/keys/update/action"]
    enable          = ["Microsoft.KeyVault/vaults/keys/update/action"]
    rotate          = ["Microsoft.KeyVault/vaults/keys/rotate/action"]
    enable_rotation = ["Microsoft.KeyVault/vaults/keyrotationpolicies/write"]
    cancel_deletion = ["Microsoft.KeyVault/vaults/deletedKeys/recover/action", "Microsoft.KeyVault/vaults/keys/update/action"]
    tag             = ["Microsoft.KeyVault/vaults/keys/update/action"]
  }
  responder_data_actions = distinct(concat(local.read, flatten([for a in var.responder_actions : local.calls[a]])))
}

resource "azurerm_role_definition" "responder" {
  count       = var.responder_principal_id == null ? 0 : 1
  name        = "${var.name} Key Vault responder"
  scope       = data.azurerm_subscription.current.id
  description = "kmswatch respond: the Key Vault key operations of the enabled playbook actions; never delete or purge."
  permissions {
    actions      = []
    data_actions = local.responder_data_actions
    not_data_actions = [
      "Microsoft.KeyVault/vaults/keys/delete",
      "Microsoft.KeyVault/vaults/deletedKeys/delete",
    ]
  }
  assignable_scopes = var.key_vault_ids
}

resource "azurerm_role_assignment" "responder" {
  for_each           = var.responder_principal_id == null ? toset([]) : toset(var.key_vault_ids)
  scope              = each.value
  role_definition_id = azurerm_role_definition.responder[0].role_definition_resource_id
  principal_id       = var.responder_principal_id
}
