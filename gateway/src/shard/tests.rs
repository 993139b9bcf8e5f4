use std::time::{Duration, Instant};

use super::next_pass;

const INTERVAL: Duration = Duration::from_millis(10);

#[test]
fn passes_start_one_interval_apart() {
    let start = Instant::now();
    assert_eq!(next_pass(start, INTERVAL), start + INTERVAL);
}

#[test]
fn a_long_pass_is_followed_at_once() {
    // A pass of 120 ms started at `start`: when it ends, the next one is already due.
    let start = Instant::now();
    let ended = start + Duration::from_millis(120);
    assert!(next_pass(start, INTERVAL) <= ended);
}
