//! Safe scale-down: pick the victims the ReplicaSet itself will remove, mark them, and say when
//! the Deployment's replica count may be lowered; plus the safety net for stuck drains.
//!
//! The ReplicaSet controller, when it has more pods than replicas, deletes the pods that rank
//! lowest by (Kubernetes `pkg/controller/controller_utils.go`, `ActivePodsWithRanks.Less`, and
//! <https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#scaling-a-replicaset>):
//! 1. unassigned (no node) before assigned;
//! 2. phase Pending before Unknown before Running;
//! 3. not Ready before Ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` before higher (missing = 0);
//! 5. then node co-location, readiness age, restarts and creation time, which the operator
//!    cannot steer.
//!
//! So the operator (a) chooses victims in that order for the keys it cannot change (1–3), (b)
//! gives every victim a deletion cost strictly below every survivor's (−1; survivors keep the
//! default 0), (c) drains the victims so
//! they turn NotReady, and (d) lowers the replica count only once the listed pods show that every
//! victim ranks strictly before every survivor on keys 1–4. Key 5 is then never consulted. Pure
//! logic: the controller feeds it the listed pods and writes what it returns.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

/// Annotation the ReplicaSet controller uses to pick pods to delete first.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// Deletion cost of a chosen victim: below every survivor's (a survivor keeps no annotation,
/// which the ReplicaSet reads as 0, or any cost above this).
pub const VICTIM_COST: i32 = -1;

/// Pod phase, as far as the ReplicaSet's ranking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Not started yet.
    Pending,
    /// Node lost contact.
    Unknown,
    /// Running.
    Running,
}

/// What a pod's fresh stats say, as far as scale-down cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLoad {
    /// Open connections.
    pub connections: u64,
    /// Draining.
    pub draining: bool,
    /// Takes new clients (the gateway's readiness: false while paused, draining or full).
    pub accepting: bool,
}

/// What the operator knows of one live (not terminating, not finished) gateway pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// Pod name.
    pub name: String,
    /// Scheduled to a node.
    pub assigned: bool,
    /// Phase.
    pub phase: Phase,
    /// `Ready` condition is True.
    pub ready: bool,
    /// Its deletion cost annotation as listed (missing or unparsable = 0, as the ReplicaSet
    /// reads it).
    pub cost: i32,
    /// Connections in its fresh stats; `None` when it reports none.
    pub connections: Option<u64>,
    /// Its stats say it is draining.
    pub draining: bool,
    /// Its stats say it refuses new clients without draining: paused by a balancing round or at
    /// `maxConnections`. A NotReady caused by that is the gateway's own and transient, not a
    /// fault, and such a pod is usually the fullest: no reason to remove it first.
    pub refusing: bool,
}

impl PodFacts {
    /// The ReplicaSet's ranking keys 1–4 (lower = deleted first).
    fn rank(&self) -> (bool, Phase, bool, i32) {
        (self.assigned, self.phase, self.ready, self.cost)
    }

    /// Whether an earlier scale-down already chose it.
    fn marked(&self) -> bool {
        self.draining || self.cost == VICTIM_COST
    }
}

/// Facts of the pods that count: not terminating and not finished (the ReplicaSet ignores
/// those, `controller.IsPodActive`). `stats` maps pod name to its fresh stats.
pub fn pod_facts(pods: &[Pod], stats: &HashMap<String, PodLoad>) -> Vec<PodFacts> {
    let mut out: Vec<PodFacts> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let status = p.status.as_ref();
            let phase = match status.and_then(|s| s.phase.as_deref()) {
                Some("Succeeded" | "Failed") => return None,
                Some("Running") => Phase::Running,
                Some("Unknown") => Phase::Unknown,
                // No phase yet is a pod the kubelet has not started: pending.
                _ => Phase::Pending,
            };
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let cost = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let assigned = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            let seen = stats.get(&name);
            Some(PodFacts {
                connections: seen.map(|s| s.connections),
                draining: seen.is_some_and(|s| s.draining),
                refusing: seen.is_some_and(|s| !s.accepting && !s.draining),
                name,
                assigned,
                phase,
                ready,
                cost,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The `count` pods to remove. Pods an earlier reconcile already chose (draining, or carrying
/// [`VICTIM_COST`]) come first so the choice is stable; then the ReplicaSet's keys the operator
/// cannot change (unassigned, pending, not ready first, since the ReplicaSet would remove those
/// before any cost is consulted); then the emptiest (pods without stats after every pod with
/// stats: their load is unknown); the name breaks ties.
///
/// A pod NotReady only because it [refuses](PodFacts::refusing) new clients (paused or full)
/// ranks as Ready here: it is usually the fullest, and the ready key needs no help from the
/// choice, since a drained victim turns NotReady and with cost −1 ranks before that pod anyway
/// ([`may_shrink`] checks it on the listing).
pub fn choose_victims(pods: &[PodFacts], count: usize) -> Vec<String> {
    let mut sorted: Vec<&PodFacts> = pods.iter().collect();
    let ready = |p: &PodFacts| p.ready || p.refusing;
    sorted.sort_by(|a, b| {
        (!a.marked(), a.assigned, a.phase, ready(a))
            .cmp(&(!b.marked(), b.assigned, b.phase, ready(b)))
            .then(
                (a.connections.is_none(), a.connections)
                    .cmp(&(b.connections.is_none(), b.connections)),
            )
            .then(a.name.cmp(&b.name))
    });
    sorted
        .into_iter()
        .take(count)
        .map(|p| p.name.clone())
        .collect()
}

/// Deletion-cost writes: [`VICTIM_COST`] for each victim not carrying it yet, and 0 for a
/// survivor whose cost does not rank strictly above the victims' (a victim of an earlier,
/// abandoned choice, or a cost someone else set). Every other survivor is left alone: it only
/// needs a cost above −1, and the missing annotation (0) already is one. Rewriting survivors
/// with their live connection counts would patch pods on every pass; the ReplicaSet docs advise
/// against updating the annotation frequently or from a metric value, for the load on the API
/// server (<https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#pod-deletion-cost>).
pub fn cost_patches(pods: &[PodFacts], victims: &[String]) -> Vec<(String, i32)> {
    pods.iter()
        .filter_map(|p| {
            if victims.contains(&p.name) {
                (p.cost != VICTIM_COST).then(|| (p.name.clone(), VICTIM_COST))
            } else {
                (p.cost <= VICTIM_COST).then(|| (p.name.clone(), 0))
            }
        })
        .collect()
}

/// Why the replica count must not be lowered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// These victims do not carry [`VICTIM_COST`] in the listing yet.
    CostPending(Vec<String>),
    /// These victims are still Ready (their drain has not turned readiness off yet).
    StillReady(Vec<String>),
    /// The ReplicaSet would remove this survivor before that victim.
    WouldRemoveSurvivor {
        /// Survivor that ranks too low.
        survivor: String,
        /// Victim it ranks below (or ties with).
        victim: String,
    },
    /// A victim is no longer a live pod (the listing changed); choose again.
    VictimGone(String),
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CostPending(p) => write!(f, "setting deletion cost on {}", p.join(", ")),
            Self::StillReady(p) => write!(f, "waiting for {} to turn NotReady", p.join(", ")),
            Self::WouldRemoveSurvivor { survivor, victim } => write!(
                f,
                "the ReplicaSet would remove {survivor} before {victim} (pending or not ready)"
            ),
            Self::VictimGone(p) => write!(f, "victim {p} is gone"),
        }
    }
}

/// Whether the replica count may be lowered so that exactly `victims` go. `want_not_ready`:
/// the victims were asked to drain, so wait for their readiness to turn off (then a survivor
/// turning NotReady meanwhile still ranks after them, on cost) unless `waited_out` (the drain
/// did not take effect in time; the strict cost alone still decides).
pub fn may_shrink(
    pods: &[PodFacts],
    victims: &[String],
    want_not_ready: bool,
    waited_out: bool,
) -> Result<(), Hold> {
    let mut vs = Vec::new();
    for v in victims {
        match pods.iter().find(|p| &p.name == v) {
            Some(p) => vs.push(p),
            None => return Err(Hold::VictimGone(v.clone())),
        }
    }
    let pending: Vec<String> = vs
        .iter()
        .filter(|p| p.cost != VICTIM_COST)
        .map(|p| p.name.clone())
        .collect();
    if !pending.is_empty() {
        return Err(Hold::CostPending(pending));
    }
    if want_not_ready && !waited_out {
        let ready: Vec<String> = vs
            .iter()
            .filter(|p| p.ready)
            .map(|p| p.name.clone())
            .collect();
        if !ready.is_empty() {
            return Err(Hold::StillReady(ready));
        }
    }
    for s in pods.iter().filter(|p| !victims.contains(&p.name)) {
        for v in &vs {
            if v.rank() >= s.rank() {
                return Err(Hold::WouldRemoveSurvivor {
                    survivor: s.name.clone(),
                    victim: v.name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// When each pod was first seen draining while not terminating; feeds the stuck-drain net.
#[derive(Debug, Clone, Default)]
pub struct DrainWatch {
    since: HashMap<String, u64>,
}

impl DrainWatch {
    /// Records the live pods' draining state at `now` and returns the pods that have been
    /// draining for longer than `limit` seconds (sorted). Pods no longer draining or gone are
    /// forgotten.
    pub fn observe(&mut self, pods: &[PodFacts], now: u64, limit: u64) -> Vec<String> {
        self.since
            .retain(|name, _| pods.iter().any(|p| &p.name == name && p.draining));
        let mut stuck = Vec::new();
        for p in pods.iter().filter(|p| p.draining) {
            let since = *self.since.entry(p.name.clone()).or_insert(now);
            if now.saturating_sub(since) > limit {
                stuck.push(p.name.clone());
            }
        }
        stuck.sort();
        stuck
    }

    /// Forgets a pod (it was deleted).
    pub fn forget(&mut self, name: &str) {
        self.since.remove(name);
    }
}

#[cfg(test)]
mod tests;
