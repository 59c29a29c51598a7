//! # kmswatch-respond
//!
//! The last stage of the data path, beside the sinks: it takes a reversible action on the key a
//! finding is about. `findings -> playbooks -> policy -> responder (AWS / Azure / GCP) -> audit
//! records (journal + sinks)`.
//!
//! - [`Responder`] is the one entry point: [`Responder::on_finding`] for the runtime,
//!   [`Responder::manual`], [`Responder::approve`], [`Responder::reject`], [`Responder::undo`]
//!   for the CLI. Every action goes plan (read-only: resolve the key, read its state, tags and
//!   names, check the policy) then execute (idempotent), and both steps are audit records
//!   written to the local journal and returned to the caller.
//! - [`policy`] holds every safety rule in one place: playbooks, modes (`dry_run` default,
//!   `approve`, `enforce`), allow/deny lists, break-glass tags, per-account token buckets, the
//!   blast-radius cap, idempotency. Its state is rebuilt from the journal after a restart.
//! - [`backend::KeyBackend`] is the responder trait; [`backend::Backend`] lists every
//!   responder: [`aws`] (aws-sdk-kms, assume-role per account), [`azure`] (Key Vault REST,
//!   Entra ID), [`gcp`] (Cloud KMS REST, service-account JWT or metadata server).
//! - Nothing ever schedules deletion or destroys key material: [`Action`] has no such variant,
//!   and [`http::guard`] refuses such a request should one ever be built.
//! - **Provenance before any call.** A key id from a finding becomes a [`KeyRef`] only through
//!   the strict grammar of `kmswatch_model::resource` (Key Vault DNS suffixes, ARN partitions
//!   and regions, Cloud KMS names), and [`policy::Policy::precheck`] (scope, allow/deny by
//!   id, name and account) runs before the read-only describe; no backend builds a URL from
//!   anything else. Before an automatic action executes in `enforce` mode (or approved), the
//!   cloud's own state and history must corroborate the finding ([`corroborate`]) and, when
//!   configured, every log origin must be verified ([`provenance`]: trusted locations,
//!   CloudTrail digest files). Otherwise the action is only planned, and a finding says why.

pub mod action;
pub mod audit;
pub mod aws;
pub mod azure;
pub mod backend;
pub mod basis;
pub mod config;
pub mod corroborate;
pub mod error;
pub mod gcp;
pub mod http;
pub mod journal;
pub mod net;
pub mod policy;
pub mod provenance;
pub mod responder;
#[cfg(feature = "test-hooks")]
pub mod testhook;
#[doc(hidden)]
pub mod testutil;

pub use action::{Action, ActionKind, KeyRef, KeyState};
pub use audit::{AuditRecord, Mode, Outcome, Phase, ResponseOutput};
pub use backend::{Backend, KeyBackend, MemoryBackend};
pub use basis::{Basis, Claim};
pub use config::RespondConfig;
pub use error::RespondError;
pub use responder::{ManualRequest, Responder};
