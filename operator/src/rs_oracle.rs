//! Test helper: the ReplicaSet controller's scale-down ranking, written from the Kubernetes docs
//! independently of [`crate::scaledown`], so tests can ask "which pods would the ReplicaSet
//! delete?".
//!
//! <https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#scaling-a-replicaset>:
//! "1. Pending (and unschedulable) pods are scaled down first; 2. If
//! `controller.kubernetes.io/pod-deletion-cost` annotation is set, then the pod with the lower
//! value will come first; 3. Pods on nodes with more replicas come before pods on nodes with
//! fewer replicas; 4. If the pods' creation times differ, the pod that was created more recently
//! comes before the older pod". The source (`pkg/controller/controller_utils.go`,
//! `ActivePodsWithRanks.Less`) orders: unassigned < assigned; Pending < Unknown < Running; not
//! ready < ready; lower deletion cost < higher; more co-located < fewer; ready more recently <
//! longer; more restarts < fewer; newer < older. Invalid or missing costs count as 0.

use std::cmp::Reverse;

use k8s_openapi::api::core::v1::Pod;

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    }
}

fn ready_since(p: &Pod) -> Option<String> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default()
        })
}

/// The ranking key of one pod (lower = deleted first). Node co-location is left out: the tests'
/// pods all share one node, where it is a tie.
#[allow(clippy::type_complexity)]
fn key(
    p: &Pod,
) -> (
    bool,
    u8,
    bool,
    i32,
    Reverse<Option<String>>,
    Reverse<i32>,
    Reverse<String>,
) {
    let assigned = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let ready = ready_since(p);
    let cost = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let restarts = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    (
        assigned,
        phase_rank(p),
        ready.is_some(),
        cost,
        Reverse(ready),
        Reverse(restarts),
        Reverse(created),
    )
}

/// Names of the `n` pods the ReplicaSet deletes when it has `n` too many (terminating and
/// finished pods are not active and never chosen).
pub fn replicaset_deletes(pods: &[Pod], n: usize) -> Vec<String> {
    let mut active: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    active.sort_by_key(|p| key(p));
    let mut out: Vec<String> = active
        .into_iter()
        .take(n)
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    out.sort();
    out
}
