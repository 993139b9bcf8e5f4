//! Tests for the redacting `Debug` of [`Options`].

use super::*;
use crate::config::{Auth, Jwt};

const SECRETS: [&str; 5] = [
    "key-0xA1b2",
    "tok-0xC3d4",
    "pw-0xE5f6",
    "SUAseed0xG7h8",
    "urlpw-0xI9j0",
];

fn with_secrets() -> Options {
    Options {
        api_key: Some(SECRETS[0].into()),
        nats_token: Some(SECRETS[1].into()),
        nats_password: Some(SECRETS[2].into()),
        nats_nkey: Some(SECRETS[3].into()),
        nats: Some(format!(
            "nats://alice:{}@nats-a:4222,tls://{}@nats-b/x?y=1#z,nats-c:4222",
            SECRETS[4], SECRETS[1]
        )),
        nats_user: Some("alice".into()),
        auth: Some(Auth {
            jwt: Some(Jwt {
                secret_file: Some("/etc/volley/jwt-secret".into()),
                issuer: Some("https://issuer.example".into()),
                ..Jwt::default()
            }),
        }),
        ..Options::defaults()
    }
}

#[test]
fn no_secret_appears_in_debug_output() {
    let o = with_secrets();
    for out in [format!("{o:?}"), format!("{o:#?}")] {
        for s in SECRETS {
            assert!(!out.contains(s), "{s:?} leaked in {out}");
        }
        assert!(out.contains("<redacted>"), "{out}");
    }
}

#[test]
fn set_secrets_show_as_set_and_the_rest_stays_readable() {
    let out = format!("{:?}", with_secrets());
    for field in ["api_key", "nats_token", "nats_password", "nats_nkey"] {
        assert!(
            out.contains(&format!("{field}: Some(<redacted>)")),
            "{field}: {out}"
        );
    }
    assert!(
        out.contains(
            "nats: Some(\"nats://<redacted>@nats-a:4222,tls://<redacted>@nats-b/x?y=1#z,nats-c:4222\")"
        ),
        "{out}"
    );
    assert!(out.contains("nats_user: Some(\"alice\")"), "{out}");
    assert!(
        out.contains("/etc/volley/jwt-secret"),
        "a path is not a secret: {out}"
    );
    let unset = format!("{:?}", Options::default());
    assert!(unset.contains("api_key: None"), "{unset}");
    assert!(unset.contains("nats: None"), "{unset}");
}

#[test]
fn userinfo_ends_at_the_authority() {
    assert_eq!(redact_userinfo("nats://h:4222"), "nats://h:4222");
    assert_eq!(redact_userinfo("u:p@h"), "<redacted>@h");
    assert_eq!(
        redact_userinfo("nats://h/path@x"),
        "nats://h/path@x",
        "an '@' after the authority is not userinfo"
    );
    assert_eq!(
        redact_userinfo("nats://u:p@ss@h"),
        "nats://<redacted>@h",
        "the last '@' of the authority ends the userinfo"
    );
}
