//! What the operator remembers about each PushCluster between reconciles (not in the status):
//! stabilization windows, drain timers, requests in flight, the balancer's rounds. The plan step
//! reads and updates it; the apply step records what its requests achieved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::balancer::Balancer;
use crate::scaledown::DrainWatch;
use crate::scaling::{CloseRequest, History};

/// Per-PushCluster memory.
#[derive(Debug, Default)]
pub(crate) struct ClusterMemory {
    /// Scaling recommendations (stabilization windows).
    pub(crate) history: History,
    /// When pods were first seen draining (stuck-drain net).
    pub(crate) drains: DrainWatch,
    /// When the current scale-down started waiting for its victims.
    pub(crate) scale_down_since: Option<u64>,
    /// Since when fewer pods than desired are ready.
    pub(crate) short_since: Option<u64>,
    /// Recent shed and drain requests (connections in flight).
    pub(crate) closes: Vec<CloseRequest>,
    /// Balancing rounds (created on first use with the context's timing).
    pub(crate) balancer: Option<Balancer>,
    /// The spec.replicas value last reported as overridden.
    pub(crate) overridden: Option<i32>,
    /// spec.replicas as last seen (`None`: never looked).
    pub(crate) spec_replicas_seen: Option<Option<i32>>,
    /// Pods last reported without fresh stats.
    pub(crate) stale: Vec<String>,
    /// Since when each live pod has had no fresh stats.
    pub(crate) missing_since: HashMap<String, u64>,
    /// When each victim was last asked to drain.
    pub(crate) drain_sent: HashMap<String, u64>,
    /// The decision was last held at maxReplicas (the ScalingLimited Event was published).
    pub(crate) capped: bool,
}

/// `(namespace, name)` of a PushCluster.
pub(crate) type Key = (String, String);

/// Every cluster's memory; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Memory(Arc<Mutex<HashMap<Key, ClusterMemory>>>);

impl Memory {
    /// Runs `f` on one cluster's memory. Never held across an await: reconciles of one object
    /// never overlap, but the map is shared by all of them.
    pub(crate) fn with<T>(&self, key: &Key, f: impl FnOnce(&mut ClusterMemory) -> T) -> T {
        let mut memory = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(memory.entry(key.clone()).or_default())
    }

    /// Forgets a deleted cluster.
    pub(crate) fn forget(&self, key: &Key) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
