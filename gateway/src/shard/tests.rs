use std::time::Duration;

use super::pass_gap;

const INTERVAL: Duration = Duration::from_millis(10);

#[test]
fn short_passes_wait_the_flush_interval() {
    assert_eq!(pass_gap(INTERVAL, Duration::ZERO), INTERVAL);
    assert_eq!(pass_gap(INTERVAL, Duration::from_millis(40)), INTERVAL);
}

#[test]
fn long_passes_wait_a_quarter_of_themselves() {
    assert_eq!(
        pass_gap(INTERVAL, Duration::from_millis(120)),
        Duration::from_millis(30)
    );
    // Writing then takes at most four fifths of the shard's time.
    let pass = Duration::from_millis(500);
    let busy = pass.as_secs_f64() / (pass + pass_gap(INTERVAL, pass)).as_secs_f64();
    assert!((busy - 0.8).abs() < 1e-9);
}
