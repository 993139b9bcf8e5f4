use super::*;

#[test]
fn a_connection_gets_its_budget_per_window_then_a_new_one() {
    let budget = ReplayBudget::new(3);
    let start = Instant::now();
    assert!((0..3).all(|_| budget.take(7, start)));
    assert!(!budget.take(7, start + Duration::from_secs(59)));
    // Another connection has its own.
    assert!(budget.take(8, start));
    assert!(budget.take(7, start + WINDOW));
}

#[test]
fn entries_of_connections_gone_are_swept_as_the_map_grows() {
    let budget = ReplayBudget::new(1);
    let start = Instant::now();
    for ticket in 0..FIRST_SWEEP_AT as u64 {
        assert!(budget.take(ticket, start));
    }
    // A window later the old entries are expired and swept when the next one comes.
    assert!(budget.take(u64::MAX, start + WINDOW));
    assert_eq!(budget.tracked(), 1);
    budget.forget(u64::MAX);
    assert_eq!(budget.tracked(), 0);
}
