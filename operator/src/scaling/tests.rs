//! Tests for the scaling plan, victim choice and balancing.

use volley_crds::AutoscalingSpec;

use super::*;

/// A spec with no up-window and no tolerance: the plain recommendation rules.
fn spec(min: i32, max: i32, target: i64, window: i64) -> AutoscalingSpec {
    AutoscalingSpec {
        min_replicas: min,
        max_replicas: max,
        target_connections_per_pod: target,
        scale_down_stabilization_seconds: window,
        scale_up_stabilization_seconds: 0,
        tolerance: 0.0,
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
            in_flight: 0,
            stats_complete: true,
            saturated: false,
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
    // The 300 sample was in force until t=1060, inside the window at t=1100: still 3.
    assert_eq!(decide(&s, 3, 100, 1100, &mut h), 3);
    // Once the window holds only the low recommendation, go to it.
    assert_eq!(decide(&s, 3, 100, 1121, &mut h), 1);
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
        in_flight: 0,
        stats_complete: false,
        saturated: false,
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

/// Finding 3: with no pod there is no load to scale up on, so 0 would be for good.
#[test]
fn operator_mode_never_decides_zero_even_with_min_replicas_zero() {
    let s = spec(0, 5, 100, 60);
    assert_eq!(recommend(&s, 0), 1);
    assert_eq!(bounds(&s), (1, 5));
    let mut h = History::default();
    let mut current = 1;
    // No pod reports any connection, well past the scale-down window.
    for t in (0..600).step_by(10) {
        let input = ScaleInput {
            spec: &s,
            current,
            pods: &[],
            in_flight: 0,
            stats_complete: true,
            saturated: false,
            now: 1000 + t,
        };
        current = desired_replicas(input, &mut h);
        assert_eq!(current, 1, "at t={t}");
    }
    // A cluster already at 0 (scaled there before this fix) comes back to 1 at once.
    let input = ScaleInput {
        spec: &s,
        current: 0,
        pods: &[],
        in_flight: 0,
        stats_complete: true,
        saturated: false,
        now: 2000,
    };
    assert_eq!(desired_replicas(input, &mut h), 1);
}

/// Finding 10, and finding 1 of review 2: the target is capped below the pod's hard cap divided
/// by `1 + tolerance`, so the load can leave the tolerance band before every pod is full.
#[test]
fn the_target_is_capped_below_max_connections_per_pod_over_the_tolerance() {
    let s = spec(1, 10, 10_000, 0);
    assert_eq!(with_capacity(&s, None), s);
    assert_eq!(with_capacity(&s, Some(20_000)), s);
    // Tolerance 0: anything below the cap.
    let capped = with_capacity(&s, Some(5_000));
    assert_eq!(capped.target_connections_per_pod, 4_999);
    // Three pods full at 5000 need a fourth, not ceil(15000 / 10000) = 2.
    assert_eq!(recommend(&s, 15_000), 2);
    assert_eq!(recommend(&capped, 15_000), 4);
    // The CRD rule's boundary, `target × (1 + tolerance) < cap`, for a few tolerances.
    for (tolerance, cap, want) in [(0.1, 5_000, 4_545), (0.25, 5_000, 3_999), (1.0, 3, 1)] {
        let mut t = s.clone();
        t.tolerance = tolerance;
        let got = with_capacity(&t, Some(cap)).target_connections_per_pod;
        assert_eq!(got, want, "tolerance {tolerance}, cap {cap}");
        #[allow(clippy::cast_precision_loss)]
        let fits = |x: i64| (x as f64) * (1.0 + tolerance) < cap as f64;
        assert!(
            fits(got) && !fits(got + 1),
            "tolerance {tolerance}, cap {cap}"
        );
    }
    // A target that already fits is kept.
    let mut low = s.clone();
    low.target_connections_per_pod = 4_000;
    low.tolerance = 0.1;
    assert_eq!(with_capacity(&low, Some(5_000)), low);
    // A nonsense cap (the schema says minimum 1) changes nothing.
    assert_eq!(with_capacity(&s, Some(0)), s);
}

#[test]
fn saturated_means_every_serving_pod_at_its_cap() {
    let full = |name: &str| pod(name, 5_000);
    assert!(saturated(&[full("a"), full("b")], 5_000));
    assert!(!saturated(&[full("a"), pod("b", 4_999)], 5_000));
    // A draining pod takes no clients whatever it holds.
    let mut draining = pod("c", 10);
    draining.draining = true;
    assert!(saturated(&[full("a"), draining.clone()], 5_000));
    assert!(!saturated(&[draining], 5_000));
    assert!(!saturated(&[], 5_000));
}

/// Finding 1 of review 2: pods never report more than their cap, so with the target at the cap
/// (a legacy object) and a 10% tolerance, three full pods sit "within tolerance" for good. Full
/// pods ask for one more, through the scale-up window, up to maxReplicas.
#[test]
fn a_full_cluster_asks_for_one_more_pod_through_the_tolerance_band() {
    let mut s = spec(1, 4, 5_000, 300);
    s.tolerance = 0.1;
    s.scale_up_stabilization_seconds = 15;
    let full = [pod("a", 5_000), pod("b", 5_000), pod("c", 5_000)];
    let input = |current, now, saturated| ScaleInput {
        spec: &s,
        current,
        pods: &full,
        in_flight: 0,
        stats_complete: true,
        saturated,
        now,
    };
    let mut h = History::default();
    assert_eq!(desired_replicas(input(3, 1000, false), &mut h), 3);
    let mut h = History::default();
    assert_eq!(desired_replicas(input(3, 1000, true), &mut h), 3);
    assert_eq!(desired_replicas(input(3, 1015, true), &mut h), 4);
    // At maxReplicas: no more, and the limit is said.
    assert_eq!(desired_replicas(input(4, 1030, true), &mut h), 4);
    assert_eq!(
        limit(&s, 4, 20_000, true, true),
        Some(Limit::Max { needed: 5, max: 4 })
    );
    assert_eq!(limit(&s, 4, 20_000, true, false), None);
}

/// Finding 15: counts come from any NATS publisher; two at u64::MAX must not overflow (a debug
/// build panics on a plain sum, a release build wraps to a small total).
#[test]
fn huge_connection_counts_saturate_instead_of_overflowing() {
    let pods = [pod("a", u64::MAX), pod("b", u64::MAX), pod("c", 5)];
    assert_eq!(total(&pods), u64::MAX);
    let s = spec(1, 10, 100, 0);
    let input = ScaleInput {
        spec: &s,
        current: 3,
        pods: &pods,
        in_flight: 10,
        stats_complete: true,
        saturated: false,
        now: 1000,
    };
    assert_eq!(effective_total(&input), u64::MAX - 10);
    assert_eq!(desired_replicas(input, &mut History::default()), 10);
    assert!(!is_balanced(&pods, 0.2));
    let plan = shed_plan(&pods, 0.2, 1_000);
    assert_eq!(plan.iter().map(|(_, n)| n).sum::<u64>(), 1_000);
    // Two drains of u64::MAX connections, wholly closed since the stats; a request time at the
    // end of the clock does not overflow either.
    let close = |pod: &str, at_ms| CloseRequest {
        pod: pod.into(),
        at_ms,
        count: u64::MAX,
        spread_ms: 10_000,
    };
    let closes = [close("a", 0), close("b", 0), close("c", u64::MAX - 1)];
    assert_eq!(in_flight(&closes, &|_| Some(0), 20_000), u64::MAX);
    let mut budget = ShedBudget {
        window_start: u64::MAX,
        used: 0,
    };
    assert_eq!(budget.available(u64::MAX, 5), 5);
}

/// Finding 13: the decision capped at a bound says what the load needed.
#[test]
fn limit_names_the_bound_and_the_count_the_load_needs() {
    let s = spec(2, 10, 10_000, 0);
    assert_eq!(
        limit(&s, 10, 250_000, true, false),
        Some(Limit::Max {
            needed: 25,
            max: 10
        })
    );
    // Not complete: the total is a lower bound, still above the max.
    assert!(matches!(
        limit(&s, 10, 250_000, false, false),
        Some(Limit::Max { .. })
    ));
    assert_eq!(limit(&s, 10, 100_000, true, false), None);
    assert_eq!(limit(&s, 5, 50_000, true, false), None);
    assert_eq!(
        limit(&s, 2, 5_000, true, false),
        Some(Limit::Min { needed: 1, min: 2 })
    );
    // An incomplete total cannot say fewer pods would do.
    assert_eq!(limit(&s, 2, 5_000, false, false), None);
    // The floor of 1 is the operator's own: an idle cluster at 1 is not "limited".
    assert_eq!(limit(&spec(1, 10, 10_000, 0), 1, 0, true, false), None);
    // Within the tolerance band of the max, the max is what the load asks for.
    let mut tolerant = s.clone();
    tolerant.tolerance = 0.1;
    assert_eq!(limit(&tolerant, 10, 105_000, true, false), None);
}

#[test]
fn history_is_pruned_to_the_window() {
    let s = spec(1, 10, 100, 10);
    let mut h = History::default();
    for t in 0..100 {
        decide(&s, 1, 0, t, &mut h);
    }
    assert!(h.len() <= 12, "{}", h.len());
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
fn pods_above_the_mean_that_shed_nothing_are_held_and_one_pod_always_takes_clients() {
    let pods = [pod("a", 437), pod("b", 163), pod("c", 0), pod("d", 0)];
    let plan = shed_plan(&pods, 0.2, 10_000);
    assert_eq!(plan, [("a".to_string(), 287)]);
    assert_eq!(hold_list(&pods, &plan), ["b"]);
    // Nothing shed: nothing held.
    assert!(hold_list(&pods, &[]).is_empty());
    // A draining pod is neither held nor counted in the mean.
    let mut draining = pod("e", 5_000);
    draining.draining = true;
    let pods = [
        pod("a", 437),
        pod("b", 163),
        pod("c", 0),
        pod("d", 0),
        draining,
    ];
    assert_eq!(hold_list(&pods, &plan), ["b"]);
    // Whatever the counts, some pod stays accepting when a plan exists.
    for counts in [[900, 899, 898, 0], [500, 200, 151, 149], [10, 9, 0, 0]] {
        let pods: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .zip(counts)
            .map(|(n, c)| pod(n, c))
            .collect();
        let plan = shed_plan(&pods, 0.2, 10_000);
        assert!(!plan.is_empty(), "{counts:?}");
        let held = hold_list(&pods, &plan);
        let paused = plan.len() + held.len();
        assert!(paused < pods.len(), "{counts:?}: {plan:?} {held:?}");
    }
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

/// The defaults: tolerance 10%, up-window 15s (three 5s stats intervals).
fn defaults(min: i32, max: i32, target: i64) -> AutoscalingSpec {
    AutoscalingSpec {
        min_replicas: min,
        max_replicas: max,
        target_connections_per_pod: target,
        ..Default::default()
    }
}

#[test]
fn tolerance_band_like_the_hpa() {
    let s = defaults(1, 10, 150);
    assert!(within_tolerance(&s, 4, 600));
    assert!(within_tolerance(&s, 4, 601));
    assert!(within_tolerance(&s, 4, 660));
    assert!(!within_tolerance(&s, 4, 661));
    assert!(within_tolerance(&s, 4, 540));
    assert!(!within_tolerance(&s, 4, 539));
    assert!(!within_tolerance(&s, 2, 600));
    assert!(!within_tolerance(&s, 0, 0));
}

#[test]
fn the_600_over_150_boundary_is_one_step_from_2_to_4() {
    // Issue 8: 600 clients, target 150, started on 2 pods. Every 5s a reconcile sees the total
    // (reconnect storms count some clients on two pods: 601, 640, one 700 spike).
    let s = defaults(1, 10, 150);
    let mut h = History::default();
    let totals = [
        600, 600, 600, 600, 601, 640, 700, 620, 601, 600, 600, 601, 600, 599, 600, 660, 600,
    ];
    let mut current = 2;
    let mut path = vec![current];
    for (i, total) in totals.iter().enumerate() {
        let now = 1000 + 5 * i as u64;
        let next = decide(&s, current, *total, now, &mut h);
        if next != current {
            path.push(next);
            current = next;
        }
    }
    assert_eq!(path, [2, 4], "replica path");
    // Keep going past the scale-down window at 601: still 4 (inside the band).
    for i in 0..80 {
        let now = 1100 + 5 * i;
        assert_eq!(decide(&s, current, 601, now, &mut h), 4);
    }
}

#[test]
fn a_transient_shorter_than_the_up_window_never_scales_up() {
    let s = defaults(1, 10, 100);
    let mut h = History::default();
    // Settled at 4 × 100.
    for t in (0..30).step_by(5) {
        assert_eq!(decide(&s, 4, 400, t, &mut h), 4);
    }
    // Double counts during a rebalance: 520 for 10s (two stats intervals).
    assert_eq!(decide(&s, 4, 520, 30, &mut h), 4);
    assert_eq!(decide(&s, 4, 520, 35, &mut h), 4);
    assert_eq!(decide(&s, 4, 400, 40, &mut h), 4);
    // Real growth held for the whole window scales up, to the lowest recommendation seen.
    assert_eq!(decide(&s, 4, 700, 45, &mut h), 4);
    assert_eq!(decide(&s, 4, 900, 50, &mut h), 4);
    assert_eq!(decide(&s, 4, 700, 55, &mut h), 4);
    assert_eq!(decide(&s, 4, 700, 60, &mut h), 7);
}

#[test]
fn a_fresh_operator_waits_one_up_window_before_scaling_up() {
    let s = defaults(1, 10, 100);
    let mut h = History::default();
    assert_eq!(decide(&s, 2, 1000, 100, &mut h), 2);
    assert_eq!(decide(&s, 2, 1000, 110, &mut h), 2);
    assert_eq!(decide(&s, 2, 1000, 115, &mut h), 10);
}

#[test]
fn connections_in_flight_are_counted_once() {
    let s = defaults(1, 10, 150);
    let mut h = History::default();
    // 4 pods settled at 600; a drain of 150 is in flight and counted on both sides.
    let pods = [pod("a", 150), pod("b", 150), pod("c", 225), pod("d", 225)];
    for t in [0, 5, 10, 15, 20] {
        let input = ScaleInput {
            spec: &s,
            current: 4,
            pods: &pods,
            in_flight: 150,
            stats_complete: true,
            saturated: false,
            now: t,
        };
        assert_eq!(effective_total(&input), 600);
        assert_eq!(desired_replicas(input, &mut h), 4);
    }
}

#[test]
fn in_flight_is_what_closed_after_the_pods_last_stats() {
    let req = |pod: &str, at_ms, count| CloseRequest {
        pod: pod.into(),
        at_ms,
        count,
        spread_ms: 10_000,
    };
    let reqs = [req("a", 1_000, 300), req("b", 1_000, 100)];
    // a's stats are from before the shed, b's from halfway through it.
    let stats = |p: &str| match p {
        "a" => Some(500),
        "b" => Some(6_000),
        _ => None,
    };
    // At 6s: a closed half of 300 since its stats; b nothing since its stats.
    assert_eq!(in_flight(&reqs, &stats, 6_000), 150);
    // At 11s (spread over): all of a's 300, and b's second half (50).
    assert_eq!(in_flight(&reqs, &stats, 11_000), 350);
    // Stats taken after the spread ended count nothing in flight.
    let fresh = |_: &str| Some(12_000);
    assert_eq!(in_flight(&reqs, &fresh, 13_000), 0);
    // A pod without stats counts nothing (its connections are not in the total either).
    let none = |_: &str| None;
    assert_eq!(in_flight(&reqs, &none, 13_000), 0);
}
