//! Client authentication: JWT verification and topic authorization (pure, no I/O after start-up).
//!
//! A [`Verifier`] is built once from a [`JwtConfig`] (the `auth.jwt` section of the YAML file) and
//! checks the token a client presents on the WebSocket upgrade (`?token=` or
//! `Authorization: Bearer`). A valid token yields an [`Identity`]; [`Identity::may_subscribe`] then
//! decides which topics that connection may subscribe to.
//!
//! # Keys
//!
//! Exactly one key source is configured:
//! - `secretFile`: an HMAC shared secret (the file's bytes, trailing `\n`/`\r\n` removed); tokens
//!   must use HS256, HS384 or HS512.
//! - `publicKeyFile`: one public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`). An RSA key accepts
//!   RS256/384/512 and PS256/384/512; an EC key accepts ES256 (P-256) or ES384 (P-384), matching its
//!   curve; an Ed25519 key accepts EdDSA.
//! - `jwksFile`: a JWK set (`{"keys":[...]}`); the token header's `kid` selects the key. A token
//!   without `kid` is accepted only when the set holds exactly one key. A key with `alg` accepts only
//!   that algorithm, otherwise the algorithms of its type (as for PEM keys; `oct` keys: HS*). Keys
//!   with `"use":"enc"`, of an unsupported type or curve are skipped; the set must keep at least one.
//!
//! The token's `alg` must belong to the key's family, so `none` and HS/RS confusion (an HS256
//! token "signed" with the RSA public key as secret) are rejected.
//!
//! # Claims
//!
//! `exp` is required; `nbf` is checked when present; both with `leewaySeconds` (default 30) of
//! clock skew. `iss` and `aud` are required and checked only when `issuer` / `audience` are
//! configured (without `audience`, any `aud` in the token is ignored). `sub` names the user;
//! the optional `topics` claim (array of patterns) restricts subscriptions.
//!
//! # Topic rules
//!
//! The `user.` namespace is private: `user.U` and everything below it (`user.U.x`) belong to user
//! `U`, who is subscribed to `user.U` automatically. Nobody may subscribe to a pattern that could
//! match a subject in another user's space (`user.bob`, `user.*`, `user.>`, `>`, `*.bob`,
//! `*.*.x`), and anonymous connections (auth disabled, or a token without `sub`) none at all in
//! the `user.` namespace. See [`Identity::may_subscribe`] and [`anonymous_may_subscribe`].

#[cfg(test)]
mod tests;

/// A verifier for HS256 tokens signed with `secret`, for the unit tests of the modules that
/// take one (the key goes through a file, as in production).
#[cfg(test)]
pub(crate) fn hs256_test_verifier(secret: &[u8]) -> Verifier {
    use std::io::Write;
    static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("volley-test-key-{}-{n}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("temp key file");
    file.write_all(secret).expect("temp key written");
    let cfg = JwtConfig {
        secret_file: Some(path.clone()),
        ..JwtConfig::default()
    };
    let verifier = Verifier::from_config(&cfg).expect("a valid test key");
    let _ = std::fs::remove_file(path);
    verifier
}

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use crate::topic::{MAX_TOPIC_LEN, is_wildcard, matches, validate_pattern};

/// Default allowed clock skew for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECONDS: u64 = volley_wire::config::defaults::JWT_LEEWAY_SECONDS;

/// First token of the per-user topic namespace.
const USER_NS: &str = "user";

/// The resolved `auth.jwt` section of the configuration (the file type is
/// [`volley_wire::config::Jwt`]). Exactly one of `secretFile`, `publicKeyFile` and `jwksFile` must
/// be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// File holding the HMAC shared secret (HS256/384/512); one trailing newline is trimmed.
    pub secret_file: Option<PathBuf>,
    /// PEM file with one RSA, EC (P-256/P-384) or Ed25519 public key.
    pub public_key_file: Option<PathBuf>,
    /// JWKS JSON file; the token's `kid` picks the key.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` value, when set.
    pub issuer: Option<String>,
    /// Required `aud` value (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
        }
    }
}

/// Why a [`JwtConfig`] could not be turned into a [`Verifier`]. Messages name the config key and file.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.jwt: set one of secretFile, publicKeyFile or jwksFile")]
    NoKeySource,
    #[error("auth.jwt: set only one of secretFile, publicKeyFile or jwksFile (got {0})")]
    ConflictingKeySources(String),
    #[error("auth.jwt.{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.jwt.{key}: {}: {reason}", path.display())]
    InvalidKey {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Why a token was rejected. The messages are short and safe to send as an HTTP 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong token issuer")]
    WrongIssuer,
    #[error("wrong token audience")]
    WrongAudience,
    /// The token's `alg` is not one the key accepts (includes `none` and HS/RS confusion).
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// JWKS only: the token's `kid` is absent (with several keys) or not in the set.
    #[error("unknown token key id")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Other(String),
}

impl AuthError {
    /// A snake_case name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Other(_) => "other",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
            | ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => AuthError::WrongIssuer,
                "aud" => AuthError::WrongAudience,
                _ => AuthError::Malformed,
            },
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            // The key could not be used with the token's algorithm (say an ES384 token against a
            // P-256 key): no signature made by anyone else can verify.
            ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::InvalidKeyFormat => AuthError::WrongAlgorithm,
            _ => AuthError::Other(e.to_string()),
        }
    }
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub user: Option<String>,
    /// The `exp` claim (unix seconds).
    pub expires_at: u64,
    /// The optional `topics` claim: patterns (`*`, `>` wildcards) this client may subscribe to.
    pub topics: Option<Vec<String>>,
}

impl Identity {
    /// The per-user topic `user.<sub>` this connection is auto-subscribed to; `None` when there is
    /// no `sub` or it cannot be a single topic token (empty, contains `.`, whitespace, `*` or `>`,
    /// or makes the topic too long).
    pub fn user_topic(&self) -> Option<String> {
        let sub = self.user.as_deref()?;
        let valid = !sub.is_empty()
            && USER_NS.len() + 1 + sub.len() <= MAX_TOPIC_LEN
            && !sub.contains(['.', '*', '>'])
            && !sub.chars().any(char::is_whitespace);
        valid.then(|| format!("{USER_NS}.{sub}"))
    }

    /// Time left at `now` before the connection must close (`exp`); zero once it has passed.
    /// No leeway here: the leeway admits clients whose clock is behind, but a connection lives
    /// until `exp` itself.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        // `exp` is whatever the issuer signed (saturated to u64::MAX at worst): never overflow.
        match UNIX_EPOCH.checked_add(Duration::from_secs(self.expires_at)) {
            Some(expires) => expires.duration_since(now).unwrap_or_default(),
            None => Duration::MAX,
        }
    }

    /// May this identity subscribe to `pattern`?
    ///
    /// - An invalid pattern (see [`validate_pattern`]) is refused.
    /// - A pattern that could match a subject in another user's space `user.X[.…]` (X ≠ own
    ///   `sub`) is refused: `user.X`, `user.*`, `user.>`, `>`, `*.X`, `*.*.y`, …
    /// - A pattern inside the own space (`user.<sub>`, `user.<sub>.>`, …) is allowed.
    /// - Otherwise, with a `topics` claim the pattern must be covered by one of its patterns
    ///   (every subject the pattern matches is matched by the allowed pattern); without the claim
    ///   it is allowed.
    pub fn may_subscribe(&self, pattern: &str) -> bool {
        if validate_pattern(pattern).is_err() {
            return false;
        }
        let own = self.user_topic().and(self.user.as_deref());
        if reaches_foreign_user_space(pattern, own) {
            return false;
        }
        if let Some(own) = own {
            let mut t = pattern.split('.');
            if t.next() == Some(USER_NS) && t.next() == Some(own) {
                return true;
            }
        }
        match &self.topics {
            None => true,
            Some(allowed) => allowed.iter().any(|a| covers(a, pattern)),
        }
    }
}

/// May an anonymous connection (auth disabled) subscribe to `pattern`? Anything valid except what
/// could match a subject in the `user.` namespace, since those carry users' private messages:
/// `user.x`, `user.*`, `user.>`, `>`, `*.x` and `*.*` are refused, while `*` and `stocks.>` are fine.
pub fn anonymous_may_subscribe(pattern: &str) -> bool {
    validate_pattern(pattern).is_ok() && !reaches_foreign_user_space(pattern, None)
}

/// True when the (valid) `pattern` matches at least one subject `user.X[.…]` with `X` ≠ `own`.
fn reaches_foreign_user_space(pattern: &str, own: Option<&str>) -> bool {
    let mut t = pattern.split('.');
    match t.next() {
        // `>` matches every (non-reserved) subject, `user.X` included.
        Some(">") => true,
        Some("*") | Some(USER_NS) => match t.next() {
            // One token: user subjects have at least two.
            None => false,
            Some("*" | ">") => true,
            // Any remaining tokens match some longer `user.X.…` subject.
            Some(second) => Some(second) != own,
        },
        _ => false,
    }
}

/// True when every subject matching `pattern` also matches `allowed` (both NATS-style patterns).
/// An invalid `allowed` covers nothing.
fn covers(allowed: &str, pattern: &str) -> bool {
    if validate_pattern(allowed).is_err() {
        return false;
    }
    if !is_wildcard(pattern) {
        return matches(allowed, pattern);
    }
    let mut a = allowed.split('.');
    let mut p = pattern.split('.');
    loop {
        match (a.next(), p.next()) {
            (None, None) => return true,
            // `>` takes one or more tokens: any pattern with a token here has only such subjects.
            (Some(">"), Some(_)) => return true,
            // `pattern` matches longer subjects than `allowed` can.
            (_, Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(at), Some(pt)) if at == pt => {}
            _ => return false,
        }
    }
}

/// The claims we read; `exp`, `nbf`, `iss` and `aud` are checked by jsonwebtoken.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

/// One verification key with the algorithms it accepts.
struct KeyEntry {
    kid: Option<String>,
    /// What the key is, for Debug and errors (`RSA`, `EC P-256`, ...).
    kind: &'static str,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies client tokens against the configured key(s). Built once at start-up; `Send + Sync`,
/// share it in an `Arc`.
pub struct Verifier {
    /// One key (secret or PEM), or the usable keys of a JWKS.
    keys: Vec<KeyEntry>,
    /// True for a JWKS: the token's `kid` selects the key.
    by_kid: bool,
}

impl fmt::Debug for Verifier {
    // Hand-written so that the HMAC secret never ends up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |k: &KeyEntry| match &k.kid {
            Some(kid) => format!("{} ({kid})", k.kind),
            None => k.kind.to_string(),
        };
        let keys: Vec<String> = self.keys.iter().map(describe).collect();
        f.debug_struct("Verifier").field("keys", &keys).finish()
    }
}

impl Verifier {
    /// Reads the configured key file and prepares the checks.
    pub fn from_config(cfg: &JwtConfig) -> Result<Verifier, AuthConfigError> {
        let sources: Vec<(&'static str, &Path)> = [
            ("secretFile", cfg.secret_file.as_deref()),
            ("publicKeyFile", cfg.public_key_file.as_deref()),
            ("jwksFile", cfg.jwks_file.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        .collect();
        let (key_name, path) = match sources.as_slice() {
            [] => return Err(AuthConfigError::NoKeySource),
            [one] => *one,
            many => {
                let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                return Err(AuthConfigError::ConflictingKeySources(names.join(", ")));
            }
        };
        let bytes = std::fs::read(path).map_err(|source| AuthConfigError::Read {
            key: key_name,
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| AuthConfigError::InvalidKey {
            key: key_name,
            path: path.to_owned(),
            reason,
        };
        let (keys, by_kid) = match key_name {
            "secretFile" => {
                let secret = bytes
                    .strip_suffix(b"\n")
                    .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
                    .unwrap_or(&bytes);
                if secret.is_empty() {
                    return Err(invalid("the secret is empty".into()));
                }
                let key = DecodingKey::from_secret(secret);
                let algs = AlgorithmFamily::Hmac.algorithms().to_vec();
                (vec![KeyEntry::new(None, "HMAC", key, algs, cfg)], false)
            }
            "publicKeyFile" => (vec![pem_key(&bytes, cfg).map_err(invalid)?], false),
            _ => (jwks_keys(&bytes, cfg).map_err(invalid)?, true),
        };
        Ok(Verifier { keys, by_kid })
    }

    /// Checks the token's signature and claims and returns who it identifies.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(AuthError::from)?;
        let entry = match header.kid.as_deref() {
            Some(kid) if self.by_kid => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            // A lone key (secret, PEM or one-key JWKS) is used whatever the `kid`, or without one.
            _ if self.keys.len() == 1 => self.keys.first(),
            _ => None,
        }
        .ok_or(AuthError::UnknownKey)?;
        if !entry.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &entry.key, &entry.validation)?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(AuthError::Malformed)?;
        Ok(Identity {
            user: claims.sub,
            // `as` saturates; jsonwebtoken has already checked exp is a number in the future.
            expires_at: exp as u64,
            topics: claims.topics,
        })
    }
}

impl KeyEntry {
    fn new(
        kid: Option<String>,
        kind: &'static str,
        key: DecodingKey,
        algorithms: Vec<Algorithm>,
        cfg: &JwtConfig,
    ) -> KeyEntry {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = cfg.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        KeyEntry {
            kid,
            kind,
            key,
            validation,
        }
    }
}

/// True when the backend can build a verifier for `alg` from `key` (checks EC/Ed key bytes;
/// RSA keys are only parsed when a token is verified).
fn usable(key: &DecodingKey, alg: Algorithm) -> bool {
    // jsonwebtoken 10.3 slices an Ed25519 key to 32 bytes without checking its length, so a
    // short JWK `x` or PEM bit string would panic there (found by the `jwt` fuzz target). An
    // Ed25519 public key is exactly 32 bytes (RFC 8032 §5.1.5).
    if alg == Algorithm::EdDSA && key.family() == AlgorithmFamily::Ed && key.as_bytes().len() != 32
    {
        return false;
    }
    jsonwebtoken::crypto::verify("", b"", key, alg).is_ok()
}

/// The curve of an EC key, as the one algorithm it accepts.
fn ec_algorithm(key: &DecodingKey) -> Option<(Algorithm, &'static str)> {
    if usable(key, Algorithm::ES256) {
        Some((Algorithm::ES256, "EC P-256"))
    } else if usable(key, Algorithm::ES384) {
        Some((Algorithm::ES384, "EC P-384"))
    } else {
        None
    }
}

fn pem_key(bytes: &[u8], cfg: &JwtConfig) -> Result<KeyEntry, String> {
    if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err("holds a private key; give the public key (openssl pkey -pubout)".into());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let algs = AlgorithmFamily::Rsa.algorithms().to_vec();
        return Ok(KeyEntry::new(None, "RSA", key, algs, cfg));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        let (alg, kind) = ec_algorithm(&key).ok_or("EC key is not on P-256 or P-384")?;
        return Ok(KeyEntry::new(None, kind, key, vec![alg], cfg));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        if !usable(&key, Algorithm::EdDSA) {
            return Err("invalid Ed25519 public key".into());
        }
        return Ok(KeyEntry::new(
            None,
            "Ed25519",
            key,
            vec![Algorithm::EdDSA],
            cfg,
        ));
    }
    Err("not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM format".into())
}

fn jwks_keys(bytes: &[u8], cfg: &JwtConfig) -> Result<Vec<KeyEntry>, String> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let set: RawSet = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a JWK set ({{\"keys\":[...]}}): {e}"))?;
    let mut entries: Vec<KeyEntry> = Vec::with_capacity(set.keys.len());
    for (i, raw) in set.keys.iter().enumerate() {
        let str_field = |name: &str| raw.get(name).and_then(|v| v.as_str());
        let kid = str_field("kid").map(str::to_owned);
        let name = match &kid {
            Some(kid) => format!("key {i} (kid {kid:?})"),
            None => format!("key {i}"),
        };
        if str_field("use") == Some("enc") {
            tracing::warn!("auth.jwt.jwksFile: skipping {name}: \"use\":\"enc\"");
            continue;
        }
        match jwk_entry(raw, kid.clone(), cfg) {
            Ok(Some(entry)) => {
                if entries.iter().any(|e| e.kid.is_some() && e.kid == kid) {
                    return Err(format!("{name}: duplicate kid"));
                }
                entries.push(entry);
            }
            Ok(None) => tracing::warn!("auth.jwt.jwksFile: skipping {name}: unsupported key type"),
            Err(reason) => return Err(format!("{name}: {reason}")),
        }
    }
    if entries.is_empty() {
        return Err("no usable signature key in the set".into());
    }
    Ok(entries)
}

/// One JWK as a key entry; `Ok(None)` for key types or curves we do not support.
fn jwk_entry(
    raw: &serde_json::Value,
    kid: Option<String>,
    cfg: &JwtConfig,
) -> Result<Option<KeyEntry>, String> {
    let str_field = |name: &str| raw.get(name).and_then(|v| v.as_str());
    let (kind, family_algs): (&'static str, Vec<Algorithm>) =
        match (str_field("kty"), str_field("crv")) {
            (Some("RSA"), _) => ("RSA", AlgorithmFamily::Rsa.algorithms().to_vec()),
            (Some("EC"), Some("P-256")) => ("EC P-256", vec![Algorithm::ES256]),
            (Some("EC"), Some("P-384")) => ("EC P-384", vec![Algorithm::ES384]),
            (Some("OKP"), Some("Ed25519")) => ("Ed25519", vec![Algorithm::EdDSA]),
            (Some("oct"), _) => ("HMAC", AlgorithmFamily::Hmac.algorithms().to_vec()),
            _ => return Ok(None),
        };
    let algorithms = match str_field("alg") {
        None => family_algs,
        Some(alg) => {
            let alg: Algorithm = alg
                .parse()
                .map_err(|_| format!("unsupported alg {alg:?}"))?;
            if !family_algs.contains(&alg) {
                return Err(format!("alg {alg:?} does not fit a {kind} key"));
            }
            vec![alg]
        }
    };
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(raw.clone()).map_err(|e| format!("invalid JWK: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("invalid JWK: {e}"))?;
    if kind != "RSA" && kind != "HMAC" && !usable(&key, algorithms[0]) {
        return Err(format!("invalid {kind} public key"));
    }
    Ok(Some(KeyEntry::new(kid, kind, key, algorithms, cfg)))
}
