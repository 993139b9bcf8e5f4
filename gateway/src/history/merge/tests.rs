use std::sync::Arc;

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

fn no_epoch() -> Option<Arc<str>> {
    None
}

fn seqs(ms: &[M]) -> Vec<u64> {
    ms.iter().filter_map(|m| m.1).collect()
}

#[test]
fn without_a_replay_live_messages_pass_straight_through() {
    let mut merge = Merge::new(100);
    assert!(!merge.is_active());
    assert_eq!(
        merge.on_live(m("a", 1), 10, usize::MAX, no_epoch),
        Live::Deliver(m("a", 1))
    );
}

#[test]
fn replay_goes_first_then_held_messages_minus_those_replayed() {
    let mut merge = Merge::new(1_000);
    assert!(merge.start("news.>", 0));
    // Live messages arrive while the fetch runs: 5 and 6 are also in the replay, 7 is newer.
    for seq in [5, 6, 7] {
        assert_eq!(
            merge.on_live(m("news.eu", seq), 10, usize::MAX, no_epoch),
            Live::Held
        );
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
        .finish("news.>", Some(replayed), None, |_| 10, usize::MAX)
        .unwrap()
        .deliver;
    assert_eq!(seqs(&out), [3, 4, 5, 6, 7]);
    assert!(!merge.is_replaying());
    // A live copy the consumer delivers late is a duplicate; newer ones pass.
    assert_eq!(
        merge.on_live(m("news.eu", 6), 10, usize::MAX, no_epoch),
        Live::Duplicate
    );
    assert_eq!(
        merge.on_live(m("news.eu", 8), 10, usize::MAX, no_epoch),
        Live::Deliver(m("news.eu", 8))
    );
}

#[test]
fn floors_apply_only_to_the_resumed_pattern_and_to_messages_with_a_position() {
    let mut merge = Merge::new(1_000);
    merge.start("news.>", 0);
    merge.finish(
        "news.>",
        Some(Replayed {
            messages: vec![],
            through: 9,
        }),
        None,
        |_| 0,
        usize::MAX,
    );
    // Another subscription of the same connection, not resumed: never dropped.
    assert_eq!(
        merge.on_live(m("chat", 2), 1, usize::MAX, no_epoch),
        Live::Deliver(m("chat", 2))
    );
    assert_eq!(
        merge.on_live(M("news.eu", None), 1, usize::MAX, no_epoch),
        Live::Deliver(M("news.eu", None))
    );
    assert_eq!(
        merge.on_live(m("news.eu", 9), 1, usize::MAX, no_epoch),
        Live::Duplicate
    );
    merge.forget("news.>");
    assert!(!merge.is_active());
    assert_eq!(
        merge.on_live(m("news.eu", 9), 1, usize::MAX, no_epoch),
        Live::Deliver(m("news.eu", 9))
    );
}

#[test]
fn held_messages_wait_for_every_replay_in_flight() {
    let mut merge = Merge::new(1_000);
    merge.start("a.*", 0);
    merge.start("b.*", 0);
    assert!(!merge.start("a.*", 0), "one replay per pattern at a time");
    assert_eq!(
        merge.on_live(m("a.x", 10), 1, usize::MAX, no_epoch),
        Live::Held
    );
    assert_eq!(
        merge.on_live(m("b.x", 11), 1, usize::MAX, no_epoch),
        Live::Held
    );
    let out = merge
        .finish(
            "a.*",
            Some(Replayed {
                messages: vec![m("a.x", 8)],
                through: 10,
            }),
            None,
            |_| 1,
            usize::MAX,
        )
        .unwrap()
        .deliver;
    // a's replay waits for b, so that both go out merged.
    assert!(out.is_empty());
    assert_eq!(merge.held(), 2);
    let release = merge.finish("b.*", None, None, |_| 1, usize::MAX).unwrap();
    // The held copy of 10 is a's replay's: dropped; 11 is newer.
    assert_eq!(seqs(&release.deliver), [8, 11]);
    assert_eq!(release.recovered, vec![("a.*".into(), 1, None)]);
    assert_eq!(merge.held(), 0);
}

#[test]
fn not_recovered_releases_the_held_messages_without_dropping_any() {
    let mut merge = Merge::new(1_000);
    merge.start("a", 0);
    merge.on_live(m("a", 4), 1, usize::MAX, no_epoch);
    let out = merge
        .finish("a", None, None, |_| 1, usize::MAX)
        .unwrap()
        .deliver;
    assert_eq!(seqs(&out), [4]);
    assert!(!merge.is_active());
}

#[test]
fn a_full_hold_buffer_abandons_the_replays_and_releases_everything_in_order() {
    let mut merge = Merge::new(25);
    merge.start("a", 0);
    assert_eq!(
        merge.on_live(m("a", 1), 10, usize::MAX, no_epoch),
        Live::Held
    );
    assert_eq!(
        merge.on_live(m("a", 2), 10, usize::MAX, no_epoch),
        Live::Held
    );
    match merge.on_live(m("a", 3), 10, usize::MAX, no_epoch) {
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
                None,
                |_| 1,
                usize::MAX
            )
            .is_none()
    );
    assert_eq!(
        merge.on_live(m("a", 4), 10, usize::MAX, no_epoch),
        Live::Deliver(m("a", 4))
    );
}

#[test]
fn a_result_for_a_pattern_never_started_is_ignored() {
    let mut merge: Merge<M> = Merge::new(10);
    assert!(merge.finish("x", None, None, |_| 0, usize::MAX).is_none());
}

#[test]
fn abandoning_releases_the_held_messages_and_ignores_late_results() {
    let mut merge = Merge::new(100);
    merge.start("a", 0);
    merge.on_live(m("a", 3), 1, usize::MAX, no_epoch);
    let (abandoned, deliver) = merge.abandon();
    assert_eq!(abandoned, vec![Box::<str>::from("a")]);
    assert_eq!(seqs(&deliver), [3]);
    assert!(!merge.is_replaying());
    assert!(merge.finish("a", None, None, |_| 0, usize::MAX).is_none());
    assert_eq!(
        merge.on_live(m("a", 4), 1, usize::MAX, no_epoch),
        Live::Deliver(m("a", 4))
    );
}

#[test]
fn the_hold_buffer_takes_no_more_than_the_room_the_caller_gives() {
    let mut merge = Merge::new(1_000);
    merge.start("a", 0);
    assert_eq!(merge.on_live(m("a", 1), 10, 25, no_epoch), Live::Held);
    assert_eq!(merge.on_live(m("a", 2), 10, 25, no_epoch), Live::Held);
    assert!(matches!(
        merge.on_live(m("a", 3), 10, 25, no_epoch),
        Live::Overflow { .. }
    ));
}

#[test]
fn a_replay_that_does_not_fit_the_room_is_refused_and_the_held_messages_go_out() {
    let mut merge = Merge::new(1_000);
    merge.start("a", 0);
    assert_eq!(merge.on_live(m("a", 5), 10, 100, no_epoch), Live::Held);
    let replayed = Replayed {
        messages: vec![m("a", 3), m("a", 4)],
        through: 4,
    };
    // 2 x 40 replayed + 10 held > 80.
    let finished = merge.finish("a", Some(replayed), None, |_| 40, 80).unwrap();
    assert_eq!(finished.refused, vec![Box::<str>::from("a")]);
    assert_eq!(seqs(&finished.deliver), [5]);
    assert!(!merge.is_active(), "a refused replay sets no floor");
}

fn epoch(e: &str) -> Option<Arc<str>> {
    Some(Arc::from(e))
}

#[test]
fn floors_of_a_recreated_stream_are_retired_not_applied() {
    let mut merge = Merge::new(1_000);
    merge.start("news.>", 4);
    let replayed = Replayed {
        messages: vec![m("news.eu", 5)],
        through: 900,
    };
    merge.finish("news.>", Some(replayed), epoch("e1"), |_| 1, usize::MAX);
    // Same stream: a late live copy is a duplicate.
    assert_eq!(
        merge.on_live(m("news.eu", 5), 1, usize::MAX, || epoch("e1")),
        Live::Duplicate
    );
    // The stream was recreated: its sequences restart at 1, and the old floor must not drop
    // them.
    assert_eq!(
        merge.on_live(m("news.eu", 1), 1, usize::MAX, || epoch("e2")),
        Live::Deliver(m("news.eu", 1))
    );
    assert!(!merge.is_active(), "the old floor is gone for good");
}

#[test]
fn a_message_held_in_a_new_epoch_is_not_dropped_by_a_floor_of_the_old_one() {
    let mut merge = Merge::new(1_000);
    merge.start("a", 0);
    let old = Replayed {
        messages: vec![],
        through: 500,
    };
    merge.finish("a", Some(old), epoch("e1"), |_| 1, usize::MAX);
    merge.start("b", 0);
    // Held for b, not dropped by a's floor from the old stream.
    assert_eq!(
        merge.on_live(m("a", 4), 1, usize::MAX, || epoch("e2")),
        Live::Held
    );
    let new = Replayed {
        messages: vec![m("b", 2)],
        through: 4,
    };
    let release = merge
        .finish("b", Some(new), epoch("e2"), |_| 1, usize::MAX)
        .unwrap();
    assert_eq!(seqs(&release.deliver), [2, 4]);
}

#[test]
fn overlapping_patterns_resumed_together_go_out_once_each_in_stream_order() {
    let mut merge = Merge::new(1_000);
    merge.start("news.>", 2);
    merge.start("news.eu", 2);
    // Live while both fetch: 7 is in news.eu's replay, 8 in neither.
    assert_eq!(
        merge.on_live(m("news.eu", 7), 1, usize::MAX, no_epoch),
        Live::Held
    );
    assert_eq!(
        merge.on_live(m("news.us", 8), 1, usize::MAX, no_epoch),
        Live::Held
    );
    let wide = Replayed {
        messages: vec![
            m("news.eu", 3),
            m("news.us", 4),
            m("news.eu", 5),
            m("news.us", 6),
        ],
        through: 6,
    };
    let first = merge
        .finish("news.>", Some(wide), None, |_| 1, usize::MAX)
        .unwrap();
    assert!(first.deliver.is_empty() && first.recovered.is_empty());
    let narrow = Replayed {
        messages: vec![m("news.eu", 3), m("news.eu", 5), m("news.eu", 7)],
        through: 7,
    };
    let release = merge
        .finish("news.eu", Some(narrow), None, |_| 1, usize::MAX)
        .unwrap();
    assert_eq!(seqs(&release.deliver), [3, 4, 5, 6, 7, 8]);
    let mut recovered = release.recovered;
    recovered.sort();
    assert_eq!(
        recovered,
        vec![("news.>".into(), 4, None), ("news.eu".into(), 3, None)]
    );
}

#[test]
fn a_replayed_message_the_client_has_under_another_pattern_is_not_sent_again() {
    let mut merge = Merge::new(1_000);
    // The client's news.eu position is further than its news.> one.
    merge.start("news.>", 2);
    merge.start("news.eu", 5);
    let wide = Replayed {
        messages: vec![
            m("news.eu", 3),
            m("news.us", 4),
            m("news.eu", 5),
            m("news.us", 6),
        ],
        through: 6,
    };
    merge.finish("news.>", Some(wide), None, |_| 1, usize::MAX);
    let narrow = Replayed {
        messages: vec![],
        through: 6,
    };
    let release = merge
        .finish("news.eu", Some(narrow), None, |_| 1, usize::MAX)
        .unwrap();
    assert_eq!(seqs(&release.deliver), [4, 6]);
}

#[test]
fn messages_without_a_position_keep_their_order_after_the_merged_ones() {
    let mut merge = Merge::new(1_000);
    merge.start("a", 0);
    merge.on_live(M("chat", None), 1, usize::MAX, no_epoch);
    merge.on_live(m("a", 9), 1, usize::MAX, no_epoch);
    merge.on_live(M("chat2", None), 1, usize::MAX, no_epoch);
    let replayed = Replayed {
        messages: vec![m("a", 8)],
        through: 8,
    };
    let release = merge
        .finish("a", Some(replayed), None, |_| 1, usize::MAX)
        .unwrap();
    assert_eq!(
        release.deliver,
        [m("a", 8), m("a", 9), M("chat", None), M("chat2", None)]
    );
}

/// Dropping held messages gives their cost back: the buffer holds again instead of
/// overflowing on bytes it no longer keeps.
#[test]
fn retain_held_drops_refused_messages_and_frees_their_room() {
    let mut merge = Merge::new(30);
    assert!(merge.start("a.>", 0));
    for (topic, seq) in [("a.x", 1), ("b.x", 2), ("b.y", 3)] {
        assert_eq!(
            merge.on_live(m(topic, seq), 10, usize::MAX, no_epoch),
            Live::Held
        );
    }
    merge.retain_held(|m| m.0.starts_with("a."), |_| 10);
    assert_eq!(merge.held(), 1);
    for seq in [4, 5] {
        assert_eq!(
            merge.on_live(m("a.y", seq), 10, usize::MAX, no_epoch),
            Live::Held,
            "room freed by the dropped messages"
        );
    }
    let out = merge.finish("a.>", None, None, |_| 10, usize::MAX).unwrap();
    assert_eq!(seqs(&out.deliver), [1, 4, 5]);
}
