use super::*;
use clap::Parser;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("volley-gateway").chain(args.iter().copied()))
        .expect("arguments parse")
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let config = Config::from_options(Options::default()).unwrap();
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.admin_addr, "0.0.0.0:9090".parse().unwrap());
    assert_eq!(config.flush_interval, Duration::from_millis(10));
    assert_eq!(config.max_pending_bytes, 1 << 20);
    assert_eq!(config.max_subscriptions_per_connection, 100);
    assert_eq!(config.max_message_bytes, 4096);
    assert_eq!(config.handshake_timeout, Duration::from_secs(5));
    assert_eq!(config.max_header_bytes, 8192);
    assert_eq!(config.ping_interval, Duration::from_secs(30));
    assert_eq!(config.drain_timeout, Duration::from_secs(10));
    assert!(config.nats.is_none(), "standalone by default");
    assert!(config.shards >= 1);
    assert!(config.api_key.is_none());
}

#[test]
fn yaml_keys_are_camel_case_with_humantime_durations() {
    let options = parse_yaml(
        "listen: 127.0.0.1:1234\nflushInterval: 25ms\nmaxPendingBytes: 4096\nallowedOrigins: [https://a.example]\ndrainTimeout: 2s\n",
    )
    .unwrap();
    let config = Config::from_options(options).unwrap();
    assert_eq!(config.listen, "127.0.0.1:1234".parse().unwrap());
    assert_eq!(config.flush_interval, Duration::from_millis(25));
    assert_eq!(config.max_pending_bytes, 4096);
    assert_eq!(config.allowed_origins, vec!["https://a.example".to_owned()]);
    assert_eq!(config.drain_timeout, Duration::from_secs(2));
}

#[test]
fn empty_yaml_is_all_defaults() {
    assert!(parse_yaml("  \n").unwrap().listen.is_none());
}

#[test]
fn unknown_yaml_key_is_named() {
    let (key, message) = parse_yaml("flushIntervall: 10ms\n").unwrap_err();
    assert!(message.contains("flushIntervall"), "{key}: {message}");
}

#[test]
fn mistyped_yaml_value_names_its_key() {
    let (key, message) = parse_yaml("maxPendingBytes: lots\n").unwrap_err();
    assert_eq!(key, "maxPendingBytes", "{message}");
    let (key, _) = parse_yaml("flushInterval: soon\n").unwrap_err();
    assert_eq!(key, "flushInterval");
}

#[test]
fn flags_win_over_the_file() {
    let file = parse_yaml("flushInterval: 25ms\nshards: 3\n").unwrap();
    let merged = cli(&["--flush-interval", "5ms"]).options.or(file);
    let config = Config::from_options(merged).unwrap();
    assert_eq!(config.flush_interval, Duration::from_millis(5));
    assert_eq!(config.shards, 3);
}

#[test]
fn comma_separated_origins_flag() {
    let options = cli(&["--allowed-origins", "https://a,https://b"]).options;
    assert_eq!(
        options.allowed_origins.unwrap(),
        vec!["https://a".to_owned(), "https://b".to_owned()]
    );
}

#[test]
fn invalid_values_name_the_key() {
    let cases: [(&str, &str); 5] = [
        ("shards: 0", "shards"),
        ("flushInterval: 0s", "flushInterval"),
        ("maxMessageBytes: 0", "maxMessageBytes"),
        ("maxHeaderBytes: 10", "maxHeaderBytes"),
        ("{nats: 'nats://x', subjectPrefix: 'a.>'}", "subjectPrefix"),
    ];
    for (yaml, key) in cases {
        let err = Config::from_options(parse_yaml(yaml).unwrap()).unwrap_err();
        assert!(err.to_string().contains(key), "{yaml}: {err}");
    }
}

/// Finding 17: every prefix NATS would refuse (async-nats `is_valid_subject`: no whitespace
/// of any kind, no empty token) exits at start-up naming the key, instead of a gateway that
/// never delivers.
#[test]
fn a_subject_prefix_nats_refuses_names_the_key() {
    for prefix in [
        "push..x", "push\tx", "push\rx", "push\nx", "pu sh", ".push", "push.", "", "a.*", "a.>",
        "a*", "x>y",
    ] {
        let options = Options {
            nats: Some("nats://127.0.0.1:4222".into()),
            subject_prefix: Some(prefix.into()),
            ..Options::default()
        };
        let err = Config::from_options(options).unwrap_err();
        assert!(
            err.to_string().contains("subjectPrefix"),
            "{prefix:?}: {err}"
        );
    }
    for prefix in ["push", "app.push", "a-b_c.d1"] {
        let options = Options {
            nats: Some("nats://127.0.0.1:4222".into()),
            subject_prefix: Some(prefix.into()),
            ..Options::default()
        };
        assert!(Config::from_options(options).is_ok(), "{prefix:?}");
    }
}

#[test]
fn nats_turns_on_cluster_mode() {
    let config = Config::from_options(
        cli(&[
            "--nats",
            "nats://127.0.0.1:4222",
            "--subject-prefix",
            "app.push",
        ])
        .options,
    )
    .unwrap();
    let nats = config.nats.expect("cluster mode");
    assert_eq!(nats.urls, "nats://127.0.0.1:4222");
    assert_eq!(nats.subject_prefix, "app.push");
    assert_eq!(nats.linger, Duration::from_secs(2));
}

#[test]
fn identity_must_be_subject_tokens() {
    let err = Config::from_options(cli(&["--pod-name", "a.b"]).options).unwrap_err();
    assert!(err.to_string().contains("podName"), "{err}");
}

#[test]
fn nats_user_needs_a_password() {
    let err =
        Config::from_options(cli(&["--nats", "nats://127.0.0.1:4222", "--nats-user", "u"]).options)
            .unwrap_err();
    assert!(err.to_string().contains("natsUser"), "{err}");
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let err = cli(&["--config", "/nonexistent/volley.yaml"])
        .load()
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/volley.yaml"),
        "{err}"
    );
}

#[test]
fn tokio_engine_takes_auth_but_not_nats() {
    let with_auth = cli(&["--engine", "tokio", "--jwt-secret-file", "/tmp/s"]);
    let config = with_auth.load().unwrap();
    assert_eq!(config.engine, Engine::Tokio);
    assert!(config.jwt.is_some());
    let with_nats = cli(&["--engine", "tokio", "--nats", "nats://127.0.0.1:4222"]);
    match with_nats.load() {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "engine"),
        other => panic!("expected an engine error, got {other:?}"),
    }
}

#[test]
fn default_shards_are_one_per_core_up_to_the_cluster_maximum() {
    assert_eq!(default_shards(0), 1);
    assert_eq!(default_shards(8), 8);
    assert_eq!(default_shards(64), 64);
    assert_eq!(default_shards(192), MAX_CLUSTER_SHARDS);
    // A 192-core node starts in cluster mode with the defaults...
    let cluster = Options {
        nats: Some("nats://127.0.0.1:4222".into()),
        ..Options::default()
    };
    let config = Config::from_options_on(cluster.clone(), 192).unwrap();
    assert_eq!(config.shards, 64);
    // ...while an explicit count over the maximum is still refused.
    let too_many = Options {
        shards: Some(65),
        ..cluster
    };
    assert!(Config::from_options_on(too_many, 192).is_err());
    assert_eq!(
        Config::from_options_on(Options::default(), 4)
            .unwrap()
            .shards,
        4
    );
}

#[test]
fn unset_options_resolve_to_the_listed_defaults() {
    // `Options::defaults()` (what --help and the README state) and the resolution of unset
    // options come from the same constants: both resolve to the same configuration.
    let unset = Config::from_options_on(Options::default(), 4).unwrap();
    let listed = Config::from_options_on(Options::defaults(), 4).unwrap();
    assert_eq!(format!("{unset:?}"), format!("{listed:?}"));
}

#[test]
fn jwt_flags_override_the_file_key_by_key() {
    let dir = std::env::temp_dir().join(format!("volley-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(
        &file,
        "auth: {jwt: {secretFile: /file/secret, issuer: file-iss, leewaySeconds: 5}}\n",
    )
    .unwrap();
    let config = cli(&[
        "--config",
        file.to_str().unwrap(),
        "--jwt-issuer",
        "flag-iss",
    ])
    .load()
    .unwrap();
    let jwt = config.jwt.expect("JWT auth on from the file's key source");
    assert_eq!(jwt.issuer.as_deref(), Some("flag-iss"));
    assert_eq!(jwt.secret_file.as_deref(), Some(Path::new("/file/secret")));
    assert_eq!(jwt.leeway_seconds, 5);
    let plain = cli(&["--jwt-secret-file", "/s"]).load().unwrap();
    assert_eq!(plain.jwt.unwrap().leeway_seconds, 30);
}

#[test]
fn auth_jwt_section_of_the_file() {
    let jwt = |yaml: &str| Config::from_options(parse_yaml(yaml).unwrap()).unwrap().jwt;
    let cfg = jwt("auth: {jwt: {publicKeyFile: /etc/volley/jwt.pem, issuer: https://idp}}")
        .expect("a key source turns JWT auth on");
    assert_eq!(
        cfg,
        JwtConfig {
            public_key_file: Some("/etc/volley/jwt.pem".into()),
            issuer: Some("https://idp".into()),
            ..JwtConfig::default()
        }
    );
    assert_eq!(cfg.leeway_seconds, 30);
    let cfg = jwt("auth: {jwt: {jwksFile: /j, audience: v, leewaySeconds: 5}}").unwrap();
    assert_eq!(cfg.leeway_seconds, 5);
    assert_eq!(cfg.audience.as_deref(), Some("v"));
    assert!(
        jwt("auth: {jwt: {issuer: https://idp}}").is_none(),
        "no key source: off"
    );
    let (key, message) = parse_yaml("auth: {jwt: {secretRef: x}}").unwrap_err();
    assert!(message.contains("secretRef"), "{key}: {message}");
}

#[test]
fn history_comes_from_the_yaml_block_or_the_flag_and_needs_nats() {
    let yaml = "nats: nats://127.0.0.1:4222\nhistory:\n  topics: [news.>]\n  maxAge: 2h\n";
    let config = Config::from_options_on(parse_yaml(yaml).unwrap(), 2).unwrap();
    let history = config.history.expect("history on");
    assert_eq!(history.topics, ["news.>"]);
    assert_eq!(history.max_age, Duration::from_secs(7200));
    // The flag (or historyTopics) replaces the block's topics.
    let mut options = parse_yaml(yaml).unwrap();
    options.history_topics = Some(vec!["a.*".into(), "b".into()]);
    let history = Config::from_options_on(options, 2)
        .unwrap()
        .history
        .unwrap();
    assert_eq!(history.topics, ["a.*", "b"]);
    // Standalone has no JetStream.
    let standalone = parse_yaml("historyTopics: [news]\n").unwrap();
    let err = Config::from_options_on(standalone, 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history") && err.contains("nats"), "{err}");
    // A replay must fit one client's queue.
    let big = parse_yaml(
        "nats: n\nmaxPendingBytes: 1000\nhistory: {topics: [a], replayMaxBytes: 2000}\n",
    )
    .unwrap();
    assert!(Config::from_options_on(big, 2).is_err());
    let typo = parse_yaml("history: {topic: [a]}\n").unwrap_err();
    assert!(typo.0.contains("history"), "{typo:?}");
}
