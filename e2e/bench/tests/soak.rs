//! The soak scenario end to end, for seconds rather than minutes: against the real gateway (the
//! binary when this `cargo test` built it, else the same code in-process), every kind of client
//! does its part, slow consumers are closed by the gateway, and descriptors return to the
//! baseline. RSS flatness needs the long run (BENCHMARKS.md); here it is only reported.

mod support;

use std::process::Command;

fn soak(extra: &[String]) -> serde_json::Value {
    let out = std::env::temp_dir().join(format!("volley-bench-soak-{}.json", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_volley-bench"))
        .arg("soak")
        .args(
            "--duration 6s --sample-every 1s --settle 300ms --churners 4 --churn-hold 500ms \
             --steady 4 --pingers 2 --ping-every 300ms --rate 20 --size 128 --slow-every 1500ms \
             --slow-burst 64 --slow-size 32768 --fd-wait 10s"
                .split_whitespace(),
        )
        .args(extra)
        .arg("--json")
        .arg(&out)
        .status()
        .expect("run volley-bench soak");
    assert!(status.success());
    let report = serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).unwrap();
    let _ = std::fs::remove_file(&out);
    report
}

fn check(r: &serde_json::Value) {
    let a = &r["activity"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("number: {r}"));
    assert!(n(&a["churn_connects"]) > 0, "{a}");
    assert!(n(&a["churn_resets"]) > 0, "{a}");
    assert!(n(&a["published"]) > 0, "{a}");
    assert_eq!(n(&a["publish_failed"]), 0, "{a}");
    assert!(
        n(&a["steady_messages"]) > 0,
        "steady subscribers receive: {a}"
    );
    assert_eq!(
        n(&a["steady_reconnects"]),
        0,
        "steady subscribers stay: {a}"
    );
    assert!(n(&a["messages"]) > 0, "{a}");
    assert!(n(&a["ws_pongs"]) > 0, "WebSocket pings are answered: {a}");
    assert!(n(&a["op_pongs"]) > 0, "ping ops are answered: {a}");
    assert!(n(&a["slow_started"]) > 0, "{a}");
    assert!(
        n(&a["slow_closed"]) > 0,
        "the gateway closes slow consumers: {a}"
    );
    // One baseline, one per second of load, one after the clients left.
    let samples = r["samples"].as_array().expect("samples");
    assert!(samples.len() >= 5, "{samples:?}");
    assert!(samples.iter().any(|s| n(&s["clients"]) > 0));
    assert!(r["rss_trend"]["samples"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        r["fds_returned"].as_bool().unwrap(),
        "descriptors back to {}: final {}",
        r["fds_baseline"],
        r["fds_final"]
    );
    assert!(
        n(&r["fds_peak"]) > n(&r["fds_baseline"]),
        "clients held descriptors"
    );
}

#[test]
fn a_short_soak_exercises_every_client_and_returns_descriptors() {
    // A small pending bound so each slow consumer's burst is sure to exceed it.
    match support::gateway_binary() {
        Some(binary) => check(&soak(&[
            "--gateway".into(),
            binary.display().to_string(),
            "--gateway-arg=--shards=1".into(),
            "--gateway-arg=--max-pending-bytes=65536".into(),
        ])),
        None => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let gateway = support::in_process(
                &rt,
                volley_gateway::config::Options {
                    max_pending_bytes: Some(65536),
                    ..Default::default()
                },
            );
            check(&soak(&support::connect_args(&[&gateway])));
        }
    }
}
