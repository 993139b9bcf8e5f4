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

fn sequenced(topic: &str, seq: u64) -> Arc<Message> {
    Message::with_seq(topic, Bytes::from_static(b"1"), Some(seq))
}

fn lost_topics(lost: &Lost) -> Vec<&str> {
    let mut topics: Vec<&str> = lost.topics.iter().map(|t| &**t).collect();
    topics.sort_unstable();
    topics
}

#[test]
fn a_dropped_sequenced_message_queues_one_lost_mark_ahead_of_what_follows() {
    let (hub, inboxes, _polls) = hub(2, 1);
    assert_eq!(hub.deliver(&sequenced("a", 1), 0b11), 0);
    // Shard 0 is full: two sequenced messages and one without a sequence are dropped for it.
    assert_eq!(hub.deliver(&sequenced("a", 2), 0b01), 1);
    assert_eq!(hub.deliver(&sequenced("b", 3), 0b01), 1);
    assert_eq!(
        hub.deliver(&Message::new("core", Bytes::from_static(b"x")), 0b01),
        1
    );
    let taken = drain_all(&inboxes[0]);
    // The message it had, then one mark for both losses (not one per loss).
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert!(matches!(taken[0], Command::Deliver(_)));
    assert!(matches!(taken[1], Command::Lost));
    let lost = inboxes[0].take_lost();
    assert_eq!(lost_topics(&lost), ["a", "b"], "core topics are not marked");
    // Shard 1 lost nothing.
    assert_eq!(drain_all(&inboxes[1]).len(), 1);
    assert_eq!(inboxes[1].take_lost(), Lost::default());

    // Once taken, a new loss queues a new mark, behind the message that filled the inbox and
    // ahead of every message sent after it.
    assert_eq!(hub.deliver(&sequenced("c", 4), 0b01), 0);
    assert_eq!(hub.deliver(&sequenced("c", 5), 0b01), 1);
    let taken = drain_all(&inboxes[0]);
    assert!(matches!(taken[..], [Command::Deliver(_), Command::Lost]));
    assert_eq!(hub.deliver(&sequenced("c", 6), 0b01), 0);
    assert!(matches!(drain_all(&inboxes[0])[..], [Command::Deliver(_)]));
    assert_eq!(lost_topics(&inboxes[0].take_lost()), ["c"]);
}

#[test]
fn a_mark_over_its_topic_cap_covers_every_open_connection() {
    let mut index = TopicIndex::new();
    index.insert("a.>", 1);
    index.insert("a.x", 2);
    index.insert("b", 3);
    let mut lost = Lost::default();
    lost.add("a.x");
    lost.add("a.x");
    assert_eq!(lost.affected(&index, [1, 2, 3, 4].into_iter()), [1, 2]);
    for i in 0..MAX_LOST_TOPICS {
        lost.add(&format!("t{i}"));
    }
    assert!(lost.all);
    assert!(lost.topics.is_empty(), "the names are let go");
    assert_eq!(lost.affected(&index, [4, 3, 1].into_iter()), [1, 3, 4]);
}

/// Fills shard 0's inbox with messages, then its command headroom with sheds.
fn fill_with_commands(hub: &Hub) {
    while hub.publish("a", Bytes::from_static(b"1")).is_ok() {}
    let mut sheds = 0;
    while hub.shed(&[1], Duration::from_secs(1)) == 0 {
        sheds += 1;
        assert!(sheds <= COMMAND_HEADROOM, "the command headroom is bounded");
    }
}

#[test]
fn a_shed_refused_by_a_full_inbox_is_reported() {
    let (hub, _inboxes, _polls) = hub(1, 1);
    fill_with_commands(&hub);
    assert_eq!(hub.shed(&[3], Duration::from_secs(1)), 3);
    assert_eq!(hub.shed(&[0], Duration::from_secs(1)), 0);
}

#[test]
fn a_drain_reaches_a_shard_whose_inbox_is_full_even_for_commands_once() {
    let (hub, inboxes, _polls) = hub(1, 1);
    fill_with_commands(&hub);
    assert_eq!(hub.drain(Duration::from_secs(3)), 0);
    // A second drain is not queued again: one is all a shard needs.
    assert_eq!(hub.drain(Duration::from_secs(5)), 0);
    let drains: Vec<Duration> = drain_all(&inboxes[0])
        .into_iter()
        .filter_map(|c| match c {
            Command::Drain { over } => Some(over),
            _ => None,
        })
        .collect();
    assert_eq!(drains, vec![Duration::from_secs(3)]);
}

#[test]
fn a_command_is_no_larger_than_four_words() {
    // Every queued message is one of these in a shard's inbox (up to 16 Ki of them): the
    // router's answer to an ask must not make every entry larger.
    assert!(
        std::mem::size_of::<Command>() <= 32,
        "{}",
        std::mem::size_of::<Command>()
    );
}
