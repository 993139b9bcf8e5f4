//! Tests for the metrics server.

use std::sync::atomic::Ordering;

use super::*;

#[tokio::test]
async fn serves_metrics_health_and_readiness() {
    let health = Health::default();
    health
        .metrics
        .reconciles
        .get_or_create(&ResultLabel { result: "ok" })
        .inc();
    health
        .metrics
        .failures
        .get_or_create(&ReasonLabel {
            reason: "invalid_spec",
        })
        .inc();
    health.metrics.reconcile_seconds.observe(0.01);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(health.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
    health.ready.store(true, Ordering::Relaxed);
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    let m = get("/metrics").await;
    assert!(
        m.contains("volley_operator_reconciles_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("volley_operator_leader"), "{m}");
    assert!(
        m.contains("volley_operator_reconcile_failures_total{reason=\"invalid_spec\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("volley_operator_reconcile_duration_seconds_count 1"),
        "{m}"
    );
}
