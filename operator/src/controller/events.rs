//! Decisions as data: the plan says what it decided ([`Decision`]); publishing one is an Event on
//! the PushCluster, a log line with the same text and `volley_operator_decisions_total{reason}`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use volley_crds::PushCluster;

use super::Context;
use crate::metrics::DecisionLabel;

/// One decision to publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// Normal or Warning.
    pub(crate) type_: EventType,
    /// The Event reason (`ScalingUp`, `Draining`, ...).
    pub(crate) reason: &'static str,
    /// The Event action: names the transition (`Scale2To4`), so a new decision is a new Event.
    pub(crate) action: String,
    /// The gateway pod it is about, if one.
    pub(crate) pod: Option<String>,
    /// The human-readable note.
    pub(crate) note: String,
}

impl Decision {
    /// A Normal decision.
    pub(crate) fn normal(reason: &'static str, action: String, note: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            action,
            pod: None,
            note,
        }
    }

    /// A Warning decision.
    pub(crate) fn warning(reason: &'static str, action: String, note: String) -> Self {
        Self {
            type_: EventType::Warning,
            ..Self::normal(reason, action, note)
        }
    }

    /// The same decision about gateway pod `pod`.
    pub(crate) fn on(self, pod: Option<&str>) -> Self {
        Self {
            pod: pod.map(str::to_owned),
            ..self
        }
    }
}

/// A reference to a gateway pod, as an Event's `related` object.
fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

/// Publishes one decision through the long-lived recorder.
///
/// The recorder folds Events with the same (type, reason, action, regarding, related) into one
/// series and keeps the FIRST note (kube-runtime `Recorder::publish`, `EventKey`), so the
/// `action` names the transition (`Scale2To4`, `Drain4To2`, `Override5`) and `related` the pod:
/// a new decision is a new Event with its own note, the same one repeated is a series.
pub(crate) async fn publish(ctx: &Context, pc: &PushCluster, d: Decision) {
    let cluster = pc.name_any();
    let ns = pc.namespace().unwrap_or_default();
    let reason = d.reason;
    match d.type_ {
        EventType::Warning => {
            tracing::warn!(namespace = %ns, cluster = %cluster, reason, "{}", d.note)
        }
        EventType::Normal => {
            tracing::info!(namespace = %ns, cluster = %cluster, reason, "{}", d.note)
        }
    }
    ctx.metrics
        .decisions
        .get_or_create(&DecisionLabel { reason })
        .inc();
    let event = Event {
        type_: d.type_,
        reason: reason.into(),
        note: Some(d.note),
        action: d.action,
        secondary: d.pod.map(|p| pod_ref(&ns, &p)),
    };
    // The decision is already taken and logged; a lost Event is logged, not retried.
    if let Err(err) = ctx.recorder.publish(&event, &pc.object_ref(&())).await {
        tracing::warn!(cluster = %cluster, reason, error = %err, "publishing an event failed");
    }
}

/// Longest Event note the API server takes: `NoteLengthLimit = 1024` bytes in kubernetes
/// `pkg/apis/core/validation/events.go` (events.k8s.io/v1); a longer one is a 422 and no Event.
pub(crate) const MAX_NOTE_BYTES: usize = 1024;

/// `note` cut to [`MAX_NOTE_BYTES`] at a character boundary, marked with `…` when cut.
pub(crate) fn fit_note(mut note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

/// Publishes a Warning Event that repeats what a condition already says (so it is not counted as
/// a decision: nothing was decided). `action` names what failed, so the recorder keeps one series
/// per kind of failure.
async fn publish_warning(
    ctx: &Context,
    pc: &PushCluster,
    reason: &str,
    action: String,
    note: String,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(fit_note(note)),
        action,
        secondary: None,
    };
    // The condition already says it; a lost Event is logged, not retried.
    if let Err(err) = ctx.recorder.publish(&event, &pc.object_ref(&())).await {
        tracing::warn!(cluster = %pc.name_any(), reason, error = %err, "publishing an event failed");
    }
}

/// Publishes the Warning Event of a spec the operator refuses.
pub(crate) async fn publish_invalid_spec(ctx: &Context, pc: &PushCluster, message: String) {
    publish_warning(ctx, pc, super::INVALID_SPEC, "Validate".into(), message).await;
}

/// Publishes the Warning Event of an object the API server refused (`kind` is its kind, the
/// action is `Apply<kind>`).
pub(crate) async fn publish_apply_failed(
    ctx: &Context,
    pc: &PushCluster,
    kind: &str,
    message: String,
) {
    let action = format!("Apply{kind}");
    publish_warning(ctx, pc, super::APPLY_FAILED, action, message).await;
}
