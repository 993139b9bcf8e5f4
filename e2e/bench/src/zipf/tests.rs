use super::*;

#[test]
fn rng_is_deterministic_and_below_is_in_range() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    for _ in 0..1000 {
        assert_eq!(a.next_u64(), b.next_u64());
    }
    for _ in 0..1000 {
        assert!(a.below(10) < 10);
        let f = a.next_f64();
        assert!((0.0..1.0).contains(&f));
    }
    assert_eq!(a.below(0), 0);
}

#[test]
fn zipf_ranks_follow_the_law() {
    let z = Zipf::new(100, 1.0);
    let mut rng = Rng::new(1);
    let mut counts = [0u32; 100];
    for _ in 0..200_000 {
        counts[z.sample(&mut rng)] += 1;
    }
    // P(0)/P(1) = 2 and P(0)/P(9) = 10 for s = 1.
    let r1 = f64::from(counts[0]) / f64::from(counts[1]);
    let r9 = f64::from(counts[0]) / f64::from(counts[9]);
    assert!((1.8..2.2).contains(&r1), "{r1}");
    assert!((8.5..11.5).contains(&r9), "{r9}");
    assert!(counts.iter().all(|&c| c > 0));
}

#[test]
fn zipf_of_one_topic_and_flat_zipf() {
    let mut rng = Rng::new(3);
    assert_eq!(Zipf::new(0, 1.0).sample(&mut rng), 0);
    let flat = Zipf::new(4, 0.0);
    let mut counts = [0u32; 4];
    for _ in 0..40_000 {
        counts[flat.sample(&mut rng)] += 1;
    }
    assert!(
        counts.iter().all(|&c| (9_000..11_000).contains(&c)),
        "{counts:?}"
    );
}
