use super::*;

#[test]
fn shed_splits_in_proportion() {
    assert_eq!(split_shed(10, &[100, 100]), vec![5, 5]);
    assert_eq!(split_shed(3, &[300, 100]), vec![2, 1]);
    assert_eq!(split_shed(4, &[1, 0, 9]), vec![0, 0, 4]);
}

#[test]
fn shed_never_asks_more_than_a_shard_has() {
    assert_eq!(split_shed(50, &[3, 4]), vec![3, 4]);
    assert_eq!(split_shed(0, &[3, 4]), vec![0, 0]);
    assert_eq!(split_shed(5, &[]), Vec::<usize>::new());
}

#[test]
fn shed_total_is_exact() {
    for count in 0..40 {
        let per_shard = [7, 13, 0, 5];
        let split = split_shed(count, &per_shard);
        assert_eq!(
            split.iter().sum::<usize>(),
            count.min(25),
            "{count}: {split:?}"
        );
        for (s, n) in split.iter().zip(per_shard) {
            assert!(*s <= n);
        }
    }
}

#[test]
fn rss_is_read_from_proc() {
    assert!(rss_bytes().unwrap() > 0);
}

#[test]
fn a_shed_a_full_shard_refused_is_not_reported_ok_and_a_drain_still_is() {
    use prometheus_client::registry::Registry;
    let metrics = crate::metrics::Metrics::register(&mut Registry::default());
    let poll = mio::Poll::new().unwrap();
    let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), mio::Token(1)).unwrap());
    let (sender, _inbox) = crate::hub::inbox(waker);
    let hub = Hub::new(vec![sender], metrics.clone());
    let capacity = Capacity::new(metrics, 100, 1);
    assert!(capacity.try_admit(0) && capacity.try_admit(0));
    // A flood: the inbox is full of messages, its command headroom of sheds.
    while crate::hub::Publish::publish(&hub, "a", "1".into()).is_ok() {}
    while hub.shed(&[1], Duration::from_secs(1)) == 0 {}

    let reply = apply(
        &hub,
        &capacity,
        ControlRequest::Shed {
            count: 2,
            over_ms: 1000,
        },
    );
    assert!(!reply.ok, "{reply:?}");
    assert_eq!(reply.closing, 0);
    assert!(
        reply
            .error
            .as_deref()
            .is_some_and(|e| e.contains("inbox is full")),
        "{reply:?}"
    );

    let reply = apply(&hub, &capacity, ControlRequest::Drain { over_ms: 1000 });
    assert!(reply.ok, "{reply:?}");
    assert!(reply.draining);
    assert_eq!(reply.closing, 2);
}

/// Review 2, finding 6: a shed one shard refused (its inbox full) while another took its part is
/// `ok`, with `closing` the part taken, so the operator counts the connections that do close.
#[test]
fn a_shed_partly_refused_is_ok_with_the_part_taken() {
    use prometheus_client::registry::Registry;
    let metrics = crate::metrics::Metrics::register(&mut Registry::default());
    let mut polls = Vec::new();
    let mut senders = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..2 {
        let poll = mio::Poll::new().unwrap();
        let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), mio::Token(1)).unwrap());
        let (sender, inbox) = crate::hub::inbox(waker);
        senders.push(sender);
        inboxes.push(inbox);
        polls.push(poll);
    }
    let hub = Hub::new(senders, metrics.clone());
    let capacity = Capacity::new(metrics, 100, 2);
    for shard in [0, 0, 1, 1] {
        assert!(capacity.try_admit(shard));
    }
    // Shard 0 flooded (nobody runs it: its inbox fills up to the command headroom); shard 1
    // is not.
    while hub.shed(&[1, 0], Duration::from_secs(1)) == 0 {}
    assert_eq!(
        hub.shed(&[0, 1], Duration::from_secs(1)),
        0,
        "shard 1 takes sheds"
    );

    let reply = apply(
        &hub,
        &capacity,
        ControlRequest::Shed {
            count: 4,
            over_ms: 1000,
        },
    );
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.closing, 2, "{reply:?}");
    assert!(
        reply
            .error
            .as_deref()
            .is_some_and(|e| e.contains("2 of the 4") && e.contains("inbox is full")),
        "{reply:?}"
    );
}
