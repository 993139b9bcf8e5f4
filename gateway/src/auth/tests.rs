use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/auth/testdata")).join(name)
}

fn read_testdata(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

/// Writes `contents` to a fresh file under the system temp dir.
fn temp_file(contents: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "volley-auth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

fn now() -> u64 {
    get_current_timestamp()
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET),
        claims,
    )
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read_testdata("rsa_private.pem")).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&read_testdata("ec_private.pem")).unwrap()
}

fn hmac_cfg() -> JwtConfig {
    JwtConfig {
        secret_file: Some(temp_file(SECRET)),
        ..JwtConfig::default()
    }
}

fn verifier(cfg: &JwtConfig) -> Verifier {
    Verifier::from_config(cfg).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600})
}

fn identity(user: Option<&str>, topics: Option<&[&str]>) -> Identity {
    Identity {
        user: user.map(str::to_owned),
        expires_at: 0,
        topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn verifier_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<Identity>();
}

#[test]
fn hs256_valid() {
    let v = verifier(&hmac_cfg());
    let exp = now() + 600;
    let t = hs(&json!({"sub": "alice", "exp": exp, "topics": ["stocks.>"]}));
    let id = v.verify(&t).unwrap();
    assert_eq!(id.user.as_deref(), Some("alice"));
    assert_eq!(id.expires_at, exp);
    assert_eq!(id.topics, Some(vec!["stocks.>".to_string()]));
    assert_eq!(id.user_topic().as_deref(), Some("user.alice"));

    // HS384/HS512 are in the HMAC family too; no `sub` gives an anonymous identity.
    let t = token(
        Algorithm::HS512,
        None,
        &EncodingKey::from_secret(SECRET),
        &json!({"exp": exp}),
    );
    let id = v.verify(&t).unwrap();
    assert_eq!(id.user, None);
    assert_eq!(id.topics, None);
    assert_eq!(id.user_topic(), None);
}

#[test]
fn secret_file_trailing_newline_is_trimmed() {
    for contents in [&b"s3cret\n"[..], b"s3cret\r\n", b"s3cret"] {
        let v = verifier(&JwtConfig {
            secret_file: Some(temp_file(contents)),
            ..JwtConfig::default()
        });
        let t = token(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"s3cret"),
            &claims(),
        );
        assert!(v.verify(&t).is_ok(), "{contents:?}");
    }
}

#[test]
fn missing_and_malformed() {
    let v = verifier(&hmac_cfg());
    assert_eq!(v.verify(""), Err(AuthError::Missing));
    assert_eq!(v.verify("  "), Err(AuthError::Missing));
    assert_eq!(v.verify("abc"), Err(AuthError::Malformed));
    assert_eq!(v.verify("a.b.c"), Err(AuthError::Malformed));
    // `topics` of the wrong type.
    let t = hs(&json!({"sub": "alice", "exp": now() + 600, "topics": "stocks.>"}));
    assert_eq!(v.verify(&t), Err(AuthError::Malformed));
}

#[test]
fn bad_signature() {
    let v = verifier(&hmac_cfg());
    let t = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another secret"),
        &claims(),
    );
    assert_eq!(v.verify(&t), Err(AuthError::BadSignature));

    // A valid token whose payload was swapped for another one.
    let good = hs(&claims());
    let other = hs(&json!({"sub": "mallory", "exp": now() + 600}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let v = verifier(&hmac_cfg());
    let t = hs(&json!({"sub": "a", "exp": now() - 100}));
    assert_eq!(v.verify(&t), Err(AuthError::Expired));
    // Within the default 30 s leeway.
    let t = hs(&json!({"sub": "a", "exp": now() - 10}));
    assert!(v.verify(&t).is_ok());

    let t = hs(&json!({"sub": "a", "exp": now() + 600, "nbf": now() + 100}));
    assert_eq!(v.verify(&t), Err(AuthError::NotYetValid));
    let t = hs(&json!({"sub": "a", "exp": now() + 600, "nbf": now() + 10}));
    assert!(v.verify(&t).is_ok());

    let strict = verifier(&JwtConfig {
        leeway_seconds: 0,
        ..hmac_cfg()
    });
    let t = hs(&json!({"sub": "a", "exp": now() - 10}));
    assert_eq!(strict.verify(&t), Err(AuthError::Expired));
}

#[test]
fn missing_exp_is_rejected() {
    let v = verifier(&hmac_cfg());
    let t = hs(&json!({"sub": "alice"}));
    assert_eq!(v.verify(&t), Err(AuthError::Malformed));
    let t = hs(&json!({"sub": "alice", "exp": "tomorrow"}));
    assert_eq!(v.verify(&t), Err(AuthError::Malformed));
}

#[test]
fn issuer() {
    let v = verifier(&JwtConfig {
        issuer: Some("https://idp.example".into()),
        ..hmac_cfg()
    });
    let exp = now() + 600;
    let t = hs(&json!({"sub": "a", "exp": exp, "iss": "https://idp.example"}));
    assert!(v.verify(&t).is_ok());
    let t = hs(&json!({"sub": "a", "exp": exp, "iss": "https://evil.example"}));
    assert_eq!(v.verify(&t), Err(AuthError::WrongIssuer));
    let t = hs(&json!({"sub": "a", "exp": exp}));
    assert_eq!(v.verify(&t), Err(AuthError::WrongIssuer));
}

#[test]
fn audience() {
    let v = verifier(&JwtConfig {
        audience: Some("volley".into()),
        ..hmac_cfg()
    });
    let exp = now() + 600;
    let t = hs(&json!({"sub": "a", "exp": exp, "aud": "volley"}));
    assert!(v.verify(&t).is_ok());
    let t = hs(&json!({"sub": "a", "exp": exp, "aud": ["billing", "volley"]}));
    assert!(v.verify(&t).is_ok());
    let t = hs(&json!({"sub": "a", "exp": exp, "aud": "billing"}));
    assert_eq!(v.verify(&t), Err(AuthError::WrongAudience));
    let t = hs(&json!({"sub": "a", "exp": exp}));
    assert_eq!(v.verify(&t), Err(AuthError::WrongAudience));

    // Without `audience` configured, `aud` is not checked.
    let v = verifier(&hmac_cfg());
    let t = hs(&json!({"sub": "a", "exp": exp, "aud": "billing"}));
    assert!(v.verify(&t).is_ok());
}

#[test]
fn rs256_and_es256_public_keys() {
    let rsa = verifier(&JwtConfig {
        public_key_file: Some(testdata("rsa_public.pem")),
        ..JwtConfig::default()
    });
    let ec = verifier(&JwtConfig {
        public_key_file: Some(testdata("ec_public.pem")),
        ..JwtConfig::default()
    });
    assert!(format!("{rsa:?}").contains("RSA"));
    assert!(format!("{ec:?}").contains("EC P-256"));

    let rs256 = token(Algorithm::RS256, None, &rsa_key(), &claims());
    let ps256 = token(Algorithm::PS256, None, &rsa_key(), &claims());
    let es256 = token(Algorithm::ES256, None, &ec_key(), &claims());
    assert_eq!(rsa.verify(&rs256).unwrap().user.as_deref(), Some("alice"));
    assert!(rsa.verify(&ps256).is_ok());
    assert_eq!(ec.verify(&es256).unwrap().user.as_deref(), Some("alice"));

    // Each key accepts only its own family.
    assert_eq!(rsa.verify(&es256), Err(AuthError::WrongAlgorithm));
    assert_eq!(ec.verify(&rs256), Err(AuthError::WrongAlgorithm));
    assert_eq!(rsa.verify(&hs(&claims())), Err(AuthError::WrongAlgorithm));

    // A corrupted RSA signature fails.
    let mut parts: Vec<String> = rs256.split('.').map(str::to_owned).collect();
    let sig = parts[2].as_bytes();
    let flipped = if sig[10] == b'A' { 'B' } else { 'A' };
    parts[2].replace_range(10..11, &flipped.to_string());
    assert_eq!(rsa.verify(&parts.join(".")), Err(AuthError::BadSignature));
}

#[test]
fn hs_rs_algorithm_confusion_is_rejected() {
    let pem = read_testdata("rsa_public.pem");
    let rsa = verifier(&JwtConfig {
        public_key_file: Some(testdata("rsa_public.pem")),
        ..JwtConfig::default()
    });
    // The classic attack: HS256 "signed" with the server's public key bytes as HMAC secret.
    let forged = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&pem),
        &claims(),
    );
    assert_eq!(rsa.verify(&forged), Err(AuthError::WrongAlgorithm));
}

#[test]
fn alg_none_is_rejected() {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    let v = verifier(&hmac_cfg());
    assert!(v.verify(&unsigned).is_err());
    let rsa = verifier(&JwtConfig {
        public_key_file: Some(testdata("rsa_public.pem")),
        ..JwtConfig::default()
    });
    assert!(rsa.verify(&unsigned).is_err());
}

#[test]
fn jwks_kid_selection() {
    let v = verifier(&JwtConfig {
        jwks_file: Some(testdata("jwks.json")),
        ..JwtConfig::default()
    });
    let debug = format!("{v:?}");
    assert!(debug.contains("rsa-1") && debug.contains("ec-1"), "{debug}");

    let rs = token(Algorithm::RS256, Some("rsa-1"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs).unwrap().user.as_deref(), Some("alice"));
    let es = token(Algorithm::ES256, Some("ec-1"), &ec_key(), &claims());
    assert!(v.verify(&es).is_ok());

    // Unknown kid; no kid while the set has two keys.
    let t = token(Algorithm::RS256, Some("rsa-2"), &rsa_key(), &claims());
    assert_eq!(v.verify(&t), Err(AuthError::UnknownKey));
    let t = token(Algorithm::RS256, None, &rsa_key(), &claims());
    assert_eq!(v.verify(&t), Err(AuthError::UnknownKey));

    // The kid picks the key: an RSA token naming the EC key fails, and `alg: RS256` on the JWK
    // pins that key to RS256.
    let t = token(Algorithm::RS256, Some("ec-1"), &rsa_key(), &claims());
    assert_eq!(v.verify(&t), Err(AuthError::WrongAlgorithm));
    let t = token(Algorithm::RS384, Some("rsa-1"), &rsa_key(), &claims());
    assert_eq!(v.verify(&t), Err(AuthError::WrongAlgorithm));
    let t = token(
        Algorithm::ES256,
        Some("ec-1"),
        &ec_key(),
        &json!({"exp": now() - 100}),
    );
    assert_eq!(v.verify(&t), Err(AuthError::Expired));
}

#[test]
fn jwks_single_key_without_kid_and_skipped_keys() {
    let set: Value = serde_json::from_slice(&read_testdata("jwks.json")).unwrap();
    let mut ec = set["keys"][1].clone();
    ec.as_object_mut().unwrap().remove("kid");
    let jwks = json!({"keys": [
        ec,
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
    ]});
    let v = verifier(&JwtConfig {
        jwks_file: Some(temp_file(jwks.to_string().as_bytes())),
        ..JwtConfig::default()
    });
    let t = token(Algorithm::ES256, None, &ec_key(), &claims());
    assert!(v.verify(&t).is_ok());
    let t = token(Algorithm::ES256, Some("p521"), &ec_key(), &claims());
    assert_eq!(v.verify(&t), Err(AuthError::UnknownKey));
}

#[test]
fn config_errors() {
    let err = Verifier::from_config(&JwtConfig::default()).unwrap_err();
    assert!(matches!(err, AuthConfigError::NoKeySource));
    assert!(err.to_string().contains("secretFile"), "{err}");

    let err = Verifier::from_config(&JwtConfig {
        public_key_file: Some(testdata("rsa_public.pem")),
        ..hmac_cfg()
    })
    .unwrap_err();
    assert!(matches!(err, AuthConfigError::ConflictingKeySources(_)));
    assert!(
        err.to_string().contains("secretFile, publicKeyFile"),
        "{err}"
    );

    let missing = PathBuf::from("/nonexistent/volley/secret");
    let err = Verifier::from_config(&JwtConfig {
        secret_file: Some(missing.clone()),
        ..JwtConfig::default()
    })
    .unwrap_err();
    assert!(matches!(
        err,
        AuthConfigError::Read {
            key: "secretFile",
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("secretFile") && msg.contains("/nonexistent/volley/secret"),
        "{msg}"
    );

    let invalid = |cfg: JwtConfig, key: &str, needle: &str| {
        let err = Verifier::from_config(&cfg).unwrap_err();
        assert!(matches!(err, AuthConfigError::InvalidKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(key) && msg.contains(needle), "{msg}");
    };
    invalid(
        JwtConfig {
            secret_file: Some(temp_file(b"\n")),
            ..JwtConfig::default()
        },
        "secretFile",
        "empty",
    );
    invalid(
        JwtConfig {
            public_key_file: Some(testdata("rsa_private.pem")),
            ..JwtConfig::default()
        },
        "publicKeyFile",
        "private key",
    );
    invalid(
        JwtConfig {
            public_key_file: Some(temp_file(b"not a pem")),
            ..JwtConfig::default()
        },
        "publicKeyFile",
        "PEM",
    );
    invalid(
        JwtConfig {
            jwks_file: Some(temp_file(b"[]")),
            ..JwtConfig::default()
        },
        "jwksFile",
        "JWK set",
    );
    invalid(
        JwtConfig {
            jwks_file: Some(temp_file(br#"{"keys":[]}"#)),
            ..JwtConfig::default()
        },
        "jwksFile",
        "no usable",
    );
    invalid(
        JwtConfig {
            jwks_file: Some(temp_file(
                br#"{"keys":[{"kty":"RSA","kid":"k","alg":"ES256","n":"AQAB","e":"AQAB"}]}"#,
            )),
            ..JwtConfig::default()
        },
        "jwksFile",
        "does not fit",
    );
    let set: Value = serde_json::from_slice(&read_testdata("jwks.json")).unwrap();
    let dup = json!({"keys": [set["keys"][0], set["keys"][0]]});
    invalid(
        JwtConfig {
            jwks_file: Some(temp_file(dup.to_string().as_bytes())),
            ..JwtConfig::default()
        },
        "jwksFile",
        "duplicate kid",
    );
}

#[test]
fn error_labels_are_distinct() {
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::WrongAlgorithm,
        AuthError::UnknownKey,
        AuthError::Other("x".into()),
    ];
    let labels: std::collections::HashSet<_> = all.iter().map(AuthError::label).collect();
    assert_eq!(labels.len(), all.len());
    for e in &all {
        assert!(
            e.label()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
        );
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn user_topic() {
    assert_eq!(
        identity(Some("alice"), None).user_topic().as_deref(),
        Some("user.alice")
    );
    assert_eq!(
        identity(Some("a-b_c@d"), None).user_topic().as_deref(),
        Some("user.a-b_c@d")
    );
    for bad in ["", "a.b", "*", ">", "a b", &"x".repeat(300)] {
        assert_eq!(identity(Some(bad), None).user_topic(), None, "{bad:?}");
    }
    assert_eq!(identity(None, None).user_topic(), None);
}

#[test]
fn may_subscribe_without_topics_claim() {
    let alice = identity(Some("alice"), None);
    for (pattern, ok) in [
        ("user.alice", true),
        ("user.alice.x", true),
        ("user.alice.>", true),
        ("user.alice.*", true),
        ("*.alice", true),
        ("user.bob", false),
        ("user.bob.x", false),
        ("user.*", false),
        ("user.>", false),
        ("user.*.x", false),
        (">", false),
        ("*.bob", false),
        ("*.*", false),
        ("*.>", false),
        ("*.*.x", false),
        ("*", true),
        ("user", true),
        ("users.bob", true),
        ("stocks.AAPL", true),
        ("stocks.>", true),
        ("stocks.*.x", true),
        ("$sys.x", false),
        ("_inbox", false),
        ("a..b", false),
        ("", false),
    ] {
        assert_eq!(alice.may_subscribe(pattern), ok, "{pattern:?}");
    }

    // Without a usable `sub` nothing in the user namespace is allowed.
    for id in [identity(None, None), identity(Some("a.b"), None)] {
        assert!(!id.may_subscribe("user.a"));
        assert!(!id.may_subscribe("user.a.b"));
        assert!(!id.may_subscribe("*.b"));
        assert!(id.may_subscribe("stocks.AAPL"));
        assert!(id.may_subscribe("*"));
    }
}

#[test]
fn may_subscribe_with_topics_claim() {
    let alice = identity(Some("alice"), Some(&["stocks.>", "news.*"]));
    for (pattern, ok) in [
        ("user.alice", true),
        ("user.alice.>", true),
        ("stocks.AAPL", true),
        ("stocks.*", true),
        ("stocks.>", true),
        ("stocks.a.b", true),
        ("stocks", false),
        ("news.sport", true),
        ("news.*", true),
        ("news.>", false),
        ("news.sport.x", false),
        ("news", false),
        ("weather", false),
        ("*.alice", false),
        ("*", false),
        (">", false),
        ("user.bob", false),
    ] {
        assert_eq!(alice.may_subscribe(pattern), ok, "{pattern:?}");
    }

    let star = identity(Some("alice"), Some(&["stocks.*"]));
    assert!(star.may_subscribe("stocks.AAPL"));
    assert!(star.may_subscribe("stocks.*"));
    assert!(!star.may_subscribe("stocks.>"));
    assert!(!star.may_subscribe("stocks.a.b"));

    // A broad claim never opens other users' topics.
    for allowed in [">", "user.>", "user.*", "*.*"] {
        let id = identity(Some("alice"), Some(&[allowed]));
        assert!(!id.may_subscribe("user.bob"), "{allowed}");
        assert!(!id.may_subscribe(">"), "{allowed}");
    }
    assert!(identity(Some("alice"), Some(&[">"])).may_subscribe("stocks.x.y"));

    // An empty claim leaves only the own topic; invalid allowed patterns cover nothing.
    let none = identity(Some("alice"), Some(&[]));
    assert!(none.may_subscribe("user.alice"));
    assert!(!none.may_subscribe("stocks.AAPL"));
    let bad = identity(Some("alice"), Some(&["stocks.>.x", "$sys.>"]));
    assert!(!bad.may_subscribe("stocks.a.x"));
    assert!(!bad.may_subscribe("stocks.a"));
}

#[test]
fn anonymous() {
    for (pattern, ok) in [
        ("stocks.AAPL", true),
        ("stocks.>", true),
        ("*", true),
        ("user", true),
        ("user.bob", false),
        ("user.*", false),
        ("user.>", false),
        (">", false),
        ("*.x", false),
        ("*.*", false),
        ("$sys", false),
        ("a..b", false),
    ] {
        assert_eq!(anonymous_may_subscribe(pattern), ok, "{pattern:?}");
    }
}

/// `covers` agrees with brute force over a small universe: A covers P exactly when every subject
/// (tokens a, b, c; 1 to 4 tokens) matched by P is matched by A.
#[test]
fn covers_matches_brute_force() {
    fn seqs(alphabet: &[&str], last: &[&str], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut prefixes = vec![String::new()];
        for _ in 0..max {
            for p in &prefixes {
                for t in alphabet.iter().chain(last) {
                    out.push(if p.is_empty() {
                        t.to_string()
                    } else {
                        format!("{p}.{t}")
                    });
                }
            }
            prefixes = prefixes
                .iter()
                .flat_map(|p| {
                    alphabet.iter().map(move |t| {
                        if p.is_empty() {
                            t.to_string()
                        } else {
                            format!("{p}.{t}")
                        }
                    })
                })
                .collect();
        }
        out.sort();
        out.dedup();
        out
    }
    let subjects = seqs(&["a", "b", "c"], &[], 4);
    let patterns = seqs(&["a", "b", "*"], &[">"], 3);
    assert!(patterns.iter().all(|p| validate_pattern(p).is_ok()));
    for a in &patterns {
        for p in &patterns {
            let brute = subjects
                .iter()
                .filter(|s| matches(p, s))
                .all(|s| matches(a, s));
            assert_eq!(covers(a, p), brute, "allowed {a:?} pattern {p:?}");
        }
    }
}

/// Found by the `jwt` fuzz target: jsonwebtoken panicked on an Ed25519 key shorter than 32 bytes
/// (fuzz/corpus/jwt/crash-*-short-ed25519). Such a key file is now refused with a message.
#[test]
fn short_ed25519_keys_are_refused_not_a_panic() {
    // 24 bytes instead of 32, as a JWK and as a PEM SubjectPublicKeyInfo.
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "short",
        "x": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"}]});
    let err = Verifier::from_config(&JwtConfig {
        jwks_file: Some(temp_file(jwks.to_string().as_bytes())),
        ..JwtConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid Ed25519 public key"),
        "{err}"
    );

    let pem = b"-----BEGIN PUBLIC KEY-----\nMCIwBQYDK2VwAxkAAAECAwQFBgcICQoLDA0ODxAREhMUFRYX\n-----END PUBLIC KEY-----\n";
    let err = Verifier::from_config(&JwtConfig {
        public_key_file: Some(temp_file(pem)),
        ..JwtConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("Ed25519"), "{err}");
}
