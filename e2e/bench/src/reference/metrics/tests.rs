use std::time::Duration;

use super::{Counts, PassTimes, render};
use crate::passes::Sample;

#[test]
fn the_bench_reads_the_reference_metrics_as_a_gateways() {
    let mut times = PassTimes::default();
    for ms in [1, 30, 30, 5_000] {
        times.observe(Duration::from_millis(ms));
    }
    let counts = Counts {
        published: 7,
        passes: 4,
        writes: 40,
        frames: 70,
        enters: 3,
    };
    let sample = Sample::parse(&render(&counts, &times));
    assert_eq!(sample.passes, 4);
    assert_eq!(sample.writes, 40);
    assert_eq!(sample.frames, 70);
    assert!((sample.pass_seconds - 5.061).abs() < 1e-9, "{sample:?}");
    // 1 ms falls in the 1.6 ms bucket, 30 ms in 51.2 ms, 5 s only in +Inf.
    let at = |bound: f64| {
        sample
            .buckets
            .iter()
            .find(|(le, _)| *le == bound || (*le - bound).abs() < 1e-12)
            .map(|b| b.1)
    };
    assert_eq!(at(0.0008), Some(0));
    assert_eq!(at(0.0016), Some(1));
    assert_eq!(at(0.0256), Some(1));
    assert_eq!(at(0.0512), Some(3));
    assert_eq!(at(f64::INFINITY), Some(4));
    let report = sample.report().unwrap();
    let p50 = report.p50_pass_ms_at_most.unwrap();
    assert!((p50 - 51.2).abs() < 1e-6, "{report:?}");
    // The 5 s pass is past the last finite bound.
    assert!(
        report.p99_pass_ms_at_most.is_none_or(f64::is_infinite),
        "{report:?}"
    );
}

#[test]
fn a_pass_on_a_bound_counts_in_that_bucket() {
    let mut times = PassTimes::default();
    times.observe(Duration::from_micros(50));
    times.observe(Duration::from_micros(51));
    assert_eq!(times.count(), 2);
    let sample = Sample::parse(&render(&Counts::default(), &times));
    assert_eq!(sample.buckets[0], (0.00005, 1));
    assert_eq!(sample.buckets[1], (0.0001, 2));
}
