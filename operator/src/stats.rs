//! The operator's view of the gateway stats stream: a store of the latest [`GatewayStats`] per
//! pod (fed from `volley.stats.>`), and a pool of NATS connections (see [`pool`]).

pub mod pool;
pub use pool::{NatsPool, PoolConfig};

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
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

/// (namespace, cluster).
type Key = (String, String);

/// The connection stats came in on: the server URL and the credentials it logs in with, so the
/// NATS account. Accounts do not share subjects, but any user of an account can publish
/// `volley.stats.<ns>.<cluster>.<pod>` for any cluster: stats are kept per source, and a cluster
/// reads only those from its own connection (finding 8 of review 2), so a tenant of account A
/// cannot feed the decisions of a cluster in account B. The credentials are kept as they are (no
/// hash, so no collision can ever mix accounts); `Debug` shows the URL redacted and only a
/// fingerprint of the credentials.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Source {
    url: String,
    credentials: Option<String>,
}

impl Source {
    /// The connection to `url` logged in with `credentials` (the contents of a `.creds` file).
    pub fn new(url: &str, credentials: Option<&str>) -> Self {
        Self {
            url: url.to_string(),
            credentials: credentials.map(str::to_string),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint = self.credentials.as_ref().map(|c| {
            let mut h = DefaultHasher::new();
            c.hash(&mut h);
            format!("{:016x}", h.finish())
        });
        f.debug_struct("Source")
            // The URL may carry a user/password or a token, and sources are logged.
            .field("url", &crate::gateway_config::redact_nats_url(&self.url))
            .field("credentials", &fingerprint)
            .finish()
    }
}

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
    /// Per source, per cluster, per pod.
    sources: HashMap<Source, HashMap<Key, HashMap<String, Seen>>>,
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
        for clusters in self.sources.values_mut() {
            for pods in clusters.values_mut() {
                pods.retain(|_, s| !older_than(s.at, now, retention));
            }
            clusters.retain(|_, pods| !pods.is_empty());
        }
        self.sources.retain(|_, clusters| !clusters.is_empty());
        self.recount();
        self.last_prune = now;
    }

    fn recount(&mut self) {
        self.pods = self
            .sources
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum();
    }
}

impl StatsStore {
    /// A store keeping entries for `retention` at most, and at most `max_pods` pods.
    pub fn with_limits(retention: Duration, max_pods: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                sources: HashMap::new(),
                pods: 0,
                last_prune: SystemTime::UNIX_EPOCH,
            })),
            retention,
            max_pods,
        }
    }

    /// Records one stats message that came in on no particular connection (tests and
    /// single-account tools): [`StatsStore::record_from`] with the default [`Source`].
    pub fn record(&self, subject: &str, payload: &[u8], at: SystemTime) -> bool {
        self.record_from(&Source::default(), subject, payload, at)
    }

    /// Records one stats message that came in on `source`. The subject is authoritative for the
    /// identity (a gateway cannot report for another pod by lying in the body); bodies that do
    /// not parse or whose identity disagrees with the subject are dropped and `false` is
    /// returned, as is a new pod while the store is full.
    pub fn record_from(
        &self,
        source: &Source,
        subject: &str,
        payload: &[u8],
        at: SystemTime,
    ) -> bool {
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
            .sources
            .get(source)
            .and_then(|clusters| clusters.get(&key))
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
        // Cloned (credentials and all) only for a source not held yet.
        if !inner.sources.contains_key(source) {
            inner.sources.insert(source.clone(), HashMap::new());
        }
        inner
            .sources
            .get_mut(source)
            .expect("inserted above")
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

    /// Fresh stats of one cluster that came in on `source` (sorted by pod name); stale entries
    /// are dropped. What other connections (other NATS accounts) said about the cluster is not
    /// seen.
    pub fn snapshot_from(
        &self,
        source: &Source,
        ns: &str,
        cluster: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> Vec<Seen> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(pods) = inner
            .sources
            .get_mut(source)
            .and_then(|clusters| clusters.get_mut(&(ns.to_string(), cluster.to_string())))
        else {
            return Vec::new();
        };
        pods.retain(|_, s| !older_than(s.at, now, max_age));
        let mut out: Vec<_> = pods.values().cloned().collect();
        out.sort_by(|a, b| a.stats.pod.cmp(&b.stats.pod));
        inner.recount();
        out
    }

    /// Fresh stats of one cluster from every source, the newest per pod (sorted by pod name):
    /// for tests and single-account tools; the operator reads [`StatsStore::snapshot_from`].
    pub fn snapshot(
        &self,
        ns: &str,
        cluster: &str,
        max_age: Duration,
        now: SystemTime,
    ) -> Vec<Seen> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (ns.to_string(), cluster.to_string());
        let mut newest: HashMap<&str, &Seen> = HashMap::new();
        for pods in inner.sources.values().filter_map(|c| c.get(&key)) {
            for (pod, seen) in pods {
                if older_than(seen.at, now, max_age) {
                    continue;
                }
                let slot = newest.entry(pod.as_str()).or_insert(seen);
                if seen.at > slot.at {
                    *slot = seen;
                }
            }
        }
        let mut out: Vec<Seen> = newest.into_values().cloned().collect();
        out.sort_by(|a, b| a.stats.pod.cmp(&b.stats.pod));
        out
    }

    /// Forgets a cluster (it was deleted), whatever the source.
    pub fn forget(&self, ns: &str, cluster: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (ns.to_string(), cluster.to_string());
        for clusters in inner.sources.values_mut() {
            clusters.remove(&key);
        }
        inner.sources.retain(|_, clusters| !clusters.is_empty());
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
