//! Volley's wire contract: the cluster protocol between gateways and the operator over NATS
//! (README, "Cluster protocol"; docs/operator.md).
//!
//! A crate of its own with serde as its only dependency, so the gateway builds without
//! Kubernetes: the `PushCluster` custom resource stays in `volley-crds`.
//!
//! Gateways publish [`GatewayStats`] to [`stats_subject`] every few seconds; the operator sends
//! [`ControlRequest`]s to [`control_subject`] as NATS requests and gets a [`ControlReply`] back.
//! JSON field names are snake_case on the wire (e.g. `over_ms`).
//!
//! [`config`] is the gateway's options and config file type (`gateway.yaml`), which the operator
//! renders and the gateway loads.

use serde::{Deserialize, Serialize};

pub mod config;

/// Subject root for stats messages.
pub const STATS_ROOT: &str = "volley.stats";
/// Subject root for control requests.
pub const CONTROL_ROOT: &str = "volley.control";

/// `volley.stats.<ns>.<cluster>.<pod>`: where a gateway publishes its stats.
///
/// Namespaces, PushCluster names (the operator requires a DNS label) and pod names derived from
/// them contain no `.`, `*`, `>` or whitespace, so each is exactly one subject token; see
/// [`is_subject_token`].
pub fn stats_subject(namespace: &str, cluster: &str, pod: &str) -> String {
    format!("{STATS_ROOT}.{namespace}.{cluster}.{pod}")
}

/// `volley.control.<ns>.<cluster>.<pod>`: where the operator sends a pod its control requests.
pub fn control_subject(namespace: &str, cluster: &str, pod: &str) -> String {
    format!("{CONTROL_ROOT}.{namespace}.{cluster}.{pod}")
}

/// `volley.stats.<ns>.<cluster>.*`: every pod of one cluster.
pub fn cluster_stats_wildcard(namespace: &str, cluster: &str) -> String {
    format!("{STATS_ROOT}.{namespace}.{cluster}.*")
}

/// `volley.stats.>`: every pod of every cluster (what the operator subscribes to).
pub fn all_stats_wildcard() -> String {
    format!("{STATS_ROOT}.>")
}

/// Splits a stats subject back into `(namespace, cluster, pod)`.
pub fn parse_stats_subject(subject: &str) -> Option<(&str, &str, &str)> {
    let rest = subject.strip_prefix(STATS_ROOT)?.strip_prefix('.')?;
    let mut parts = rest.split('.');
    let (ns, cluster, pod) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [ns, cluster, pod].iter().any(|t| !is_subject_token(t)) {
        return None;
    }
    Some((ns, cluster, pod))
}

/// Whether `token` can stand as one NATS subject token (non-empty, no separators or wildcards).
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

/// What a gateway reports about itself every stats interval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Pod namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// PushCluster name (`VOLLEY_CLUSTER`).
    pub cluster: String,
    /// Pod name (`POD_NAME`).
    pub pod: String,
    /// Open client connections, all shards.
    pub connections: u64,
    /// Open client connections per shard, index = shard.
    #[serde(default)]
    pub connections_per_shard: Vec<u64>,
    /// Subscriptions over all connections.
    #[serde(default)]
    pub subscriptions: u64,
    /// Distinct topics with at least one subscriber.
    #[serde(default)]
    pub topics: u64,
    /// Whether the gateway takes new connections (readiness).
    pub accepting: bool,
    /// Whether the gateway is draining (shutting down).
    #[serde(default)]
    pub draining: bool,
    /// Messages delivered to clients since start.
    #[serde(default)]
    pub delivered: u64,
    /// Messages dropped since start.
    #[serde(default)]
    pub dropped: u64,
    /// Connections closed as slow consumers since start.
    #[serde(default)]
    pub slow_consumer_closes: u64,
    /// Resident set size in bytes.
    #[serde(default)]
    pub rss_bytes: u64,
    /// Gateway version.
    #[serde(default)]
    pub version: String,
    /// Start time as an RFC 3339 timestamp.
    #[serde(default)]
    pub started_at: String,
}

/// A request from the operator to one gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Close `count` connections with 1012 ("rebalance"), spread over `over_ms`.
    Shed {
        /// Connections to close.
        count: u64,
        /// Spread window in milliseconds.
        over_ms: u64,
    },
    /// Close every connection with 1001, spread over `over_ms`.
    Drain {
        /// Spread window in milliseconds.
        over_ms: u64,
    },
    /// Flip readiness so the Service stops (or resumes) sending new connections.
    Accepting {
        /// New accepting state.
        value: bool,
    },
}

/// A gateway's answer to a [`ControlRequest`]: what it did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlReply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Connections the gateway is closing because of this request.
    #[serde(default)]
    pub closing: u64,
    /// Accepting state after the request.
    #[serde(default)]
    pub accepting: bool,
    /// Draining state after the request.
    #[serde(default)]
    pub draining: bool,
    /// Why the request was refused, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests;
