//! The scaling plan: a pure function of (spec, stats, history) → desired replicas, with
//! scale-down stabilization, plus the scale-down victim choice and the balancing (shed) plan.

use std::collections::VecDeque;

use volley_crds::AutoscalingSpec;

/// One gateway pod as the operator sees it from the stats stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Open connections in its last stats.
    pub connections: u64,
    /// Takes new connections.
    pub accepting: bool,
    /// Draining.
    pub draining: bool,
}

/// Replicas needed for `total` connections at the target per pod, within the bounds.
pub fn recommend(spec: &AutoscalingSpec, total: u64) -> i32 {
    let target = u64::try_from(spec.target_connections_per_pod.max(1)).unwrap_or(1);
    let raw = i32::try_from(total.div_ceil(target)).unwrap_or(i32::MAX);
    let min = spec.min_replicas.max(0);
    raw.clamp(min, spec.max_replicas.max(min))
}

/// Recent recommendations, for scale-down stabilization.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (unix seconds, recommendation), oldest first.
    recs: VecDeque<(u64, i32)>,
    /// When this history started; scale-down waits until it covers a whole window, so an
    /// operator restart cannot shrink a cluster on a few seconds of data.
    started: Option<u64>,
}

impl History {
    /// Number of recommendations kept.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }
}

/// Inputs of one scaling decision.
#[derive(Debug, Clone, Copy)]
pub struct ScaleInput<'a> {
    /// The autoscaling spec.
    pub spec: &'a AutoscalingSpec,
    /// Current Deployment replicas.
    pub current: i32,
    /// Pods with fresh stats.
    pub pods: &'a [PodView],
    /// Whether every current pod has fresh stats; if not, the total is only a lower bound and
    /// the decision may only go up.
    pub stats_complete: bool,
    /// Now, unix seconds.
    pub now: u64,
}

/// Desired replicas: scale up at once, scale down only to the highest recommendation seen in the
/// stabilization window (as the HPA does), and never below bounds.
pub fn desired_replicas(input: ScaleInput<'_>, history: &mut History) -> i32 {
    let spec = input.spec;
    let total: u64 = input.pods.iter().map(|p| p.connections).sum();
    let rec = recommend(spec, total);
    let window = u64::try_from(spec.scale_down_stabilization_seconds.max(0)).unwrap_or(0);
    let started = *history.started.get_or_insert(input.now);
    history.recs.push_back((input.now, rec));
    while let Some(&(t, _)) = history.recs.front() {
        if t + window < input.now {
            history.recs.pop_front();
        } else {
            break;
        }
    }
    let min = spec.min_replicas.max(0);
    let max = spec.max_replicas.max(min);
    let current = input.current;
    // Out-of-bounds counts (bounds edited) move into the bounds at once.
    if current < min || current > max {
        return current.clamp(min, max);
    }
    if rec >= current {
        return rec;
    }
    if !input.stats_complete || input.now < started + window {
        return current;
    }
    let stabilized = history.recs.iter().map(|&(_, r)| r).max().unwrap_or(rec);
    stabilized.min(current)
}

/// The `count` pods to remove on scale-down: the emptiest first (name breaks ties so repeated
/// reconciles pick the same ones).
pub fn scale_down_victims(pods: &[PodView], count: usize) -> Vec<String> {
    let mut sorted: Vec<_> = pods.iter().collect();
    sorted.sort_by(|a, b| a.connections.cmp(&b.connections).then(a.name.cmp(&b.name)));
    sorted
        .into_iter()
        .take(count)
        .map(|p| p.name.clone())
        .collect()
}

/// `controller.kubernetes.io/pod-deletion-cost` for a pod: its connection count, so the
/// ReplicaSet removes the emptiest pods first.
pub fn deletion_cost(connections: u64) -> i32 {
    i32::try_from(connections).unwrap_or(i32::MAX)
}

fn candidates(pods: &[PodView]) -> Vec<&PodView> {
    pods.iter().filter(|p| p.accepting && !p.draining).collect()
}

/// Whether every accepting pod is within `tolerance` (relative) of the mean.
pub fn is_balanced(pods: &[PodView], tolerance: f64) -> bool {
    let pods = candidates(pods);
    if pods.len() < 2 {
        return true;
    }
    let total: u64 = pods.iter().map(|p| p.connections).sum();
    #[allow(clippy::cast_precision_loss)] // connection counts are far below 2^52
    let mean = total as f64 / pods.len() as f64;
    let slack = (mean * tolerance).max(1.0);
    #[allow(clippy::cast_precision_loss)]
    pods.iter()
        .all(|p| (p.connections as f64 - mean).abs() <= slack)
}

/// How many connections to shed from which pods: each pod above `mean * (1 + tolerance)` sheds
/// down to the mean, fullest first, within `budget` connections in total.
pub fn shed_plan(pods: &[PodView], tolerance: f64, budget: u64) -> Vec<(String, u64)> {
    let pods = candidates(pods);
    if pods.len() < 2 || budget == 0 {
        return Vec::new();
    }
    let total: u64 = pods.iter().map(|p| p.connections).sum();
    let n = pods.len() as u64;
    let mean = total.div_ceil(n);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let upper = ((mean as f64) * (1.0 + tolerance.max(0.0))).floor() as u64;
    let upper = upper.max(mean + 1);
    let mut over: Vec<_> = pods
        .iter()
        .filter(|p| p.connections > upper)
        .map(|p| (p.name.clone(), p.connections - mean))
        .collect();
    over.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left = budget;
    let mut plan = Vec::new();
    for (name, excess) in over {
        let take = excess.min(left);
        if take == 0 {
            break;
        }
        left -= take;
        plan.push((name, take));
    }
    plan
}

/// A per-minute budget of shed connections, per PushCluster.
#[derive(Debug, Clone, Default)]
pub struct ShedBudget {
    window_start: u64,
    used: u64,
}

impl ShedBudget {
    /// Connections still allowed this minute.
    pub fn available(&mut self, now: u64, per_minute: u64) -> u64 {
        if now >= self.window_start + 60 {
            self.window_start = now;
            self.used = 0;
        }
        per_minute.saturating_sub(self.used)
    }

    /// Records connections shed.
    pub fn spend(&mut self, count: u64) {
        self.used = self.used.saturating_add(count);
    }
}

#[cfg(test)]
mod tests;
