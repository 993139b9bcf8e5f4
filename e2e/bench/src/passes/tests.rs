use super::*;

const TEXT: &str = "\
# HELP volley_flush_duration_seconds Time one shard spends on one pass of batched writes.
# TYPE volley_flush_duration_seconds histogram
volley_flush_duration_seconds_sum 0.5
volley_flush_duration_seconds_count 10
volley_flush_duration_seconds_bucket{le=\"0.01\"} 2
volley_flush_duration_seconds_bucket{le=\"0.02\"} 9
volley_flush_duration_seconds_bucket{le=\"0.04\"} 10
volley_flush_duration_seconds_bucket{le=\"+Inf\"} 10
volley_frames_delivered_total 4000
volley_socket_writes_total 1000
volley_connections 3
";

#[test]
fn parses_the_series_it_needs() {
    let s = Sample::parse(TEXT);
    assert_eq!(s.passes, 10);
    assert_eq!(s.pass_seconds, 0.5);
    assert_eq!(s.frames, 4000);
    assert_eq!(s.writes, 1000);
    assert_eq!(s.buckets.len(), 4);
    assert_eq!(s.buckets[3], (f64::INFINITY, 10));
}

#[test]
fn report_gives_mean_bucket_bounds_and_batching() {
    let r = Sample::parse(TEXT).report().unwrap();
    assert_eq!(r.passes, 10);
    assert!((r.mean_pass_ms - 50.0).abs() < 1e-9);
    assert_eq!(r.p50_pass_ms_at_most, Some(20.0));
    assert_eq!(r.p99_pass_ms_at_most, Some(40.0));
    assert_eq!(r.frames_per_write, 4.0);
}

#[test]
fn difference_and_sum_over_gateways() {
    let later = Sample::parse(TEXT);
    let earlier = Sample {
        passes: 4,
        pass_seconds: 0.1,
        buckets: vec![(0.01, 2), (0.02, 4), (0.04, 4), (f64::INFINITY, 4)],
        frames: 1000,
        writes: 500,
    };
    let d = later.since(&earlier);
    assert_eq!(d.passes, 6);
    assert_eq!(d.buckets[0], (0.01, 0));
    assert_eq!(d.buckets[1], (0.02, 5));
    assert_eq!(d.frames, 3000);
    let mut total = d.clone();
    total.add(&d);
    assert_eq!(total.passes, 12);
    assert_eq!(total.buckets[2], (0.04, 12));
}

#[test]
fn no_passes_no_report() {
    assert_eq!(Sample::parse("volley_connections 3\n").report(), None);
    assert_eq!(Sample::default().quantile_bound(0.5), None);
}
