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
    assert_eq!(
        merge.on_live(m("a", 1), 10, usize::MAX),
        Live::Deliver(m("a", 1))
    );
}

#[test]
fn replay_goes_first_then_held_messages_minus_those_replayed() {
    let mut merge = Merge::new(1_000);
    assert!(merge.start("news.>"));
    // Live messages arrive while the fetch runs: 5 and 6 are also in the replay, 7 is newer.
    for seq in [5, 6, 7] {
        assert_eq!(merge.on_live(m("news.eu", seq), 10, usize::MAX), Live::Held);
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
    let out = merge
        .finish("news.>", Some(replayed), |_| 10, usize::MAX)
        .unwrap()
        .deliver;
    assert_eq!(seqs(&out), [3, 4, 5, 6, 7]);
    assert!(!merge.is_replaying());
    // A live copy the consumer delivers late is a duplicate; newer ones pass.
    assert_eq!(
        merge.on_live(m("news.eu", 6), 10, usize::MAX),
        Live::Duplicate
    );
    assert_eq!(
        merge.on_live(m("news.eu", 8), 10, usize::MAX),
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
        usize::MAX,
    );
    // Another subscription of the same connection, not resumed: never dropped.
    assert_eq!(
        merge.on_live(m("chat", 2), 1, usize::MAX),
        Live::Deliver(m("chat", 2))
    );
    assert_eq!(
        merge.on_live(M("news.eu", None), 1, usize::MAX),
        Live::Deliver(M("news.eu", None))
    );
    assert_eq!(
        merge.on_live(m("news.eu", 9), 1, usize::MAX),
        Live::Duplicate
    );
    merge.forget("news.>");
    assert!(!merge.is_active());
    assert_eq!(
        merge.on_live(m("news.eu", 9), 1, usize::MAX),
        Live::Deliver(m("news.eu", 9))
    );
}

#[test]
fn held_messages_wait_for_every_replay_in_flight() {
    let mut merge = Merge::new(1_000);
    merge.start("a.*");
    merge.start("b.*");
    assert!(!merge.start("a.*"), "one replay per pattern at a time");
    assert_eq!(merge.on_live(m("a.x", 10), 1, usize::MAX), Live::Held);
    assert_eq!(merge.on_live(m("b.x", 11), 1, usize::MAX), Live::Held);
    let out = merge
        .finish(
            "a.*",
            Some(Replayed {
                messages: vec![m("a.x", 8)],
                through: 10,
            }),
            |_| 1,
            usize::MAX,
        )
        .unwrap()
        .deliver;
    // a's replay goes out; the held copy of 10 is dropped, 11 waits for b.
    assert_eq!(seqs(&out), [8]);
    assert_eq!(merge.held(), 1);
    let out = merge
        .finish("b.*", None, |_| 1, usize::MAX)
        .unwrap()
        .deliver;
    assert_eq!(seqs(&out), [11]);
    assert_eq!(merge.held(), 0);
}

#[test]
fn not_recovered_releases_the_held_messages_without_dropping_any() {
    let mut merge = Merge::new(1_000);
    merge.start("a");
    merge.on_live(m("a", 4), 1, usize::MAX);
    let out = merge.finish("a", None, |_| 1, usize::MAX).unwrap().deliver;
    assert_eq!(seqs(&out), [4]);
    assert!(!merge.is_active());
}

#[test]
fn a_full_hold_buffer_abandons_the_replays_and_releases_everything_in_order() {
    let mut merge = Merge::new(25);
    merge.start("a");
    assert_eq!(merge.on_live(m("a", 1), 10, usize::MAX), Live::Held);
    assert_eq!(merge.on_live(m("a", 2), 10, usize::MAX), Live::Held);
    match merge.on_live(m("a", 3), 10, usize::MAX) {
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
                |_| 1,
                usize::MAX
            )
            .is_none()
    );
    assert_eq!(
        merge.on_live(m("a", 4), 10, usize::MAX),
        Live::Deliver(m("a", 4))
    );
}

#[test]
fn a_result_for_a_pattern_never_started_is_ignored() {
    let mut merge: Merge<M> = Merge::new(10);
    assert!(merge.finish("x", None, |_| 0, usize::MAX).is_none());
}

#[test]
fn abandoning_releases_the_held_messages_and_ignores_late_results() {
    let mut merge = Merge::new(100);
    merge.start("a");
    merge.on_live(m("a", 3), 1, usize::MAX);
    let (abandoned, deliver) = merge.abandon();
    assert_eq!(abandoned, vec![Box::<str>::from("a")]);
    assert_eq!(seqs(&deliver), [3]);
    assert!(!merge.is_replaying());
    assert!(merge.finish("a", None, |_| 0, usize::MAX).is_none());
    assert_eq!(
        merge.on_live(m("a", 4), 1, usize::MAX),
        Live::Deliver(m("a", 4))
    );
}

#[test]
fn the_hold_buffer_takes_no_more_than_the_room_the_caller_gives() {
    let mut merge = Merge::new(1_000);
    merge.start("a");
    assert_eq!(merge.on_live(m("a", 1), 10, 25), Live::Held);
    assert_eq!(merge.on_live(m("a", 2), 10, 25), Live::Held);
    assert!(matches!(
        merge.on_live(m("a", 3), 10, 25),
        Live::Overflow { .. }
    ));
}

#[test]
fn a_replay_that_does_not_fit_the_room_is_refused_and_the_held_messages_go_out() {
    let mut merge = Merge::new(1_000);
    merge.start("a");
    assert_eq!(merge.on_live(m("a", 5), 10, 100), Live::Held);
    let replayed = Replayed {
        messages: vec![m("a", 3), m("a", 4)],
        through: 4,
    };
    // 2 x 40 replayed + 10 held > 80.
    let finished = merge.finish("a", Some(replayed), |_| 40, 80).unwrap();
    assert!(finished.refused);
    assert_eq!(seqs(&finished.deliver), [5]);
    assert!(!merge.is_active(), "a refused replay sets no floor");
}
