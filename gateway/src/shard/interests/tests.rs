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
