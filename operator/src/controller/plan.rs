//! The plan step: pure. The validated spec, the observations and the cluster's memory go in;
//! what to do comes out ([`Plan`]): pods stuck draining to delete, the Deployment's replica
//! count, deletion costs, drains, balancing commands, the Events that explain them, and the
//! inputs of the status. No IO, so every decision is a table test.
//!
//! The decisions are those of issue 8: replicas from the load with tolerance and stabilization
//! ([`crate::scaling`]); the safe scale-down protocol of [`crate::scaledown`] (the victims the
//! ReplicaSet will remove, costed and drained first, the count lowered only once they rank
//! first); the stuck-drain net; `spec.replicas` overridden in mode Operator; balancing rounds
//! ([`crate::balancer`]) once the cluster is settled.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use volley_crds::AutoscalingMode;
use volley_crds::wire::config::defaults;

use super::SPREAD_MS;
use super::events::Decision;
use super::memory::ClusterMemory;
use super::observe::Observed;
use crate::balancer::{Balancer, Command, Timing};
use crate::build::Valid;
use crate::scaledown::{self, PodFacts, PodLoad};
use crate::scaling::{self, PodView, ScaleInput};
use crate::stats::{self, Seen};

/// The operator's tunables the plan reads (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Stats older than this are ignored; a pod silent for longer is stale.
    pub(crate) stats_max_age: Duration,
    /// Added to drainTimeout before a draining pod counts as stuck.
    pub(crate) drain_stuck_margin: Duration,
    /// Timing of balancing rounds.
    pub(crate) balance_timing: Timing,
}

/// The wall clock of this reconcile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Unix seconds.
    pub(crate) secs: u64,
    /// Unix milliseconds.
    pub(crate) ms: u64,
}

/// The Draining decision, once the apply step knows which drains went out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DrainNote {
    current: i32,
    desired: i32,
    inputs: String,
}

impl DrainNote {
    /// The Draining decision for the pods actually drained (none: no decision).
    pub(crate) fn decision(&self, drained: &[String]) -> Option<Decision> {
        let first = drained.first()?;
        let (current, desired) = (self.current, self.desired);
        let note = format!(
            "draining {} before scaling {current} -> {desired} ({})",
            drained.join(", "),
            self.inputs
        );
        Some(
            Decision::normal("Draining", format!("Drain{current}To{desired}"), note)
                .on(Some(first)),
        )
    }
}

/// What one reconcile does, in the order the apply step carries it out.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Pods stuck draining past drainTimeout + margin: deleted first, each with its Event.
    pub(crate) stuck: Vec<(String, Decision)>,
    /// Decisions published before any write of the scale (StatsStale, ScaleOverridden).
    pub(crate) notices: Vec<Decision>,
    /// Deletion-cost annotations to write, before the replica count.
    pub(crate) costs: Vec<(String, i32)>,
    /// Pods to ask to drain (the scale-down's victims not yet asked).
    pub(crate) drains: Vec<String>,
    /// The Draining decision's text, for the drains that went out.
    pub(crate) drain_note: Option<DrainNote>,
    /// The scaling decision (ScalingUp / ScalingDown), published before the Deployment is applied.
    pub(crate) scaling: Option<Decision>,
    /// The Deployment's replica count to apply: `desired`, or `current` while a scale-down waits.
    pub(crate) replicas: i32,
    /// Balancing commands, sent after the children are applied.
    pub(crate) balance: Vec<Command>,
    /// What the status is computed from.
    pub(crate) status: StatusInputs,
}

/// The plan's part of the status.
#[derive(Debug, Clone)]
pub(crate) struct StatusInputs {
    /// Replicas the autoscaler (or the spec) wants.
    pub(crate) desired: i32,
    /// The Deployment's `spec.replicas` (or the spec's count before it exists).
    pub(crate) current: i32,
    /// The Deployment's `status.replicas`.
    pub(crate) replicas: i32,
    /// The Deployment's `status.readyReplicas`.
    pub(crate) ready: i32,
    /// Fresh stats of live pods.
    pub(crate) seen: Vec<Seen>,
    /// The same, as the scaling and balancing code sees them.
    pub(crate) views: Vec<PodView>,
    /// Whether the connection counts are within the balance tolerance.
    pub(crate) balanced: bool,
    /// Pods not serving, for the Ready message.
    pub(crate) not_ready: Vec<String>,
    /// Why a scale-down waits, if it does.
    pub(crate) hold: Option<String>,
    /// `spec.replicas` overridden by the autoscaler.
    pub(crate) overridden: Option<i32>,
    /// The bound holding the autoscaler back from what the load asks for, said in words.
    pub(crate) limited: Option<String>,
    /// Seconds fewer pods than desired have been ready.
    pub(crate) short_for: u64,
}

/// Decides everything for one reconcile. Updates `m` (stabilization windows, timers, the
/// balancer's rounds) as the decisions are taken.
#[tracing::instrument(name = "plan", skip_all, fields(namespace = %v.namespace, cluster = %v.name))]
pub(crate) fn plan(
    v: &Valid<'_>,
    o: &Observed,
    s: &Settings,
    now: Now,
    m: &mut ClusterMemory,
) -> Plan {
    let pc = v.pc;
    let connected = o.nats.connected();
    let exists = o.deployment.is_some();
    let current = o
        .deployment
        .and_then(|d| d.wanted)
        .unwrap_or_else(|| pc.spec_replicas());
    let (replicas, ready, updated) = o
        .deployment
        .map_or((0, 0, 0), |d| (d.replicas, d.ready, d.updated));

    // Only stats of pods that exist and are not terminating count.
    let by_pod: HashMap<String, PodLoad> = o
        .stats
        .iter()
        .map(|s| {
            let load = PodLoad {
                connections: s.stats.connections,
                draining: s.stats.draining,
                accepting: s.stats.accepting,
            };
            (s.stats.pod.clone(), load)
        })
        .collect();
    let mut facts = scaledown::pod_facts(&o.pods, &by_pod);
    let drain_secs = v.rendered.drain.as_secs();
    let stuck_limit = drain_secs + s.drain_stuck_margin.as_secs();
    // What one pod accepts: the gateway's own default when the spec leaves it unset.
    let pod_cap = pc
        .spec
        .gateway
        .max_connections_per_pod
        .and_then(|c| u64::try_from(c).ok())
        .unwrap_or_else(|| u64::try_from(defaults::MAX_CONNECTIONS).unwrap_or(u64::MAX));
    // The target capped below what one pod accepts over the tolerance (finding 10, and finding
    // 1 of review 2), the gateway's default cap included.
    let autoscaling = scaling::with_capacity(&pc.spec.autoscaling, i64::try_from(pod_cap).ok());
    let target = autoscaling.target_connections_per_pod;

    // Safety net: a pod that has been draining past drainTimeout + margin without being deleted
    // serves nobody; delete it so the ReplicaSet replaces it (or, mid scale-down, removes it).
    let stuck: Vec<(String, Decision)> = if connected {
        m.drains.observe(&facts, now.secs, stuck_limit)
    } else {
        Vec::new()
    }
    .into_iter()
    .map(|pod| {
        let note = format!(
            "pod {pod} has been draining for more than {stuck_limit}s (drainTimeout {drain_secs}s + \
             margin) without being deleted; deleted it so the ReplicaSet replaces or removes it"
        );
        let d = Decision::warning("DrainStuck", "Delete".into(), note).on(Some(&pod));
        (pod, d)
    })
    .collect();
    facts.retain(|f| !stuck.iter().any(|(p, _)| *p == f.name));

    let seen: Vec<Seen> = o
        .stats
        .iter()
        .filter(|s| facts.iter().any(|f| f.name == s.stats.pod))
        .cloned()
        .collect();
    let views: Vec<PodView> = seen.iter().map(stats::pod_view).collect();
    let stats_complete = connected && !facts.is_empty() && views.len() == facts.len();
    // Every pod full (finding 1 of review 2): only on complete stats, so a pod that just started
    // and has not reported yet is not overlooked (it takes clients already).
    let saturated = stats_complete && scaling::saturated(&views, pod_cap);
    let mut notices = Vec::new();
    if let Some(d) = stale_notice(&facts, s.stats_max_age, now.secs, m).filter(|_| connected) {
        notices.push(d);
    }

    // Connections closed after their pod's last stats may be counted twice (there and where the
    // client reconnected): count them once.
    let stats_at: HashMap<String, u64> = seen
        .iter()
        .map(|s| {
            let ms =
                s.at.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            (s.stats.pod.clone(), ms)
        })
        .collect();
    let keep = SPREAD_MS + u64::try_from(s.stats_max_age.as_millis()).unwrap_or(0);
    m.closes.retain(|c| c.at_ms + keep > now.ms);
    let in_flight = scaling::in_flight(&m.closes, &|p| stats_at.get(p).copied(), now.ms);
    let input = ScaleInput {
        spec: &autoscaling,
        current,
        pods: &views,
        in_flight,
        stats_complete,
        saturated,
        now: now.secs,
    };
    let total = scaling::effective_total(&input);
    let desired = match pc.spec.autoscaling.mode {
        AutoscalingMode::Operator if connected => scaling::desired_replicas(input, &mut m.history),
        // Without stats the operator cannot judge load: keep the count, within bounds.
        AutoscalingMode::Operator => {
            let (min, max) = scaling::bounds(&autoscaling);
            current.clamp(min, max)
        }
        AutoscalingMode::External | AutoscalingMode::Manual => pc.spec_replicas(),
    };

    // `kubectl scale` writes spec.replicas; in mode Operator the autoscaler owns the count, so
    // the request is overridden: say so (Event) when the value changes to one the autoscaler
    // does not keep, and in the Scaling condition while it differs. The starting count written
    // with the object is not a request, so the first value seen is only remembered.
    let operator_mode = pc.spec.autoscaling.mode == AutoscalingMode::Operator;
    let (overridden, announce) = {
        let previous = m.spec_replicas_seen.replace(pc.spec.replicas);
        let changed = matches!(previous, Some(p) if p != pc.spec.replicas);
        let differs = pc.spec.replicas.filter(|r| *r != desired);
        if !operator_mode || !exists || differs.is_none() {
            m.overridden = None;
            (None, false)
        } else if changed {
            m.overridden = differs;
            (differs, true)
        } else {
            (m.overridden.filter(|_| m.overridden == differs), false)
        }
    };
    if let (Some(r), true) = (overridden, announce) {
        let note = format!(
            "spec.replicas={r} is overridden: autoscaling.mode is Operator, which keeps {desired} \
             replicas for {total} connections at {target} per pod; set autoscaling.mode to \
             Manual or External to choose the count by hand"
        );
        notices.push(Decision::normal(
            "ScaleOverridden",
            format!("Override{r}"),
            note,
        ));
    }
    let full = if saturated {
        format!(", every pod full at {pod_cap}")
    } else {
        String::new()
    };
    let inputs = format!(
        "{total} connections, target {target} per pod, {} of {} pods reporting{full}",
        views.len(),
        facts.len()
    );

    // The autoscaler held at a bound (like the HPA's ScalingLimited): said in the Scaling
    // condition, and a Warning Event when the maxReplicas cap starts to hold (clients may be
    // refused or pods overloaded). minReplicas holding is a choice, only shown in the condition.
    let limit = (operator_mode && connected)
        .then(|| scaling::limit(&autoscaling, current, total, stats_complete, saturated))
        .flatten();
    let limited = limit.map(|l| match l {
        scaling::Limit::Max { needed, max } => format!(
            "limited by maxReplicas {max}: {needed} replicas needed for {total} connections at \
             {target} per pod"
        ),
        scaling::Limit::Min { needed, min } => format!(
            "limited by minReplicas {min}: {needed} replicas would do for {total} connections at \
             {target} per pod"
        ),
    });
    let capped = matches!(limit, Some(scaling::Limit::Max { .. }));
    if let (false, Some(scaling::Limit::Max { max, .. }), Some(note)) = (m.capped, limit, &limited)
    {
        notices.push(Decision::warning(
            "ScalingLimited",
            format!("Limit{max}"),
            format!("{note}; raise autoscaling.maxReplicas to scale further"),
        ));
    }
    m.capped = capped;

    // Scale-down: the pods drained are exactly the pods that go (see `scaledown`).
    let mut apply_replicas = desired;
    let mut hold = None;
    let mut costs = Vec::new();
    let mut drains = Vec::new();
    let mut drain_note = None;
    let mut scaling_decision = None;
    // The protocol needs the gateways' stats and control (NATS) and live pods. Standalone
    // gateways are never sent a drain, so nothing can be left draining: the count is lowered at
    // once and the ReplicaSet's pick drains through the preStop hook.
    let protocol = desired < current && exists && !facts.is_empty() && connected;
    // The Deployment controller has not acted on the latest spec (e.g. a new config hash) while
    // its observedGeneration is behind: the counts below describe the old one, and a rollout is
    // about to replace pods, so nothing is drained yet (kubectl's `rollout status` makes the same
    // check first: `Generation <= Status.ObservedGeneration`, kubectl
    // pkg/polymorphichelpers/rollout_status.go).
    let observed = o.deployment.is_none_or(|d| d.observed);
    let settled = observed
        && replicas == current
        && updated == current
        && facts.len() == usize::try_from(current).unwrap_or(0);
    // A balancing round pauses the fullest pods (NotReady while they shed): the victims are
    // chosen only after it ends (lead + spread + settle, about 21 s), from counts it no longer
    // moves; a scale-down has no hurry.
    let round: Vec<String> = m
        .balancer
        .as_ref()
        .map(Balancer::paused)
        .unwrap_or_default();
    if protocol && !settled {
        // Mid-rollout the Deployment scales several ReplicaSets; drain nothing until it settles.
        apply_replicas = current;
        let generation = if observed {
            ""
        } else {
            ", the latest spec not yet observed by the Deployment controller"
        };
        hold = Some(format!(
            "{current} -> {desired}: waiting for the Deployment to settle ({} live pods, \
             {replicas} replicas, {updated} updated, {current} wanted{generation})",
            facts.len()
        ));
    } else if protocol && !round.is_empty() {
        apply_replicas = current;
        hold = Some(format!(
            "{current} -> {desired}: waiting for the balancing round on {} to end",
            round.join(", ")
        ));
    } else if protocol {
        let count = usize::try_from(current - desired).unwrap_or(0);
        let victims = scaledown::choose_victims(&facts, count);
        costs = scaledown::cost_patches(&facts, &victims);
        // A drain already sent is not sent again while the stats (every few seconds) have not
        // caught up: it would count its connections in flight twice.
        let resend_after = s.stats_max_age.as_secs();
        m.drain_sent
            .retain(|p, at| facts.iter().any(|f| &f.name == p) && now.secs < *at + resend_after);
        drains = facts
            .iter()
            .filter(|f| victims.contains(&f.name) && !f.draining)
            .filter(|f| !m.drain_sent.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect();
        drain_note = Some(DrainNote {
            current,
            desired,
            inputs: inputs.clone(),
        });
        let since = *m.scale_down_since.get_or_insert(now.secs);
        let waited_out = now.secs.saturating_sub(since) > stuck_limit;
        match scaledown::may_shrink(&facts, &victims, true, waited_out) {
            Ok(()) => {
                m.scale_down_since = None;
                let note = format!(
                    "scaling down {current} -> {desired}, removing {} ({inputs})",
                    victims.join(", ")
                );
                let action = format!("Scale{current}To{desired}");
                scaling_decision = Some(Decision::normal("ScalingDown", action, note));
            }
            Err(why) => {
                apply_replicas = current;
                hold = Some(format!("{current} -> {desired}: {why}"));
            }
        }
    } else {
        m.scale_down_since = None;
        if desired != current && exists {
            let (reason, verb) = if desired > current {
                ("ScalingUp", "up")
            } else {
                ("ScalingDown", "down")
            };
            let note = format!("scaling {verb} {current} -> {desired} ({inputs})");
            let action = format!("Scale{current}To{desired}");
            scaling_decision = Some(Decision::normal(reason, action, note));
        }
    }

    // Balancing: only with stats and control, and only on a settled cluster.
    let scaling_now = current != desired || replicas != desired || ready != desired;
    let balance_spec = &pc.spec.balance;
    let balance = if connected {
        let settled = balance_spec.enabled && !scaling_now && stats_complete;
        let b = m
            .balancer
            .get_or_insert_with(|| Balancer::new(s.balance_timing));
        let mut cmds = b.step(&views, settled, balance_spec, now.ms);
        // Pods paused by no round of ours (a round of the previous leader, a lost reply) are
        // resumed, balancing enabled or not (finding 5 of review 2).
        cmds.extend(b.orphans(&views, pod_cap, now.ms));
        cmds
    } else {
        Vec::new()
    };

    // Ready goes False once fewer pods than desired have been ready for longer than a grace
    // (a pod starting or a drain finishing is normal for a few seconds). A pod a balancing round
    // paused (in this pass, before or after the step) is NotReady by the operator's own doing for
    // the whole round (lead + spread + settle, about 21 s, longer than the grace): it does not
    // count as short, so a routine rebalance never turns Ready False (finding 11). Its readiness
    // lags the resume by a probe period, well within the grace that starts then.
    let paused_now = m
        .balancer
        .as_ref()
        .map(Balancer::paused)
        .unwrap_or_default();
    let excused = facts
        .iter()
        .filter(|f| !f.ready && !f.draining)
        .filter(|f| round.contains(&f.name) || paused_now.contains(&f.name))
        .count();
    let excused = i32::try_from(excused).unwrap_or(i32::MAX);
    let short_for = if ready.saturating_add(excused) < desired {
        now.secs
            .saturating_sub(*m.short_since.get_or_insert(now.secs))
    } else {
        m.short_since = None;
        0
    };

    Plan {
        stuck,
        notices,
        costs,
        drains,
        drain_note,
        scaling: scaling_decision,
        replicas: apply_replicas,
        balance,
        status: StatusInputs {
            desired,
            current,
            replicas,
            ready,
            balanced: scaling::is_balanced(&views, balance_spec.tolerance),
            not_ready: not_ready_pods(&facts, desired),
            seen,
            views,
            hold,
            overridden,
            limited,
            short_for,
        },
    }
}

/// A pod counts as stale once it has been without fresh stats for longer than the stats max
/// age: a pod that just started has not published yet, which is no news. Returns the
/// StatsStale decision when the set of stale pods changes to a non-empty one.
fn stale_notice(
    facts: &[PodFacts],
    max_age: Duration,
    now: u64,
    m: &mut ClusterMemory,
) -> Option<Decision> {
    let missing: Vec<&str> = facts
        .iter()
        .filter(|f| f.connections.is_none())
        .map(|f| f.name.as_str())
        .collect();
    m.missing_since.retain(|p, _| missing.contains(&p.as_str()));
    let mut stale: Vec<String> = missing
        .iter()
        .filter(|p| {
            let since = *m.missing_since.entry((*p).to_string()).or_insert(now);
            now.saturating_sub(since) >= max_age.as_secs()
        })
        .map(|p| (*p).to_string())
        .collect();
    stale.sort();
    let changed = m.stale != stale;
    m.stale.clone_from(&stale);
    if !changed || stale.is_empty() {
        return None;
    }
    let note = format!(
        "no stats newer than {}s from {}: scale-down and balancing wait for them",
        max_age.as_secs(),
        stale.join(", ")
    );
    Some(
        Decision::warning("StatsStale", "Observe".into(), note)
            .on(stale.first().map(String::as_str)),
    )
}

/// Pods that are not serving, for the Ready message: not ready or draining, plus how many of the
/// desired pods do not exist.
pub(crate) fn not_ready_pods(facts: &[PodFacts], desired: i32) -> Vec<String> {
    let mut out: Vec<String> = facts
        .iter()
        .filter_map(|f| match (f.ready, f.draining) {
            (_, true) => Some(format!("{} (draining)", f.name)),
            (false, _) => Some(format!("{} (not ready)", f.name)),
            _ => None,
        })
        .collect();
    let missing = usize::try_from(desired)
        .unwrap_or(0)
        .saturating_sub(facts.len());
    if missing > 0 {
        out.push(format!("{missing} pod(s) not created yet"));
    }
    out
}

#[cfg(test)]
mod tests;
