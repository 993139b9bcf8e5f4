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

#[test]
fn a_client_address_gets_its_budget_per_window_whatever_its_connections() {
    let mut budget = IpReplayBudget::new(3);
    let start = Instant::now();
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert!((0..3).all(|_| budget.take(ip, start)));
    assert!(!budget.take(ip, start + Duration::from_secs(59)));
    // Its IPv4-mapped IPv6 form is the same client.
    assert!(!budget.take("::ffff:10.0.0.1".parse().unwrap(), start));
    assert!(budget.take(ip, start + WINDOW), "a new window");
    assert_eq!(budget.slots.len(), IP_SLOTS, "memory is fixed");
}

#[test]
fn ipv6_addresses_count_per_64_block() {
    let mut budget = IpReplayBudget::new(2);
    let start = Instant::now();
    assert!(budget.take("2001:db8:0:1::1".parse().unwrap(), start));
    assert!(budget.take("2001:db8:0:1::2".parse().unwrap(), start));
    assert!(
        !budget.take("2001:db8:0:1:ffff::9".parse().unwrap(), start),
        "same /64"
    );
}

#[test]
fn other_addresses_keep_their_budget_unless_they_share_a_slot() {
    let mut budget = IpReplayBudget::new(1);
    let start = Instant::now();
    assert!(budget.take("10.0.0.1".parse().unwrap(), start));
    // With one replay each, an address is refused only when an earlier one took its slot: about
    // 5 of 100 addresses in 1024 slots (birthday bound), so nearly all get theirs.
    let granted = (0..100u8)
        .filter(|n| budget.take(IpAddr::from([10, 0, 1, *n]), start))
        .count();
    assert!(granted >= 80, "{granted} of 100 got a replay");
}
