//! JWT helpers shared by the auth tests of both engines: one HS256 secret, token minting, and
//! gateway options that turn auth on with it.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use tokio_tungstenite::tungstenite::http::Response;
use volley_gateway::config::{Auth, Jwt, Options};

pub const SECRET: &[u8] = b"test-secret-for-volley";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `claims`, signed with [`SECRET`].
pub fn token(claims: serde_json::Value) -> String {
    signed(&claims, SECRET)
}

/// An HS256 token signed with any secret (a wrong one makes a forgery).
pub fn signed(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Test options with HS256 auth on ([`SECRET`]) and audience `volley`.
pub fn auth_options() -> Options {
    let dir = std::env::temp_dir().join(format!("volley-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    Options {
        auth: Some(Auth {
            jwt: Some(Jwt {
                secret_file: Some(secret),
                audience: Some("volley".into()),
                ..Jwt::default()
            }),
        }),
        ..super::options()
    }
}

/// The HTTP response of an upgrade that must be refused.
pub async fn refused(url: &str) -> Response<Option<Vec<u8>>> {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => *response,
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

/// The status of an upgrade that must be refused.
pub async fn refused_with(url: &str) -> u16 {
    refused(url).await.status().as_u16()
}
