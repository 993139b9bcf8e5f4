//! Tests for the gateway options type: file syntax, layering and the defaults' shape.

use super::*;

fn parse(yaml: &str) -> Result<Options, serde_yaml::Error> {
    serde_yaml::from_str(yaml)
}

#[test]
fn file_keys_are_camel_case_with_humantime_durations() {
    let o = parse("listen: 127.0.0.1:1234\nflushInterval: 25ms\nmaxPendingBytes: 4096\nengine: tokio\nauth: {jwt: {secretFile: /s, leewaySeconds: 5}}\n").unwrap();
    assert_eq!(o.listen, Some("127.0.0.1:1234".parse().unwrap()));
    assert_eq!(o.flush_interval, Some(Duration::from_millis(25)));
    assert_eq!(o.max_pending_bytes, Some(4096));
    assert_eq!(o.engine, Some(Engine::Tokio));
    let jwt = o.auth.unwrap().jwt.unwrap();
    assert_eq!(jwt.secret_file, Some(PathBuf::from("/s")));
    assert_eq!(jwt.leeway_seconds, Some(5));
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    for yaml in [
        "flushIntervall: 10ms",
        "auth: {jwtt: {}}",
        "auth: {jwt: {secret: x}}",
    ] {
        let err = parse(yaml).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{yaml}: {err}");
    }
}

#[test]
fn only_set_options_are_written_and_they_read_back() {
    let o = Options {
        listen: Some(defaults::LISTEN),
        drain_timeout: Some(Duration::from_secs(30)),
        ..Options::default()
    };
    let yaml = serde_yaml::to_string(&o).unwrap();
    assert_eq!(yaml, "listen: 0.0.0.0:8080\ndrainTimeout: 30s\n");
    assert_eq!(parse(&yaml).unwrap(), o);
    assert_eq!(serde_yaml::to_string(&Options::default()).unwrap(), "{}\n");
}

#[test]
fn the_defaults_read_back_from_their_own_yaml() {
    let yaml = serde_yaml::to_string(&Options::defaults()).unwrap();
    assert_eq!(parse(&yaml).unwrap(), Options::defaults(), "{yaml}");
    // Machine-dependent and "off" defaults are left unset, not written as a made-up value.
    let d = Options::defaults();
    assert!(d.shards.is_none() && d.pod_name.is_none() && d.nats.is_none());
}

#[test]
fn a_higher_source_wins_and_a_lower_one_fills_the_gaps() {
    let flags = Options {
        flush_interval: Some(Duration::from_millis(5)),
        ..Options::default()
    };
    let file = parse("flushInterval: 25ms\nshards: 3\n").unwrap();
    let merged = flags.or(file).or(Options::defaults());
    assert_eq!(merged.flush_interval, Some(Duration::from_millis(5)));
    assert_eq!(merged.shards, Some(3));
    assert_eq!(merged.listen, Some(defaults::LISTEN));
    assert_eq!(
        Options::default().or(Options::default()),
        Options::default()
    );
}

#[test]
fn jwt_keys_layer_one_by_one() {
    let flags = Jwt {
        issuer: Some("flag".into()),
        ..Jwt::default()
    };
    let file = Jwt {
        issuer: Some("file".into()),
        secret_file: Some("/s".into()),
        ..Jwt::default()
    };
    let merged = flags.or(file);
    assert_eq!(merged.issuer.as_deref(), Some("flag"));
    assert_eq!(merged.secret_file, Some(PathBuf::from("/s")));
    assert!(merged.has_key_source());
    assert!(!Jwt::default().has_key_source());
}

#[test]
fn default_shards_are_one_per_core_up_to_the_cluster_maximum() {
    assert_eq!(defaults::shards(0), 1);
    assert_eq!(defaults::shards(8), 8);
    assert_eq!(defaults::shards(64), 64);
    assert_eq!(defaults::shards(192), defaults::MAX_CLUSTER_SHARDS);
}
