//! The pure parts of the limit reference: reading an upgrade request head and the admin API's
//! publish requests out of a buffer, and framing a payload once for every subscriber.

/// What a complete request head at the start of a buffer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Bytes the head takes, blank line included.
    pub len: usize,
    pub content_length: usize,
    pub websocket_key: Option<&'a str>,
    /// Whether the client offered the `volley.v1` subprotocol (echoed back, as the gateway does).
    pub volley_protocol: bool,
}

/// Why a request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("request head longer than {0} bytes")]
    HeadTooLong(usize),
    #[error("request head is not UTF-8 or has no request line")]
    Malformed,
    #[error("bad Content-Length")]
    BadLength,
}

/// Longest request head either port reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn head(buf: &[u8]) -> Result<Option<Head<'_>>, ParseError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(ParseError::HeadTooLong(MAX_HEAD))
        } else {
            Ok(None)
        };
    };
    if end + 4 > MAX_HEAD {
        return Err(ParseError::HeadTooLong(MAX_HEAD));
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next().ok_or(ParseError::Malformed)?.split(' ');
    let (Some(method), Some(path)) = (request.next(), request.next()) else {
        return Err(ParseError::Malformed);
    };
    let mut out = Head {
        method,
        path,
        len: end + 4,
        content_length: 0,
        websocket_key: None,
        volley_protocol: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            out.content_length = value.parse().map_err(|_| ParseError::BadLength)?;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            out.websocket_key = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            out.volley_protocol = value.split(',').any(|p| p.trim() == "volley.v1");
        }
    }
    Ok(Some(out))
}

/// The 101 answer to an upgrade with `key`.
pub fn switching_protocols(key: &str, volley_protocol: bool) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let protocol = if volley_protocol {
        "Sec-WebSocket-Protocol: volley.v1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    )
    .into_bytes()
}

/// A short answer with no body; `close` adds `Connection: close`.
pub fn status(code: u16, reason: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n{connection}\r\n").into_bytes()
}

/// The topic of `POST /v1/publish/{topic}`, if that is what `head` asks.
pub fn publish_topic<'a>(head: &Head<'a>) -> Option<&'a str> {
    if head.method != "POST" {
        return None;
    }
    head.path
        .strip_prefix("/v1/publish/")
        .filter(|t| !t.is_empty())
}

/// Appends `payload` as one unmasked, final server frame: text when it is UTF-8, else binary.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let opcode = if std::str::from_utf8(payload).is_ok() {
        0x1
    } else {
        0x2
    };
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}
