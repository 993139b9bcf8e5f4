//! Tests for the leadership wait helper (the Lease itself needs a cluster: see e2e/).

use super::*;

#[tokio::test]
async fn waits_for_leadership_changes() {
    let (tx, mut rx) = watch::channel(false);
    let waiter = tokio::spawn(async move {
        assert!(wait_for(&mut rx, true).await);
        assert!(wait_for(&mut rx, false).await);
        rx
    });
    tx.send(true).unwrap();
    tokio::task::yield_now().await;
    tx.send(false).unwrap();
    let mut rx = waiter.await.unwrap();
    drop(tx);
    // Sender gone: "not leading" is reached, "leading" never is.
    assert!(wait_for(&mut rx, false).await);
    assert!(!wait_for(&mut rx, true).await);
}
