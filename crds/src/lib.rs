//! Volley API crate: the `PushCluster` custom resource (group `volley.dev`).
//!
//! The gateway does not depend on this crate: the messages gateways and the operator exchange
//! over NATS live in `volley-wire`, which has no Kubernetes dependency. They are re-exported
//! here as [`wire`] so operator code names one API crate.

pub mod history;
pub mod pushcluster;

pub use history::{HistorySpec, HistoryStorage};
pub use pushcluster::*;
pub use volley_wire as wire;
