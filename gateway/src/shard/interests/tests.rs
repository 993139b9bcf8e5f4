//! The shard's interest bookkeeping: one ask per pattern, waiters share it, stale answers ignored.

use super::*;

#[test]
fn the_first_want_asks_later_ones_wait_then_are_ready() {
    let mut interests = Interests::default();
    let Wanted::Ask(ticket) = interests.want("a", 1) else {
        panic!("the first want asks");
    };
    assert_eq!(interests.want("a", 2), Wanted::Wait);
    let answered = interests.answer("a", ticket, true);
    assert_eq!(answered.keys, vec![1, 2]);
    assert!(!answered.last);
    assert_eq!(interests.want("a", 3), Wanted::Ready);
    // Three holders: the pattern goes with the third release, not before.
    assert!(!interests.release("a"));
    assert!(!interests.release("a"));
    assert!(interests.release("a"));
    assert_eq!(interests.len(), 0);
}

#[test]
fn a_failed_ask_drops_every_waiter_and_the_pattern() {
    let mut interests = Interests::default();
    let Wanted::Ask(ticket) = interests.want("a", 1) else {
        panic!("asks");
    };
    assert_eq!(interests.want("a", 2), Wanted::Wait);
    let answered = interests.answer("a", ticket, false);
    assert_eq!(answered.keys, vec![1, 2]);
    assert!(answered.last);
    assert_eq!(interests.len(), 0);
    // The next want asks again, with a new ticket.
    assert!(matches!(interests.want("a", 3), Wanted::Ask(t) if t != ticket));
}

#[test]
fn withdrawing_every_waiter_lowers_interest_and_a_late_answer_is_ignored() {
    let mut interests = Interests::default();
    let Wanted::Ask(first) = interests.want("a", 1) else {
        panic!("asks");
    };
    assert_eq!(interests.want("a", 2), Wanted::Wait);
    assert!(!interests.withdraw("a", 1));
    assert!(interests.withdraw("a", 2));
    assert_eq!(interests.len(), 0);
    // Wanted again: a new ask. The answer to the first one says nothing about it.
    let Wanted::Ask(second) = interests.want("a", 1) else {
        panic!("asks again");
    };
    assert_ne!(first, second);
    assert_eq!(interests.answer("a", first, true), Answered::default());
    assert_eq!(interests.want("a", 2), Wanted::Wait);
    let answered = interests.answer("a", second, true);
    assert_eq!(answered.keys, vec![1, 2]);
}

#[test]
fn withdrawing_a_connection_that_does_not_wait_changes_nothing() {
    let mut interests = Interests::default();
    assert!(matches!(interests.want("a", 1), Wanted::Ask(_)));
    assert!(!interests.withdraw("a", 7));
    assert!(!interests.withdraw("b", 1));
    assert_eq!(interests.len(), 1);
    assert!(interests.withdraw("a", 1));
}

#[test]
fn a_confirmation_from_before_the_epoch_moved_asks_again_and_holders_stay() {
    let epoch = Arc::new(ConfirmEpoch::default());
    let mut interests = Interests::new(epoch.clone());
    let Wanted::Ask(first) = interests.want("a", 1) else {
        panic!("asks");
    };
    assert_eq!(interests.answer("a", first, true).keys, vec![1]);
    assert_eq!(interests.want("a", 2), Wanted::Ready);
    // NATS dropped (or the feed was replaced): the next one is not answered from the old one.
    epoch.bump();
    let Wanted::Ask(second) = interests.want("a", 3) else {
        panic!("asks again once the epoch moved");
    };
    assert_eq!(interests.want("a", 4), Wanted::Wait);
    // The re-ask fails: its waiters go, the holders (1, 2) keep the pattern.
    let answered = interests.answer("a", second, false);
    assert_eq!(answered.keys, vec![3, 4]);
    assert!(!answered.last);
    assert_eq!(interests.len(), 1);
    // Still not promised: asks again, and a live answer serves later ones at once.
    let Wanted::Ask(third) = interests.want("a", 5) else {
        panic!("asks after a failed re-ask");
    };
    assert_eq!(interests.answer("a", third, true).keys, vec![5]);
    assert_eq!(interests.want("a", 6), Wanted::Ready);
    for _ in 0..3 {
        assert!(!interests.release("a"));
    }
    assert!(interests.release("a"));
    assert_eq!(interests.len(), 0);
}

#[test]
fn an_answer_to_an_ask_made_before_the_epoch_moved_serves_its_waiters_only() {
    let epoch = Arc::new(ConfirmEpoch::default());
    let mut interests = Interests::new(epoch.clone());
    let Wanted::Ask(ticket) = interests.want("a", 1) else {
        panic!("asks");
    };
    // The epoch moves while the answer travels.
    epoch.bump();
    assert_eq!(interests.answer("a", ticket, true).keys, vec![1]);
    assert!(matches!(interests.want("a", 2), Wanted::Ask(_)));
}

#[test]
fn waiters_withdrawn_in_any_order_leave_exactly_the_others_to_be_answered() {
    const WAITERS: usize = 10_000;
    let mut interests = Interests::default();
    let Wanted::Ask(ticket) = interests.want("a", 0) else {
        panic!("asks");
    };
    for key in 1..WAITERS {
        assert_eq!(interests.want("a", key), Wanted::Wait);
    }
    // Every third one goes: half of them from the back of the list, then the rest from the front.
    let gone: Vec<usize> = (0..WAITERS).filter(|k| k % 3 == 1).collect();
    let (front, back) = gone.split_at(gone.len() / 2);
    for &key in back.iter().rev().chain(front) {
        assert!(!interests.withdraw("a", key), "{key} was not the last");
        // Twice: the second changes nothing.
        assert!(!interests.withdraw("a", key));
    }
    let mut keys = interests.answer("a", ticket, true).keys;
    keys.sort_unstable();
    let expected: Vec<usize> = (0..WAITERS).filter(|k| k % 3 != 1).collect();
    assert_eq!(keys, expected);
    // The live holders are exactly those answered: the pattern goes with the last release.
    for _ in 1..expected.len() {
        assert!(!interests.release("a"));
    }
    assert!(interests.release("a"));
}

/// A feed replacement moves the shards' epoch only; a disconnect moves both (the router reads
/// the disconnect count alone).
#[test]
fn a_feed_replacement_moves_the_shards_epoch_and_a_disconnect_both() {
    let epoch = ConfirmEpoch::default();
    epoch.bump_feed();
    assert_eq!((epoch.current(), epoch.disconnects()), (1, 0));
    epoch.bump();
    assert_eq!((epoch.current(), epoch.disconnects()), (2, 1));
}

/// Review 2, finding 5: a connection that wants the pattern after the epoch moved does not join
/// an ask made before it (whose answer may vouch for a subscription that no longer holds): the
/// shard asks again, and the old answer is stale.
#[test]
fn a_want_after_the_epoch_moved_does_not_join_an_older_ask() {
    let epoch = Arc::new(ConfirmEpoch::default());
    let mut interests = Interests::new(epoch.clone());
    let Wanted::Ask(old) = interests.want("a", 1) else {
        panic!("asks");
    };
    epoch.bump();
    let Wanted::Ask(new) = interests.want("a", 2) else {
        panic!("asks again once the epoch moved");
    };
    assert_ne!(old, new);
    assert_eq!(interests.want("a", 3), Wanted::Wait);
    assert!(interests.answer("a", old, true).keys.is_empty(), "stale");
    let mut keys = interests.answer("a", new, true).keys;
    keys.sort_unstable();
    assert_eq!(keys, vec![1, 2, 3]);
    assert_eq!(interests.want("a", 4), Wanted::Ready);
}
