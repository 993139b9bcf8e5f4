//! Tests for rendering and validating the gateway config.

// Tests start from a default spec and change one field at a time: easier to read.
#![allow(clippy::field_reassign_with_default)]

use volley_crds::{AuthSpec, JwtSpec, NatsSpec, PushCluster, PushClusterSpec, SecretKeyRef};

use super::*;

fn pc(spec: PushClusterSpec) -> PushCluster {
    PushCluster::new("web", spec)
}

fn key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

#[test]
fn default_spec_renders_minimal_config() {
    let v = render(&pc(PushClusterSpec::default())).unwrap();
    let yaml = to_yaml(&v.config);
    assert_eq!(
        yaml,
        "listen: 0.0.0.0:8080\nadminAddr: 0.0.0.0:9090\ndrainTimeout: 10s\n"
    );
    assert_eq!(v.drain, DEFAULT_DRAIN);
    assert!(v.jwt_key.is_none());
}

#[test]
fn full_spec_renders_its_values_under_the_gateway_s_keys() {
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(NatsSpec {
        url: "nats://nats:4222".into(),
        credentials_secret: None,
        subject_prefix: Some("app.push".into()),
    });
    spec.gateway.flush_interval = Some("5ms".into());
    spec.gateway.max_connections_per_pod = Some(1000);
    spec.gateway.max_pending_bytes = Some(65536);
    spec.gateway.max_subscriptions_per_connection = Some(16);
    spec.gateway.drain_timeout = Some("30s".into());
    spec.gateway.allowed_origins = vec!["https://a.example".into()];
    spec.gateway.auth = Some(AuthSpec {
        jwt: Some(JwtSpec {
            public_key_ref: Some(key("jwt", "pub.pem")),
            issuer: Some("iss".into()),
            audience: Some("aud".into()),
            ..Default::default()
        }),
    });
    let v = render(&pc(spec)).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&to_yaml(&v.config)).unwrap();
    // The text is hashed into the pod template: its keys keep the order of the mirror type this
    // replaced, so an operator upgrade rolls no pods.
    assert_eq!(
        to_yaml(&v.config),
        "listen: 0.0.0.0:8080\nadminAddr: 0.0.0.0:9090\nflushInterval: 5ms\nmaxPendingBytes: 65536\n\
         maxConnections: 1000\nmaxSubscriptionsPerConnection: 16\ndrainTimeout: 30s\n\
         allowedOrigins:\n- https://a.example\nnats: nats://nats:4222\nsubjectPrefix: app.push\n\
         auth:\n  jwt:\n    publicKeyFile: /etc/volley/jwt/public.pem\n    issuer: iss\n    audience: aud\n"
    );
    assert_eq!(value["maxConnections"], 1000);
    assert_eq!(value["flushInterval"], "5ms");
    assert_eq!(value["drainTimeout"], "30s");
    assert_eq!(value["nats"], "nats://nats:4222");
    assert_eq!(value["subjectPrefix"], "app.push");
    assert_eq!(
        value["auth"]["jwt"]["publicKeyFile"],
        "/etc/volley/jwt/public.pem"
    );
    assert_eq!(value["auth"]["jwt"]["issuer"], "iss");
    assert!(value["auth"]["jwt"].get("secretFile").is_none());
    assert_eq!(v.drain, Duration::from_secs(30));
    assert_eq!(v.jwt_key, Some(JwtKey::PublicKey(key("jwt", "pub.pem"))));
}

#[test]
fn bad_specs_are_rejected_with_clear_errors() {
    let mut bad_name = pc(PushClusterSpec::default());
    bad_name.metadata.name = Some("Web.Site".into());
    assert_eq!(
        render(&bad_name),
        Err(SpecError::BadName("Web.Site".into()))
    );
    // A leading digit: a DNS-1123 label, but the Service named after it must be DNS-1035.
    bad_name.metadata.name = Some("1web".into());
    let err = render(&bad_name).unwrap_err();
    assert_eq!(err, SpecError::BadName("1web".into()));
    assert!(err.to_string().contains("starting with a letter"), "{err}");

    let mut s = PushClusterSpec::default();
    s.gateway.flush_interval = Some("soon".into());
    let err = render(&pc(s)).unwrap_err();
    assert!(err.to_string().contains("gateway.flushInterval"), "{err}");

    let mut s = PushClusterSpec::default();
    s.gateway.drain_timeout = Some("2h".into());
    assert!(matches!(
        render(&pc(s)),
        Err(SpecError::DurationRange { .. })
    ));

    let mut s = PushClusterSpec::default();
    s.gateway.auth = Some(AuthSpec {
        jwt: Some(JwtSpec {
            secret_ref: Some(key("a", "b")),
            public_key_ref: Some(key("c", "d")),
            ..Default::default()
        }),
    });
    assert_eq!(render(&pc(s)), Err(SpecError::JwtKeySource));

    let mut s = PushClusterSpec::default();
    s.gateway.auth = Some(AuthSpec {
        jwt: Some(JwtSpec::default()),
    });
    assert_eq!(render(&pc(s)), Err(SpecError::JwtKeySource));

    let mut s = PushClusterSpec::default();
    s.nats = Some(NatsSpec {
        url: "http://nats".into(),
        ..Default::default()
    });
    assert!(matches!(render(&pc(s)), Err(SpecError::BadNatsUrl(_))));
    // The message goes into the status and an Event: never with the password.
    let mut s = PushClusterSpec::default();
    s.nats = Some(NatsSpec {
        url: "nats://u:s3cret@nats:not-a-port".into(),
        ..Default::default()
    });
    let err = render(&pc(s)).unwrap_err().to_string();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("nats://u:***@nats:not-a-port"), "{err}");

    let mut s = PushClusterSpec::default();
    s.nats = Some(NatsSpec {
        url: "nats://nats".into(),
        subject_prefix: Some("push.>".into()),
        ..Default::default()
    });
    assert!(matches!(
        render(&pc(s)),
        Err(SpecError::BadSubjectPrefix(_))
    ));

    let mut s = PushClusterSpec::default();
    s.autoscaling.min_replicas = 5;
    s.autoscaling.max_replicas = 2;
    assert!(matches!(
        render(&pc(s)),
        Err(SpecError::ReplicaBounds { .. })
    ));
}

#[test]
fn cluster_names() {
    assert!(is_valid_cluster_name("web-1"));
    assert!(is_valid_cluster_name("w"));
    assert!(is_valid_cluster_name(&"x".repeat(52)));
    for bad in ["", "-a", "a-", "A", "a.b", "1web", "0", &"x".repeat(53)] {
        assert!(!is_valid_cluster_name(bad), "{bad:?}");
    }
}

// The rendered type is the gateway's own; that the gateway loads every rendered config, and
// reads the spec's values from it, is checked by its loader in tests/gateway_yaml.rs.

#[test]
fn counts_must_be_positive() {
    for (value, ok) in [(-1, false), (0, false), (1, true)] {
        let mut spec = PushClusterSpec::default();
        spec.gateway.max_pending_bytes = Some(value);
        let got = render(&pc(spec)).map(|v| v.config.max_pending_bytes);
        if ok {
            assert_eq!(got, Ok(Some(1)));
        } else {
            assert_eq!(
                got,
                Err(SpecError::NotPositive {
                    field: "gateway.maxPendingBytes",
                    value
                })
            );
        }
    }
}

#[test]
fn nats_credentials_point_at_the_mounted_file() {
    let mut spec = PushClusterSpec::default();
    spec.nats = Some(NatsSpec {
        url: "nats://nats:4222".into(),
        credentials_secret: Some("nats-creds".into()),
        subject_prefix: None,
    });
    let v = render(&pc(spec.clone())).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&to_yaml(&v.config)).unwrap();
    assert_eq!(value["natsCredentials"], NATS_CREDS_FILE);
    assert_eq!(NATS_CREDS_FILE, format!("{NATS_DIR}/creds"));
    // Without a Secret there is no credentials key.
    spec.nats.as_mut().unwrap().credentials_secret = None;
    let v = render(&pc(spec.clone())).unwrap();
    assert!(!to_yaml(&v.config).contains("natsCredentials"));
    spec.nats.as_mut().unwrap().credentials_secret = Some(String::new());
    assert_eq!(render(&pc(spec)), Err(SpecError::EmptyCredentialsSecret));
}

#[test]
fn nats_urls() {
    for ok in [
        "nats://nats:4222",
        "nats://nats",
        "tls://user:pw@nats.example:4443",
        "nats://a:4222,nats://b:4222",
        "nats://a:4222,b:4222",
        "ws://[::1]:8080",
        "wss://nats.example/",
    ] {
        assert!(is_nats_url(ok), "{ok}");
    }
    for bad in [
        "",
        "nats://",
        "http://nats:4222",
        "nats:/nats",
        "nats://nats:port",
        "nats://nats:99999",
        "nats://nats:0",
        "nats://na ts:4222",
        "nats://a:4222,",
        "nats nats://a",
    ] {
        assert!(!is_nats_url(bad), "{bad}");
    }
}

#[test]
fn credentials_in_nats_urls_are_hidden() {
    for (url, shown) in [
        ("nats://nats:4222", "nats://nats:4222"),
        ("nats://u:p@nats:4222", "nats://u:***@nats:4222"),
        // A lone userinfo is a token.
        ("tls://t0ken@nats:4222", "tls://***@nats:4222"),
        // A password holding '@' and ':'.
        ("nats://u:p@ss:w@nats:4222", "nats://u:***@nats:4222"),
        // Every server of a list that names its scheme.
        (
            "nats://a:1@n1:4222,tls://t@n2:4222, nats://n3,nats://c:3@n4",
            "nats://a:***@n1:4222,tls://***@n2:4222, nats://n3,nats://c:***@n4",
        ),
        // Schemeless servers after one with credentials cannot be told from a password holding
        // ',' (finding 7 of review 2): all of it is hidden up to the last '@'.
        (
            "nats://a:1@n1:4222,b:2@n2:4222, nats://n3",
            "nats://***@n2:4222, nats://n3",
        ),
        ("nats://a:1@n1,n2:4222", "nats://a:***@n1,n2:4222"),
        // A password holding ',' (one URL parses so).
        ("nats://u:a,b@h", "nats://***@h"),
        (
            "nats://u:pa,ss@h:4222,nats://v:x,y@k",
            "nats://***@h:4222,nats://***@k",
        ),
        // A token holding ',' and '@'.
        ("nats://to,k@en@h", "nats://***@h"),
        ("[::1]:4222", "[::1]:4222"),
        ("", ""),
    ] {
        assert_eq!(redact_nats_url(url), shown, "{url}");
    }
    // The reviewer's case, said as what must not show.
    let shown = redact_nats_url("nats://u:a,b@h");
    assert!(!shown.contains("a,") && !shown.contains("b@"), "{shown}");
}
