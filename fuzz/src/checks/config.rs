//! YAML config loader: any text either loads or names the key at fault, and a loaded config
//! satisfies the documented bounds. Built documents (known keys with arbitrary scalar values)
//! exercise the typed fields rather than the YAML syntax alone.

use volley_gateway::config::{self, Config};

use super::input::Input;

const KEYS: &[&str] = &[
    "listen",
    "adminAddr",
    "shards",
    "flushInterval",
    "maxPendingBytes",
    "maxConnections",
    "maxMessageBytes",
    "handshakeTimeout",
    "maxHeaderBytes",
    "pingInterval",
    "drainTimeout",
    "allowedOrigins",
    "apiKey",
    "maxPublishBytes",
    "nats",
    "natsUser",
    "natsPassword",
    "subjectPrefix",
    "subscriptionLinger",
    "statsInterval",
    "maxClientMessagesPerSecond",
    "maxConnectionsPerIp",
    "podNamespace",
    "cluster",
    "podName",
    "engine",
    "auth",
    "unknownKey",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "64",
    "65",
    "1025",
    "-1",
    "18446744073709551616",
    "1.5",
    "true",
    "null",
    "~",
    "\"\"",
    "10ms",
    "0s",
    "99999999999999999999y",
    "5 minutes",
    "1h 2m",
    "\"127.0.0.1:0\"",
    "[::1]:80",
    "[a, b]",
    "{jwt: {secretFile: /nonexistent}}",
    "{jwt: {bogus: 1}}",
    "nats://127.0.0.1:4222",
    "epoll",
    "tokio",
    "a.b",
    "'*'",
    "&x 1",
    "*x",
    "!!binary aGk=",
    "|\n  block",
    "{",
    "]",
];

pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let text = if input.u8().is_multiple_of(2) {
        String::from_utf8_lossy(input.rest()).into_owned()
    } else {
        let mut doc = String::new();
        for _ in 0..input.below(8) {
            let key = input.pick(KEYS);
            let value = if input.u8().is_multiple_of(4) {
                input.string(24)
            } else {
                (*input.pick(VALUES)).to_owned()
            };
            doc.push_str(&format!("{key}: {value}\n"));
        }
        doc
    };
    match config::parse_yaml(&text) {
        Err((key, message)) => {
            assert!(!message.is_empty(), "an error says why");
            // The key path comes from the document, so it is bounded by it.
            assert!(key.len() <= text.len() + 16, "key {key:?}");
        }
        Ok(options) => match Config::from_options(options) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(c) => {
                assert!((1..=1024).contains(&c.shards));
                assert!(c.max_pending_bytes > 0 && c.max_message_bytes > 0);
                assert!(c.max_header_bytes >= 256);
                assert!(!c.flush_interval.is_zero() && !c.ping_interval.is_zero());
                assert!(!c.handshake_timeout.is_zero() && !c.stats_interval.is_zero());
                assert!(c.max_client_messages_per_second > 0);
                if let Some(nats) = &c.nats {
                    assert!(c.shards <= 64, "cluster mode keeps a 64-bit shard mask");
                    assert!(!nats.subject_prefix.is_empty());
                }
            }
        },
    }
}
