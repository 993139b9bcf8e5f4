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

/// Keep stats this long at most whatever the reader's `max_age` (twice the default, so a snapshot
/// with the default age never misses an entry that is still fresh).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(60);
/// At most this many pods are held. One entry (a [`GatewayStats`] and its keys) is a few hundred
/// bytes, so the store stays under about 8 MiB; 16384 pods is 100 clusters of 160 pods, above
/// what one operator is expected to run, so a real fleet never meets the bound. It bounds what
/// any publisher on `volley.stats.>` (another install, a made-up pod name per message) can make
/// the operator hold: known pods keep updating while new names are refused until entries age out.
pub const DEFAULT_MAX_PODS: usize = 16_384;
/// Prune the whole store by age at most this often (pruning walks every entry).
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Latest stats per (namespace, cluster) and pod; cheap to clone (shared). Bounded: entries older
/// than the retention are pruned (every few seconds as messages arrive, and by
/// [`StatsStore::prune`]), and a pod not yet known is refused while the store is full.
#[derive(Debug, Clone)]
pub struct StatsStore {
    inner: Arc<Mutex<Inner>>,
    retention: Duration,
    max_pods: usize,
}

#[derive(Debug)]
struct Inner {
    clusters: HashMap<Key, HashMap<String, Seen>>,
    /// Pods across all clusters.
    pods: usize,
    last_prune: SystemTime,
}

impl Default for StatsStore {
    fn default() -> Self {
        Self::with_limits(DEFAULT_RETENTION, DEFAULT_MAX_PODS)
    }
}

/// `at` is past `since` by more than `age` (a clock stepping back counts as no time passed).
fn older_than(since: SystemTime, at: SystemTime, age: Duration) -> bool {
    at.duration_since(since).is_ok_and(|d| d > age)
}

impl Inner {
    fn prune(&mut self, retention: Duration, now: SystemTime) {
        for pods in self.clusters.values_mut() {
            pods.retain(|_, s| !older_than(s.at, now, retention));
        }
        self.clusters.retain(|_, pods| !pods.is_empty());
        self.recount();
        self.last_prune = now;
    }

    fn recount(&mut self) {
        self.pods = self.clusters.values().map(HashMap::len).sum();
    }
}

impl StatsStore {
    /// A store keeping entries for `retention` at most, and at most `max_pods` pods.
    pub fn with_limits(retention: Duration, max_pods: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                clusters: HashMap::new(),
                pods: 0,
                last_prune: SystemTime::UNIX_EPOCH,
            })),
            retention,
            max_pods,
        }
    }

    /// Records one stats message. The subject is authoritative for the identity (a gateway
    /// cannot report for another pod by lying in the body); bodies that do not parse or whose
    /// identity disagrees with the subject are dropped and `false` is returned, as is a new pod
    /// while the store is full.
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
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if older_than(inner.last_prune, at, PRUNE_EVERY) {
            inner.prune(self.retention, at);
        }
        let key = (ns.to_string(), cluster.to_string());
        let known = inner
            .clusters
            .get(&key)
            .is_some_and(|pods| pods.contains_key(pod));
        if !known {
            if inner.pods >= self.max_pods {
                tracing::warn!(
                    subject,
                    max_pods = self.max_pods,
                    "stats store full; ignoring a new pod"
                );
                return false;
            }
            inner.pods += 1;
        }
        inner
            .clusters
            .entry(key)
            .or_default()
            .insert(pod.to_string(), Seen { stats, at });
        true
    }

    /// Drops every entry older than the retention (messages prune as they arrive; this covers a
    /// store nobody publishes to anymore).
    pub fn prune(&self, now: SystemTime) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.prune(self.retention, now);
    }

    /// How many pods the store holds.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pods
    }

    /// Whether the store holds no pod.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fresh stats of one cluster (sorted by pod name); stale entries are dropped.
    pub fn snapshot(
        &self,
        ns: &str,
        cluster: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> Vec<Seen> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pods) = inner
            .clusters
            .get_mut(&(ns.to_string(), cluster.to_string()))
        else {
            return Vec::new();
        };
        pods.retain(|_, s| !older_than(s.at, now, max_age));
        let mut out: Vec<_> = pods.values().cloned().collect();
        out.sort_by(|a, b| a.stats.pod.cmp(&b.stats.pod));
        inner.recount();
        out
    }

    /// Forgets a cluster (it was deleted).
    pub fn forget(&self, ns: &str, cluster: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .clusters
            .remove(&(ns.to_string(), cluster.to_string()));
        inner.recount();
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
    /// Could not connect. The URL is shown without its credentials: this text reaches the
    /// status and the logs.
    #[error("connecting to {}: {message}", crate::gateway_config::redact_nats_url(.url))]
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
