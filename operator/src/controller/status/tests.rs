//! The status step: the condition table.

use super::*;

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
