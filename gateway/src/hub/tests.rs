use super::*;

use prometheus_client::registry::Registry;

/// A hub over `n` inboxes of `capacity` messages; the polls keep the wakers valid.
fn hub(n: usize, capacity: usize) -> (Hub, Vec<Inbox>, Vec<mio::Poll>) {
    let mut polls = Vec::new();
    let mut senders = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..n {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(1)).unwrap());
        let (sender, inbox) = inbox_with_capacity(waker, capacity);
        senders.push(sender);
        inboxes.push(inbox);
        polls.push(poll);
    }
    let metrics = Metrics::register(&mut Registry::default());
    (Hub::new(senders, metrics), inboxes, polls)
}

fn drain_all(inbox: &Inbox) -> Vec<Command> {
    std::iter::from_fn(|| inbox.try_next()).collect()
}

#[test]
fn publish_reaches_every_shard_or_none() {
    let (hub, inboxes, _polls) = hub(3, 2);
    hub.publish("a", Bytes::from_static(b"1")).unwrap();
    hub.publish("a", Bytes::from_static(b"2")).unwrap();
    // Shards 0 and 2 catch up; shard 1 stays full.
    assert_eq!(drain_all(&inboxes[0]).len(), 2);
    assert_eq!(drain_all(&inboxes[2]).len(), 2);
    assert_eq!(
        hub.publish("a", Bytes::from_static(b"3")),
        Err(PublishError::Overloaded)
    );
    // Refused means refused everywhere: a retry cannot make a duplicate.
    assert!(drain_all(&inboxes[0]).is_empty());
    assert!(drain_all(&inboxes[2]).is_empty());
    // And the room claimed in the shards that had it was given back.
    assert_eq!(drain_all(&inboxes[1]).len(), 2);
    hub.publish("a", Bytes::from_static(b"4")).unwrap();
    hub.publish("a", Bytes::from_static(b"5")).unwrap();
    for inbox in &inboxes {
        assert_eq!(drain_all(inbox).len(), 2);
    }
}

#[test]
fn drain_and_shed_never_block_on_a_full_inbox() {
    let (hub, inboxes, _polls) = hub(2, 1);
    hub.publish("a", Bytes::from_static(b"1")).unwrap();
    // Both inboxes are full of messages; these would have blocked on a bounded channel.
    hub.shed(&[1, 0], Duration::from_secs(1));
    hub.drain(Duration::from_secs(1));
    let first: Vec<Command> = drain_all(&inboxes[0]);
    assert!(matches!(first[0], Command::Deliver(_)));
    assert!(matches!(first[1], Command::Shed { count: 1, .. }));
    assert!(matches!(first[2], Command::Drain { .. }));
    assert_eq!(drain_all(&inboxes[1]).len(), 2);
}

#[test]
fn commands_are_bounded_too() {
    let (hub, inboxes, _polls) = hub(1, 1);
    for _ in 0..(1 + COMMAND_HEADROOM) * 2 {
        hub.shed(&[1], Duration::from_secs(1));
    }
    assert_eq!(drain_all(&inboxes[0]).len(), 1 + COMMAND_HEADROOM);
}

#[test]
fn deliver_counts_the_shards_that_were_full() {
    let (hub, inboxes, _polls) = hub(2, 1);
    let message = Message::new("a", Bytes::from_static(b"1"));
    assert_eq!(hub.deliver(&message, 0b11), 0);
    assert_eq!(hub.deliver(&message, 0b11), 2);
    assert_eq!(drain_all(&inboxes[0]).len(), 1);
    assert_eq!(hub.deliver(&message, 0b11), 1);
}
