//! Tests for victim choice, deletion costs, the shrink gate and the stuck-drain net, checked
//! against the ReplicaSet's own ranking ([`crate::rs_oracle`]).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::rs_oracle::replicaset_deletes;

/// A pod as the API lists it: Running on a node, Ready or not, created at minute `created`.
fn api_pod(name: &str, ready: bool, created: u32, cost: Option<i32>) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(c) = cost {
        annotations.insert(DELETION_COST.into(), c.to_string().into());
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations,
            "creationTimestamp": format!("2026-01-01T00:{created:02}:00Z")},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": format!("2026-01-01T00:{created:02}:30Z")}]},
    }))
    .unwrap()
}

/// Stats of (pod, connections, draining); a draining gateway does not accept (its readiness).
fn stats(entries: &[(&str, u64, bool)]) -> HashMap<String, PodLoad> {
    entries
        .iter()
        .map(|(n, c, d)| {
            let load = PodLoad {
                connections: *c,
                draining: *d,
                accepting: !*d,
            };
            ((*n).to_string(), load)
        })
        .collect()
}

/// Applies cost patches to the API pods, as the API server would.
fn write_costs(pods: &mut [Pod], patches: &[(String, i32)]) {
    for (name, cost) in patches {
        let pod = pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(DELETION_COST.into(), cost.to_string());
    }
}

fn set_ready(pods: &mut [Pod], names: &[String], ready: bool) {
    for p in pods.iter_mut() {
        if names.contains(p.metadata.name.as_ref().unwrap()) {
            let c = &mut p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
            c.status = if ready { "True" } else { "False" }.into();
        }
    }
}

#[test]
fn the_issue_case_ties_at_zero_victims_are_exactly_what_the_replicaset_removes() {
    // 4 pods, 0 connections each, all Ready, no cost: the ReplicaSet alone would remove the two
    // newest (d, c). Whatever the operator picks must be what goes.
    let mut pods = vec![
        api_pod("a", true, 1, None),
        api_pod("b", true, 2, None),
        api_pod("c", true, 3, None),
        api_pod("d", true, 4, None),
    ];
    let st = stats(&[
        ("a", 0, false),
        ("b", 0, false),
        ("c", 0, false),
        ("d", 0, false),
    ]);
    let facts = pod_facts(&pods, &st);
    let victims = choose_victims(&facts, 2);
    assert_eq!(victims, ["a", "b"]);
    // Before any cost is written, lowering the count is refused.
    assert!(matches!(
        may_shrink(&facts, &victims, true, false),
        Err(Hold::CostPending(_))
    ));
    write_costs(&mut pods, &cost_patches(&facts, &victims));
    // The victims are still Ready (readiness probe not run yet): hold while they drain.
    let facts = pod_facts(&pods, &st);
    assert_eq!(
        may_shrink(&facts, &victims, true, false),
        Err(Hold::StillReady(victims.clone()))
    );
    // Even now the ReplicaSet would already pick the victims (strict cost).
    assert_eq!(replicaset_deletes(&pods, 2), victims);
    // Drained: NotReady. Now lowering is allowed, and the ReplicaSet removes exactly them.
    set_ready(&mut pods, &victims, false);
    let st = stats(&[
        ("a", 0, true),
        ("b", 0, true),
        ("c", 0, false),
        ("d", 0, false),
    ]);
    let facts = pod_facts(&pods, &st);
    assert_eq!(choose_victims(&facts, 2), victims, "choice is stable");
    assert_eq!(may_shrink(&facts, &victims, true, false), Ok(()));
    assert_eq!(replicaset_deletes(&pods, 2), victims);
    // A survivor that flips NotReady afterwards still ranks after the victims (on cost).
    set_ready(&mut pods, &["c".to_string()], false);
    assert_eq!(replicaset_deletes(&pods, 2), victims);
}

#[test]
fn victims_follow_the_replicaset_keys_the_operator_cannot_change() {
    // c is NotReady: the ReplicaSet would delete it before any Ready pod whatever the costs,
    // so it must be a victim even though it holds the most connections.
    let pods = vec![
        api_pod("a", true, 1, None),
        api_pod("b", true, 2, None),
        api_pod("c", false, 3, None),
    ];
    let st = stats(&[("a", 5, false), ("b", 1, false), ("c", 90, false)]);
    let facts = pod_facts(&pods, &st);
    assert_eq!(choose_victims(&facts, 1), ["c"]);
    assert_eq!(choose_victims(&facts, 2), ["c", "b"]);
}

/// Finding 5: a pod NotReady because a balancing round paused it (or it is full) is the fullest
/// pod; the ReplicaSet's not-ready key does not force it to be the victim, and the emptiest goes.
#[test]
fn a_pod_not_ready_because_it_refuses_clients_is_not_drained_first() {
    let mut pods = vec![
        api_pod("a", false, 1, None),
        api_pod("b", true, 2, None),
        api_pod("c", true, 3, None),
    ];
    let mut st = stats(&[("a", 900, false), ("b", 100, false), ("c", 120, false)]);
    // Paused (or at maxConnections): not accepting, not draining.
    st.get_mut("a").unwrap().accepting = false;
    let facts = pod_facts(&pods, &st);
    assert!(facts[0].refusing && !facts[1].refusing);
    let victims = choose_victims(&facts, 1);
    assert_eq!(victims, ["b"]);
    // The protocol still removes exactly b: costed, drained (NotReady), then it ranks first.
    write_costs(&mut pods, &cost_patches(&facts, &victims));
    set_ready(&mut pods, &victims, false);
    let facts = pod_facts(&pods, &st);
    assert_eq!(may_shrink(&facts, &victims, true, false), Ok(()));
    assert_eq!(replicaset_deletes(&pods, 1), victims);
    // A pod NotReady for any other reason (its stats say it accepts) still goes first.
    st.get_mut("a").unwrap().accepting = true;
    let facts = pod_facts(&api_pods_abc(), &st);
    assert_eq!(choose_victims(&facts, 1), ["a"]);
}

fn api_pods_abc() -> Vec<Pod> {
    vec![
        api_pod("a", false, 1, None),
        api_pod("b", true, 2, None),
        api_pod("c", true, 3, None),
    ]
}

#[test]
fn pods_without_stats_go_after_pods_with_known_counts() {
    let pods = vec![
        api_pod("a", true, 1, None),
        api_pod("b", true, 2, None),
        api_pod("c", true, 3, None),
    ];
    let st = stats(&[("a", 40, false), ("c", 7, false)]);
    let facts = pod_facts(&pods, &st);
    assert_eq!(facts[1].connections, None);
    assert_eq!(choose_victims(&facts, 2), ["c", "a"]);
    // Survivor b has no stats: cost 0 (already what a missing annotation means, so no write),
    // still strictly above the victims' -1.
    let patches = cost_patches(&facts, &["c".into(), "a".into()]);
    assert_eq!(
        patches,
        [
            ("a".to_string(), VICTIM_COST),
            ("c".to_string(), VICTIM_COST)
        ]
    );
}

/// Finding 14: survivors are not re-patched with their live connection counts on every pass;
/// only victims get −1, and a survivor that ranks with the victims (an abandoned victim, a cost
/// set by someone else) is lifted to 0 once.
#[test]
fn survivors_are_left_alone_while_their_counts_change() {
    let pods = vec![
        api_pod("a", true, 1, None),
        api_pod("b", true, 2, Some(40)),
        api_pod("c", true, 3, None),
    ];
    let victims = vec!["c".to_string()];
    let mut seen = Vec::new();
    for load in [[10, 40, 1], [12, 55, 1], [30, 7, 0]] {
        let st = stats(&[
            ("a", load[0], false),
            ("b", load[1], false),
            ("c", load[2], false),
        ]);
        seen.push(cost_patches(&pod_facts(&pods, &st), &victims));
    }
    let victim_only = vec![("c".to_string(), VICTIM_COST)];
    assert_eq!(
        seen,
        [victim_only.clone(), victim_only.clone(), victim_only]
    );
    // Once the victim carries its cost, nothing is written at all.
    let mut pods = pods;
    write_costs(&mut pods, &[("c".to_string(), VICTIM_COST)]);
    let st = stats(&[("a", 99, false), ("b", 1, false), ("c", 0, false)]);
    assert!(cost_patches(&pod_facts(&pods, &st), &victims).is_empty());
    // The choice changes to a: c, no longer a victim, is lifted to 0 so it ranks after a.
    let patches = cost_patches(&pod_facts(&pods, &st), &["a".to_string()]);
    assert_eq!(
        patches,
        [("a".to_string(), VICTIM_COST), ("c".to_string(), 0)]
    );
    // A survivor with a negative cost someone else wrote is lifted too.
    let pods = vec![api_pod("a", true, 1, None), api_pod("b", true, 2, Some(-5))];
    let st = stats(&[("a", 1, false), ("b", 1, false)]);
    assert_eq!(
        cost_patches(&pod_facts(&pods, &st), &["a".to_string()]),
        [("a".to_string(), VICTIM_COST), ("b".to_string(), 0)]
    );
}

#[test]
fn a_pending_survivor_blocks_the_shrink() {
    // A survivor that is still Pending would be deleted by the ReplicaSet first.
    let mut pods = vec![
        api_pod("a", false, 1, Some(VICTIM_COST)),
        api_pod("b", true, 2, Some(10)),
    ];
    pods[1].status.as_mut().unwrap().phase = Some("Pending".into());
    pods[1].spec.as_mut().unwrap().node_name = None;
    let facts = pod_facts(&pods, &stats(&[("a", 0, true)]));
    let victims = vec!["a".to_string()];
    assert_eq!(
        may_shrink(&facts, &victims, true, false),
        Err(Hold::WouldRemoveSurvivor {
            survivor: "b".into(),
            victim: "a".into()
        })
    );
    assert_eq!(replicaset_deletes(&pods, 1), ["b"], "the oracle agrees");
}

#[test]
fn a_victim_that_never_turns_not_ready_is_let_go_on_cost_after_the_wait() {
    let pods = vec![
        api_pod("a", true, 1, Some(VICTIM_COST)),
        api_pod("b", true, 2, Some(3)),
    ];
    let facts = pod_facts(&pods, &stats(&[("a", 0, false), ("b", 3, false)]));
    let victims = vec!["a".to_string()];
    assert!(may_shrink(&facts, &victims, true, false).is_err());
    assert_eq!(may_shrink(&facts, &victims, true, true), Ok(()));
    // Without drains (no NATS) readiness is not awaited at all.
    assert_eq!(may_shrink(&facts, &victims, false, false), Ok(()));
    assert_eq!(replicaset_deletes(&pods, 1), victims);
}

#[test]
fn a_vanished_victim_holds() {
    let pods = vec![api_pod("b", true, 2, None)];
    let facts = pod_facts(&pods, &HashMap::new());
    assert_eq!(
        may_shrink(&facts, &["a".into()], false, false),
        Err(Hold::VictimGone("a".into()))
    );
}

#[test]
fn terminating_and_finished_pods_are_not_candidates() {
    let mut gone = api_pod("a", true, 1, None);
    gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T01:00:00Z".parse().unwrap(),
    ));
    let mut failed = api_pod("b", false, 1, None);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![gone, failed, api_pod("c", true, 3, None)];
    let facts = pod_facts(&pods, &HashMap::new());
    let names: Vec<_> = facts.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["c"]);
}

#[test]
fn drain_watch_flags_pods_draining_past_the_limit() {
    let pods = vec![api_pod("a", true, 1, None), api_pod("b", true, 2, None)];
    let draining = pod_facts(&pods, &stats(&[("a", 3, true), ("b", 3, false)]));
    let mut w = DrainWatch::default();
    assert!(w.observe(&draining, 100, 40).is_empty());
    assert!(w.observe(&draining, 140, 40).is_empty());
    assert_eq!(w.observe(&draining, 141, 40), ["a"]);
    // Stops draining (resumed): forgotten, the clock restarts.
    let calm = pod_facts(&pods, &stats(&[("a", 3, false), ("b", 3, false)]));
    assert!(w.observe(&calm, 150, 40).is_empty());
    assert!(w.observe(&draining, 160, 40).is_empty());
    assert!(w.observe(&draining, 200, 40).is_empty());
    assert_eq!(w.observe(&draining, 201, 40), ["a"]);
    w.forget("a");
    assert!(w.observe(&draining, 202, 40).is_empty());
}
