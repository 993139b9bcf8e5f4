use super::*;

#[test]
fn loss_counts_missing_and_extra() {
    let l = Loss::new(1000, 990);
    assert_eq!((l.lost, l.extra), (10, 0));
    assert!((l.loss_ratio - 0.01).abs() < 1e-12);
    let l = Loss::new(10, 12);
    assert_eq!((l.lost, l.extra, l.loss_ratio), (0, 2, 0.0));
    assert_eq!(Loss::new(0, 0).loss_ratio, 0.0);
    assert_eq!(expected_for(false, 500), 0);
    assert_eq!(expected_for(true, 500), 500);
}

#[test]
fn tallies_merge_per_phase() {
    let mut a = Tallies::new();
    let mut b = Tallies::new();
    let mut t = PhaseTally {
        received: 3,
        ..PhaseTally::default()
    };
    t.latency.record_n(100, 3);
    a.insert(1, t.clone());
    b.insert(1, t.clone());
    b.insert(2, t);
    merge(&mut a, &b);
    assert_eq!(a[&1].received, 6);
    assert_eq!(a[&1].latency.count(), 6);
    assert_eq!(a[&2].received, 3);
    // A small run: 2 processes × 100 clients, 5 messages each, one client missed one.
    let expected = 5 * 200;
    let received = a.values().map(|t| t.received).sum::<u64>() + expected - 9 - 1;
    assert_eq!(Loss::new(expected, received).lost, 1);
}
