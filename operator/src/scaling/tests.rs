//! Tests for the scaling plan, victim choice and balancing.

use volley_crds::AutoscalingSpec;

use super::*;

fn spec(min: i32, max: i32, target: i64, window: i64) -> AutoscalingSpec {
    AutoscalingSpec {
        min_replicas: min,
        max_replicas: max,
        target_connections_per_pod: target,
        scale_down_stabilization_seconds: window,
        ..Default::default()
    }
}

fn pod(name: &str, connections: u64) -> PodView {
    PodView {
        name: name.into(),
        connections,
        accepting: true,
        draining: false,
    }
}

fn decide(s: &AutoscalingSpec, current: i32, total: u64, now: u64, h: &mut History) -> i32 {
    let pods = [pod("a", total)];
    desired_replicas(
        ScaleInput {
            spec: s,
            current,
            pods: &pods,
            stats_complete: true,
            now,
        },
        h,
    )
}

#[test]
fn recommend_rounds_up_and_clamps() {
    let s = spec(2, 5, 100, 0);
    assert_eq!(recommend(&s, 0), 2);
    assert_eq!(recommend(&s, 250), 3);
    assert_eq!(recommend(&s, 300), 3);
    assert_eq!(recommend(&s, 301), 4);
    assert_eq!(recommend(&s, 1_000_000), 5);
}

#[test]
fn scale_up_is_immediate() {
    let s = spec(1, 10, 100, 300);
    let mut h = History::default();
    assert_eq!(decide(&s, 2, 650, 1000, &mut h), 7);
}

#[test]
fn scale_down_waits_for_a_full_window_then_takes_the_window_max() {
    let s = spec(1, 10, 100, 60);
    let mut h = History::default();
    // Fresh history: hold even though load dropped.
    assert_eq!(decide(&s, 5, 100, 1000, &mut h), 5);
    assert_eq!(decide(&s, 5, 300, 1030, &mut h), 5);
    // Window covered: the highest recommendation within 60s (3 at t=1030) wins.
    assert_eq!(decide(&s, 5, 100, 1060, &mut h), 3);
    // Once the 300 sample ages out, go to the current recommendation.
    assert_eq!(decide(&s, 3, 100, 1100, &mut h), 1);
}

#[test]
fn incomplete_stats_never_scale_down() {
    let s = spec(1, 10, 100, 0);
    let mut h = History::default();
    let pods = [pod("a", 10)];
    let input = ScaleInput {
        spec: &s,
        current: 4,
        pods: &pods,
        stats_complete: false,
        now: 10,
    };
    assert_eq!(desired_replicas(input, &mut h), 4);
}

#[test]
fn out_of_bounds_moves_into_bounds() {
    let s = spec(3, 6, 100, 300);
    let mut h = History::default();
    assert_eq!(decide(&s, 1, 0, 5, &mut h), 3);
    assert_eq!(decide(&s, 9, 0, 6, &mut h), 6);
}

#[test]
fn history_is_pruned_to_the_window() {
    let s = spec(1, 10, 100, 10);
    let mut h = History::default();
    for t in 0..100 {
        decide(&s, 1, 0, t, &mut h);
    }
    assert!(h.len() <= 11, "{}", h.len());
}

#[test]
fn victims_are_the_emptiest() {
    let pods = [pod("c", 5), pod("a", 50), pod("b", 5), pod("d", 0)];
    assert_eq!(scale_down_victims(&pods, 2), ["d", "b"]);
    assert_eq!(scale_down_victims(&pods, 0), Vec::<String>::new());
    assert_eq!(deletion_cost(7), 7);
    assert_eq!(deletion_cost(u64::MAX), i32::MAX);
}

#[test]
fn shed_plan_after_scale_up() {
    // Two old full pods, two new empty pods: mean 500.
    let pods = [
        pod("old-1", 1000),
        pod("old-2", 1000),
        pod("new-1", 0),
        pod("new-2", 0),
    ];
    assert!(!is_balanced(&pods, 0.2));
    let plan = shed_plan(&pods, 0.2, 10_000);
    assert_eq!(
        plan,
        [("old-1".to_string(), 500), ("old-2".to_string(), 500)]
    );
    // The budget bounds the total.
    let plan = shed_plan(&pods, 0.2, 600);
    assert_eq!(
        plan,
        [("old-1".to_string(), 500), ("old-2".to_string(), 100)]
    );
    assert!(shed_plan(&pods, 0.2, 0).is_empty());
}

#[test]
fn balanced_clusters_shed_nothing() {
    let pods = [pod("a", 100), pod("b", 110), pod("c", 95)];
    assert!(is_balanced(&pods, 0.2));
    assert!(shed_plan(&pods, 0.2, 1000).is_empty());
    // Draining and non-accepting pods are ignored.
    let mut draining = pod("d", 10_000);
    draining.draining = true;
    let pods = [pod("a", 100), pod("b", 100), draining];
    assert!(shed_plan(&pods, 0.2, 1000).is_empty());
    assert!(is_balanced(&[pod("only", 5)], 0.0));
}

#[test]
fn shed_budget_refills_every_minute() {
    let mut b = ShedBudget::default();
    assert_eq!(b.available(100, 50), 50);
    b.spend(30);
    assert_eq!(b.available(120, 50), 20);
    b.spend(30);
    assert_eq!(b.available(130, 50), 0);
    assert_eq!(b.available(160, 50), 50);
}
