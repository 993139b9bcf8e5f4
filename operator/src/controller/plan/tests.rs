//! The plan step as plain tables: observations and memory in, decisions out. No nats-server and
//! no API server: the scaling, scale-down and balancing decisions of issue 8, checked on data.

// Tests start from a default spec and change one field at a time: easier to read.
#![allow(clippy::field_reassign_with_default)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use volley_crds::wire::GatewayStats;
use volley_crds::{AutoscalingMode, PushCluster, PushClusterSpec};

use super::*;
use crate::build;
use crate::controller::observe::{DeploymentView, NatsView};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> Now {
    Now {
        secs: T0 + secs,
        ms: (T0 + secs) * 1000,
    }
}

fn settings() -> Settings {
    Settings {
        stats_max_age: Duration::from_secs(30),
        drain_stuck_margin: Duration::from_secs(30),
        // No endpoints to wait for in a table: a round pauses and sheds in one step.
        balance_timing: Timing {
            lead: Duration::ZERO,
            ..Timing::default()
        },
    }
}

/// A spec with NATS and no stabilization, so one plan shows a decision.
fn spec() -> PushClusterSpec {
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(volley_crds::NatsSpec {
        url: "nats://127.0.0.1:4222".into(),
        ..Default::default()
    });
    spec.autoscaling.scale_down_stabilization_seconds = 0;
    spec.autoscaling.scale_up_stabilization_seconds = 0;
    spec
}

fn stored(spec: PushClusterSpec) -> PushCluster {
    let mut pc = PushCluster::new("web", spec);
    pc.metadata.namespace = Some("apps".into());
    pc.metadata.uid = Some("uid-1".into());
    pc
}

/// A running, ready, scheduled gateway pod created at minute `created`.
fn pod(name: &str, created: u32) -> Pod {
    serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps", "uid": format!("uid-{name}"),
            "creationTimestamp": format!("2026-01-01T00:{created:02}:00Z")},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": format!("2026-01-01T00:{created:02}:30Z")}]}}))
    .unwrap()
}

fn not_ready(mut p: Pod) -> Pod {
    let conds = p.status.as_mut().unwrap().conditions.as_mut().unwrap();
    conds[0].status = "False".into();
    p
}

fn with_cost(mut p: Pod, cost: i32) -> Pod {
    p.metadata.annotations = Some(
        [(scaledown::DELETION_COST.to_string(), cost.to_string())]
            .into_iter()
            .collect(),
    );
    p
}

/// Fresh stats of `pod`, taken at `now`.
fn stats(pod: &str, connections: u64, draining: bool, now: Now) -> Seen {
    Seen {
        stats: GatewayStats {
            namespace: "apps".into(),
            cluster: "web".into(),
            pod: pod.into(),
            connections,
            accepting: !draining,
            draining,
            ..GatewayStats::default()
        },
        at: UNIX_EPOCH + Duration::from_secs(now.secs),
    }
}

/// A settled Deployment of `n` replicas.
fn settled(n: i32) -> Option<DeploymentView> {
    Some(DeploymentView {
        wanted: Some(n),
        replicas: n,
        ready: n,
        updated: n,
        observed: true,
    })
}

/// Pods `web-0`.. (created in that order), each with its connection count, on NATS.
fn cluster(connections: &[u64], now: Now) -> Observed {
    let names: Vec<String> = (0..connections.len()).map(|i| format!("web-{i}")).collect();
    Observed {
        nats: NatsView::Connected,
        deployment: settled(i32::try_from(connections.len()).unwrap()),
        pods: names.iter().zip(1..).map(|(n, m)| pod(n, m)).collect(),
        stats: names
            .iter()
            .zip(connections)
            .map(|(n, c)| stats(n, *c, false, now))
            .collect(),
    }
}

fn run(pc: &PushCluster, o: &Observed, m: &mut ClusterMemory, now: Now) -> Plan {
    let v = build::validate(pc).expect("a valid spec");
    plan(&v, o, &settings(), now, m)
}

#[test]
fn replicas_follow_the_load_within_bounds_and_tolerance() {
    // (connections per pod, target per pod, min, max) -> desired replicas
    let table: [(&[u64], i64, i32, i32, i32); 6] = [
        (&[900, 900], 300, 1, 10, 6),
        (&[100, 100], 100, 1, 10, 2),
        // 210 for a capacity of 200 is within the 10 % tolerance: no change.
        (&[105, 105], 100, 1, 10, 2),
        (&[130, 130], 100, 1, 10, 3),
        (&[900, 900], 300, 1, 4, 4),
        (&[0, 0], 150, 2, 10, 2),
    ];
    for (load, target, min, max, want) in table {
        let mut s = spec();
        s.autoscaling.target_connections_per_pod = target;
        s.autoscaling.min_replicas = min;
        s.autoscaling.max_replicas = max;
        let p = run(
            &stored(s),
            &cluster(load, at(0)),
            &mut ClusterMemory::default(),
            at(0),
        );
        assert_eq!(p.status.desired, want, "{load:?} at {target} per pod");
    }
}

#[test]
fn scaling_up_is_one_decision_with_its_inputs_and_no_protocol() {
    let mut s = spec();
    s.autoscaling.target_connections_per_pod = 300;
    let p = run(
        &stored(s),
        &cluster(&[900, 900], at(0)),
        &mut ClusterMemory::default(),
        at(0),
    );
    assert_eq!(p.replicas, 6);
    let d = p.scaling.expect("a scaling decision");
    assert_eq!(
        (d.type_, d.reason, d.action.as_str()),
        (EventType::Normal, "ScalingUp", "Scale2To6")
    );
    assert_eq!(
        d.note,
        "scaling up 2 -> 6 (1800 connections, target 300 per pod, 2 of 2 pods reporting)"
    );
    assert!(p.costs.is_empty() && p.drains.is_empty() && p.stuck.is_empty());
}

#[test]
fn scale_down_waits_out_its_stabilization_window() {
    let mut s = spec();
    s.autoscaling.target_connections_per_pod = 100;
    s.autoscaling.scale_down_stabilization_seconds = 60;
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    // (seconds, connections per pod of 4 pods) -> desired
    let table: [(u64, u64, i32); 4] = [(0, 100, 4), (10, 25, 4), (59, 25, 4), (70, 25, 1)];
    for (t, per_pod, want) in table {
        let p = run(&pc, &cluster(&[per_pod; 4], at(t)), &mut m, at(t));
        assert_eq!(p.status.desired, want, "at {t}s with {per_pod} per pod");
    }
}

#[test]
fn scale_down_costs_and_drains_the_victims_before_lowering_the_count() {
    // Issue 8: 4 idle pods, 2 to go. The victims are the pods the ReplicaSet will remove once
    // they are costed and drained; the count stays until they rank first.
    let mut s = spec();
    s.autoscaling.min_replicas = 2;
    s.autoscaling.target_connections_per_pod = 150;
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    let p = run(&pc, &cluster(&[0; 4], at(0)), &mut m, at(0));
    assert_eq!((p.status.desired, p.replicas), (2, 4));
    assert_eq!(p.drains.len(), 2, "{:?}", p.drains);
    let victim_costs: Vec<_> = p
        .costs
        .iter()
        .filter(|(_, c)| *c == -1)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(
        victim_costs, p.drains,
        "the drained pods are the costed victims"
    );
    assert!(
        p.costs
            .iter()
            .all(|(n, c)| *c == -1 || !p.drains.contains(n))
    );
    let hold = p.status.hold.clone().unwrap();
    assert!(
        hold.starts_with("4 -> 2: setting deletion cost on "),
        "{hold}"
    );
    assert!(
        p.scaling.is_none(),
        "not yet: the victims do not rank first"
    );
    let note = p.drain_note.as_ref().unwrap().decision(&p.drains).unwrap();
    assert_eq!(note.reason, "Draining");
    assert_eq!(note.action, "Drain4To2");
    assert_eq!(note.pod.as_deref(), Some(p.drains[0].as_str()));
    assert!(note.note.contains("target 150 per pod"), "{}", note.note);
    assert!(
        p.drain_note.unwrap().decision(&[]).is_none(),
        "no drain went out: no Event"
    );

    // Sent (the apply step records it): not sent again while the stats have not caught up.
    for victim in &p.drains {
        m.drain_sent.insert(victim.clone(), at(0).secs);
    }
    let again = run(&pc, &cluster(&[0; 4], at(1)), &mut m, at(1));
    assert!(again.drains.is_empty(), "{:?}", again.drains);
    assert_eq!(again.replicas, 4);

    // The kubelet marks the victims NotReady, their costs are written, their stats say draining:
    // they rank first, the count goes down with one ScalingDown decision.
    let victims = p.drains.clone();
    let mut o = cluster(&[0; 4], at(2));
    for pod in &mut o.pods {
        let name = pod.metadata.name.clone().unwrap();
        let cost = p
            .costs
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| *c);
        *pod = with_cost(pod.clone(), cost);
        if victims.contains(&name) {
            *pod = not_ready(pod.clone());
        }
    }
    for s in &mut o.stats {
        s.stats.draining = victims.contains(&s.stats.pod);
    }
    let done = run(&pc, &o, &mut m, at(2));
    assert_eq!(done.replicas, 2);
    assert!(
        done.costs.is_empty(),
        "nothing left to mark: {:?}",
        done.costs
    );
    assert!(done.drains.is_empty());
    let d = done.scaling.unwrap();
    assert_eq!((d.reason, d.action.as_str()), ("ScalingDown", "Scale4To2"));
    assert!(d.note.contains(&victims.join(", ")), "{}", d.note);
}

#[test]
fn scale_down_picks_the_emptiest_and_costs_only_the_victim() {
    let mut s = spec();
    s.autoscaling.min_replicas = 1;
    s.autoscaling.target_connections_per_pod = 1000;
    let p = run(
        &stored(s),
        &cluster(&[150, 3], at(0)),
        &mut ClusterMemory::default(),
        at(0),
    );
    assert_eq!(p.drains, ["web-1"]);
    // The survivor keeps no annotation (0 > -1): no write (finding 14).
    assert_eq!(p.costs, [("web-1".to_string(), -1)]);
    assert_eq!((p.status.desired, p.replicas), (1, 2));
}

#[test]
fn a_rollout_in_progress_holds_the_scale_down_without_costs_or_drains() {
    let mut s = spec();
    s.autoscaling.min_replicas = 1;
    s.autoscaling.target_connections_per_pod = 1000;
    let mut o = cluster(&[5, 3], at(0));
    o.deployment = Some(DeploymentView {
        updated: 1,
        ..settled(2).unwrap()
    });
    let p = run(&stored(s), &o, &mut ClusterMemory::default(), at(0));
    assert!(p.costs.is_empty() && p.drains.is_empty());
    assert_eq!(p.replicas, 2);
    assert!(
        p.status
            .hold
            .unwrap()
            .contains("waiting for the Deployment to settle")
    );
}

/// Finding 17: right after a template change the Deployment's counts still look settled, but its
/// observedGeneration is behind and a rollout is about to replace the pods: nothing is drained.
#[test]
fn a_deployment_whose_latest_spec_is_not_observed_holds_the_scale_down() {
    let deployment = |generation: i64, observed: i64| -> Deployment {
        serde_json::from_value(
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps", "generation": generation},
            "spec": {"replicas": 2, "selector": {"matchLabels": {}}, "template": {}},
            "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                "observedGeneration": observed}}),
        )
        .unwrap()
    };
    let view = DeploymentView::of(&deployment(3, 2));
    assert!(!view.observed);
    assert!(DeploymentView::of(&deployment(3, 3)).observed);
    let mut s = spec();
    s.autoscaling.target_connections_per_pod = 1000;
    let pc = stored(s);
    let mut o = cluster(&[5, 3], at(0));
    o.deployment = Some(view);
    let p = run(&pc, &o, &mut ClusterMemory::default(), at(0));
    assert!(p.costs.is_empty() && p.drains.is_empty());
    assert_eq!((p.status.desired, p.replicas), (1, 2));
    let hold = p.status.hold.unwrap();
    assert!(hold.contains("not yet observed"), "{hold}");
    // Once observed, the protocol runs.
    o.deployment = Some(DeploymentView::of(&deployment(3, 3)));
    let p = run(&pc, &o, &mut ClusterMemory::default(), at(0));
    assert_eq!(p.drains, ["web-1"]);
}

/// Finding 5: a balancing round pauses the fullest pod (NotReady while it sheds); a scale-down
/// that comes due meanwhile waits for the round to end and then drains the emptiest pod, not
/// the paused one.
#[test]
fn a_scale_down_waits_for_the_balancing_round_and_then_drains_the_emptiest() {
    let mut s = spec();
    s.autoscaling.target_connections_per_pod = 400;
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    // 1120 on 3 pods at 400 each is within tolerance: 3 stay; web-0 is far above the mean.
    let p = run(&pc, &cluster(&[900, 100, 120], at(0)), &mut m, at(0));
    assert_eq!(p.status.desired, 3);
    assert!(
        p.balance.contains(&Command::Pause("web-0".into())),
        "{:?}",
        p.balance
    );
    // The load falls while web-0 is paused: NotReady, its stats say it does not accept.
    let paused = |now: Now, ready: bool| {
        let mut o = cluster(&[500, 100, 120], now);
        o.stats[0].stats.accepting = false;
        if !ready {
            o.pods[0] = not_ready(o.pods[0].clone());
        }
        o
    };
    for t in [2, 10] {
        let p = run(&pc, &paused(at(t), false), &mut m, at(t));
        assert_eq!((p.status.desired, p.replicas), (2, 3), "at {t}s");
        assert!(p.costs.is_empty() && p.drains.is_empty(), "at {t}s");
        let hold = p.status.hold.unwrap();
        assert!(hold.contains("balancing round on web-0"), "{hold}");
    }
    // The round ends (spread 10 s + settle 7 s) in this pass: web-0 is resumed after the
    // decision, which still holds.
    let p = run(&pc, &paused(at(17), false), &mut m, at(17));
    assert!(p.balance.contains(&Command::Resume("web-0".into())));
    assert!(p.drains.is_empty() && p.status.hold.is_some());
    // web-0's readiness and stats lag the resume by a few seconds; the victim is still the
    // emptiest pod, not the NotReady one.
    let p = run(&pc, &paused(at(19), false), &mut m, at(19));
    assert_eq!(p.drains, ["web-1"]);
    assert!(
        p.costs
            .contains(&("web-1".to_string(), scaledown::VICTIM_COST))
    );
    // Only the victim is costed (finding 14).
    assert_eq!(p.costs, [("web-1".to_string(), scaledown::VICTIM_COST)]);
}

/// Finding 13: at maxReplicas with load for more, the plan says so once as a Warning Event and
/// in the status inputs on every pass; when the load falls back, the limit goes.
#[test]
fn capped_at_max_replicas_is_said_once_and_in_the_status() {
    let mut s = spec();
    s.autoscaling.max_replicas = 2;
    s.autoscaling.target_connections_per_pod = 100;
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    let limited = |p: &Plan| {
        p.notices
            .iter()
            .filter(|d| d.reason == "ScalingLimited")
            .count()
    };
    let p = run(&pc, &cluster(&[250, 250], at(0)), &mut m, at(0));
    assert_eq!(p.status.desired, 2);
    assert_eq!(
        p.status.limited.as_deref(),
        Some("limited by maxReplicas 2: 5 replicas needed for 500 connections at 100 per pod")
    );
    assert_eq!(limited(&p), 1);
    assert_eq!(p.notices[0].type_, EventType::Warning);
    let p = run(&pc, &cluster(&[300, 300], at(10)), &mut m, at(10));
    assert!(p.status.limited.is_some());
    assert_eq!(limited(&p), 0, "said once");
    let p = run(&pc, &cluster(&[100, 100], at(20)), &mut m, at(20));
    assert_eq!((p.status.limited.as_deref(), limited(&p)), (None, 0));
    // It starts again: said again.
    let p = run(&pc, &cluster(&[300, 300], at(30)), &mut m, at(30));
    assert_eq!(limited(&p), 1);
}

/// Finding 11: a routine balancing round keeps the paused pod NotReady for about 21-23 s, longer
/// than the 20 s Ready grace; Ready must stay True through it (reconciles every 2 s).
#[test]
fn ready_stays_true_through_a_balancing_round() {
    use crate::controller::READY_GRACE;
    use crate::controller::status::{Outcome, status};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    let mut s = spec();
    s.autoscaling.min_replicas = 3;
    let mut pc = stored(s);
    pc.metadata.generation = Some(1);
    // The Kubernetes timing: pause, shed 4 s later over 10 s, resume 7 s after.
    let real = Settings {
        balance_timing: Timing::default(),
        ..settings()
    };
    let mut m = ClusterMemory::default();
    let mut paused_seen = false;
    for t in (0..=40).step_by(2) {
        let now = at(t);
        // The shed lands by t=14; web-0 is NotReady from its pause's first probe (t=2) until
        // a probe after its resume (t=21) passes (t=24).
        let load: &[u64] = if t < 14 {
            &[900, 100, 100]
        } else {
            &[400, 350, 350]
        };
        let mut o = cluster(load, now);
        if (2..24).contains(&t) {
            o.pods[0] = not_ready(o.pods[0].clone());
            o.stats[0].stats.accepting = false;
            o.deployment = Some(DeploymentView {
                ready: 2,
                ..settled(3).unwrap()
            });
        }
        let v = build::validate(&pc).unwrap();
        let p = plan(&v, &o, &real, now, &mut m);
        paused_seen |= p.balance.contains(&Command::Pause("web-0".into()));
        let time = Time(Timestamp::from_second(i64::try_from(now.secs).unwrap()).unwrap());
        let st = status(
            &pc,
            &o.nats,
            &p.status,
            &Outcome::default(),
            READY_GRACE,
            &time,
        );
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True", "at t={t}s: {}", ready.message);
        pc.status = Some(st);
    }
    assert!(paused_seen, "a round ran");
    // A pod NotReady for any other reason still turns Ready False after the grace.
    let mut o = cluster(&[100, 100, 100], at(100));
    o.pods[2] = not_ready(o.pods[2].clone());
    o.deployment = Some(DeploymentView {
        ready: 2,
        ..settled(3).unwrap()
    });
    for t in [100, 110, 121] {
        let p = plan(&build::validate(&pc).unwrap(), &o, &real, at(t), &mut m);
        assert_eq!(p.status.short_for, t - 100, "at t={t}s");
    }
}

#[test]
fn standalone_gateways_are_scaled_down_at_once_without_drains() {
    // No NATS: no stats, no drains; a Manual count is applied directly.
    let mut s = PushClusterSpec::default();
    s.autoscaling.mode = AutoscalingMode::Manual;
    s.replicas = Some(1);
    let mut o = cluster(&[0, 0], at(0));
    o.nats = NatsView::Standalone;
    o.stats.clear();
    let p = run(&stored(s), &o, &mut ClusterMemory::default(), at(0));
    assert_eq!(p.replicas, 1);
    assert!(p.costs.is_empty() && p.drains.is_empty() && p.balance.is_empty());
    assert_eq!(
        p.scaling.unwrap().note,
        "scaling down 2 -> 1 (0 connections, target 10000 per pod, 0 of 2 pods reporting)"
    );
}

#[test]
fn operator_mode_without_stats_keeps_the_count_within_bounds() {
    // (current, min, max) -> desired, NATS unreachable
    // minReplicas 0 (stored before the CRD refused it) still keeps one pod (finding 3).
    for (current, min, max, want) in [(3, 1, 10, 3), (3, 4, 10, 4), (12, 1, 10, 10), (0, 0, 10, 1)]
    {
        let mut s = spec();
        s.autoscaling.min_replicas = min;
        s.autoscaling.max_replicas = max;
        let mut o = cluster(&[], at(0));
        o.nats = NatsView::Failed("down".into());
        o.deployment = settled(current);
        let p = run(&stored(s), &o, &mut ClusterMemory::default(), at(0));
        assert_eq!(p.status.desired, want, "{current} in [{min}, {max}]");
    }
}

/// Finding 3: the operator never decides 0 in mode Operator, even with minReplicas 0 and no
/// load; mode External (an HPA through the scale subresource) may still ask for 0.
#[test]
fn min_replicas_zero_scales_to_one_in_operator_mode_and_to_zero_in_external_mode() {
    let mut s = spec();
    s.autoscaling.min_replicas = 0;
    let pc = stored(s.clone());
    let mut m = ClusterMemory::default();
    let mut o = cluster(&[0], at(0));
    for t in [0, 10, 400, 800] {
        o.stats = vec![stats("web-0", 0, false, at(t))];
        let p = run(&pc, &o, &mut m, at(t));
        assert_eq!((p.status.desired, p.replicas), (1, 1), "at t={t}");
        assert!(p.drains.is_empty() && p.costs.is_empty(), "at t={t}");
    }
    s.autoscaling.mode = AutoscalingMode::External;
    s.replicas = Some(0);
    let p = run(&stored(s), &o, &mut ClusterMemory::default(), at(0));
    // (the count itself goes down through the drain protocol, as any scale-down)
    assert_eq!(p.status.desired, 0);
}

/// Finding 10: three pods full at maxConnectionsPerPod 5000 with the default target 10000 (an
/// object stored before the CRD refused that) are not scaled down to 2; less load scales down
/// against the capped target (below 5000 / (1 + tolerance)).
#[test]
fn a_saturated_cluster_is_not_shrunk_when_the_target_exceeds_the_pod_cap() {
    let mut s = spec();
    s.gateway.max_connections_per_pod = Some(5_000);
    assert_eq!(s.autoscaling.target_connections_per_pod, 10_000);
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    let p = run(&pc, &full_cluster(3, 5_000, at(0)), &mut m, at(0));
    assert!(p.status.desired >= 3 && p.replicas >= 3, "{:?}", p.status);
    assert!(p.drains.is_empty() && p.costs.is_empty());
    // 6000 connections: 2 pods at 4545 each (1 at the uncapped 10000).
    let p = run(
        &pc,
        &cluster(&[2_000, 2_000, 2_000], at(10)),
        &mut m,
        at(10),
    );
    assert_eq!(p.status.desired, 2);
    let note = p.drain_note.expect("a scale-down").inputs;
    assert!(note.contains("target 4545 per pod"), "{note}");
}

/// `n` pods full at `cap`: NotReady and refusing clients (`accepting=false`, not draining).
fn full_cluster(n: usize, cap: u64, now: Now) -> Observed {
    let mut o = cluster(&vec![cap; n], now);
    for s in &mut o.stats {
        s.stats.accepting = false;
    }
    o.pods = o.pods.into_iter().map(not_ready).collect();
    o
}

/// Finding 1 of review 2: target = maxConnectionsPerPod = 5000 with tolerance 0.1, three pods
/// full. 15000 connections on 3 × 5000 is "within tolerance", and pods never report more than
/// their cap, so the cluster stayed at 3 with clients refused for good. Full pods scale up (after
/// the scale-up window), and the new pod is not drained again while the others stay full.
#[test]
fn a_full_cluster_scales_up_when_the_target_is_the_pod_cap() {
    let mut s = spec();
    s.gateway.max_connections_per_pod = Some(5_000);
    s.autoscaling.target_connections_per_pod = 5_000;
    s.autoscaling.tolerance = 0.1;
    s.autoscaling.scale_up_stabilization_seconds = 15;
    let pc = stored(s);
    let mut m = ClusterMemory::default();
    let p = run(&pc, &full_cluster(3, 5_000, at(0)), &mut m, at(0));
    assert_eq!(p.status.desired, 3, "the scale-up window has not passed");
    let p = run(&pc, &full_cluster(3, 5_000, at(15)), &mut m, at(15));
    assert!(p.status.desired >= 4, "{:?}", p.status);
    assert_eq!(p.replicas, p.status.desired);
    let d = p.scaling.expect("a ScalingUp decision");
    assert_eq!(d.reason, "ScalingUp");
    assert!(d.note.contains("every pod full at 5000"), "{}", d.note);
    // One pod short of full is not saturated: it still takes clients.
    let mut m = ClusterMemory::default();
    let mut o = full_cluster(3, 5_000, at(0));
    o.stats[1].stats.connections = 4_000;
    o.stats[1].stats.accepting = true;
    for t in [0, 15, 30] {
        let p = run(&pc, &o, &mut m, at(t));
        assert_eq!(p.status.desired, 3, "at {t}s");
    }
}

#[test]
fn a_pod_draining_past_its_timeout_is_deleted_once_with_a_warning() {
    let mut s = spec();
    s.autoscaling.mode = AutoscalingMode::Manual;
    s.replicas = Some(2);
    s.gateway.drain_timeout = Some("1s".into());
    let pc = stored(s);
    let mut o = cluster(&[10, 10], at(0));
    o.stats[1].stats.draining = true;
    let mut m = ClusterMemory::default();
    // drainTimeout 1s + margin 30s: stuck after more than 31s of draining.
    for (t, stuck) in [(0, false), (31, false), (32, true)] {
        let p = run(&pc, &o, &mut m, at(t));
        assert_eq!(!p.stuck.is_empty(), stuck, "at {t}s");
        if stuck {
            let (pod, d) = &p.stuck[0];
            assert_eq!(pod, "web-1");
            assert_eq!((d.type_, d.reason), (EventType::Warning, "DrainStuck"));
            assert_eq!(d.pod.as_deref(), Some("web-1"));
            // The deleted pod no longer counts as live.
            assert!(p.status.seen.iter().all(|s| s.stats.pod != "web-1"));
        }
    }
}

#[test]
fn kubectl_scale_in_operator_mode_is_overridden_and_said_once() {
    let mut s = spec();
    s.autoscaling.min_replicas = 2;
    s.autoscaling.target_connections_per_pod = 100;
    s.replicas = Some(3);
    let mut pc = stored(s);
    let mut m = ClusterMemory::default();
    let o = cluster(&[100, 100], at(0));
    let first = run(&pc, &o, &mut m, at(0));
    assert!(
        first.notices.is_empty(),
        "the starting count is not a request"
    );
    pc.spec.replicas = Some(5);
    let said = run(&pc, &o, &mut m, at(1));
    let again = run(&pc, &o, &mut m, at(2));
    assert_eq!(said.notices.len(), 1);
    assert_eq!(said.notices[0].reason, "ScaleOverridden");
    assert_eq!(said.notices[0].action, "Override5");
    assert!(said.notices[0].note.contains("Manual or External"));
    assert!(again.notices.is_empty(), "said once");
    assert_eq!((again.replicas, again.status.overridden), (2, Some(5)));
}

#[test]
fn a_pod_without_fresh_stats_is_stale_once_after_the_max_age() {
    let mut s = spec();
    s.autoscaling.min_replicas = 2;
    let pc = stored(s);
    let mut o = cluster(&[10, 10], at(0));
    o.stats.truncate(1);
    let mut m = ClusterMemory::default();
    // (seconds) -> a StatsStale notice
    for (t, notice) in [(0, false), (29, false), (30, true), (31, false)] {
        let p = run(&pc, &o, &mut m, at(t));
        let stale: Vec<_> = p
            .notices
            .iter()
            .filter(|d| d.reason == "StatsStale")
            .collect();
        assert_eq!(stale.len(), usize::from(notice), "at {t}s");
        if notice {
            assert!(stale[0].note.contains("from web-1"), "{}", stale[0].note);
            assert!(!stale[0].note.contains("web-0"));
        }
        // Without web-1's count there is no scale-down.
        assert_eq!(p.replicas, 2);
    }
}

#[test]
fn a_settled_cluster_is_balanced_towards_the_mean() {
    // (balance enabled, Deployment settled, connections) -> commands
    let shed = |count| Command::Shed {
        pod: "web-0".into(),
        count,
        over_ms: SPREAD_MS,
    };
    let table: [(bool, bool, [u64; 2], Vec<Command>); 4] = [
        (
            true,
            true,
            [900, 100],
            vec![Command::Pause("web-0".into()), shed(400)],
        ),
        // Within tolerance: nothing to do.
        (true, true, [510, 490], vec![]),
        (false, true, [900, 100], vec![]),
        // Scaling (one pod not ready yet): no balancing.
        (true, false, [900, 100], vec![]),
    ];
    for (enabled, is_settled, load, want) in table {
        let mut s = spec();
        s.autoscaling.min_replicas = 2;
        s.autoscaling.target_connections_per_pod = 10_000;
        s.balance.enabled = enabled;
        let mut o = cluster(&load, at(0));
        if !is_settled {
            o.deployment = Some(DeploymentView {
                ready: 1,
                ..settled(2).unwrap()
            });
        }
        let p = run(&stored(s), &o, &mut ClusterMemory::default(), at(0));
        assert_eq!(
            p.balance, want,
            "enabled {enabled}, settled {is_settled}, {load:?}"
        );
        assert_eq!(p.status.balanced, load == [510, 490]);
    }
}

#[test]
fn ready_is_short_for_as_long_as_fewer_pods_than_desired_are_ready() {
    let mut s = spec();
    s.autoscaling.mode = AutoscalingMode::Manual;
    s.replicas = Some(2);
    let pc = stored(s);
    let mut o = cluster(&[1, 1], at(0));
    o.deployment = Some(DeploymentView {
        ready: 1,
        ..settled(2).unwrap()
    });
    o.pods[1] = not_ready(o.pods[1].clone());
    let mut m = ClusterMemory::default();
    assert_eq!(run(&pc, &o, &mut m, at(0)).status.short_for, 0);
    let p = run(&pc, &o, &mut m, at(25));
    assert_eq!(p.status.short_for, 25);
    assert_eq!(p.status.not_ready, ["web-1 (not ready)"]);
    o.deployment = settled(2);
    assert_eq!(run(&pc, &o, &mut m, at(26)).status.short_for, 0);
}

/// Finding 5 of review 2: a new leader (fresh memory) finds web-1 paused (`accepting=false`, not
/// draining, below its cap) by a round of the previous leader, and resumes it, with balancing
/// enabled or not.
#[test]
fn a_pod_left_paused_by_a_previous_leader_is_resumed() {
    for enabled in [true, false] {
        let mut s = spec();
        s.balance.enabled = enabled;
        let pc = stored(s);
        let mut o = cluster(&[100, 100, 100], at(0));
        o.stats[1].stats.accepting = false;
        o.pods[1] = not_ready(o.pods[1].clone());
        let mut m = ClusterMemory::default();
        let p = run(&pc, &o, &mut m, at(0));
        assert_eq!(
            p.balance,
            [Command::Resume("web-1".into())],
            "enabled {enabled}"
        );
        // Not repeated on the next pass, whose stats may predate the Resume.
        let p = run(&pc, &o, &mut m, at(1));
        assert!(p.balance.is_empty(), "enabled {enabled}: {:?}", p.balance);
    }
}

/// Finding 1 of review 2: without `maxConnectionsPerPod` the gateway's own default cap holds,
/// so a target above it over the tolerance is capped as well, and pods full at that default
/// scale up.
#[test]
fn the_gateways_default_cap_bounds_the_target_too() {
    let cap = u64::try_from(defaults::MAX_CONNECTIONS).unwrap();
    let mut s = spec();
    s.autoscaling.target_connections_per_pod = i64::try_from(cap).unwrap();
    s.autoscaling.tolerance = 0.1;
    let pc = stored(s);
    let p = run(
        &pc,
        &full_cluster(2, cap, at(0)),
        &mut ClusterMemory::default(),
        at(0),
    );
    assert_eq!(p.status.desired, 3, "{:?}", p.status);
    let note = p.scaling.expect("a scale-up").note;
    let capped = scaling::with_capacity(&pc.spec.autoscaling, i64::try_from(cap).ok());
    assert!(capped.target_connections_per_pod < i64::try_from(cap).unwrap());
    assert!(
        note.contains(&format!(
            "target {} per pod",
            capped.target_connections_per_pod
        )),
        "{note}"
    );
}
