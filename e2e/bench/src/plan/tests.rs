use super::*;

#[test]
fn split_is_even_bounded_and_covers_everything() {
    let parts = split(19_000, 7_000);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), 19_000);
    assert!(parts.iter().all(|r| r.len() <= 7_000 && r.len() >= 6_333));
    for w in parts.windows(2) {
        assert_eq!(w[0].end, w[1].start);
    }
    assert_eq!(split(0, 10), Vec::<Range<usize>>::new());
    assert_eq!(split(5, 10), vec![0..5]);
    assert_eq!(split(10, 0).len(), 10);
}

#[test]
fn sources_round_robin_from_127_0_0_2() {
    let got: Vec<Ipv4Addr> = (0..5).map(|i| source_addr(i, 3)).collect();
    assert_eq!(
        got,
        [
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.2",
            "127.0.0.3"
        ]
        .map(|s| s.parse::<Ipv4Addr>().unwrap())
    );
    assert_eq!(source_addr(7, 0), Ipv4Addr::new(127, 0, 0, 2));
}

#[test]
fn shapes_and_subscriber_counts() {
    assert_eq!(query(&Shape::Shared, None, 3), "?topics=bench.all");
    assert_eq!(query(&Shape::PerUser, None, 3), "?topics=user.3,bench.all");
    let subs = subscribers(&Shape::PerUser, 10, &[4, 9]);
    assert_eq!(subs["bench.all"], 8);
    assert_eq!(subs["user.3"], 1);
    assert!(!subs.contains_key("user.4"));

    let shape = Shape::Zipf {
        topics: 20,
        s: 1.0,
        seed: 42,
    };
    let plan = ZipfPlan::new(20, 1.0, 42);
    // The same connection gets the same topic whichever way it is computed.
    assert_eq!(shape.topics(17), vec![plan.topic(17)]);
    let subs = subscribers(&shape, 5000, &[]);
    assert_eq!(subs.values().sum::<u64>(), 5000);
    assert!(subs["zipf.0"] > subs.get("zipf.10").copied().unwrap_or(0));
}

#[test]
fn split_over_gives_every_gateway_the_same_number_of_processes() {
    // 50,000 at 7,000 per process is 8 processes; over 3 gateways that becomes 9.
    let parts = split_over(50_000, 7_000, 3);
    assert_eq!(parts.len(), 9);
    assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), 50_000);
    let mut per_gateway = [0usize; 3];
    for (k, r) in parts.iter().enumerate() {
        per_gateway[group_of(k, 3)] += r.len();
    }
    assert!(per_gateway.iter().all(|&c| (16_666..=16_668).contains(&c)));
    // The brief's small run: 300 at 120 per process, 3 processes, one per gateway.
    assert_eq!(split_over(300, 120, 3), vec![0..100, 100..200, 200..300]);
    // One group is plain `split`.
    assert_eq!(split_over(19_000, 7_000, 1), split(19_000, 7_000));
    // Fewer connections than groups: no empty ranges.
    assert_eq!(split_over(2, 10, 3), vec![0..1, 1..2]);
    assert!(split_over(0, 10, 3).is_empty());
}

#[test]
fn groups_are_round_robin() {
    let got: Vec<usize> = (0..7).map(|k| group_of(k, 3)).collect();
    assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    assert_eq!(group_of(5, 0), 0);
}
