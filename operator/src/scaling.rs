//! The scaling plan: a pure function of (spec, stats, history) → desired replicas, with a
//! tolerance band, scale-up and scale-down stabilization and in-flight correction, plus the
//! balancing (shed) plan.

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

/// The bounds of the operator's decision, `(min, max)`. The lower bound is at least 1: with no
/// pod there are no stats and no connections, so a cluster scaled to 0 would never see load again
/// and stay at 0 for good. The CRD refuses `minReplicas: 0` in mode Operator; this also covers
/// objects stored before that rule (the API server keeps accepting an unchanged stored value).
pub fn bounds(spec: &AutoscalingSpec) -> (i32, i32) {
    let min = spec.min_replicas.max(1);
    (min, spec.max_replicas.max(min))
}

/// The autoscaling spec the decision uses: `targetConnectionsPerPod` capped below
/// `gateway.maxConnectionsPerPod / (1 + tolerance)`. A scale-up on load needs the total above
/// `(1 + tolerance) × pods × target`, and pods never hold more than the cap, so with a target at
/// or above `cap / (1 + tolerance)` the load could only get there once every pod is full and
/// refusing clients (and a target above the cap makes full pods look under-loaded, so the cluster
/// would be shrunk while saturated). The CRD refuses such a spec in mode Operator; this covers
/// objects stored before that rule. Full pods are a scale-up signal of their own as well (see
/// [`saturated`]).
pub fn with_capacity(
    spec: &AutoscalingSpec,
    max_connections_per_pod: Option<i64>,
) -> AutoscalingSpec {
    let mut capped = spec.clone();
    if let Some(cap) = max_connections_per_pod.filter(|c| *c >= 1) {
        capped.target_connections_per_pod = capped
            .target_connections_per_pod
            .min(highest_target(cap, spec.tolerance));
    }
    capped
}

/// The highest target `t` with `t × (1 + tolerance) < cap` (the CRD rule, in the same floating
/// point), at least 1.
fn highest_target(cap: i64, tolerance: f64) -> i64 {
    let factor = 1.0 + tolerance.max(0.0);
    #[allow(clippy::cast_precision_loss)] // caps are far below 2^52
    let fits = |t: i64| (t as f64) * factor < cap as f64;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let mut t = ((cap as f64 / factor).ceil() as i64)
        .saturating_sub(1)
        .max(1);
    // Rounding may land one off either way: settle on the exact boundary.
    while t > 1 && !fits(t) {
        t -= 1;
    }
    while fits(t + 1) {
        t += 1;
    }
    t
}

/// Whether the cluster is full: at least one pod not draining, and every pod not draining at its
/// connection cap (the gateway then refuses new clients and reports NotReady, `AtCapacity`). Pods
/// never report more than the cap, so whatever the target, only more pods can take more clients.
pub fn saturated(pods: &[PodView], cap: u64) -> bool {
    let mut serving = pods.iter().filter(|p| !p.draining).peekable();
    serving.peek().is_some() && serving.all(|p| p.connections >= cap)
}

/// Replicas needed for `total` connections at the target per pod, within the bounds.
pub fn recommend(spec: &AutoscalingSpec, total: u64) -> i32 {
    let target = u64::try_from(spec.target_connections_per_pod.max(1)).unwrap_or(1);
    let raw = i32::try_from(total.div_ceil(target)).unwrap_or(i32::MAX);
    let (min, max) = bounds(spec);
    raw.clamp(min, max)
}

/// Which bound holds the decision back from what the load asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The load needs `needed` pods, more than `maxReplicas`.
    Max {
        /// Pods the load needs.
        needed: i32,
        /// `maxReplicas`.
        max: i32,
    },
    /// The load needs `needed` pods, fewer than `minReplicas` (above 1: the floor of 1 is the
    /// operator's own, see [`bounds`]).
    Min {
        /// Pods the load needs.
        needed: i32,
        /// `minReplicas`.
        min: i32,
    },
}

/// Whether the bounds hold the count away from what `total` connections on `current` pods ask
/// for (within the tolerance band the current count is what they ask for), like the
/// HorizontalPodAutoscaler's `ScalingLimited` condition (TooManyReplicas / TooFewReplicas).
/// `complete`: every pod reported, so the total is not just a lower bound (needed to say fewer
/// pods would do).
/// `saturated`: every pod is full (see [`saturated`]), so at least one more pod is needed.
pub fn limit(
    spec: &AutoscalingSpec,
    current: i32,
    total: u64,
    complete: bool,
    saturated: bool,
) -> Option<Limit> {
    let mut needed = if within_tolerance(spec, current, total) {
        current
    } else {
        let target = u64::try_from(spec.target_connections_per_pod.max(1)).unwrap_or(1);
        i32::try_from(total.div_ceil(target)).unwrap_or(i32::MAX)
    };
    if saturated {
        needed = needed.max(current.saturating_add(1));
    }
    let (min, max) = bounds(spec);
    if needed > max {
        Some(Limit::Max { needed, max })
    } else if complete && needed < min && min > 1 {
        Some(Limit::Min { needed, min })
    } else {
        None
    }
}

/// Whether `total` connections on `current` pods is within `spec.tolerance` of the target, the
/// HorizontalPodAutoscaler's rule: no change while `|total / (current × target) − 1| ≤
/// tolerance`, so a count hovering at a boundary (601 for 4 × 150) does not flap.
pub fn within_tolerance(spec: &AutoscalingSpec, current: i32, total: u64) -> bool {
    if current <= 0 {
        return false;
    }
    // |total / capacity − 1| ≤ tolerance, multiplied out so 660 vs 600 at 10% is not lost to
    // rounding.
    #[allow(clippy::cast_precision_loss)] // connection counts are far below 2^52
    let capacity = f64::from(current) * spec.target_connections_per_pod.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let off = (total as f64 - capacity).abs();
    off <= spec.tolerance.max(0.0) * capacity + 1e-9 * capacity
}

/// Recent recommendations, for stabilization.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (unix seconds, recommendation), oldest first; one sample older than the longest window is
    /// kept, as the value in force when the window began.
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

    fn record(&mut self, now: u64, rec: i32, keep: u64) -> u64 {
        let started = *self.started.get_or_insert(now);
        self.recs.push_back((now, rec));
        // Drop samples older than the window, but keep the newest of those.
        while self.recs.len() >= 2 && self.recs[1].0 + keep <= now {
            self.recs.pop_front();
        }
        started
    }

    /// Recommendations covering the last `window` seconds: those inside it plus the one in
    /// force when it began.
    fn over(&self, now: u64, window: u64) -> impl Iterator<Item = i32> + '_ {
        let from = now.saturating_sub(window);
        let first_inside = self.recs.iter().position(|&(t, _)| t >= from);
        // The sample before the first one inside was in force at `from`, unless that first one
        // sits exactly on `from`.
        let skip = first_inside.map_or(self.recs.len().saturating_sub(1), |i| {
            if self.recs[i].0 == from {
                i
            } else {
                i.saturating_sub(1)
            }
        });
        self.recs.iter().skip(skip).map(|&(_, r)| r)
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
    /// Connections counted on a pod that closed them after its stats were taken (shed or drain
    /// in flight, see [`in_flight`]): those clients may already be counted again on the pod they
    /// reconnected to, so they are subtracted once.
    pub in_flight: u64,
    /// Whether every current pod has fresh stats; if not, the total is only a lower bound and
    /// the decision may only go up.
    pub stats_complete: bool,
    /// Every pod is full (see [`saturated`]): recommend at least one pod more, whatever the
    /// tolerance band says.
    pub saturated: bool,
    /// Now, unix seconds.
    pub now: u64,
}

/// Sum of the pods' connections, saturating. The counts come from the network (any publisher on
/// `volley.stats.<ns>.<cluster>.<pod>`): a plain sum of two huge ones would panic in a debug
/// build and wrap to a nonsense total in release.
pub fn total(pods: &[PodView]) -> u64 {
    pods.iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.connections))
}

/// Total connections the decision uses: the reported sum minus what is in flight.
pub fn effective_total(input: &ScaleInput<'_>) -> u64 {
    total(input.pods).saturating_sub(input.in_flight)
}

/// Desired replicas. Within the tolerance band the count stays. Scale-up happens as soon as
/// every recommendation of the last `scaleUpStabilizationSeconds` asked for more (the lowest of
/// them wins), so transients shorter than that never add pods; scale-down goes to the highest
/// recommendation of the last `scaleDownStabilizationSeconds` (as the HPA does), only on complete
/// stats and once the history covers that window. A full cluster ([`ScaleInput::saturated`])
/// asks for at least one pod more, through the same scale-up stabilization. Always within bounds.
pub fn desired_replicas(input: ScaleInput<'_>, history: &mut History) -> i32 {
    let spec = input.spec;
    let total = effective_total(&input);
    let (min, max) = bounds(spec);
    let current = input.current;
    let mut rec = if within_tolerance(spec, current, total) {
        current.clamp(min, max)
    } else {
        recommend(spec, total)
    };
    if input.saturated {
        // One more pod at a time: how many clients are refused is unknown (they are not
        // counted anywhere), and each new pod's stats show whether it filled up as well.
        rec = rec.max(current.saturating_add(1)).clamp(min, max);
    }
    let down = u64::try_from(spec.scale_down_stabilization_seconds.max(0)).unwrap_or(0);
    let up = u64::try_from(spec.scale_up_stabilization_seconds.max(0)).unwrap_or(0);
    let started = history.record(input.now, rec, down.max(up));
    // Out-of-bounds counts (bounds edited) move into the bounds at once.
    if current < min || current > max {
        return current.clamp(min, max);
    }
    if rec > current {
        if up == 0 {
            return rec;
        }
        if input.now < started + up {
            return current;
        }
        let lowest = history.over(input.now, up).min().unwrap_or(rec);
        return lowest.max(current);
    }
    if rec == current || !input.stats_complete || input.now < started + down {
        return current;
    }
    if down == 0 {
        return rec;
    }
    let stabilized = history.over(input.now, down).max().unwrap_or(rec);
    stabilized.min(current)
}

/// One close request the operator sent: `count` connections closed by `pod`, spread evenly over
/// `[at_ms, at_ms + spread_ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// Pod asked to close.
    pub pod: String,
    /// When it was asked, unix milliseconds.
    pub at_ms: u64,
    /// Connections it was asked to close.
    pub count: u64,
    /// Spread window.
    pub spread_ms: u64,
}

/// Connections a pod has closed since its last stats (taken at `stats_ms[pod]`) up to `now_ms`:
/// still counted on it, and possibly counted again where the clients reconnected.
pub fn in_flight(
    requests: &[CloseRequest],
    stats_ms: &dyn Fn(&str) -> Option<u64>,
    now_ms: u64,
) -> u64 {
    requests
        .iter()
        .map(|r| {
            let Some(seen) = stats_ms(&r.pod) else {
                return 0;
            };
            let from = seen.max(r.at_ms);
            let to = now_ms.min(r.at_ms.saturating_add(r.spread_ms));
            if to <= from {
                return 0;
            }
            if r.spread_ms == 0 {
                return r.count;
            }
            // Closes are spread evenly, so the share closed in [from, to] is proportional.
            let share = u128::from(to - from) * u128::from(r.count) / u128::from(r.spread_ms);
            u64::try_from(share).unwrap_or(r.count).min(r.count)
        })
        // Drain counts are pods' reported connections: saturate like [`total`].
        .fold(0u64, u64::saturating_add)
}

/// Pods that take part in balancing: every pod not draining. A pod the balancer paused
/// (`accepting=false` while it sheds) still counts: it is the one being balanced.
fn candidates(pods: &[PodView]) -> Vec<&PodView> {
    pods.iter().filter(|p| !p.draining).collect()
}

/// Whether every pod that is not draining is within `tolerance` (relative) of the mean.
pub fn is_balanced(pods: &[PodView], tolerance: f64) -> bool {
    let pods = candidates(pods);
    if pods.len() < 2 {
        return true;
    }
    let total = pods
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.connections));
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
    let total = pods
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.connections));
    let n = pods.len() as u64;
    let mean = total.div_ceil(n);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let upper = ((mean as f64) * (1.0 + tolerance.max(0.0))).floor() as u64;
    let upper = upper.max(mean.saturating_add(1));
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

/// Pods that shed nothing this round but hold more than the mean: the balancer pauses them for
/// the round too, so shed clients reconnect only to pods below the mean. Left accepting, a pod
/// within tolerance but above the mean (a start of 437/163 over four pods: 163 against a mean of
/// 150) takes its round-robin share of the shed clients, ends the round above tolerance and is
/// shed in a second round: every one of those clients moves twice. At least one pod stays
/// accepting whenever `shed` is not empty: some pod is above the (rounded-up) mean, so another
/// is below it.
pub fn hold_list(pods: &[PodView], shed: &[(String, u64)]) -> Vec<String> {
    let pods = candidates(pods);
    if pods.len() < 2 || shed.is_empty() {
        return Vec::new();
    }
    let total = pods
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.connections));
    let mean = total.div_ceil(pods.len() as u64);
    pods.iter()
        .filter(|p| p.connections > mean && !shed.iter().any(|(name, _)| *name == p.name))
        .map(|p| p.name.clone())
        .collect()
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
        if now >= self.window_start.saturating_add(60) {
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
