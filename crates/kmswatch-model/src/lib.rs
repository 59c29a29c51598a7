//! # kmswatch-model
//!
//! The data that flows along kmswatch's data path, and nothing else: the normalized
//! key-management audit event ([`Event`], OCSF API Activity 6003 plus a `kms` extension),
//! produced by `kmswatch-normalize` and read by `kmswatch-rules`, and the finding ([`Finding`],
//! OCSF Detection Finding 2004) that `kmswatch-rules` produces for the sinks; response records
//! come later. This crate is data only (serde), so every other crate can depend
//! on it without pulling in I/O. [`resource`] holds the one strict grammar for key and vault
//! references (Key Vault URLs, KMS ARNs, Cloud KMS names) that decides which names may ever
//! become a network endpoint.
//!
//! The JSON form of [`Event`] is a public contract: rules, sinks and downstream tools address
//! its fields by the dotted names listed in `DESIGN.md` (`actor.user.uid`, `kms.key.uid`, ...).

mod event;
mod finding;
mod operation;
mod raw;
pub mod resource;

pub use event::*;
pub use finding::*;
pub use operation::KmsOperation;
pub use raw::Raw;
