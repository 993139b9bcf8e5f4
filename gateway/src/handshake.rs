//! Parses and answers the WebSocket upgrade request (RFC 6455 §4.2) straight from socket bytes.
//!
//! The shards speak only this one HTTP exchange, so instead of an HTTP server stack they feed
//! their read buffer to [`parse`] until it yields a complete request or a [`Rejection`], then
//! write [`accept_response`] or [`reject_response`]. Everything here is pure: no IO, no clocks,
//! and no panics on any input, since the input is whatever a stranger sent.

use std::borrow::Cow;

use base64::Engine as _;
use thiserror::Error;

/// The one subprotocol the gateway speaks; offering it is optional for clients.
pub const SUBPROTOCOL: &str = "volley.v1";

/// Header slots handed to `httparse`. Real upgrade requests carry about a dozen headers; a
/// request with more than this is treated like an oversized head (431) rather than a bad one.
const MAX_HEADERS: usize = 64;

/// Limits and policy for the handshake, built once from config.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// The only path that upgrades (for example `/ws`); the query string is not part of it.
    pub path: String,
    /// A request whose head exceeds this many bytes (complete or still partial) is rejected 431.
    pub max_header_bytes: usize,
    /// Empty allows any origin. Otherwise the `Origin` header must match one entry exactly
    /// (ASCII case-insensitive). Requests without `Origin` (non-browser clients) are allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            path: "/ws".to_owned(),
            max_header_bytes: 8192,
            allowed_origins: Vec::new(),
        }
    }
}

/// How messages are framed to the client, chosen with `?format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `?format=json` (the default): each message wrapped in a JSON envelope.
    #[default]
    Envelope,
    /// `?format=raw`: the published payload as-is.
    Raw,
}

/// A valid upgrade request, reduced to what the shard needs to answer and register it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value for the client's key.
    pub accept_key: String,
    /// Whether the client offered [`SUBPROTOCOL`] (and so it is selected in the response).
    pub subprotocol: bool,
    /// `?topics=a,b`: percent-decoded, split on `,`, empty items dropped, order kept.
    /// Not validated here; the caller owns topic rules.
    pub topics: Vec<String>,
    pub format: Format,
    /// `?token=` or `Authorization: Bearer`, the query winning when both are present.
    /// Not verified here; an empty token is `None`.
    pub token: Option<String>,
    /// The `Origin` header as sent, if any.
    pub origin: Option<String>,
    /// `?since=N`: resume the (single) URL topic after stream position N.
    pub since: Option<u64>,
    /// `?epoch=..`: the epoch `since` was taken in.
    pub epoch: Option<String>,
}

/// The outcome of [`parse`] on a buffer that did not need rejecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more and call again with the whole buffer.
    Partial,
    /// `consumed` is the length of the head; any bytes after it are already WebSocket frames.
    Complete {
        request: UpgradeRequest,
        consumed: usize,
    },
}

/// Why an upgrade was refused. Each reason maps to one status and one metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not parseable HTTP/1.1, or a bad query string.
    Malformed,
    /// `Connection` lacks the `upgrade` token.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes.
    BadKey,
    /// Refused by the caller, e.g. an invalid topic.
    BadRequest,
    /// Refused by the caller: missing or invalid token.
    Unauthorized,
    /// `Origin` not in the allowlist.
    ForbiddenOrigin,
    /// Path other than the configured one.
    NotFound,
    /// Method other than `GET`.
    MethodNotAllowed,
    /// No `Upgrade: websocket`.
    UpgradeRequired,
    /// `Sec-WebSocket-Version` is not 13.
    UnsupportedVersion,
    /// The head is larger than `max_header_bytes` or has too many headers.
    HeadersTooLarge,
    /// Refused by the caller: connection limit reached or draining.
    Unavailable,
    /// For the caller: over the per-client-IP connection limit.
    TooManyConnections,
}

impl RejectReason {
    /// Every reason, so metrics can pre-register every label at startup.
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::Malformed,
        RejectReason::MissingConnectionUpgrade,
        RejectReason::BadKey,
        RejectReason::BadRequest,
        RejectReason::Unauthorized,
        RejectReason::ForbiddenOrigin,
        RejectReason::NotFound,
        RejectReason::MethodNotAllowed,
        RejectReason::UpgradeRequired,
        RejectReason::UnsupportedVersion,
        RejectReason::HeadersTooLarge,
        RejectReason::Unavailable,
        RejectReason::TooManyConnections,
    ];

    /// The HTTP status answered for this reason.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed | Self::MissingConnectionUpgrade | Self::BadKey | Self::BadRequest => {
                400
            }
            Self::Unauthorized => 401,
            Self::ForbiddenOrigin => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::UpgradeRequired | Self::UnsupportedVersion => 426,
            Self::HeadersTooLarge => 431,
            Self::Unavailable => 503,
            Self::TooManyConnections => 429,
        }
    }

    /// A stable snake_case label for metrics; renaming one breaks dashboards.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingConnectionUpgrade => "bad_connection_header",
            Self::BadKey => "bad_key",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpgradeRequired => "upgrade_required",
            Self::UnsupportedVersion => "unsupported_version",
            Self::HeadersTooLarge => "headers_too_large",
            Self::Unavailable => "unavailable",
            Self::TooManyConnections => "too_many_connections",
        }
    }
}

/// A refused upgrade: the reason (status and metric label) and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{} {}: {message}", .reason.status(), .reason.label())]
pub struct Rejection {
    reason: RejectReason,
    // Mostly static text; `Cow` keeps the common rejections allocation-free.
    message: Cow<'static, str>,
}

impl Rejection {
    pub fn new(reason: RejectReason, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// For the caller: a request that parsed but is not acceptable (e.g. an invalid topic).
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectReason::BadRequest, message)
    }

    /// For the caller: a missing or invalid token.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectReason::Unauthorized, message)
    }

    /// For the caller: over the connection limit, or draining.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(RejectReason::Unavailable, message)
    }

    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Parses the upgrade request at the start of `buf`.
///
/// Call again with the whole (grown) buffer after `Partial`. Checks run in a fixed order so a
/// given request always gets the same answer: size, method, path, `Upgrade`, `Connection`,
/// version, key, origin, query.
pub fn parse(buf: &[u8], config: &HandshakeConfig) -> Result<Parsed, Rejection> {
    // Parse at most `max_header_bytes`: a head that has not ended by then is too large whether
    // or not the rest has arrived, and this bounds the work a slow-drip client can cause.
    let window = buf.get(..config.max_header_bytes).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > config.max_header_bytes => {
            return Err(too_large());
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(
                RejectReason::HeadersTooLarge,
                "too many request headers",
            ));
        }
        Err(e) => {
            return Err(Rejection::new(
                RejectReason::Malformed,
                format!("malformed request: {e}"),
            ));
        }
    };

    // httparse only accepts HTTP/1.0 and 1.1; upgrades need 1.1 (RFC 6455 §4.1).
    if req.version != Some(1) {
        return Err(Rejection::new(
            RejectReason::Malformed,
            "HTTP/1.1 is required",
        ));
    }
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message that
    // contains more than one Host header field line". An empty value is allowed.
    match single(req.headers, "host") {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Rejection::new(
                RejectReason::Malformed,
                "a Host header is required",
            ));
        }
        Err(()) => {
            return Err(Rejection::new(
                RejectReason::Malformed,
                "more than one Host header",
            ));
        }
    }
    if req.method != Some("GET") {
        return Err(Rejection::new(
            RejectReason::MethodNotAllowed,
            "only GET can upgrade",
        ));
    }

    let target = req.path.unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    if path != config.path {
        return Err(Rejection::new(RejectReason::NotFound, "no such path"));
    }

    let headers = &*req.headers;
    if !has_token(headers, "upgrade", "websocket") {
        return Err(Rejection::new(
            RejectReason::UpgradeRequired,
            "expected Upgrade: websocket",
        ));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(Rejection::new(
            RejectReason::MissingConnectionUpgrade,
            "expected Connection: Upgrade",
        ));
    }
    match single(headers, "sec-websocket-version") {
        Ok(Some(v)) if v == b"13" => {}
        _ => {
            return Err(Rejection::new(
                RejectReason::UnsupportedVersion,
                "only Sec-WebSocket-Version 13 is supported",
            ));
        }
    }

    let accept_key = match single(headers, "sec-websocket-key") {
        Ok(Some(key)) if is_valid_key(key) => tungstenite::handshake::derive_accept_key(key),
        _ => {
            return Err(Rejection::new(
                RejectReason::BadKey,
                "Sec-WebSocket-Key must be base64 of 16 bytes",
            ));
        }
    };

    let origin = check_origin(headers, &config.allowed_origins)?;
    let query = parse_query(query)?;
    let token = match query.token {
        Some(token) => Some(token),
        None => bearer_token(headers)?,
    };

    Ok(Parsed::Complete {
        request: UpgradeRequest {
            accept_key,
            subprotocol: has_token(headers, "sec-websocket-protocol", SUBPROTOCOL),
            topics: query.topics,
            format: query.format,
            token,
            origin,
            since: query.since,
            epoch: query.epoch,
        },
        consumed,
    })
}

/// The `101 Switching Protocols` response for an accepted request.
pub fn accept_response(request: &UpgradeRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(request.accept_key.as_bytes());
    out.extend_from_slice(b"\r\n");
    if request.subprotocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(SUBPROTOCOL.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Headers a rejection carries besides its body, for both engines' responses.
pub(crate) fn reject_headers(reason: RejectReason) -> &'static [(&'static str, &'static str)] {
    match reason {
        RejectReason::MethodNotAllowed => &[("Allow", "GET")],
        RejectReason::UpgradeRequired | RejectReason::UnsupportedVersion => {
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
        }
        // RFC 9110 §15.5.2: a 401 must say which scheme would work.
        RejectReason::Unauthorized => &[("WWW-Authenticate", "Bearer")],
        RejectReason::Unavailable => &[("Retry-After", "1")],
        _ => &[],
    }
}

/// A complete HTTP/1.1 error response; the caller writes it and closes the connection.
pub fn reject_response(rejection: &Rejection) -> Vec<u8> {
    let reason = rejection.reason();
    let status = reason.status();
    let extra: String = reject_headers(reason)
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let body_len = rejection.message().len() + 1;
    format!(
        "HTTP/1.1 {status} {phrase}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {body_len}\r\n\
         Connection: close\r\n\
         {extra}\
         \r\n\
         {message}\n",
        phrase = status_phrase(status),
        message = rejection.message(),
    )
    .into_bytes()
}

fn status_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn too_large() -> Rejection {
    Rejection::new(RejectReason::HeadersTooLarge, "request head too large")
}

/// Values of every header called `name` (ASCII case-insensitive), trimmed.
fn values<'a>(
    headers: &'a [httparse::Header<'_>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// The value of a header that must appear at most once. `Err` when repeated: two keys or two
/// versions are ambiguous, and guessing which one the client meant is not our job.
fn single<'a>(headers: &'a [httparse::Header<'_>], name: &'a str) -> Result<Option<&'a [u8]>, ()> {
    let mut found = values(headers, name);
    let first = found.next();
    match found.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// Whether any `name` header's comma-separated list holds `token` (ASCII case-insensitive).
/// Lists may be split over several headers (RFC 9110 §5.3).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    values(headers, name).any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// RFC 6455 §4.1: the key is a random 16-byte nonce, base64-encoded (so 24 characters).
fn is_valid_key(key: &[u8]) -> bool {
    // The length check comes first so the decode below never needs more than `out`.
    if key.len() != 24 {
        return false;
    }
    let mut out = [0u8; 18];
    matches!(
        base64::engine::general_purpose::STANDARD.decode_slice(key, &mut out),
        Ok(16)
    )
}

fn check_origin(
    headers: &[httparse::Header<'_>],
    allowed: &[String],
) -> Result<Option<String>, Rejection> {
    let origin = match single(headers, "origin") {
        Ok(Some(origin)) => origin,
        // No Origin: not a browser, so there is no cross-site page to defend against.
        Ok(None) => return Ok(None),
        Err(()) => {
            return Err(Rejection::new(
                RejectReason::ForbiddenOrigin,
                "more than one Origin header",
            ));
        }
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return Err(Rejection::new(
            RejectReason::ForbiddenOrigin,
            "Origin is not valid UTF-8",
        ));
    };
    // Scheme and host are case-insensitive and origins carry no path, so comparing the whole
    // serialized origin ASCII case-insensitively is exact matching.
    if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return Err(Rejection::new(
            RejectReason::ForbiddenOrigin,
            "origin not allowed",
        ));
    }
    Ok(Some(origin.to_owned()))
}

/// `Authorization: Bearer <token>`. Other schemes are not ours and count as no token.
fn bearer_token(headers: &[httparse::Header<'_>]) -> Result<Option<String>, Rejection> {
    let value = match single(headers, "authorization") {
        Ok(Some(value)) => value,
        Ok(None) => return Ok(None),
        Err(()) => {
            return Err(Rejection::new(
                RejectReason::Malformed,
                "more than one Authorization header",
            ));
        }
    };
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let Some((scheme, token)) = value.split_at_checked(6) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || !token.starts_with(b" ") {
        return Ok(None);
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return Ok(None);
    }
    match std::str::from_utf8(token) {
        Ok(token) => Ok(Some(token.to_owned())),
        Err(_) => Err(Rejection::new(
            RejectReason::Malformed,
            "bearer token is not valid UTF-8",
        )),
    }
}

struct Query {
    topics: Vec<String>,
    format: Format,
    token: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
}

/// Parses the query string. Unknown parameters are ignored so clients can add cache-busters
/// and newer clients can talk to older gateways.
fn parse_query(query: &str) -> Result<Query, Rejection> {
    let mut out = Query {
        topics: Vec::new(),
        format: Format::default(),
        token: None,
        since: None,
        epoch: None,
    };
    let mut seen_format = false;
    let mut seen_token = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match &*decode_component(key)? {
            // Repeats append, so `?topics=a&topics=b` means the same as `?topics=a,b`.
            "topics" => out.topics.extend(
                decode_component(value)?
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            ),
            "format" => {
                if std::mem::replace(&mut seen_format, true) {
                    return Err(malformed_query("format given more than once"));
                }
                out.format = match &*decode_component(value)? {
                    "json" => Format::Envelope,
                    "raw" => Format::Raw,
                    _ => return Err(malformed_query("format must be json or raw")),
                };
            }
            "token" => {
                // Two tokens are ambiguous at an auth boundary; refuse rather than pick one.
                if std::mem::replace(&mut seen_token, true) {
                    return Err(malformed_query("token given more than once"));
                }
                let token = decode_component(value)?;
                out.token = (!token.is_empty()).then(|| token.into_owned());
            }
            "since" => {
                if out.since.is_some() {
                    return Err(malformed_query("since given more than once"));
                }
                let since = decode_component(value)?;
                out.since = Some(since.parse().map_err(|_| {
                    malformed_query("since must be a stream position (a whole number)")
                })?);
            }
            "epoch" => {
                if out.epoch.is_some() {
                    return Err(malformed_query("epoch given more than once"));
                }
                let epoch = decode_component(value)?;
                out.epoch = (!epoch.is_empty()).then(|| epoch.into_owned());
            }
            _ => {}
        }
    }
    Ok(out)
}

fn malformed_query(message: &'static str) -> Rejection {
    Rejection::new(RejectReason::Malformed, message)
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
///
/// Written out rather than using `form_urlencoded::parse`, which is lenient by design: it
/// passes bad `%` escapes through and replaces invalid UTF-8, where we want a 400 instead of
/// silently subscribing to a topic the client never named.
fn decode_component(raw: &str) -> Result<Cow<'_, str>, Rejection> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(malformed_query("invalid percent-encoding in query")),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| malformed_query("query is not valid UTF-8"))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
