//! JWT verification: any token string, any signed claims, any JWKS or PEM key file.
//!
//! - Arbitrary tokens never panic and an accepted one has not expired.
//! - Tokens signed here with the configured secret are accepted exactly when their claims are
//!   (HS family, `exp` present and in the future, `sub`/`topics` of the right types), and then
//!   yield exactly those claims; signed with another secret, or with one signature character
//!   changed, they are refused.
//! - Arbitrary JWKS / PEM files load or fail with a message; a loaded one never panics on a
//!   token either.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use volley_gateway::fuzzing::auth::{AuthError, JwtConfig, Verifier};

use super::input::Input;

const SECRET: &[u8] = b"volley-fuzz-secret";

/// A private scratch directory for key files (one per process and call site).
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("volley-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed)))
}

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let path = scratch("secret");
        std::fs::write(&path, SECRET).expect("write secret");
        let cfg = JwtConfig {
            secret_file: Some(path),
            ..JwtConfig::default()
        };
        Verifier::from_config(&cfg).expect("HMAC verifier")
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 6 {
        0 | 1 => {
            let token = String::from_utf8_lossy(input.rest()).into_owned();
            any_token(verifier(), &token);
        }
        2 | 3 => signed(&mut input),
        4 => key_file(&mut input, "jwks"),
        _ => key_file(&mut input, "pem"),
    }
}

fn any_token(verifier: &Verifier, token: &str) {
    match verifier.verify(token) {
        Ok(identity) => assert!(identity.expires_at + 60 >= now(), "expired token accepted"),
        Err(e) => assert!(!e.label().is_empty() && !e.to_string().is_empty()),
    }
}

const ALGS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

fn signed(input: &mut Input<'_>) {
    let alg = *input.pick(ALGS);
    let right_key = !input.u8().is_multiple_of(4);
    let now = now();
    // (claim value, what verify must make of it)
    let (exp, exp_ok): (Option<Value>, bool) = match input.u8() % 6 {
        0 => (None, false),
        1 => (Some(json!(now.saturating_sub(3600))), false),
        2 => (Some(json!("tomorrow")), false),
        3 => (Some(json!(now + 3600 + u64::from(input.u16()))), true),
        4 => (Some(json!(u64::MAX)), true),
        _ => (Some(json!(now + 60)), true),
    };
    let (sub, sub_ok): (Option<Value>, bool) = match input.u8() % 4 {
        0 => (None, true),
        1 => (Some(json!(42)), false),
        _ => (Some(Value::String(input.string(20))), true),
    };
    let (topics, topics_ok): (Option<Value>, bool) = match input.u8() % 4 {
        0 => (None, true),
        1 => (Some(json!("a.b")), false),
        2 => (Some(json!([1, 2])), false),
        _ => {
            let list: Vec<String> = (0..input.below(3)).map(|_| input.string(12)).collect();
            (Some(json!(list)), true)
        }
    };
    let mut claims = serde_json::Map::new();
    for (k, v) in [("exp", &exp), ("sub", &sub), ("topics", &topics)] {
        if let Some(v) = v {
            claims.insert(k.to_owned(), v.clone());
        }
    }
    if input.bool() {
        claims.insert("extra".to_owned(), json!({"x": [1, null]}));
    }
    let key = if right_key {
        EncodingKey::from_secret(SECRET)
    } else {
        EncodingKey::from_secret(b"someone-else")
    };
    let token =
        jsonwebtoken::encode(&Header::new(alg), &Value::Object(claims), &key).expect("encodes");
    let result = verifier().verify(&token);
    if right_key && exp_ok && sub_ok && topics_ok {
        let identity = result.unwrap_or_else(|e| panic!("valid token refused: {e:?}"));
        assert_eq!(identity.user.as_ref().map(|u| json!(u)), sub);
        assert_eq!(identity.topics.as_ref().map(|t| json!(t)), topics);
        assert_eq!(Some(json!(identity.expires_at)), exp);
    } else {
        assert!(result.is_err(), "bad token accepted: {token}");
        if !right_key {
            assert_eq!(result, Err(AuthError::BadSignature));
        }
    }

    // Change one signature character (not the last: its low bits may be padding).
    let (body, signature) = token.rsplit_once('.').expect("three parts");
    if signature.len() > 1 {
        let at = input.below(signature.len() - 1);
        let mut sig: Vec<u8> = signature.bytes().collect();
        sig[at] = if sig[at] == b'A' { b'B' } else { b'A' };
        let forged = format!("{body}.{}", String::from_utf8(sig).expect("ASCII"));
        assert!(
            verifier().verify(&forged).is_err(),
            "forged signature accepted"
        );
    }
}

fn key_file(input: &mut Input<'_>, kind: &str) {
    let mode = input.u8();
    let token = input.string(200);
    let bytes: Vec<u8> = if kind == "jwks" && mode.is_multiple_of(2) {
        // A JSON key set whose one key has arbitrary fields.
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(input.bytes(40));
        let kty = *input.pick(&["oct", "RSA", "EC", "OKP", "x"]);
        let alg = *input.pick(&["HS256", "RS256", "ES256", "EdDSA", "none", ""]);
        let crv = *input.pick(&["P-256", "P-384", "Ed25519", "X"]);
        json!({"keys": [{"kty": kty, "alg": alg, "crv": crv, "kid": "k1", "k": k, "n": k,
            "e": "AQAB", "x": k, "y": k}]})
        .to_string()
        .into_bytes()
    } else {
        input.rest().to_vec()
    };
    let path = scratch(kind);
    std::fs::write(&path, &bytes).expect("write key file");
    let mut cfg = JwtConfig::default();
    if kind == "jwks" {
        cfg.jwks_file = Some(path.clone());
    } else {
        cfg.public_key_file = Some(path.clone());
    }
    let loaded = Verifier::from_config(&cfg);
    let _ = std::fs::remove_file(&path);
    match loaded {
        Ok(v) => any_token(&v, &token),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
