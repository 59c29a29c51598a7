//! # kmswatch-rules
//!
//! The Sigma detection engine. On kmswatch's data path it sits right after normalization:
//!
//! ```text
//! source -> normalize (kmswatch-normalize) -> detect (this crate) -> deliver / act
//! ```
//!
//! It loads Sigma v2 detection rules (YAML, one or many documents per file), compiles them once
//! and matches each normalized [`kmswatch_model::Event`] against them, with no allocation per
//! event in the common case. Sigma v2.1 correlation rules (`event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, `value_sum`; chaining, `aliases`, `generate`) load into the
//! same [`RuleSet`] ([`RuleSet::correlations`]) and run in event time in the [`Engine`], which
//! also computes the enrichment, applies suppression and produces
//! [`kmswatch_model::Finding`]s.
//!
//! ## The engine
//! ```text
//! let (rules, _) = RuleSet::load(&["rules/"], &config.load_options())?;
//! let mut engine = Engine::new(rules, config)?;
//! for (event, source) in input { engine.process(&event, source, &mut findings); }
//! engine.flush(&mut findings);          // end of input: close every window
//! let late = engine.take_late();        // events that came after their window closed
//! ```
//! Windows are decided by event time and a per-source watermark (max event time − allowed
//! lateness, 20 minutes by default); the window model (anchored sliding windows), duplicate
//! handling, late events, suppression and the state bounds are described on [`Engine`]'s
//! documentation. Findings are identical for any arrival
//! order within the lateness, ids included.
//!
//! ## Enrichment fields (`kmswatch.*`)
//! Computed once per event before matching; `product: kms` rules use them like event fields.
//!
//! | field | meaning |
//! |---|---|
//! | `kmswatch.off_hours` | `true` when the event time is outside business hours in the calendar of the event's account (`cloud.account.uid`: AWS account, Azure subscription, GCP project; [`EngineConfig::calendars`]), else the default calendar ([`EngineConfig::calendar`]): not a working day, a holiday, or outside `[work_start, work_end)` local time (DST-aware, IANA zones). Absent when no calendar applies. |
//! | `kmswatch.first_seen` | `true` the first time a principal (`actor.user.uid`) performs a cryptographic operation ([`is_crypto_operation`]: Encrypt, Decrypt, ReEncrypt, GenerateDataKey, Sign, Verify, GenerateMac, VerifyMac, WrapKey, UnwrapKey) with a key (`kms.key.uid`) within the lookback ([`EngineConfig::first_seen_lookback_days`], 30); `false` when it did so within the lookback. Decided at arrival with day resolution: the state is one 64-bit hash of (principal, key) -> last day seen, purged past the lookback. Absent for other operations and when the principal or key is unknown. |
//! | `kmswatch.principal_known` | `false` only when an identity inventory ([`EngineConfig::inventory_path`], [`Inventory`]) is configured and neither `actor.user.uid` nor `actor.user.name` is in it (case-insensitive); `true` when one is; absent without an inventory or without a principal. |
//!
//! ## Two kinds of rules
//! - `logsource: {product: kms}` rules read the normalized event by the dotted names of
//!   `DESIGN.md` (`kms.operation`, `actor.user.uid`, ...) plus the enrichment fields
//!   `kmswatch.off_hours`, `kmswatch.first_seen`, `kmswatch.principal_known` ([`Enrichment`]).
//!   An unknown field is a load error.
//! - provider logsource rules (`product: aws, service: cloudtrail`; `product: azure, service:
//!   activitylogs | keyvault | auditlogs | signinlogs`; `product: gcp, service: gcp.audit`) read
//!   the event's `raw` record, so SigmaHQ's rules run unchanged. Dotted names walk nested
//!   objects; a key that itself contains dots is found too. The raw record is parsed once per
//!   event, and only when a rule for its logsource exists.
//!
//! Rules with any other logsource load (and are checked) but never run; they are listed in
//! [`LoadReport::skipped`].
//!
//! ## Semantics
//! - Matching is case-insensitive unless `|cased`; `re` is case-sensitive unless `|re|i`.
//!   Regexes search (they are not anchored).
//! - Modifiers: `contains`, `startswith`, `endswith`, `all`, `re` (`i`, `m`, `s`), `cidr`,
//!   `exists`, `gt`/`gte`/`lt`/`lte`, `neq`, `minute`/`hour`/`day`/`week`/`month`/`year`,
//!   `base64`, `base64offset`, `utf16le`/`utf16be`/`utf16`/`wide` (only followed by a base64
//!   modifier), `windash`, `expand` (values from [`LoadOptions::placeholders`]), `fieldref`,
//!   `cased`. Anything else fails to load.
//! - A list-valued field matches a value when any element does. `null` matches an absent or
//!   null field. `neq` is the negation of the plain match (an absent field is "different").
//! - Keywords (field-less values) match when any string field of the document contains them.
//! - Global filters (`filter:` documents) are applied as pySigma does: the rule matches only
//!   when `(rule condition) and (filter condition)` holds, so a filter that suppresses is
//!   written `condition: not selection`. `rules:` takes ids or names, or `any`.
//!
//! ## Example
//! ```
//! use kmswatch_rules::{Enrichment, LoadOptions, RuleSet};
//! let rule = r#"
//! title: Key scheduled for deletion
//! logsource: {product: kms}
//! detection:
//!     selection:
//!         kms.operation: ScheduleKeyDeletion
//!     condition: selection
//! "#;
//! let (rules, report) = RuleSet::from_yaml("inline.yml", rule, &LoadOptions::default()).unwrap();
//! assert!(report.errors.is_empty());
//! assert_eq!(rules.len(), 1);
//! ```

mod condition;
mod correlation;
mod detection;
mod document;
mod engine;
mod enrich;
mod error;
mod pattern;
mod ruleset;
mod yaml;

pub use correlation::{
    parse_timespan, Correlation, CorrelationId, CorrelationType, CountCondition, RuleRef,
};
pub use document::{
    Document, Enrichment, EnrichmentField, EventDocument, EventField, FieldPath, FieldValue,
};
pub use engine::{
    Engine, EngineConfig, EngineError, EngineState, EngineStats, LateEvent, SuppressionConfig,
};
pub use enrich::{
    is_crypto_operation, CalendarConfig, ConfigError, FirstSeenState, HashKeyHasher, HashKeyMap,
    Inventory, InventoryError, KeyHash,
};
pub use error::{LoadError, LoadErrorKind, LoadErrors, LoadReport, Skipped};
pub use ruleset::{
    is_config_file, LoadOptions, LogSource, RawSource, RuleId, RuleInfo, RuleSet, Target,
};
