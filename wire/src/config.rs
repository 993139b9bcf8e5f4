//! The gateway's options, written once: the YAML config file type (`gateway.yaml`), which the
//! gateway deserializes and the operator serializes, with every default in [`defaults`].
//!
//! With the `cli` feature the same struct is also the gateway's command line (`clap::Args`): a
//! flag is the camelCase file key in kebab case (`flushInterval` → `--flush-interval`) with a
//! `VOLLEY_*` environment variable, and its doc string is its `--help` text. Every option is an
//! `Option` so the sources can be layered ([`Options::or`]); a default applies only when no source
//! sets the option. The file rejects unknown keys, so a typo fails at start-up instead of being
//! silently ignored. Doc strings state defaults as `[default: X]`; a test checks each against
//! [`Options::defaults`], and the README's configuration table is checked against both.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod debug;
pub mod defaults;
pub mod history;

/// `Upper { f: upper.f.or(lower.f), ... }` for the listed fields. The struct literal must name
/// every field once, so an option added to the type but not to the list does not compile.
macro_rules! layered {
    ($upper:ident over $lower:ident: $ty:ident { $($field:ident),* $(,)? }) => {
        $ty { $($field: $upper.$field.or($lower.$field)),* }
    };
}

/// Every gateway option. Keys are camelCase in the file; absent keys are `None` and are not
/// written when serializing, so the operator renders only what a spec sets. `Debug` redacts the
/// secrets (`debug.rs`).
#[derive(Default, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    /// Client WebSocket address [default: 0.0.0.0:8080]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_LISTEN"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,

    /// Admin HTTP address: /healthz, /readyz, /metrics, POST /v1/publish/{topic} [default: 0.0.0.0:9090]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_ADMIN_ADDR"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<SocketAddr>,

    /// Connection shard threads [default: one per core, at most 64]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_SHARDS"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,

    /// Least time between the starts of two flush passes of a shard (each pass: one vectored write per connection with queued frames; a pass that takes longer is followed by the next at once) [default: 10ms]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_FLUSH_INTERVAL", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub flush_interval: Option<Duration>,

    /// Bytes queued for one connection before it is closed as a slow consumer (1008) [default: 1048576]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_PENDING_BYTES"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_bytes: Option<usize>,

    /// Open WebSocket connections this gateway accepts; over it new clients get 503 [default: 100000]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_CONNECTIONS"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,

    /// Subscriptions one connection may hold [default: 100]
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_MAX_SUBSCRIPTIONS_PER_CONNECTION")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_subscriptions_per_connection: Option<usize>,

    /// Largest client message (after reassembly of fragments); larger closes with 1009 [default: 4096]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_MESSAGE_BYTES"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,

    /// Deadline for the whole HTTP upgrade, from accept to the 101 response [default: 5s]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub handshake_timeout: Option<Duration>,

    /// Largest upgrade request head; larger gets 431 [default: 8192]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_HEADER_BYTES"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,

    /// Idle time after which the server pings a connection; silent for two intervals closes it [default: 30s]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_PING_INTERVAL", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ping_interval: Option<Duration>,

    /// On SIGTERM/SIGINT, connections are closed with 1001 spread evenly over this window [default: 10s]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_DRAIN_TIMEOUT", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_timeout: Option<Duration>,

    /// Allowed browser origins, comma-separated; empty allows any. Requests without Origin are allowed.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_ALLOWED_ORIGINS", value_delimiter = ',')
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,

    /// API key required by POST /v1/publish (as `Authorization: Bearer KEY` or `X-Api-Key: KEY`) [default: none]
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_API_KEY", hide_env_values = true)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,

    /// Largest body accepted by POST /v1/publish; larger gets 413 [default: 1048576]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_PUBLISH_BYTES"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_publish_bytes: Option<usize>,

    /// Data-plane engine: `epoll` (the shards) or `tokio` (the baseline kept for benchmarks) [default: epoll]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_ENGINE", value_enum))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,

    /// NATS server URL(s), comma-separated: turns on cluster mode [default: standalone]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<String>,

    /// NATS credentials file (JWT + nkey seed, as written by `nsc`)
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS_CREDENTIALS"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_credentials: Option<PathBuf>,

    /// NATS subject prefix: topic `t` is subject `<prefix>.t` [default: push]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_SUBJECT_PREFIX"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,

    /// NATS token
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_NATS_TOKEN", hide_env_values = true)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_token: Option<String>,

    /// NATS user (with --nats-password)
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS_USER"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_user: Option<String>,

    /// NATS password
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_NATS_PASSWORD", hide_env_values = true)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_password: Option<String>,

    /// NATS nkey seed
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_NATS_NKEY", hide_env_values = true)
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_nkey: Option<String>,

    /// Require TLS to NATS (`--nats-tls` alone means true) [default: false]
    // A bare `--nats-tls` is what the README documents; `--nats-tls false` still parses.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_NATS_TLS", num_args = 0..=1, default_missing_value = "true")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_tls: Option<bool>,

    /// CA certificate (PEM) to verify the NATS server
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS_TLS_CA"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key)
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS_TLS_CERT"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for NATS mutual TLS
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_NATS_TLS_KEY"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_tls_key: Option<PathBuf>,

    /// How long a NATS subscription outlives its last subscriber, so churn does not flap [default: 2s]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_SUBSCRIPTION_LINGER", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub subscription_linger: Option<Duration>,

    /// How often cluster stats are published on volley.stats.<namespace>.<cluster>.<pod> [default: 5s]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_STATS_INTERVAL", value_parser = humantime::parse_duration))]
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub stats_interval: Option<Duration>,

    /// Client authentication, nested in the file: `auth: {jwt: {secretFile | publicKeyFile |
    /// jwksFile, issuer, audience, leewaySeconds}}`. On the command line the `--jwt-*` flags
    /// ([`Jwt`]) override it key by key.
    #[cfg_attr(feature = "cli", arg(skip))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// Client messages per second per connection; over it an error reply, sustained a 1008 close [default: 20]
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_MAX_CLIENT_MESSAGES_PER_SECOND")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_client_messages_per_second: Option<u32>,

    /// Open connections per client IP; 0 turns the limit off [default: 0]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_MAX_CONNECTIONS_PER_IP"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<usize>,

    /// This gateway's pod name, for the cluster protocol [default: the host name]
    #[cfg_attr(feature = "cli", arg(long, env = "POD_NAME"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// This gateway's namespace, for the cluster protocol [default: default]
    #[cfg_attr(feature = "cli", arg(long, env = "POD_NAMESPACE"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,

    /// The PushCluster this gateway belongs to [default: volley]
    #[cfg_attr(feature = "cli", arg(long, env = "VOLLEY_CLUSTER"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,

    /// Topic patterns kept in JetStream history, comma-separated (`news.>,scores.*`); needs --nats; wins over `history.topics`
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "VOLLEY_HISTORY_TOPICS", value_delimiter = ',')
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_topics: Option<Vec<String>>,

    /// JetStream history, nested in the file: `history: {topics, stream, maxMessagesPerTopic,
    /// maxAge, storage, replicas, replayMaxMessages, replayMaxBytes, replayTimeout,
    /// maxConsumers}`
    /// (docs/history.md).
    #[cfg_attr(feature = "cli", arg(skip))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<history::History>,
}

/// The `auth` section of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// JWT authentication: on when one key source is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
}

/// The `auth.jwt` section of the file. Exactly one of `secretFile`, `publicKeyFile` and
/// `jwksFile` turns JWT auth on. With the `cli` feature these are also the `--jwt-*` flags,
/// which override the file's section key by key ([`Jwt::or`]).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwt {
    /// JWT auth: file with the HS256 shared secret (one trailing newline is trimmed)
    #[cfg_attr(
        feature = "cli",
        arg(long = "jwt-secret-file", env = "VOLLEY_JWT_SECRET_FILE")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// JWT auth: PEM file with the RS256/ES256 (or EdDSA) public key
    #[cfg_attr(
        feature = "cli",
        arg(long = "jwt-public-key-file", env = "VOLLEY_JWT_PUBLIC_KEY_FILE")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// JWT auth: JWKS file (the token's `kid` picks the key)
    #[cfg_attr(
        feature = "cli",
        arg(long = "jwt-jwks-file", env = "VOLLEY_JWT_JWKS_FILE")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// JWT auth: required `iss`
    #[cfg_attr(feature = "cli", arg(long = "jwt-issuer", env = "VOLLEY_JWT_ISSUER"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// JWT auth: required `aud` (one of the token's audiences)
    #[cfg_attr(
        feature = "cli",
        arg(long = "jwt-audience", env = "VOLLEY_JWT_AUDIENCE")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds (file only) [default: 30]
    #[cfg_attr(feature = "cli", arg(skip))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_seconds: Option<u64>,
}

impl Jwt {
    /// Fills every key unset in `self` from `lower`.
    pub fn or(self, lower: Jwt) -> Jwt {
        layered!(self over lower: Jwt {
            secret_file, public_key_file, jwks_file, issuer, audience, leeway_seconds,
        })
    }

    /// Whether a key source is set, which turns JWT auth on.
    pub fn has_key_source(&self) -> bool {
        self.secret_file.is_some() || self.public_key_file.is_some() || self.jwks_file.is_some()
    }
}

/// Which data plane serves clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Epoll shards: encode once, timed batched writev (the real gateway).
    #[default]
    Epoll,
    /// Baseline: tokio-tungstenite, one task per connection, a write per message.
    Tokio,
}

impl Options {
    /// Fills every option unset in `self` from `lower`: a source of higher precedence over one of
    /// lower (flag over environment over file over default). A nested section is taken whole.
    pub fn or(self, lower: Options) -> Options {
        layered!(self over lower: Options {
            listen, admin_addr, shards, flush_interval, max_pending_bytes, max_connections,
            max_subscriptions_per_connection, max_message_bytes, handshake_timeout,
            max_header_bytes, ping_interval, drain_timeout, allowed_origins, api_key,
            max_publish_bytes, engine, nats, nats_credentials, subject_prefix, nats_token,
            nats_user, nats_password, nats_nkey, nats_tls, nats_tls_ca, nats_tls_cert,
            nats_tls_key, subscription_linger, stats_interval, auth,
            max_client_messages_per_second, max_connections_per_ip, pod_name, pod_namespace,
            cluster, history_topics, history,
        })
    }

    /// Every option whose default is a fixed value, set to it (from [`defaults`]). Options that
    /// default to "off" or "none", or whose default depends on the machine (`shards`, `podName`),
    /// stay unset. This is what `[default: X]` in the doc strings and the README's table state.
    pub fn defaults() -> Options {
        use defaults as d;
        Options {
            listen: Some(d::LISTEN),
            admin_addr: Some(d::ADMIN_ADDR),
            flush_interval: Some(d::FLUSH_INTERVAL),
            max_pending_bytes: Some(d::MAX_PENDING_BYTES),
            max_connections: Some(d::MAX_CONNECTIONS),
            max_subscriptions_per_connection: Some(d::MAX_SUBSCRIPTIONS_PER_CONNECTION),
            max_message_bytes: Some(d::MAX_MESSAGE_BYTES),
            handshake_timeout: Some(d::HANDSHAKE_TIMEOUT),
            max_header_bytes: Some(d::MAX_HEADER_BYTES),
            ping_interval: Some(d::PING_INTERVAL),
            drain_timeout: Some(d::DRAIN_TIMEOUT),
            max_publish_bytes: Some(d::MAX_PUBLISH_BYTES),
            engine: Some(Engine::default()),
            subject_prefix: Some(d::SUBJECT_PREFIX.to_owned()),
            nats_tls: Some(d::NATS_TLS),
            subscription_linger: Some(d::SUBSCRIPTION_LINGER),
            stats_interval: Some(d::STATS_INTERVAL),
            auth: Some(Auth {
                jwt: Some(Jwt {
                    leeway_seconds: Some(d::JWT_LEEWAY_SECONDS),
                    ..Jwt::default()
                }),
            }),
            max_client_messages_per_second: Some(d::MAX_CLIENT_MESSAGES_PER_SECOND),
            max_connections_per_ip: Some(d::MAX_CONNECTIONS_PER_IP),
            pod_namespace: Some(d::POD_NAMESPACE.to_owned()),
            cluster: Some(d::CLUSTER.to_owned()),
            // Off without topics; the rest applies once topics are set.
            history: Some(history::History {
                topics: None,
                stream: Some(d::HISTORY_STREAM.to_owned()),
                max_messages_per_topic: Some(d::HISTORY_MAX_MESSAGES_PER_TOPIC),
                max_age: Some(d::HISTORY_MAX_AGE),
                storage: Some(history::Storage::File),
                replicas: Some(d::HISTORY_REPLICAS),
                replay_max_messages: Some(d::HISTORY_REPLAY_MAX_MESSAGES),
                replay_max_bytes: Some(d::HISTORY_REPLAY_MAX_BYTES),
                replay_timeout: Some(d::HISTORY_REPLAY_TIMEOUT),
                max_consumers: Some(d::HISTORY_MAX_CONSUMERS),
            }),
            ..Options::default()
        }
    }
}

#[cfg(test)]
mod tests;
