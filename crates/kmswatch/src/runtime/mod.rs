//! The always-on service behind `kmswatch run`: the streaming pipeline, durable state,
//! delivery, the durable response queue, dead letters, the memory budget, readiness, metrics
//! and the HTTP listener. See `pipeline` for the acknowledgement rule.

pub mod deadletter;
pub mod dedup;
pub mod deliver;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod ready;
pub mod respond;
pub mod scale;
pub mod server;
pub mod store;
