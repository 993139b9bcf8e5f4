//! End to end: `volley-bench run --engines reference` (and `reference-fold`, which folds
//! mid-pass publishes into the pass, and `reference-uring`, its io_uring variant) drives the
//! limit reference with the same client processes and publishers as a gateway, and every
//! connection receives as many messages as were published, no fewer and no more (order and
//! duplicates per connection are checked in `src/reference/tests.rs`).
//! Checks only the accounting, never speed.

mod support;

/// Runs `engine` (a reference variant) over 200 connections and checks every message reached
/// every connection exactly once, with its passes reported from its `/metrics` (the order of
/// frames on each connection is checked by `reference/tests.rs`, over 200 connections too).
fn delivers_every_message_to_every_connection(engine: &str) {
    let json = support::bench(
        engine,
        &format!(
            "--engines {engine} -n 200 --per-process 120 --rates 10,40 --duration 1s --grace 5s --settle 200ms --runs 1"
        ),
        &[],
    );
    let reports: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let reports = reports.as_array().expect("array");
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r["engine"], engine);
    assert_eq!(r["connect"]["ok"], 200, "{r}");
    assert_eq!(r["connect"]["failed"], 0);
    assert!(r["memory"]["rss_idle"].as_u64().unwrap() > 0);
    let phases = r["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    for (phase, planned) in phases.iter().zip([10, 40]) {
        let accepted = phase["publish"]["accepted"].as_u64().unwrap();
        assert_eq!(accepted, planned, "{phase}");
        assert_eq!(phase["loss"]["expected"].as_u64().unwrap(), accepted * 200);
        assert_eq!(phase["loss"]["received"].as_u64().unwrap(), accepted * 200);
        assert_eq!(phase["loss"]["lost"], 0, "{phase}");
        assert_eq!(phase["loss"]["extra"], 0, "{phase}");
        assert_eq!(phase["server_closed_conns"], 0, "{phase}");
        assert!(phase["rss_peak"].as_u64().unwrap() > 0, "{phase}");
        let passes = &phase["passes"];
        let (count, writes) = (
            passes["passes"].as_u64().unwrap(),
            passes["writes"].as_u64().unwrap(),
        );
        assert!(count >= 1, "{phase}");
        if volley_bench::reference::variant(engine).is_some_and(|v| v.fold) {
            // Every connection was written, and every pass wrote; a pass that carries only the
            // folds the first connections missed writes only those.
            assert!(writes >= 200 && writes >= count, "{phase}");
        } else {
            // Every connection was written at least once per pass.
            assert!(writes >= 200 * count, "{phase}");
        }
    }
}

#[test]
fn the_reference_delivers_every_message_to_every_connection() {
    delivers_every_message_to_every_connection("reference");
}

#[test]
fn the_folding_reference_delivers_every_message_to_every_connection() {
    delivers_every_message_to_every_connection("reference-fold");
}

#[test]
fn the_io_uring_reference_delivers_every_message_to_every_connection() {
    delivers_every_message_to_every_connection("reference-uring");
}

#[test]
fn the_reference_refuses_scenarios_it_cannot_serve() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_volley-bench"))
        .args(["run", "--engines", "reference", "--scenario", "per-user"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run volley-bench");
    assert!(!status.status.success());
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(stderr.contains("fanout, idle and storm"), "{stderr}");
}
