use super::*;

fn matches(feeds: &[(u64, bool)]) -> Matches {
    let mut m = Matches::default();
    for &(id, durable) in feeds {
        m.add(id, durable);
    }
    m
}

#[test]
fn core_copies_come_from_the_oldest_subscription() {
    let mut r = Routing::default();
    let both = matches(&[(1, false), (2, false)]);
    assert!(r.accept("a.b", None, 1, &both));
    assert!(!r.accept("a.b", None, 2, &both));
}

#[test]
fn a_subject_with_a_jetstream_feed_is_delivered_from_it_not_from_an_older_core_one() {
    let mut r = Routing::default();
    // news.> (core, older) and news.eu.> (JetStream, newer).
    let both = matches(&[(1, false), (2, true)]);
    assert!(!r.accept("news.eu.x", None, 1, &both));
    assert!(r.accept("news.eu.x", Some(7), 2, &both));
}

#[test]
fn the_first_copy_of_a_sequence_wins_whichever_feed_brings_it() {
    let mut r = Routing::default();
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("news.eu", Some(5), 2, &both));
    assert!(!r.accept("news.eu", Some(5), 1, &both));
    assert!(r.accept("news.eu", Some(6), 1, &both));
    assert!(!r.accept("news.eu", Some(6), 2, &both));
}

#[test]
fn a_lagging_older_feed_still_delivers_what_the_newer_one_never_saw() {
    let mut r = Routing::default();
    let one = matches(&[(1, true)]);
    assert!(r.accept("news.eu", Some(3), 1, &one));
    // Feed 2 opens with the next new message (10) while feed 1 still has 4..9 to deliver.
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("news.eu", Some(10), 2, &both));
    for seq in 4..=9 {
        assert!(r.accept("news.eu", Some(seq), 1, &both), "{seq}");
    }
    assert!(!r.accept("news.eu", Some(10), 1, &both));
    // Feed 1 is released; feed 2 alone goes on, and the marks go once it is past them.
    r.restart(1);
    let two = matches(&[(2, true)]);
    assert!(r.accept("news.eu", Some(11), 2, &two));
    assert_eq!(r.marked_subjects(), 0);
}

#[test]
fn a_released_feeds_deliveries_stay_marked_for_a_lagging_one() {
    let mut r = Routing::default();
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("s", Some(1), 1, &both));
    assert!(r.accept("s", Some(2), 1, &both));
    assert!(!r.accept("s", Some(1), 2, &both));
    // Feed 1 goes away having delivered 2; feed 2 (now alone) still brings 2: a duplicate.
    r.restart(1);
    let two = matches(&[(2, true)]);
    assert!(!r.accept("s", Some(2), 2, &two));
    assert!(r.accept("s", Some(3), 2, &two));
}

#[test]
fn a_feed_reopened_from_scratch_starts_a_new_run() {
    let mut r = Routing::default();
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("s", Some(1), 1, &both));
    r.restart(1);
    // Feed 1 reopened with the next new message (5): 2..4 were never delivered by it.
    assert!(r.accept("s", Some(5), 1, &both));
    for seq in 2..=4 {
        assert!(r.accept("s", Some(seq), 2, &both), "{seq}");
    }
    assert!(!r.accept("s", Some(5), 2, &both));
}

#[test]
fn past_the_cap_new_subjects_come_from_the_oldest_jetstream_feed() {
    let mut r = Routing::with_cap(1);
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("a", Some(1), 2, &both));
    assert!(r.accept("b", Some(2), 1, &both));
    assert!(!r.accept("b", Some(2), 2, &both));
    assert_eq!(r.marked_subjects(), 1);
}

#[test]
fn a_recreated_stream_clears_every_mark() {
    let mut r = Routing::default();
    let both = matches(&[(1, true), (2, true)]);
    assert!(r.accept("s", Some(9), 1, &both));
    r.clear();
    assert!(r.accept("s", Some(1), 2, &both));
    assert!(!r.accept("s", Some(1), 1, &both));
}
