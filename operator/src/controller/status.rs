//! The status step: pure. The status the PushCluster gets from the plan, the observations and
//! what the apply step achieved (connections shed, pods paused): replicas, connections, pods and
//! the four conditions (Ready, Scaling, Balanced, NatsConnected).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use volley_crds::{PodStatus, PushCluster, PushClusterStatus, condition};

use super::INVALID_SPEC;
use super::observe::NatsView;
use super::plan::StatusInputs;
use crate::build;
use crate::conditions::{self, Cond};
use crate::scaling;

/// What the apply step achieved that the status reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Connections asked to shed now.
    pub(crate) shedding: u64,
    /// Pods paused by a balancing round in progress.
    pub(crate) paused: Vec<String>,
}

/// The last status with this reconcile's generation and selector.
fn base(pc: &PushCluster) -> PushClusterStatus {
    let mut status = pc.status.clone().unwrap_or_default();
    status.observed_generation = pc.metadata.generation;
    status.selector = build::selector_string(&pc.metadata.name.clone().unwrap_or_default());
    status
}

/// The status of a spec the operator refuses: `Ready=False, reason=InvalidSpec`, the rest kept.
pub(crate) fn invalid(pc: &PushCluster, message: String, now: &Time) -> PushClusterStatus {
    let mut status = base(pc);
    let cond = Cond {
        type_: condition::READY,
        status: false,
        reason: INVALID_SPEC,
        message,
    };
    conditions::set(&mut status.conditions, cond, pc.metadata.generation, now);
    status
}

/// The status after a reconcile. Within `ready_grace` of fewer pods than desired being ready,
/// an existing Ready condition keeps its state.
pub(crate) fn status(
    pc: &PushCluster,
    nats: &NatsView,
    s: &StatusInputs,
    outcome: &Outcome,
    ready_grace: std::time::Duration,
    now: &Time,
) -> PushClusterStatus {
    let mut status = base(pc);
    let generation = pc.metadata.generation;
    status.replicas = s.replicas;
    status.ready_replicas = s.ready;
    status.desired_replicas = s.desired;
    status.connections = i64::try_from(scaling::total(&s.views)).unwrap_or(i64::MAX);
    status.pods = s
        .seen
        .iter()
        .map(|seen| PodStatus {
            name: seen.stats.pod.clone(),
            connections: i64::try_from(seen.stats.connections).unwrap_or(i64::MAX),
            accepting: seen.stats.accepting,
            draining: seen.stats.draining,
            last_seen: Some(Time(Timestamp::try_from(seen.at).unwrap_or(now.0))),
        })
        .collect();
    let have_ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::READY);
    let facts = Facts {
        nats,
        desired: s.desired,
        replicas: s.replicas,
        ready: s.ready,
        current: s.current,
        balanced: s.balanced,
        shedding: outcome.shedding,
        paused: outcome.paused.clone(),
        balance_enabled: pc.spec.balance.enabled,
        not_ready: s.not_ready.clone(),
        hold: s.hold.as_deref(),
        overridden: s.overridden,
        limited: s.limited.as_deref(),
    };
    for cond in status_conditions(&facts) {
        if cond.type_ == condition::READY
            && !cond.status
            && s.short_for < ready_grace.as_secs()
            && have_ready
        {
            continue;
        }
        conditions::set(&mut status.conditions, cond, generation, now);
    }
    status
}

/// What the status conditions are computed from.
pub(crate) struct Facts<'a> {
    pub(crate) nats: &'a NatsView,
    pub(crate) desired: i32,
    pub(crate) replicas: i32,
    pub(crate) ready: i32,
    pub(crate) current: i32,
    pub(crate) balanced: bool,
    pub(crate) shedding: u64,
    /// Pods paused by a balancing round in progress.
    pub(crate) paused: Vec<String>,
    pub(crate) balance_enabled: bool,
    /// Pods not serving (for the Ready message).
    pub(crate) not_ready: Vec<String>,
    /// Why a scale-down waits, if it does.
    pub(crate) hold: Option<&'a str>,
    /// spec.replicas overridden by the autoscaler.
    pub(crate) overridden: Option<i32>,
    /// The bound holding the autoscaler back, in words (finding 13; the HPA's ScalingLimited).
    pub(crate) limited: Option<&'a str>,
}

pub(crate) fn status_conditions(f: &Facts<'_>) -> Vec<Cond<'static>> {
    let (desired, replicas, ready, current) = (f.desired, f.replicas, f.ready, f.current);
    let ready_cond = if ready >= desired {
        Cond {
            type_: condition::READY,
            status: true,
            reason: "AllReplicasReady",
            message: format!("{ready}/{desired} gateway pods ready"),
        }
    } else {
        let names = if f.not_ready.is_empty() {
            String::new()
        } else {
            format!("; not serving: {}", f.not_ready.join(", "))
        };
        Cond {
            type_: condition::READY,
            status: false,
            reason: "ReplicasNotReady",
            message: format!("{ready}/{desired} gateway pods ready{names}"),
        }
    };
    let mut note = f.limited.map_or(String::new(), |l| format!("; {l}"));
    if let Some(r) = f.overridden {
        note.push_str(&format!(
            "; spec.replicas={r} is overridden by the autoscaler (mode Operator)"
        ));
    }
    let scaling = if let Some(hold) = f.hold {
        Cond {
            type_: condition::SCALING,
            status: true,
            reason: "ScalingDown",
            message: format!("{hold}{note}"),
        }
    } else if current != desired || replicas != desired {
        Cond {
            type_: condition::SCALING,
            status: true,
            reason: if desired > current.min(replicas) {
                "ScalingUp"
            } else {
                "ScalingDown"
            },
            message: format!("{replicas} -> {desired} replicas{note}"),
        }
    } else if f.limited.is_some() {
        // Not changing, but not where the load wants it either.
        Cond {
            type_: condition::SCALING,
            status: false,
            reason: "ScalingLimited",
            message: format!("{desired} replicas{note}"),
        }
    } else {
        Cond {
            type_: condition::SCALING,
            status: false,
            reason: "Stable",
            message: format!("{desired} replicas{note}"),
        }
    };
    let balanced_cond = match (f.balanced, f.shedding, f.balance_enabled) {
        (true, _, _) => Cond {
            type_: condition::BALANCED,
            status: true,
            reason: "WithinTolerance",
            message: "connection counts are within tolerance".into(),
        },
        (false, n, _) if n > 0 => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Shedding",
            message: format!("shedding {n} connections from the fullest pods"),
        },
        (false, _, _) if !f.paused.is_empty() => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Shedding",
            message: format!(
                "balancing round in progress: {} not accepting new connections while shedding \
                 towards the mean",
                f.paused.join(", ")
            ),
        },
        (false, _, false) => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "BalancingDisabled",
            message: "connection counts are out of tolerance; balance.enabled is false".into(),
        },
        (false, _, true) => Cond {
            type_: condition::BALANCED,
            status: false,
            reason: "Imbalanced",
            message: "connection counts are out of tolerance".into(),
        },
    };
    let nats_cond = match f.nats {
        NatsView::Standalone => Cond {
            type_: condition::NATS_CONNECTED,
            status: false,
            reason: "Standalone",
            message: "spec.nats is not set; gateways run standalone and report no stats".into(),
        },
        NatsView::Connected => Cond {
            type_: condition::NATS_CONNECTED,
            status: true,
            reason: "Connected",
            message: "receiving gateway stats".into(),
        },
        NatsView::Failed(msg) => Cond {
            type_: condition::NATS_CONNECTED,
            status: false,
            reason: "ConnectFailed",
            message: msg.clone(),
        },
    };
    vec![ready_cond, scaling, balanced_cond, nats_cond]
}

#[cfg(test)]
mod tests;
