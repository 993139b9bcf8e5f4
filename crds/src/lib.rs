//! Volley API crate: the `PushCluster` custom resource (group `volley.dev`) and the wire
//! messages gateways and the operator exchange over NATS.
//!
//! Kept deliberately light (serde, schemars, kube's derive, k8s-openapi) because the gateway
//! depends on it for the cluster protocol.

pub mod pushcluster;
pub mod wire;

pub use pushcluster::*;
