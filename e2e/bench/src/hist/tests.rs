use super::*;

#[test]
fn buckets_are_contiguous_and_cover_u64() {
    let mut last = 0;
    for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
        let i = index(v);
        assert!(i < BUCKETS);
        assert!(upper(i) >= v, "v={v} i={i} upper={}", upper(i));
        if v < 100_000 {
            assert!(i >= last);
            last = i;
        }
    }
}

#[test]
fn percentiles_of_one_to_ten_thousand() {
    let mut h = Histogram::default();
    for v in 1..=10_000 {
        h.record(v);
    }
    for (q, want) in [
        (0.5, 5000.0),
        (0.9, 9000.0),
        (0.99, 9900.0),
        (0.999, 9990.0),
    ] {
        let got = h.quantile(q) as f64;
        assert!((got - want).abs() / want < 0.016, "q={q} got {got}");
    }
    assert_eq!(h.quantile(1.0), 10_000);
    assert_eq!(h.max(), 10_000);
    assert!((h.mean() - 5000.5).abs() < 1e-9);
}

#[test]
fn small_values_are_exact_and_empty_is_zero() {
    let mut h = Histogram::default();
    assert_eq!(h.quantile(0.5), 0);
    h.record_n(3, 98);
    h.record(100);
    h.record(127);
    assert_eq!(h.quantile(0.5), 3);
    assert_eq!(h.quantile(0.99), 100);
    assert_eq!(h.quantile(1.0), 127);
}

#[test]
fn merge_and_json_round_trip() {
    let mut a = Histogram::default();
    let mut b = Histogram::default();
    a.record(10);
    b.record_n(1_000_000, 3);
    a.merge(&b);
    assert_eq!(a.count(), 4);
    let back: Histogram = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.quantile(0.25), 10);
    assert!(back.quantile(0.5) >= 1_000_000 * 98 / 100);
}
