use super::*;

/// Sends `n` messages at `at_ms`; returns the verdicts.
fn burst(rate: &mut RateLimit, at_ms: u64, n: usize, limit: u32) -> Vec<Verdict> {
    (0..n).map(|_| rate.check(at_ms, limit)).collect()
}

#[test]
fn under_the_limit_everything_passes() {
    let mut rate = RateLimit::default();
    for second in 0..10u64 {
        for v in burst(&mut rate, 5_000 + second * 1_000, 3, 3) {
            assert_eq!(v, Verdict::Allow);
        }
    }
}

#[test]
fn over_the_limit_drops_with_one_error_reply_per_window() {
    let mut rate = RateLimit::default();
    let v = burst(&mut rate, 100, 5, 3);
    assert_eq!(
        v,
        [
            Verdict::Allow,
            Verdict::Allow,
            Verdict::Allow,
            Verdict::Deny { first: true },
            Verdict::Deny { first: false },
        ]
    );
    // The next window allows again and replies again.
    let v = burst(&mut rate, 1_100, 4, 3);
    assert_eq!(v[..3], [Verdict::Allow; 3]);
    assert_eq!(v[3], Verdict::Deny { first: true });
}

#[test]
fn the_first_window_is_a_full_second_whatever_the_clock_says() {
    // The flood starts 900 ms into the caller's clock second: the old rule (windows on whole
    // clock seconds) closed it 1.1 s later. Now the close comes in the third full window.
    let mut rate = RateLimit::default();
    let limit = 2;
    let mut closed_at = None;
    for ms in (900..6_000u64).step_by(50) {
        if rate.check(ms, limit) == Verdict::Close {
            closed_at = Some(ms);
            break;
        }
    }
    let closed_at = closed_at.expect("a sustained flood is closed");
    assert!(closed_at >= 900 + 2_000, "closed at {closed_at}");
    assert!(closed_at < 900 + 3_000, "closed at {closed_at}");
}

#[test]
fn a_quiet_second_between_floods_resets_the_count_of_windows() {
    let mut rate = RateLimit::default();
    burst(&mut rate, 0, 5, 2);
    burst(&mut rate, 1_000, 5, 2);
    // Nothing from 2,000 to 3,000: the chain is broken.
    let v = burst(&mut rate, 3_100, 5, 2);
    assert!(!v.contains(&Verdict::Close), "{v:?}");
    let v = burst(&mut rate, 4_100, 5, 2);
    assert!(!v.contains(&Verdict::Close), "{v:?}");
    let v = burst(&mut rate, 5_100, 5, 2);
    assert_eq!(v[2], Verdict::Close);
}

#[test]
fn a_window_under_the_limit_breaks_the_chain() {
    let mut rate = RateLimit::default();
    burst(&mut rate, 0, 5, 2);
    burst(&mut rate, 1_000, 5, 2);
    burst(&mut rate, 2_000, 1, 2);
    let v = burst(&mut rate, 3_000, 5, 2);
    assert!(!v.contains(&Verdict::Close), "{v:?}");
}

#[test]
fn counts_saturate_instead_of_wrapping() {
    let mut rate = RateLimit::default();
    let v = burst(&mut rate, 10, 70_000, 1);
    assert_eq!(v.last(), Some(&Verdict::Deny { first: false }));
}

/// Finding 15: the count once saturated at 65,535, after which every message passed.
#[test]
fn a_limit_at_or_above_65535_still_limits() {
    for limit in [65_535u32, 100_000] {
        let mut rate = RateLimit::default();
        let n = limit as usize;
        assert!(
            burst(&mut rate, 100, n, limit)
                .iter()
                .all(|v| *v == Verdict::Allow)
        );
        assert_eq!(
            rate.check(100, limit),
            Verdict::Deny { first: true },
            "{limit}"
        );
        assert_eq!(
            rate.check(100, limit),
            Verdict::Deny { first: false },
            "{limit}"
        );
    }
}
