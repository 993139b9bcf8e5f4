//! The operator's view of the gateway stats stream: a store of the latest [`GatewayStats`] per
//! pod (fed from `volley.stats.>`), and a pool of NATS connections (see [`pool`]).

pub mod pool;
pub use pool::{NatsPool, PoolConfig};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use volley_crds::wire::{self, ControlReply, ControlRequest, GatewayStats};

use crate::scaling::PodView;

/// Stats older than this are stale: the pod is gone or cut off.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);
/// Messages larger than this are not stats; ignore them instead of parsing.
const MAX_STATS_BYTES: usize = 64 * 1024;

/// Latest stats of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// What the pod reported.
    pub stats: GatewayStats,
    /// When it arrived.
    pub at: SystemTime,
}

type Key = (String, String);

/// Latest stats per (namespace, cluster) and pod; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct StatsStore {
    inner: Arc<Mutex<HashMap<Key, HashMap<String, Seen>>>>,
}

impl StatsStore {
    /// Records one stats message. The subject is authoritative for the identity (a gateway
    /// cannot report for another pod by lying in the body); bodies that do not parse or whose
    /// identity disagrees with the subject are dropped and `false` is returned.
    pub fn record(&self, subject: &str, payload: &[u8], at: SystemTime) -> bool {
        let Some((ns, cluster, pod)) = wire::parse_stats_subject(subject) else {
            return false;
        };
        if payload.len() > MAX_STATS_BYTES {
            return false;
        }
        let Ok(stats) = serde_json::from_slice::<GatewayStats>(payload) else {
            return false;
        };
        if stats.namespace != ns || stats.cluster != cluster || stats.pod != pod {
            return false;
        }
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((ns.to_string(), cluster.to_string()))
            .or_default()
            .insert(pod.to_string(), Seen { stats, at });
        true
    }

    /// Fresh stats of one cluster (sorted by pod name); stale entries are dropped.
    pub fn snapshot(
        &self,
        ns: &str,
        cluster: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> Vec<Seen> {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pods) = map.get_mut(&(ns.to_string(), cluster.to_string())) else {
            return Vec::new();
        };
        pods.retain(|_, s| now.duration_since(s.at).map_or(true, |age| age <= max_age));
        let mut out: Vec<_> = pods.values().cloned().collect();
        out.sort_by(|a, b| a.stats.pod.cmp(&b.stats.pod));
        out
    }

    /// Forgets a cluster (it was deleted).
    pub fn forget(&self, ns: &str, cluster: &str) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&(ns.to_string(), cluster.to_string()));
    }
}

/// Converts stats to the scaling view.
pub fn pod_view(seen: &Seen) -> PodView {
    PodView {
        name: seen.stats.pod.clone(),
        connections: seen.stats.connections,
        accepting: seen.stats.accepting,
        draining: seen.stats.draining,
    }
}

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Could not connect.
    #[error("connecting to {url}: {message}")]
    Connect {
        /// Server URL.
        url: String,
        /// Client error.
        message: String,
    },
    /// Bad credentials file contents.
    #[error("NATS credentials: {0}")]
    Credentials(String),
    /// A control request failed (timeout, no responder).
    #[error("control request to {subject}: {message}")]
    Request {
        /// Subject.
        subject: String,
        /// Client error.
        message: String,
    },
    /// The reply was not a [`ControlReply`].
    #[error("control reply from {subject} did not parse: {message}")]
    Reply {
        /// Subject.
        subject: String,
        /// Parse error.
        message: String,
    },
}

/// Sends one control request and waits for the gateway's reply.
pub async fn control(
    client: &async_nats::Client,
    subject: String,
    request: &ControlRequest,
) -> Result<ControlReply, NatsError> {
    // Serializing an enum of integers and booleans cannot fail.
    let body = serde_json::to_vec(request).unwrap_or_default();
    let msg = client
        .request(subject.clone(), body.into())
        .await
        .map_err(|e| NatsError::Request {
            subject: subject.clone(),
            message: e.to_string(),
        })?;
    serde_json::from_slice(&msg.payload).map_err(|e| NatsError::Reply {
        subject,
        message: e.to_string(),
    })
}

/// Whether the client is currently connected.
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

#[cfg(test)]
mod tests;
