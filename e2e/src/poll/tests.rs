//! Tests for the polling helper.

use super::*;

#[tokio::test]
async fn eventually_returns_first_success_or_times_out() {
    let mut n = 0;
    let v = eventually("n reaches 2", Duration::from_secs(5), || {
        n += 1;
        let n = n;
        async move { (n >= 2).then_some(n) }
    })
    .await
    .unwrap();
    assert_eq!(v, 2);
    let err = eventually("never", Duration::from_millis(10), || async { None::<()> })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never"));
}
