//! Per-user tokens: the per-user scenario's connection `i` is user `i`, proven by an HS256 JWT
//! with `sub = i`, so the gateway auto-subscribes it to `user.<i>` (anonymous connections may
//! not touch the `user.` namespace).

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

#[cfg(test)]
mod tests;

/// Tokens live a day: far longer than any run, so no connection meets its `exp`.
const LIFETIME_S: u64 = 24 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// The token of user `i`, signed with `secret`.
pub fn user_token(secret: &[u8], i: usize) -> Result<String, jsonwebtoken::errors::Error> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + LIFETIME_S;
    let sub = i.to_string();
    encode(
        &Header::default(),
        &Claims { sub: &sub, exp },
        &EncodingKey::from_secret(secret),
    )
}

/// A fresh secret for one bench invocation; it only has to be unguessable by nobody but the
/// local gateways it is handed to, so time and pid are enough.
pub fn fresh_secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("volley-bench-{}-{nanos:x}", std::process::id())
}
