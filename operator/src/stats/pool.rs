//! The pool of NATS connections: one client per (server URL, credentials), connected outside any
//! shared lock, failed connects remembered with a back-off, and clients that are unused or stay
//! disconnected dropped.
//!
//! Why per (URL, credentials) and not per URL: two PushClusters may share a server but sit in
//! different NATS accounts (one Secret each), and a rotated Secret must give a new connection
//! rather than the old one that keeps reconnecting with revoked credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use volley_crds::wire;

use super::{NatsError, Source, StatsStore};

/// Timings of the pool; [`PoolConfig::default`] is what the operator runs with (tests shorten
/// them).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Deadline of one connect (TCP, TLS, INFO/CONNECT).
    pub connect_timeout: Duration,
    /// Wait this long after a first failed connect before trying the same key again; doubles on
    /// each further failure up to `retry_max`.
    pub retry_min: Duration,
    /// Longest wait between connect attempts of one key.
    pub retry_max: Duration,
    /// Drop a client nobody asked for in this long (its cluster was deleted, its Secret
    /// rotated, or its URL changed). Must be well above the reconcile period (10 s), since
    /// every pass of a cluster asks for its client.
    pub idle: Duration,
    /// Replace a client seen disconnected for this long by a fresh connect (which applies the
    /// back-off when it fails).
    pub disconnected: Duration,
    /// Reconnect attempts of one client before async-nats gives up on it. Bounded so a dropped
    /// client that cannot reach its server ends its background task instead of retrying
    /// forever; the pool replaces a client that gave up (see `disconnected`).
    pub max_reconnects: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(120),
            idle: Duration::from_secs(300),
            disconnected: Duration::from_secs(120),
            // async-nats waits up to 4 s between attempts (plus the connect timeout), so this
            // rides out an outage of at least 2 minutes before the client gives up.
            max_reconnects: 30,
        }
    }
}

/// What identifies a connection: the server and the credentials it logs in with (see
/// [`Source`], which also tags the stats the connection delivers).
type Key = Source;

/// One key's state; its own lock is held while connecting, so only callers of the same key wait.
#[derive(Debug)]
struct Entry {
    slot: tokio::sync::Mutex<Slot>,
    last_used: Mutex<Instant>,
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Live(Live),
    Failed {
        error: NatsError,
        failures: u32,
        retry_at: Instant,
    },
}

/// A connected client and the task feeding its stats into the store.
#[derive(Debug)]
struct Live {
    client: async_nats::Client,
    /// The stats subscription holds the connection open (async-nats keeps it while any
    /// subscriber lives), so dropping the client alone would not close it: abort the feed too.
    feed: tokio::task::AbortHandle,
    disconnected_since: Option<Instant>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

/// NATS clients per (server URL, credentials) (several PushClusters usually share one); each
/// client feeds the shared [`StatsStore`] from a `volley.stats.>` subscription. Cheap to clone
/// (shared).
#[derive(Debug, Clone, Default)]
pub struct NatsPool {
    entries: Arc<Mutex<HashMap<Key, Arc<Entry>>>>,
    store: StatsStore,
    config: PoolConfig,
}

impl NatsPool {
    /// A pool feeding `store`, with the default timings.
    pub fn new(store: StatsStore) -> Self {
        Self::with_config(store, PoolConfig::default())
    }

    /// A pool feeding `store` with the given timings.
    pub fn with_config(store: StatsStore, config: PoolConfig) -> Self {
        Self {
            entries: Arc::default(),
            store,
            config,
        }
    }

    /// The client for `url` logged in with `credentials` (the contents of a `.creds` file),
    /// connecting (and subscribing to stats) on first use. A key whose last connect failed
    /// answers that error again at once until its back-off has passed.
    pub async fn client(
        &self,
        url: &str,
        credentials: Option<&str>,
    ) -> Result<async_nats::Client, NatsError> {
        let now = Instant::now();
        let key = Key::new(url, credentials);
        let entry = {
            // A short, synchronous critical section: never held across a connect.
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = entries
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Entry {
                        slot: tokio::sync::Mutex::default(),
                        last_used: Mutex::new(now),
                    })
                })
                .clone();
            // Touched before the sweep, so asking for an idle key keeps its connection.
            *entry
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = now;
            self.evict_idle(&mut entries, now);
            entry
        };
        let mut slot = entry.slot.lock().await;
        let now = Instant::now();
        match &mut *slot {
            Slot::Live(live) => {
                if super::is_connected(&live.client) {
                    live.disconnected_since = None;
                    return Ok(live.client.clone());
                }
                let since = *live.disconnected_since.get_or_insert(now);
                if now.duration_since(since) < self.config.disconnected {
                    // Reconnecting inside async-nats: the caller sees "not connected".
                    return Ok(live.client.clone());
                }
                tracing::info!(key = ?key, "NATS client disconnected too long; connecting anew");
            }
            Slot::Failed {
                error, retry_at, ..
            } if now < *retry_at => return Err(replay(error)),
            Slot::Failed { .. } | Slot::Empty => {}
        }
        let failures = match &*slot {
            Slot::Failed { failures, .. } => *failures,
            _ => 0,
        };
        // Drop a stale client (and its feed) before making its replacement.
        *slot = Slot::Empty;
        match self.connect(&key).await {
            Ok(live) => {
                let client = live.client.clone();
                *slot = Slot::Live(live);
                Ok(client)
            }
            Err(error) => {
                let wait = backoff(&self.config, failures);
                tracing::warn!(key = ?key, error = %error, retry_in = ?wait, "NATS connect failed");
                let answer = with_retry_note(&error, wait);
                *slot = Slot::Failed {
                    error: answer,
                    failures: failures.saturating_add(1),
                    retry_at: Instant::now() + wait,
                };
                Err(with_retry_note(&error, wait))
            }
        }
    }

    /// Drops the clients nobody asked for within [`PoolConfig::idle`]; [`NatsPool::client`]
    /// does this on each call, a periodic call covers a pool nobody asks anymore.
    pub fn sweep(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.evict_idle(&mut entries, Instant::now());
    }

    fn evict_idle(&self, entries: &mut HashMap<Key, Arc<Entry>>, now: Instant) {
        entries.retain(|key, entry| {
            let last = *entry
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let keep = now.saturating_duration_since(last) < self.config.idle;
            if !keep {
                tracing::info!(key = ?key, "dropping unused NATS client");
            }
            keep
        });
    }

    async fn connect(&self, key: &Key) -> Result<Live, NatsError> {
        let connect_error = |e: &dyn fmt::Display| NatsError::Connect {
            url: key.url.clone(),
            message: e.to_string(),
        };
        let mut opts = async_nats::ConnectOptions::new()
            .name("volley-operator")
            .connection_timeout(self.config.connect_timeout)
            .max_reconnects(self.config.max_reconnects);
        if let Some(creds) = &key.credentials {
            opts = opts
                .credentials(creds)
                .map_err(|e| NatsError::Credentials(e.to_string()))?;
        }
        // async-nats applies connection_timeout to each resolved address in turn and not to the
        // DNS lookup (connector.rs, try_connect_to_server); the outer deadline bounds the whole
        // call while still leaving room for a second address.
        let client = tokio::time::timeout(
            self.config.connect_timeout.saturating_mul(2),
            async_nats::connect_with_options(key.url.as_str(), opts),
        )
        .await
        .map_err(|e| connect_error(&e))?
        .map_err(|e| connect_error(&e))?;
        let mut sub = client
            .subscribe(wire::all_stats_wildcard())
            .await
            .map_err(|e| connect_error(&e))?;
        let store = self.store.clone();
        let source = key.clone();
        let feed = tokio::spawn(async move {
            // Ends when the connection closes; reconnects are handled inside async-nats.
            while let Some(msg) = sub.next().await {
                let subject = msg.subject.as_str();
                if !store.record_from(&source, subject, &msg.payload, SystemTime::now()) {
                    tracing::debug!(subject = %msg.subject, "ignored malformed stats message");
                }
            }
        });
        Ok(Live {
            client,
            feed: feed.abort_handle(),
            disconnected_since: None,
        })
    }
}

/// The wait after `failures` earlier consecutive failures: `retry_min` doubled each time, at
/// most `retry_max`.
fn backoff(config: &PoolConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    config
        .retry_min
        .checked_mul(factor)
        .unwrap_or(config.retry_max)
        .min(config.retry_max)
}

/// The error to answer while waiting: the original one, saying when the next attempt is.
fn with_retry_note(error: &NatsError, wait: Duration) -> NatsError {
    let note = format!("; not retried for {}s", wait.as_secs_f64().ceil());
    match error {
        NatsError::Connect { url, message } => NatsError::Connect {
            url: url.clone(),
            message: format!("{message}{note}"),
        },
        NatsError::Credentials(m) => NatsError::Credentials(format!("{m}{note}")),
        other => replay(other),
    }
}

/// A copy of a cached error (the type is not `Clone`).
fn replay(error: &NatsError) -> NatsError {
    match error {
        NatsError::Connect { url, message } => NatsError::Connect {
            url: url.clone(),
            message: message.clone(),
        },
        NatsError::Credentials(m) => NatsError::Credentials(m.clone()),
        NatsError::Request { subject, message } => NatsError::Request {
            subject: subject.clone(),
            message: message.clone(),
        },
        NatsError::Reply { subject, message } => NatsError::Reply {
            subject: subject.clone(),
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
