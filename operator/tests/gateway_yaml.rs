//! The `gateway.yaml` the operator renders is read by the gateway's own loader
//! (`volley_gateway::config`), not compared with a hand-copied key list: every rendered config
//! parses (the loader rejects unknown keys), validates, and carries the spec's values.

// The spec is built from its default one field at a time, as in the operator's unit tests.
#![allow(clippy::field_reassign_with_default)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use volley_crds::{AuthSpec, JwtSpec, NatsSpec, PushCluster, PushClusterSpec, SecretKeyRef};
use volley_gateway::config::{Config, parse_yaml};
use volley_operator::gateway_config::{NATS_CREDS_FILE, render, to_yaml};

fn key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// What the gateway makes of the config the operator renders for `spec` (on a 2-core node).
fn loaded(spec: PushClusterSpec) -> Config {
    let rendered = render(&PushCluster::new("web", spec))
        .expect("a valid spec renders")
        .config;
    let yaml = to_yaml(&rendered);
    let options = parse_yaml(&yaml)
        .unwrap_or_else(|(k, m)| panic!("the gateway refuses key `{k}`: {m}\n{yaml}"));
    // The text carries the options exactly: what the operator meant is what the gateway reads.
    assert_eq!(options, rendered, "{yaml}");
    Config::from_options_on(options, 2)
        .unwrap_or_else(|e| panic!("the gateway refuses the config: {e}\n{yaml}"))
}

#[test]
fn the_default_spec_loads_with_the_gateway_defaults_and_the_pod_ports() {
    let config = loaded(PushClusterSpec::default());
    assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
    assert_eq!(config.admin_addr, SocketAddr::from(([0, 0, 0, 0], 9090)));
    assert_eq!(config.drain_timeout, Duration::from_secs(10));
    assert!(config.nats.is_none(), "no nats in the spec: standalone");
    assert!(config.jwt.is_none());
}

#[test]
fn every_spec_field_reaches_the_gateway_with_its_value() {
    for public in [false, true] {
        let mut spec = PushClusterSpec::default();
        spec.nats = Some(NatsSpec {
            url: "tls://nats-0.nats:4222,nats-1.nats:4222".into(),
            credentials_secret: Some("nats-creds".into()),
            subject_prefix: Some("app.push".into()),
        });
        spec.gateway.flush_interval = Some("5ms".into());
        spec.gateway.max_connections_per_pod = Some(1000);
        spec.gateway.max_pending_bytes = Some(65536);
        spec.gateway.max_subscriptions_per_connection = Some(16);
        spec.gateway.drain_timeout = Some("30s".into());
        spec.gateway.allowed_origins = vec!["https://a.example".into()];
        spec.gateway.api_key_ref = Some(key("api", "key"));
        let r = key("jwt", "k");
        spec.gateway.auth = Some(AuthSpec {
            jwt: Some(JwtSpec {
                secret_ref: (!public).then(|| r.clone()),
                public_key_ref: public.then(|| r.clone()),
                issuer: Some("iss".into()),
                audience: Some("aud".into()),
            }),
        });

        let config = loaded(spec);
        assert_eq!(config.flush_interval, Duration::from_millis(5));
        assert_eq!(config.max_connections, 1000);
        assert_eq!(config.max_pending_bytes, 65536);
        assert_eq!(config.max_subscriptions_per_connection, 16);
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.allowed_origins, ["https://a.example"]);
        let nats = config.nats.expect("cluster mode");
        assert_eq!(nats.urls, "tls://nats-0.nats:4222,nats-1.nats:4222");
        assert_eq!(nats.subject_prefix, "app.push");
        assert_eq!(
            nats.credentials_file.as_deref(),
            Some(Path::new(NATS_CREDS_FILE))
        );
        let jwt = config.jwt.expect("JWT auth on");
        let file = if public {
            jwt.public_key_file.as_deref()
        } else {
            jwt.secret_file.as_deref()
        };
        let file = file.expect("the mounted key file");
        assert!(file.starts_with("/etc/volley/jwt"), "{}", file.display());
        assert_eq!(jwt.issuer.as_deref(), Some("iss"));
        assert_eq!(jwt.audience.as_deref(), Some("aud"));
    }
}

#[test]
fn spec_history_reaches_the_gateway_with_every_knob() {
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(NatsSpec {
        url: "nats://nats:4222".into(),
        ..NatsSpec::default()
    });
    spec.history = Some(volley_crds::HistorySpec {
        topics: vec!["news.>".into(), "scores.*".into()],
        stream: Some("WEB_HISTORY".into()),
        max_messages_per_topic: Some(50),
        max_age: Some("2h".into()),
        storage: Some(volley_crds::HistoryStorage::Memory),
        replicas: Some(3),
        replay_max_messages: Some(200),
        replay_max_bytes: Some(65536),
        replay_timeout: Some("3s".into()),
        max_consumers: Some(4),
    });
    let history = loaded(spec).history.expect("history reaches the gateway");
    assert_eq!(history.topics, ["news.>", "scores.*"]);
    assert_eq!(history.stream, "WEB_HISTORY");
    assert_eq!(history.max_messages_per_topic, 50);
    assert_eq!(history.max_age, Duration::from_secs(7200));
    assert_eq!(history.storage, volley_gateway::history::Storage::Memory);
    assert_eq!(history.replicas, 3);
    assert_eq!(history.replay_max_messages, 200);
    assert_eq!(history.replay_max_bytes, 65536);
    assert_eq!(history.replay_timeout, Duration::from_secs(3));
    assert_eq!(history.max_consumers, 4);
    // Only the topics: the gateway's defaults apply.
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(NatsSpec {
        url: "nats://nats:4222".into(),
        ..NatsSpec::default()
    });
    spec.history = Some(volley_crds::HistorySpec {
        topics: vec!["a".into()],
        ..Default::default()
    });
    let history = loaded(spec).history.unwrap();
    assert_eq!(
        history.stream,
        volley_gateway::history::config::DEFAULT_STREAM
    );
    assert_eq!(
        history.max_consumers,
        volley_gateway::history::config::DEFAULT_MAX_CONSUMERS
    );
}
