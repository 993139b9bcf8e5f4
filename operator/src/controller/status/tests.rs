//! The status step: the condition table.

use super::*;
use crate::scaling::PodView;

fn facts<'a>(nats: &'a NatsView, desired: i32, replicas: i32, ready: i32) -> Facts<'a> {
    Facts {
        nats,
        desired,
        replicas,
        ready,
        current: replicas,
        balanced: true,
        shedding: 0,
        paused: Vec::new(),
        balance_enabled: true,
        not_ready: Vec::new(),
        hold: None,
        overridden: None,
        limited: None,
    }
}

#[test]
fn condition_table() {
    let conds = status_conditions(&facts(&NatsView::Standalone, 3, 3, 3));
    let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert!(by_type("Ready").status);
    assert!(!by_type("Scaling").status);
    assert!(by_type("Balanced").status);
    let failed = NatsView::Failed("boom".into());
    let mut f = facts(&failed, 2, 3, 1);
    f.balanced = false;
    f.shedding = 40;
    f.not_ready = vec!["web-b (not ready)".into(), "web-c (draining)".into()];
    let conds = status_conditions(&f);
    let by_type = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(by_type("Scaling").reason, "ScalingDown");
    assert_eq!(by_type("Balanced").reason, "Shedding");
    assert_eq!(by_type("NatsConnected").message, "boom");
    let ready = by_type("Ready");
    assert!(!ready.status);
    assert_eq!(
        ready.message,
        "1/2 gateway pods ready; not serving: web-b (not ready), web-c (draining)"
    );
    // Between the pause and the shed of a round, Balanced says so.
    let mut f = facts(&NatsView::Standalone, 4, 4, 4);
    f.balanced = false;
    f.paused = vec!["web-a".into(), "web-b".into()];
    let conds = status_conditions(&f);
    let balanced = conds.iter().find(|c| c.type_ == "Balanced").unwrap();
    assert_eq!(balanced.reason, "Shedding");
    assert!(
        balanced.message.contains("web-a, web-b not accepting"),
        "{}",
        balanced.message
    );
    // A held scale-down and an overridden spec.replicas are explained in Scaling.
    let mut f = facts(&NatsView::Standalone, 2, 4, 4);
    f.current = 4;
    f.hold = Some("4 -> 2: waiting for web-a to turn NotReady");
    f.overridden = Some(7);
    let conds = status_conditions(&f);
    let scaling = conds.iter().find(|c| c.type_ == "Scaling").unwrap();
    assert!(scaling.status);
    assert_eq!(
        scaling.message,
        "4 -> 2: waiting for web-a to turn NotReady; spec.replicas=7 is overridden by the \
         autoscaler (mode Operator)"
    );
}

/// Finding 13: held at maxReplicas (or minReplicas) while the load asks for more (fewer), the
/// Scaling condition says ScalingLimited and what was needed, like the HPA's condition.
#[test]
fn a_decision_held_at_a_bound_is_scaling_limited() {
    let text =
        "limited by maxReplicas 10: 25 replicas needed for 250000 connections at 10000 per pod";
    let mut f = facts(&NatsView::Connected, 10, 10, 10);
    f.limited = Some(text);
    let conds = status_conditions(&f);
    let scaling = conds.iter().find(|c| c.type_ == "Scaling").unwrap();
    assert_eq!((scaling.status, scaling.reason), (false, "ScalingLimited"));
    assert_eq!(scaling.message, format!("10 replicas; {text}"));
    // While it still scales towards the bound, the reason is the move, the limit a note.
    let mut f = facts(&NatsView::Connected, 10, 5, 5);
    f.limited = Some(text);
    let conds = status_conditions(&f);
    let scaling = conds.iter().find(|c| c.type_ == "Scaling").unwrap();
    assert_eq!(scaling.reason, "ScalingUp");
    assert_eq!(scaling.message, format!("5 -> 10 replicas; {text}"));
}

fn inputs(desired: i32, ready: i32, short_for: u64) -> StatusInputs {
    StatusInputs {
        desired,
        current: desired,
        replicas: desired,
        ready,
        seen: Vec::new(),
        views: Vec::new(),
        balanced: true,
        not_ready: vec!["web-b (not ready)".into()],
        hold: None,
        overridden: None,
        limited: None,
        short_for,
    }
}

fn was_ready() -> PushCluster {
    let mut pc = PushCluster::new("web", volley_crds::PushClusterSpec::default());
    pc.metadata.generation = Some(4);
    let now = Time(Timestamp::now());
    let mut status = PushClusterStatus::default();
    let cond = Cond {
        type_: condition::READY,
        status: true,
        reason: "AllReplicasReady",
        message: "2/2 gateway pods ready".into(),
    };
    conditions::set(&mut status.conditions, cond, Some(3), &now);
    pc.status = Some(status);
    pc
}

#[test]
fn ready_keeps_its_state_within_the_grace_then_names_the_pods() {
    let pc = was_ready();
    let now = Time(Timestamp::now());
    let grace = std::time::Duration::from_secs(20);
    // (seconds short) -> Ready status
    for (short_for, ready) in [(0, "True"), (19, "True"), (20, "False")] {
        let s = status(
            &pc,
            &NatsView::Standalone,
            &inputs(2, 1, short_for),
            &Outcome::default(),
            grace,
            &now,
        );
        let cond = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(cond.status, ready, "{short_for}s short");
        if ready == "False" {
            assert_eq!(
                cond.message,
                "1/2 gateway pods ready; not serving: web-b (not ready)"
            );
        }
        assert_eq!(
            (s.desired_replicas, s.ready_replicas, s.observed_generation),
            (2, 1, Some(4))
        );
    }
}

/// Finding 15: the status total saturates instead of overflowing on counts from the network.
#[test]
fn the_connection_total_saturates_on_huge_counts() {
    let pc = was_ready();
    let now = Time(Timestamp::now());
    let view = |name: &str, connections| PodView {
        name: name.into(),
        connections,
        accepting: true,
        draining: false,
    };
    let mut s = inputs(2, 2, 0);
    s.views = vec![view("web-a", u64::MAX), view("web-b", u64::MAX)];
    let st = status(
        &pc,
        &NatsView::Standalone,
        &s,
        &Outcome::default(),
        std::time::Duration::from_secs(20),
        &now,
    );
    assert_eq!(st.connections, i64::MAX);
}

#[test]
fn an_invalid_spec_only_turns_ready_false() {
    let pc = was_ready();
    let now = Time(Timestamp::now());
    let s = invalid(&pc, "nats.url is bad".into(), &now);
    assert_eq!(s.conditions.len(), 1);
    let ready = &s.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", INVALID_SPEC)
    );
    assert_eq!(ready.message, "nats.url is bad");
    assert_eq!(
        s.selector,
        "app.kubernetes.io/name=volley-gateway,volley.dev/cluster=web"
    );
}
