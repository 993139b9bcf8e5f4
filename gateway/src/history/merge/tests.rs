use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct M(&'static str, Option<u64>);

impl Positioned for M {
    fn topic(&self) -> &str {
        self.0
    }
    fn seq(&self) -> Option<u64> {
        self.1
    }
}

fn m(topic: &'static str, seq: u64) -> M {
    M(topic, Some(seq))
}

fn seqs(ms: &[M]) -> Vec<u64> {
    ms.iter().filter_map(|m| m.1).collect()
}

#[test]
fn without_a_replay_live_messages_pass_straight_through() {
    let mut merge = Merge::new(100);
    assert!(!merge.is_active());
    assert_eq!(merge.on_live(m("a", 1), 10), Live::Deliver(m("a", 1)));
}

#[test]
fn replay_goes_first_then_held_messages_minus_those_replayed() {
    let mut merge = Merge::new(1_000);
    assert!(merge.start("news.>"));
    // Live messages arrive while the fetch runs: 5 and 6 are also in the replay, 7 is newer.
    for seq in [5, 6, 7] {
        assert_eq!(merge.on_live(m("news.eu", seq), 10), Live::Held);
    }
    assert_eq!(merge.held(), 3);
    let replayed = Replayed {
        messages: vec![
            m("news.eu", 3),
            m("news.us", 4),
            m("news.eu", 5),
            m("news.eu", 6),
        ],
        through: 6,
    };
    let out = merge.finish("news.>", Some(replayed), |_| 10).unwrap();
    assert_eq!(seqs(&out), [3, 4, 5, 6, 7]);
    assert!(!merge.is_replaying());
    // A live copy the consumer delivers late is a duplicate; newer ones pass.
    assert_eq!(merge.on_live(m("news.eu", 6), 10), Live::Duplicate);
    assert_eq!(
        merge.on_live(m("news.eu", 8), 10),
        Live::Deliver(m("news.eu", 8))
    );
}

#[test]
fn floors_apply_only_to_the_resumed_pattern_and_to_messages_with_a_position() {
    let mut merge = Merge::new(1_000);
    merge.start("news.>");
    merge.finish(
        "news.>",
        Some(Replayed {
            messages: vec![],
            through: 9,
        }),
        |_| 0,
    );
    // Another subscription of the same connection, not resumed: never dropped.
    assert_eq!(merge.on_live(m("chat", 2), 1), Live::Deliver(m("chat", 2)));
    assert_eq!(
        merge.on_live(M("news.eu", None), 1),
        Live::Deliver(M("news.eu", None))
    );
    assert_eq!(merge.on_live(m("news.eu", 9), 1), Live::Duplicate);
    merge.forget("news.>");
    assert!(!merge.is_active());
    assert_eq!(
        merge.on_live(m("news.eu", 9), 1),
        Live::Deliver(m("news.eu", 9))
    );
}

#[test]
fn held_messages_wait_for_every_replay_in_flight() {
    let mut merge = Merge::new(1_000);
    merge.start("a.*");
    merge.start("b.*");
    assert!(!merge.start("a.*"), "one replay per pattern at a time");
    assert_eq!(merge.on_live(m("a.x", 10), 1), Live::Held);
    assert_eq!(merge.on_live(m("b.x", 11), 1), Live::Held);
    let out = merge
        .finish(
            "a.*",
            Some(Replayed {
                messages: vec![m("a.x", 8)],
                through: 10,
            }),
            |_| 1,
        )
        .unwrap();
    // a's replay goes out; the held copy of 10 is dropped, 11 waits for b.
    assert_eq!(seqs(&out), [8]);
    assert_eq!(merge.held(), 1);
    let out = merge.finish("b.*", None, |_| 1).unwrap();
    assert_eq!(seqs(&out), [11]);
    assert_eq!(merge.held(), 0);
}

#[test]
fn not_recovered_releases_the_held_messages_without_dropping_any() {
    let mut merge = Merge::new(1_000);
    merge.start("a");
    merge.on_live(m("a", 4), 1);
    let out = merge.finish("a", None, |_| 1).unwrap();
    assert_eq!(seqs(&out), [4]);
    assert!(!merge.is_active());
}

#[test]
fn a_full_hold_buffer_abandons_the_replays_and_releases_everything_in_order() {
    let mut merge = Merge::new(25);
    merge.start("a");
    assert_eq!(merge.on_live(m("a", 1), 10), Live::Held);
    assert_eq!(merge.on_live(m("a", 2), 10), Live::Held);
    match merge.on_live(m("a", 3), 10) {
        Live::Overflow { abandoned, deliver } => {
            assert_eq!(abandoned, vec![Box::<str>::from("a")]);
            assert_eq!(seqs(&deliver), [1, 2, 3]);
        }
        other => panic!("expected overflow, got {other:?}"),
    }
    assert!(!merge.is_replaying());
    // The replay that arrives afterwards is not applied.
    assert!(
        merge
            .finish(
                "a",
                Some(Replayed {
                    messages: vec![m("a", 1)],
                    through: 1
                }),
                |_| 1
            )
            .is_none()
    );
    assert_eq!(merge.on_live(m("a", 4), 10), Live::Deliver(m("a", 4)));
}

#[test]
fn a_result_for_a_pattern_never_started_is_ignored() {
    let mut merge: Merge<M> = Merge::new(10);
    assert!(merge.finish("x", None, |_| 0).is_none());
}

#[test]
fn abandoning_releases_the_held_messages_and_ignores_late_results() {
    let mut merge = Merge::new(100);
    merge.start("a");
    merge.on_live(m("a", 3), 1);
    let (abandoned, deliver) = merge.abandon();
    assert_eq!(abandoned, vec![Box::<str>::from("a")]);
    assert_eq!(seqs(&deliver), [3]);
    assert!(!merge.is_replaying());
    assert!(merge.finish("a", None, |_| 0).is_none());
    assert_eq!(merge.on_live(m("a", 4), 1), Live::Deliver(m("a", 4)));
}
