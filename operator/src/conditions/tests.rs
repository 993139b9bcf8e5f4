//! Tests for condition bookkeeping.

use k8s_openapi::jiff::Timestamp;

use super::*;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

#[test]
fn transition_time_moves_only_on_status_change() {
    let mut conds = Vec::new();
    let ready = |status, reason: &'static str| Cond {
        type_: "Ready",
        status,
        reason,
        message: String::new(),
    };
    set(&mut conds, ready(false, "Pending"), Some(1), &t(10));
    assert_eq!(conds.len(), 1);
    set(&mut conds, ready(false, "StillPending"), Some(2), &t(20));
    assert_eq!(conds[0].last_transition_time, t(10));
    assert_eq!(conds[0].reason, "StillPending");
    assert_eq!(conds[0].observed_generation, Some(2));
    set(&mut conds, ready(true, "Ready"), Some(2), &t(30));
    assert_eq!(conds[0].last_transition_time, t(30));
    assert!(is_true(&conds, "Ready"));
    assert!(!is_true(&conds, "Scaling"));
}
