//! How full the gateway is and whether it takes more, shared by the shards and the control
//! plane: the connection count that enforces `maxConnections` and the per-IP limit, the
//! subscription counts per shard, the readiness switches, and the metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::metrics::Metrics;

#[derive(Debug)]
pub(crate) struct Capacity {
    pub metrics: Metrics,
    pub max_connections: usize,
    /// Open (upgraded) connections over all shards.
    open: AtomicUsize,
    /// Subscriptions over all connections (for stats).
    subscriptions: AtomicUsize,
    /// The same, per shard (for stats and for spreading sheds).
    per_shard: Vec<AtomicUsize>,
    draining: AtomicBool,
    accepting: AtomicBool,
    /// Per client IP limit (0 = off) and the counts it is checked against. Touched once per
    /// connection open and close, never per message.
    max_per_ip: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why `/readyz` says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotReady {
    Draining,
    NotAccepting,
    AtCapacity,
}

impl NotReady {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::NotAccepting => "not accepting",
            NotReady::AtCapacity => "at max connections",
        }
    }
}

impl Capacity {
    pub(crate) fn new(metrics: Metrics, max_connections: usize, shards: usize) -> Capacity {
        Capacity {
            metrics,
            max_connections,
            open: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            per_shard: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            draining: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            max_per_ip: 0,
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Turns on the per-client-IP connection limit.
    pub(crate) fn with_ip_limit(mut self, max_per_ip: usize) -> Capacity {
        self.max_per_ip = max_per_ip;
        self
    }

    pub(crate) fn ip_limited(&self) -> bool {
        self.max_per_ip > 0
    }

    /// Claims a slot for `ip`; false when that address is at its limit.
    pub(crate) fn try_admit_ip(&self, ip: IpAddr) -> bool {
        let mut counts = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return false;
        }
        *count += 1;
        true
    }

    pub(crate) fn release_ip(&self, ip: IpAddr) {
        let mut counts = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }

    /// Claims a connection slot; false when the gateway is full.
    pub(crate) fn try_admit(&self, shard: usize) -> bool {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if let Some(count) = self.per_shard.get(shard) {
            count.fetch_add(1, Ordering::AcqRel);
        }
        self.metrics.connections.inc();
        true
    }

    /// Gives back a slot claimed by [`Capacity::try_admit`].
    pub(crate) fn release(&self, shard: usize) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(count) = self.per_shard.get(shard) {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        self.metrics.connections.dec();
    }

    /// Adds (or, negative, removes) subscriptions to the gateway's count.
    pub(crate) fn count_subscriptions(&self, delta: isize) {
        if delta >= 0 {
            self.subscriptions
                .fetch_add(delta.unsigned_abs(), Ordering::AcqRel);
        } else {
            self.subscriptions
                .fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Acquire)
    }

    /// Open connections on each shard.
    pub(crate) fn connections_per_shard(&self) -> Vec<usize> {
        self.per_shard
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect()
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn set_accepting(&self, value: bool) {
        self.accepting.store(value, Ordering::Release);
    }

    /// Whether a load balancer should send new clients here.
    pub(crate) fn readiness(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            Err(NotReady::Draining)
        } else if !self.accepting.load(Ordering::Acquire) {
            Err(NotReady::NotAccepting)
        } else if self.open_connections() >= self.max_connections {
            Err(NotReady::AtCapacity)
        } else {
            Ok(())
        }
    }
}
