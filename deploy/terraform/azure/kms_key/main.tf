# Baseline Azure key: kms_key(name, rotation_days, hsm), in a vault of its own.
#
# - a rotation policy rotates the key every `rotation_days` (Key Vault's own rotation);
# - the vault keeps deleted keys 30 days (soft delete) and has purge protection on, so a deleted
#   key can always be recovered (kmswatch's cancel_deletion playbook does that) and never purged
#   early;
# - hsm = true: a Premium vault and an RSA-HSM key (FIPS 140-2 Level 2+ HSM-protected);
# - RBAC authorization (kmswatch's responder gets a data-plane role; no access policies);
# - the tags kmswatch's response policy reads: `kmswatch:break-glass = "true"` marks a key no
#   kmswatch action may ever touch; `environment` and `owner` for allow/deny lists.

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = ">= 3.100" }
  }
}

variable "name" {
  description = "Key name (the vault is named VAULT_NAME or kv-NAME)."
  type        = string
}

variable "rotation_days" {
  description = "Automatic rotation period, days."
  type        = number
  default     = 90
  validation {
    condition     = var.rotation_days >= 7 && var.rotation_days <= 3650
    error_message = "rotation_days must be between 7 and 3650."
  }
}

variable "hsm" {
  description = "HSM-protected key (Premium vault, RSA-HSM). Use for production."
  type        = bool
  default     = true
}

variable "resource_group_name" {
  type = string
}

variable "location" {
  type = string
}

variable "vault_name" {
  description = "Vault name (3-24 characters). Default kv-NAME."
  type        = string
  default     = null
}

variable "allowed_ip_ranges" {
  description = "Public IP ranges allowed to reach the vault (everything else: private endpoints and trusted Azure services only)."
  type        = list(string)
  default     = []
}

variable "break_glass" {
  description = "Tag the key kmswatch:break-glass=true: kmswatch never acts on it."
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

variable "tags" {
  type    = map(string)
  default = {}
}

data "azurerm_client_config" "current" {}

locals {
  tags = merge(var.tags, {
    environment    = var.environment
    owner          = var.owner
    "kmswatch:hsm" = tostring(var.hsm)
  }, var.break_glass ? { "kmswatch:break-glass" = "true" } : {})
}

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_189:Public network access is on only when allowed_ip_ranges is set, and then the ACL admits only those ranges (default Deny)
  #checkov:skip=CKV2_AZURE_32:Private endpoints depend on the site's network; public access is off unless allowed_ip_ranges is set
  name                          = coalesce(var.vault_name, "kv-${var.name}")
  resource_group_name           = var.resource_group_name
  location                      = var.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.hsm ? "premium" : "standard"
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 30
  public_network_access_enabled = length(var.allowed_ip_ranges) > 0
  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.allowed_ip_ranges
  }
  tags = local.tags
}

resource "azurerm_key_vault_key" "this" {
  #checkov:skip=CKV_AZURE_40:The rotation policy sets expire_after on every version; a fixed expiration_date would stop the key between rotations
  name         = var.name
  key_vault_id = azurerm_key_vault.this.id
  key_type     = var.hsm ? "RSA-HSM" : "RSA"
  key_size     = 3072
  key_opts     = ["decrypt", "encrypt", "unwrapKey", "wrapKey"]

  rotation_policy {
    automatic {
      time_after_creation = "P${var.rotation_days}D"
    }
    expire_after         = "P${var.rotation_days + 30}D"
    notify_before_expiry = "P29D"
  }

  tags = local.tags
}

output "key_id" {
  description = "Versionless key id (respond --key)."
  value       = azurerm_key_vault_key.this.versionless_id
}

output "vault_id" {
  value = azurerm_key_vault.this.id
}

output "vault_uri" {
  value = azurerm_key_vault.this.vault_uri
}
