//! The always-on service behind `kmswatch run`: the streaming pipeline, durable state,
//! delivery, metrics and the HTTP listener. See `pipeline` for the acknowledgement rule.

pub mod dedup;
pub mod deliver;
pub mod metrics;
pub mod pipeline;
pub mod respond;
pub mod scale;
pub mod server;
pub mod store;
