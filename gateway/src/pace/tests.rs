use super::*;

#[test]
fn closes_spread_evenly_over_the_window() {
    let start = Instant::now();
    let pace = Pace {
        start,
        over: Duration::from_secs(10),
        total: 100,
    };
    assert_eq!(pace.target(start), 0);
    assert_eq!(pace.target(start + Duration::from_secs(1)), 10);
    assert_eq!(pace.target(start + Duration::from_millis(5_001)), 51);
    assert_eq!(pace.target(start + Duration::from_secs(10)), 100);
    assert_eq!(pace.target(start + Duration::from_secs(60)), 100);
}

#[test]
fn a_zero_window_closes_everything_at_once() {
    let start = Instant::now();
    let pace = Pace {
        start,
        over: Duration::ZERO,
        total: 7,
    };
    assert_eq!(pace.target(start), 7);
}

#[test]
fn few_connections_go_one_by_one() {
    let start = Instant::now();
    let pace = Pace {
        start,
        over: Duration::from_secs(4),
        total: 2,
    };
    assert_eq!(pace.target(start + Duration::from_millis(1)), 1);
    assert_eq!(pace.target(start + Duration::from_millis(2_001)), 2);
}

#[test]
fn expiry_includes_the_grace() {
    let start = Instant::now();
    let pace = Pace {
        start,
        over: Duration::from_secs(1),
        total: 1,
    };
    assert!(!pace.expired(start + Duration::from_secs(2), Duration::from_secs(3)));
    assert!(pace.expired(start + Duration::from_secs(4), Duration::from_secs(3)));
}
