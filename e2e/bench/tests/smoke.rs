//! End to end: volley-bench against the real gateway (the binary named by `VOLLEY_BENCH_GATEWAY`,
//! else the same gateway code in-process), 200 connections for about 2 s, checking only the
//! report's accounting — never speed.

mod support;

fn check(json: &str, engines: usize) {
    let reports: serde_json::Value = serde_json::from_str(json).expect("JSON report");
    let reports = reports.as_array().expect("array");
    assert_eq!(reports.len(), engines);
    for r in reports {
        assert_eq!(r["connect"]["ok"], 200, "{r}");
        assert_eq!(r["connect"]["failed"], 0);
        assert_eq!(r["processes"], 2, "200 connections at 120 per process");
        let phase = &r["phases"][0];
        let accepted = phase["publish"]["accepted"].as_u64().unwrap();
        assert_eq!(accepted, 20, "10 msg/s for 2 s");
        assert_eq!(phase["loss"]["expected"].as_u64().unwrap(), accepted * 200);
        assert_eq!(phase["loss"]["lost"], 0, "{phase}");
        assert_eq!(phase["loss"]["extra"], 0);
        assert_eq!(phase["loss"]["received"].as_u64().unwrap(), accepted * 200);
        assert!(r["memory"]["rss_idle"].as_u64().unwrap() > 0);
        assert!(phase["latency_ms"]["max"].as_f64().unwrap() >= 0.0);
        if r["engine"] == "epoll" || r["engine"] == "external" {
            // The server's side, from its /metrics: every delivered frame went out in a pass.
            let passes = &phase["passes"];
            assert!(passes["passes"].as_u64().unwrap() > 0, "{passes}");
            assert!(
                passes["frames"].as_u64().unwrap() >= accepted * 200,
                "{passes}"
            );
            assert!(passes["writes"].as_u64().unwrap() > 0, "{passes}");
        } else {
            assert!(
                phase["passes"].is_null(),
                "the tokio engine makes no passes"
            );
        }
    }
}

fn bench(extra: &[String]) -> String {
    support::bench(
        "smoke",
        "-n 200 --per-process 120 --rates 10 --duration 2s --grace 5s --settle 200ms --runs 1",
        extra,
    )
}

#[test]
fn two_hundred_connections_are_accounted_exactly() {
    match support::gateway_binary() {
        Some(binary) => {
            let json = bench(&[
                "--gateway".into(),
                binary.display().to_string(),
                "--engines".into(),
                "epoll,tokio".into(),
            ]);
            check(&json, 2);
        }
        None => {
            // No binary named: run the same gateway code in-process.
            let rt = tokio::runtime::Runtime::new().unwrap();
            let gateway = support::in_process(&rt, Default::default());
            let json = bench(&support::connect_args(&[&gateway]));
            check(&json, 1);
        }
    }
}

/// Per-user connections prove their user with a signed token (anonymous connections may not
/// subscribe to the `user.` namespace), so every `user.<i>` message is delivered once. Which
/// connection gets it is the gateway's auth tests' concern, not the load tool's.
#[test]
fn per_user_messages_are_accounted_exactly() {
    let secret =
        std::env::temp_dir().join(format!("volley-bench-smoke-{}.key", std::process::id()));
    std::fs::write(&secret, "smoke-secret\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut args = vec![
        "--scenario".to_owned(),
        "per-user".to_owned(),
        "--user-rate".to_owned(),
        "50".to_owned(),
        "--jwt-secret-file".to_owned(),
        secret.display().to_string(),
    ];
    // Kept alive for the run when the gateway runs in-process.
    let _gateway = match support::gateway_binary() {
        Some(binary) => {
            args.extend([
                "--gateway".into(),
                binary.display().to_string(),
                "--engines".into(),
                "epoll".into(),
            ]);
            None
        }
        None => {
            let options = volley_gateway::config::Options {
                auth: Some(volley_gateway::config::Auth {
                    jwt: Some(volley_gateway::config::Jwt {
                        secret_file: Some(secret.clone()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            };
            let gateway = support::in_process(&rt, options);
            args.extend(support::connect_args(&[&gateway]));
            Some(gateway)
        }
    };
    let json = bench(&args);
    let _ = std::fs::remove_file(&secret);
    let reports: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let report = &reports[0];
    assert_eq!(report["connect"]["ok"], 200, "{report}");
    let user = &report["phases"][0];
    assert_eq!(user["name"], "user@50", "{user}");
    let accepted = user["publish"]["accepted"].as_u64().unwrap();
    assert_eq!(accepted, 100, "50 msg/s for 2 s");
    // One subscriber per user message.
    assert_eq!(user["loss"]["expected"].as_u64().unwrap(), accepted);
    assert_eq!(
        user["loss"]["received"].as_u64().unwrap(),
        accepted,
        "{user}"
    );
    assert_eq!(user["loss"]["extra"], 0);
    let broadcast = &report["phases"][1];
    assert_eq!(broadcast["loss"]["lost"], 0, "{broadcast}");
}
