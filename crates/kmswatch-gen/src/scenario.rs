//! Injected attack scenarios and their ground truth: each scenario is a handful of records
//! written exactly as the vendor logs them, slotted into ordinary traffic, and one label line
//! per rule that should fire on it.

use crate::clock::millis_z;
use crate::rng::Rng;
use crate::world::World;
use crate::Rec;
use serde::Serialize;

/// The rule catalogue: (slug, id, status). Labels name rules by both.
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    (
        "kms_human_decrypt",
        "0740ebed-2fd6-5f7f-845a-9d1b60468f9d",
        "stable",
    ),
    (
        "kms_human_generate_data_key",
        "c380ed5a-48a5-52c5-89f8-5811743f83b7",
        "stable",
    ),
    (
        "kms_human_reencrypt",
        "d80d8c3d-b9c6-56ae-bbe5-b7faafb9be55",
        "stable",
    ),
    (
        "kms_human_sign",
        "036e22a0-0ca2-54dc-a94d-3a0ab9341e3e",
        "stable",
    ),
    (
        "kms_human_unwrap_key",
        "f31b3da9-5ba2-5958-abaf-6c75c35138ac",
        "stable",
    ),
    (
        "kms_root_key_use",
        "ad0c7625-e828-52bc-96cd-f1fce1faebff",
        "stable",
    ),
    (
        "kms_schedule_key_deletion",
        "63235488-e967-5784-b395-cc191a727da2",
        "stable",
    ),
    (
        "kms_schedule_key_deletion_short_window",
        "9523a016-7be5-5c25-aaac-d2b4137267c5",
        "stable",
    ),
    (
        "kms_key_purged",
        "3c2acc8b-843c-5d6a-8003-82ea04b3bbdb",
        "stable",
    ),
    (
        "kms_key_version_destroyed",
        "7154b694-9c20-5d7b-af41-5909434ea666",
        "stable",
    ),
    (
        "kms_vault_deleted",
        "79c78456-c06f-5312-8dd3-52757b79a8dd",
        "stable",
    ),
    (
        "kms_key_disabled",
        "d41bcfc6-1229-59d1-986c-7760fdf56d09",
        "stable",
    ),
    (
        "kms_imported_key_material_deleted",
        "0bfe27b6-18d1-5a52-99e9-a3e3ecd848ea",
        "stable",
    ),
    (
        "kms_key_material_imported",
        "8ade6285-a785-5fd9-b12b-4342d2b7bf0c",
        "experimental",
    ),
    (
        "kms_off_hours_human_crypto",
        "f502a432-cfe3-52e8-bf1c-20472c8be013",
        "experimental",
    ),
    (
        "kms_off_hours_bulk_key_use",
        "b7ea27db-6495-529a-921b-940556e9eac1",
        "stable",
    ),
    (
        "kms_secret_get",
        "cd6a07df-5ded-5a1d-aecb-da571d16c87c",
        "experimental",
    ),
    (
        "kms_mass_secret_retrieval",
        "f07bfff6-86a7-5d70-8720-712bdd0dd781",
        "stable",
    ),
    (
        "kms_many_distinct_secrets_read",
        "f1d2e069-fd7d-5de3-9c5e-912cd0bbe04e",
        "stable",
    ),
    (
        "kms_access_denied",
        "dd4aef42-806f-53a2-82ec-15023757bae3",
        "experimental",
    ),
    (
        "kms_access_denied_burst",
        "82e61075-053a-5b99-a885-38382d7fcd27",
        "stable",
    ),
    (
        "kms_use_of_key_pending_deletion",
        "c07a9a15-e0d8-598a-83b3-2a660db91851",
        "stable",
    ),
    (
        "kms_key_policy_public",
        "8d511b99-6fc8-5f0c-a0ca-8264dd3ee99b",
        "stable",
    ),
    (
        "kms_key_policy_external_account",
        "bef28e3e-08cc-50a1-be43-46937e490275",
        "stable",
    ),
    (
        "kms_grant_to_external_principal",
        "ca6be54a-305c-58ba-9486-9577de1a4a08",
        "stable",
    ),
    (
        "kms_key_policy_changed_by_non_admin",
        "75997e8e-2d31-5f6c-9686-a43ac1df9d40",
        "stable",
    ),
    (
        "kms_key_rotation_disabled",
        "6b758fed-6f55-553a-95ce-28f3e62b7219",
        "stable",
    ),
    (
        "gcp_kms_key_created_without_rotation",
        "61a09cea-5f5c-5437-8753-0bef6a8685d5",
        "experimental",
    ),
    (
        "aws_cloudtrail_logging_stopped",
        "50dcc5dc-63ff-55fc-98b5-9f54fff5069f",
        "stable",
    ),
    (
        "aws_cloudtrail_kms_events_excluded",
        "421899c2-80c6-528a-b54b-47632a54b3e5",
        "stable",
    ),
    (
        "azure_keyvault_diagnostic_setting_deleted",
        "b94e8cb5-7a1d-5998-8305-afdbf6687e4d",
        "stable",
    ),
    (
        "gcp_kms_audit_logging_changed",
        "ff64e2e3-a4ec-55de-a5ff-65a6f0014bad",
        "stable",
    ),
    (
        "gcp_log_sink_changed",
        "b7edc11e-32e5-5326-a749-ab6ce7d1bed3",
        "stable",
    ),
    (
        "kms_cross_account_decrypt",
        "ee41baaa-2f68-51e5-8a85-632acad2d71b",
        "stable",
    ),
    (
        "kms_first_seen_principal_on_key",
        "2ce15f5c-a4d0-5568-b8ed-6d466d9ebc97",
        "experimental",
    ),
    (
        "kms_principal_not_in_inventory",
        "ef9ffa7b-b391-5de4-8cec-30e09a044242",
        "stable",
    ),
    (
        "aws_s3_copy_with_external_kms_key",
        "dbc73867-c93d-583e-b170-ab05c2f818ad",
        "stable",
    ),
    (
        "gcp_storage_agent_encrypt",
        "feecd7b9-35b0-531b-a67e-3c72ff7ab667",
        "experimental",
    ),
    (
        "gcp_storage_agent_bulk_encrypt",
        "6f39b9c2-5500-501a-9d56-adcf3837248d",
        "stable",
    ),
    (
        "azure_storage_cmk_switched",
        "7332653a-4286-533f-816a-20ea28f0d272",
        "experimental",
    ),
    (
        "azure_storage_cmk_switch_then_key_deleted",
        "4335f8e3-2393-51f6-acd5-db3bc4a18ab6",
        "stable",
    ),
    (
        "azure_keyvault_purge_protection_disabled",
        "63f1ea33-b83e-53c5-a757-895773644a31",
        "stable",
    ),
    (
        "azure_keyvault_soft_delete_disabled",
        "cf450ed0-dc0b-50fd-94c8-043503f6074e",
        "stable",
    ),
    (
        "kms_key_deletion_cancelled",
        "e3b2c245-4445-53dc-9cc6-8adb721de7eb",
        "stable",
    ),
    (
        "kms_key_created_by_human_off_hours",
        "4e7cb16e-5467-5447-a6fe-7148f36a8ad4",
        "experimental",
    ),
];

/// One line of `labels.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Label {
    /// Scenario name (several lines share it when one scenario should fire several rules).
    pub scenario: String,
    /// Rule id from the catalogue.
    pub rule_id: String,
    /// Rule slug.
    pub rule: String,
    /// `AWS`, `Azure` or `GCP`.
    pub cloud: String,
    /// The acting principal as the normalizer names it (`actor.user.uid`).
    pub principal: String,
    /// The key (or vault, trail, sink) concerned, as the normalizer names it where it can.
    pub key: String,
    /// Time of the first scenario event (RFC 3339, UTC).
    pub start: String,
    /// Time of the last scenario event.
    pub end: String,
}

/// Records injected per output stream, and the labels.
#[derive(Debug, Default)]
pub(crate) struct Injected {
    pub aws: Vec<Rec>,
    pub azure_kv: Vec<Rec>,
    pub azure_act: Vec<Rec>,
    pub gcp: Vec<Rec>,
    pub labels: Vec<Label>,
}

/// What scenario builders share.
pub(crate) struct Ctx<'w> {
    pub w: &'w World,
    pub rng: Rng,
    pub inj: Injected,
    next: u32,
}

impl<'w> Ctx<'w> {
    /// The corpus day of the next scenario: scenarios are spread over the days.
    pub fn slot(&mut self) -> u32 {
        self.next += 1;
        (self.next - 1).wrapping_mul(5)
    }

    /// Label `recs` as a scenario that should fire each of `rules`.
    pub fn label(
        &mut self,
        scenario: &str,
        rules: &[&str],
        cloud: &str,
        principal: &str,
        key: &str,
        recs: &[Rec],
    ) {
        let start = recs.iter().map(|r| r.t).min().unwrap_or(self.w.start_ms);
        let end = recs.iter().map(|r| r.t).max().unwrap_or(start);
        for rule in rules {
            let id = CATALOGUE
                .iter()
                .find(|(slug, _, _)| slug == rule)
                .map(|(_, id, _)| *id)
                .unwrap_or("unknown");
            self.inj.labels.push(Label {
                scenario: scenario.into(),
                rule_id: id.into(),
                rule: (*rule).into(),
                cloud: cloud.into(),
                principal: principal.into(),
                key: key.into(),
                start: millis_z(start),
                end: millis_z(end),
            });
        }
    }
}

/// Build every scenario for the world.
pub(crate) fn build(w: &World, seed: u64) -> Injected {
    let mut c = Ctx {
        w,
        rng: Rng::new(seed, "scenarios"),
        inj: Injected::default(),
        next: 0,
    };
    crate::aws::scenarios(&mut c);
    crate::azure::scenarios(&mut c);
    crate::gcp::scenarios(&mut c);
    c.inj
}
