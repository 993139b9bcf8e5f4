use super::*;

#[test]
fn a_flat_series_has_no_growth() {
    let samples: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i) * 10.0, 1000.0)).collect();
    let t = tail_trend(&samples, 2.0 / 3.0).unwrap();
    assert_eq!(t.per_minute, 0.0);
    assert_eq!(t.growth_percent, 0.0);
    assert_eq!(t.start, 1000.0);
}

#[test]
fn a_linear_series_reports_its_slope_over_the_tail_only() {
    // Flat at 100 for the first third (warm-up), then +1 per second.
    let samples: Vec<(f64, f64)> = (0..=90)
        .step_by(10)
        .map(|t| {
            let t = f64::from(t);
            (t, if t < 30.0 { 100.0 } else { 100.0 + (t - 30.0) })
        })
        .collect();
    let t = tail_trend(&samples, 2.0 / 3.0).unwrap();
    assert_eq!(t.samples, 7, "samples from t=30 to t=90");
    assert_eq!(t.from_s, 30.0);
    assert!((t.per_minute - 60.0).abs() < 1e-9, "{t:?}");
    assert!((t.start - 100.0).abs() < 1e-9, "{t:?}");
    assert!(
        (t.growth_percent - 60.0).abs() < 1e-9,
        "+60 over 100: {t:?}"
    );
}

#[test]
fn too_few_samples_have_no_trend() {
    assert_eq!(tail_trend(&[], 0.5), None);
    assert_eq!(tail_trend(&[(0.0, 1.0)], 1.0), None);
    assert_eq!(tail_trend(&[(5.0, 1.0), (5.0, 2.0)], 1.0), None);
}

#[test]
fn a_falling_series_has_negative_growth() {
    let samples = [(0.0, 200.0), (60.0, 150.0), (120.0, 100.0)];
    let t = tail_trend(&samples, 1.0).unwrap();
    assert!((t.per_minute + 50.0).abs() < 1e-9);
    assert!((t.growth_percent + 50.0).abs() < 1e-9);
}
