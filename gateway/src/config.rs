//! Gateway configuration: command-line flags, an optional YAML file and `VOLLEY_*` environment
//! variables, merged into one validated [`Config`].
//!
//! Precedence, highest first: a flag, its `VOLLEY_*` environment variable, the YAML file given with
//! `--config`, the built-in default. The YAML file uses the flag names in camelCase
//! (`--flush-interval` → `flushInterval`) and rejects unknown keys, so a typo fails at start-up
//! instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

pub use crate::auth::JwtConfig;
pub use crate::cluster::NatsConfig;
pub use crate::history::{HistoryConfig, HistoryFile};

/// Every option, each optional so the sources can be layered. The same struct is parsed from the
/// command line (with environment fallbacks) and from the YAML file, so the two cannot drift.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    /// Client WebSocket address [default: 0.0.0.0:8080]
    #[arg(long, env = "VOLLEY_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Admin HTTP address: /healthz, /readyz, /metrics, POST /v1/publish/{topic} [default: 0.0.0.0:9090]
    #[arg(long, env = "VOLLEY_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,

    /// Connection shard threads [default: one per core, at most 64]
    #[arg(long, env = "VOLLEY_SHARDS")]
    pub shards: Option<usize>,

    /// Least pause between two flush passes of a shard (each pass: one vectored write per connection with queued frames; a pass longer than 4 intervals is followed by a quarter of itself) [default: 10ms]
    #[arg(long, env = "VOLLEY_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,

    /// Bytes queued for one connection before it is closed as a slow consumer (1008) [default: 1048576]
    #[arg(long, env = "VOLLEY_MAX_PENDING_BYTES")]
    pub max_pending_bytes: Option<usize>,

    /// Open WebSocket connections this gateway accepts; over it new clients get 503 [default: 100000]
    #[arg(long, env = "VOLLEY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Subscriptions one connection may hold [default: 100]
    #[arg(long, env = "VOLLEY_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    pub max_subscriptions_per_connection: Option<usize>,

    /// Largest client message (after reassembly of fragments); larger closes with 1009 [default: 4096]
    #[arg(long, env = "VOLLEY_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Deadline for the whole HTTP upgrade, from accept to the 101 response [default: 5s]
    #[arg(long, env = "VOLLEY_HANDSHAKE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,

    /// Largest upgrade request head; larger gets 431 [default: 8192]
    #[arg(long, env = "VOLLEY_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,

    /// Idle time after which the server pings a connection; silent for two intervals closes it [default: 30s]
    #[arg(long, env = "VOLLEY_PING_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub ping_interval: Option<Duration>,

    /// On SIGTERM/SIGINT, connections are closed with 1001 spread evenly over this window [default: 10s]
    #[arg(long, env = "VOLLEY_DRAIN_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,

    /// Allowed browser origins, comma-separated; empty allows any. Requests without Origin are allowed.
    #[arg(long, env = "VOLLEY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,

    /// API key required by POST /v1/publish (as `Authorization: Bearer KEY` or `X-Api-Key: KEY`) [default: none]
    #[arg(long, env = "VOLLEY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Largest body accepted by POST /v1/publish; larger gets 413 [default: 1048576]
    #[arg(long, env = "VOLLEY_MAX_PUBLISH_BYTES")]
    pub max_publish_bytes: Option<usize>,

    /// Data-plane engine: `epoll` (the shards) or `tokio` (the baseline kept for benchmarks) [default: epoll]
    #[arg(long, env = "VOLLEY_ENGINE", value_enum)]
    pub engine: Option<Engine>,

    /// NATS server URL(s), comma-separated: turns on cluster mode [default: standalone]
    #[arg(long, env = "VOLLEY_NATS")]
    pub nats: Option<String>,

    /// NATS credentials file (JWT + nkey seed, as written by `nsc`)
    #[arg(long, env = "VOLLEY_NATS_CREDENTIALS")]
    pub nats_credentials: Option<PathBuf>,

    /// NATS token
    #[arg(long, env = "VOLLEY_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// NATS user (with --nats-password)
    #[arg(long, env = "VOLLEY_NATS_USER")]
    pub nats_user: Option<String>,

    /// NATS password
    #[arg(long, env = "VOLLEY_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,

    /// NATS nkey seed
    #[arg(long, env = "VOLLEY_NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<String>,

    /// Require TLS to NATS (`--nats-tls` alone means true)
    // A bare `--nats-tls` is what the README documents; `--nats-tls false` still parses.
    #[arg(long, env = "VOLLEY_NATS_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub nats_tls: Option<bool>,

    /// CA certificate (PEM) to verify the NATS server
    #[arg(long, env = "VOLLEY_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key)
    #[arg(long, env = "VOLLEY_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for NATS mutual TLS
    #[arg(long, env = "VOLLEY_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,

    /// How long a NATS subscription outlives its last subscriber, so churn does not flap [default: 2s]
    #[arg(long, env = "VOLLEY_SUBSCRIPTION_LINGER", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub subscription_linger: Option<Duration>,

    /// How often cluster stats are published on volley.stats.<namespace>.<cluster>.<pod> [default: 5s]
    #[arg(long, env = "VOLLEY_STATS_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub stats_interval: Option<Duration>,

    /// JWT auth: file with the HS256 shared secret
    #[arg(long, env = "VOLLEY_JWT_SECRET_FILE")]
    #[serde(skip)]
    pub jwt_secret_file: Option<PathBuf>,

    /// JWT auth: PEM file with the RS256/ES256 public key
    #[arg(long, env = "VOLLEY_JWT_PUBLIC_KEY_FILE")]
    #[serde(skip)]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWT auth: JWKS file (the token's `kid` picks the key)
    #[arg(long, env = "VOLLEY_JWT_JWKS_FILE")]
    #[serde(skip)]
    pub jwt_jwks_file: Option<PathBuf>,

    /// JWT auth: required `iss`
    #[arg(long, env = "VOLLEY_JWT_ISSUER")]
    #[serde(skip)]
    pub jwt_issuer: Option<String>,

    /// JWT auth: required `aud`
    #[arg(long, env = "VOLLEY_JWT_AUDIENCE")]
    #[serde(skip)]
    pub jwt_audience: Option<String>,

    /// In the YAML file, auth is nested: `auth: {jwt: {secretFile | publicKeyFile | jwksFile, issuer, audience}}`
    #[arg(skip)]
    #[serde(default)]
    pub auth: Option<AuthFile>,

    /// Client messages per second per connection; over it an error reply, sustained a 1008 close [default: 20]
    #[arg(long, env = "VOLLEY_MAX_CLIENT_MESSAGES_PER_SECOND")]
    pub max_client_messages_per_second: Option<u32>,

    /// Open connections per client IP; 0 turns the limit off [default: 0]
    #[arg(long, env = "VOLLEY_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// This gateway's pod name, for the cluster protocol [default: the host name]
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// This gateway's namespace, for the cluster protocol [default: default]
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// The PushCluster this gateway belongs to [default: volley]
    #[arg(long, env = "VOLLEY_CLUSTER")]
    pub cluster: Option<String>,

    /// NATS subject prefix: topic `t` is subject `<prefix>.t` [default: push]
    #[arg(long, env = "VOLLEY_SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,

    /// Topic patterns kept in JetStream history, comma-separated (`news.>,scores.*`); needs --nats [default: none]
    #[arg(long, env = "VOLLEY_HISTORY_TOPICS", value_delimiter = ',')]
    pub history_topics: Option<Vec<String>>,

    /// In the YAML file: `history: {topics, stream, maxMessagesPerTopic, maxAge, storage, replicas, replayMaxMessages, replayMaxBytes, replayTimeout}`
    #[arg(skip)]
    #[serde(default)]
    pub history: Option<HistoryFile>,
}

impl Options {
    /// Fills every option unset in `self` from `lower`.
    fn or(self, lower: Options) -> Options {
        Options {
            listen: self.listen.or(lower.listen),
            admin_addr: self.admin_addr.or(lower.admin_addr),
            shards: self.shards.or(lower.shards),
            flush_interval: self.flush_interval.or(lower.flush_interval),
            max_pending_bytes: self.max_pending_bytes.or(lower.max_pending_bytes),
            max_connections: self.max_connections.or(lower.max_connections),
            max_subscriptions_per_connection: self
                .max_subscriptions_per_connection
                .or(lower.max_subscriptions_per_connection),
            max_message_bytes: self.max_message_bytes.or(lower.max_message_bytes),
            handshake_timeout: self.handshake_timeout.or(lower.handshake_timeout),
            max_header_bytes: self.max_header_bytes.or(lower.max_header_bytes),
            ping_interval: self.ping_interval.or(lower.ping_interval),
            drain_timeout: self.drain_timeout.or(lower.drain_timeout),
            allowed_origins: self.allowed_origins.or(lower.allowed_origins),
            api_key: self.api_key.or(lower.api_key),
            max_publish_bytes: self.max_publish_bytes.or(lower.max_publish_bytes),
            engine: self.engine.or(lower.engine),
            nats: self.nats.or(lower.nats),
            nats_credentials: self.nats_credentials.or(lower.nats_credentials),
            nats_token: self.nats_token.or(lower.nats_token),
            nats_user: self.nats_user.or(lower.nats_user),
            nats_password: self.nats_password.or(lower.nats_password),
            nats_nkey: self.nats_nkey.or(lower.nats_nkey),
            nats_tls: self.nats_tls.or(lower.nats_tls),
            nats_tls_ca: self.nats_tls_ca.or(lower.nats_tls_ca),
            nats_tls_cert: self.nats_tls_cert.or(lower.nats_tls_cert),
            nats_tls_key: self.nats_tls_key.or(lower.nats_tls_key),
            subscription_linger: self.subscription_linger.or(lower.subscription_linger),
            stats_interval: self.stats_interval.or(lower.stats_interval),
            pod_name: self.pod_name.or(lower.pod_name),
            pod_namespace: self.pod_namespace.or(lower.pod_namespace),
            cluster: self.cluster.or(lower.cluster),
            jwt_secret_file: self.jwt_secret_file.or(lower.jwt_secret_file),
            jwt_public_key_file: self.jwt_public_key_file.or(lower.jwt_public_key_file),
            jwt_jwks_file: self.jwt_jwks_file.or(lower.jwt_jwks_file),
            jwt_issuer: self.jwt_issuer.or(lower.jwt_issuer),
            jwt_audience: self.jwt_audience.or(lower.jwt_audience),
            auth: self.auth.or(lower.auth),
            max_client_messages_per_second: self
                .max_client_messages_per_second
                .or(lower.max_client_messages_per_second),
            max_connections_per_ip: self.max_connections_per_ip.or(lower.max_connections_per_ip),
            subject_prefix: self.subject_prefix.or(lower.subject_prefix),
            history_topics: self.history_topics.or(lower.history_topics),
            history: self.history.or(lower.history),
        }
    }
}

/// The `auth` section of the YAML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthFile {
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// The command line of `volley-gateway`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "volley-gateway",
    version,
    about = "Volley WebSocket push gateway"
)]
pub struct Cli {
    /// YAML config file (keys are the flag names in camelCase)
    #[arg(long, env = "VOLLEY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print the resolved configuration and exit (non-zero with the offending key if invalid)
    #[arg(long)]
    pub check_config: bool,

    #[command(flatten)]
    pub options: Options,
}

/// The resolved configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shards: usize,
    pub flush_interval: Duration,
    pub max_pending_bytes: usize,
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    pub max_message_bytes: usize,
    pub handshake_timeout: Duration,
    pub max_header_bytes: usize,
    pub ping_interval: Duration,
    pub drain_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub api_key: Option<Secret>,
    pub max_publish_bytes: usize,
    /// Cluster mode when set.
    pub nats: Option<NatsConfig>,
    pub stats_interval: Duration,
    pub identity: Identity,
    /// JWT auth when set; otherwise connections are anonymous.
    pub jwt: Option<JwtConfig>,
    pub max_client_messages_per_second: u32,
    pub max_connections_per_ip: usize,
    pub engine: Engine,
    /// JetStream history, when topics are configured for it (cluster mode only).
    pub history: Option<HistoryConfig>,
}

/// Who this gateway is in the cluster protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub cluster: String,
    pub pod: String,
}

/// Which data plane serves clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Epoll shards: encode once, timed batched writev (the real gateway).
    #[default]
    Epoll,
    /// Baseline: tokio-tungstenite, one task per connection, a write per message.
    Tokio,
}

/// Why a configuration was refused; each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: key `{key}`: {message}")]
    File {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    History(#[from] crate::history::config::HistoryConfigError),
}

impl Cli {
    /// Resolves the command line, environment and the optional file into a [`Config`].
    pub fn load(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => Options::default(),
        };
        Config::from_options(self.options.or(file))
    }
}

/// Parses a YAML config file, naming the offending key on error.
pub fn read_file(path: &Path) -> Result<Options, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(&text).map_err(|(key, message)| ConfigError::File {
        path: path.to_owned(),
        key,
        message,
    })
}

/// Parses YAML config text; on error returns the path of the key at fault and the message.
pub fn parse_yaml(text: &str) -> Result<Options, (String, String)> {
    if text.trim().is_empty() {
        return Ok(Options::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        (key, e.into_inner().to_string())
    })
}

/// Most shards in cluster mode: each shard is one bit of the `u64` mask the NATS router keeps per
/// subscription.
pub const MAX_CLUSTER_SHARDS: usize = 64;

/// The default shard count: one per core, at most [`MAX_CLUSTER_SHARDS`] so the default is valid
/// in every mode (a 96-core node would otherwise refuse to start in cluster mode).
pub fn default_shards(cores: usize) -> usize {
    cores.clamp(1, MAX_CLUSTER_SHARDS)
}

impl Config {
    /// Applies defaults and checks values that the types alone do not rule out.
    pub fn from_options(o: Options) -> Result<Config, ConfigError> {
        Self::from_options_on(
            o,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )
    }

    /// [`Config::from_options`] on a machine with `cores` cores.
    pub fn from_options_on(o: Options, cores: usize) -> Result<Config, ConfigError> {
        // Flags and env override the file's `auth.jwt` field by field.
        let mut jwt = o.auth.and_then(|a| a.jwt).unwrap_or_default();
        jwt.secret_file = o.jwt_secret_file.or(jwt.secret_file);
        jwt.public_key_file = o.jwt_public_key_file.or(jwt.public_key_file);
        jwt.jwks_file = o.jwt_jwks_file.or(jwt.jwks_file);
        jwt.issuer = o.jwt_issuer.or(jwt.issuer);
        jwt.audience = o.jwt_audience.or(jwt.audience);
        let jwt_enabled =
            jwt.secret_file.is_some() || jwt.public_key_file.is_some() || jwt.jwks_file.is_some();
        let config = Config {
            listen: o.listen.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080))),
            admin_addr: o
                .admin_addr
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9090))),
            shards: o.shards.unwrap_or(default_shards(cores)),
            flush_interval: o.flush_interval.unwrap_or(Duration::from_millis(10)),
            max_pending_bytes: o.max_pending_bytes.unwrap_or(1 << 20),
            max_connections: o.max_connections.unwrap_or(100_000),
            max_subscriptions_per_connection: o.max_subscriptions_per_connection.unwrap_or(100),
            max_message_bytes: o.max_message_bytes.unwrap_or(4096),
            handshake_timeout: o.handshake_timeout.unwrap_or(Duration::from_secs(5)),
            max_header_bytes: o.max_header_bytes.unwrap_or(8192),
            ping_interval: o.ping_interval.unwrap_or(Duration::from_secs(30)),
            drain_timeout: o.drain_timeout.unwrap_or(Duration::from_secs(10)),
            allowed_origins: o.allowed_origins.unwrap_or_default(),
            api_key: o.api_key.filter(|k| !k.is_empty()).map(Secret::new),
            max_publish_bytes: o.max_publish_bytes.unwrap_or(1 << 20),
            nats: o
                .nats
                .filter(|u| !u.trim().is_empty())
                .map(|urls| NatsConfig {
                    urls,
                    credentials_file: o.nats_credentials,
                    token: o.nats_token.map(Secret::new),
                    user: o.nats_user,
                    password: o.nats_password.map(Secret::new),
                    nkey_seed: o.nats_nkey.map(Secret::new),
                    tls_required: o.nats_tls.unwrap_or(false),
                    tls_ca_file: o.nats_tls_ca,
                    tls_cert_file: o.nats_tls_cert,
                    tls_key_file: o.nats_tls_key,
                    subject_prefix: o
                        .subject_prefix
                        .clone()
                        .unwrap_or_else(|| "push".to_owned()),
                    linger: o.subscription_linger.unwrap_or(Duration::from_secs(2)),
                }),
            stats_interval: o.stats_interval.unwrap_or(Duration::from_secs(5)),
            jwt: jwt_enabled.then_some(jwt),
            max_client_messages_per_second: o.max_client_messages_per_second.unwrap_or(20),
            max_connections_per_ip: o.max_connections_per_ip.unwrap_or(0),
            identity: Identity {
                namespace: o.pod_namespace.unwrap_or_else(|| "default".to_owned()),
                cluster: o.cluster.unwrap_or_else(|| "volley".to_owned()),
                pod: o.pod_name.unwrap_or_else(host_name),
            },
            engine: o.engine.unwrap_or_default(),
            history: HistoryConfig::resolve(o.history, o.history_topics)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        positive("shards", self.shards as u128)?;
        if self.shards > 1024 {
            return Err(invalid("shards", "at most 1024"));
        }
        positive("flushInterval", self.flush_interval.as_micros())?;
        positive("maxPendingBytes", self.max_pending_bytes as u128)?;
        positive("maxMessageBytes", self.max_message_bytes as u128)?;
        positive("handshakeTimeout", self.handshake_timeout.as_micros())?;
        positive("pingInterval", self.ping_interval.as_millis())?;
        if self.max_header_bytes < 256 {
            return Err(invalid("maxHeaderBytes", "at least 256"));
        }
        if let Some(nats) = &self.nats {
            let prefix = &nats.subject_prefix;
            if prefix.is_empty()
                || prefix.starts_with('.')
                || prefix.ends_with('.')
                || prefix.contains(['*', '>', ' '])
            {
                return Err(invalid(
                    "subjectPrefix",
                    "a non-empty NATS subject without wildcards",
                ));
            }
            if nats.user.is_some() != nats.password.is_some() {
                return Err(invalid("natsUser", "natsUser and natsPassword go together"));
            }
            if nats.tls_cert_file.is_some() != nats.tls_key_file.is_some() {
                return Err(invalid(
                    "natsTlsCert",
                    "natsTlsCert and natsTlsKey go together",
                ));
            }
            if self.shards > MAX_CLUSTER_SHARDS {
                return Err(invalid("shards", "at most 64 in cluster mode"));
            }
        }
        for (key, token) in [
            ("podNamespace", &self.identity.namespace),
            ("cluster", &self.identity.cluster),
            ("podName", &self.identity.pod),
        ] {
            if token.is_empty() || token.contains(['.', '*', '>', ' ']) {
                return Err(invalid(
                    key,
                    "one NATS subject token (no '.', '*', '>', spaces)",
                ));
            }
        }
        if self.engine == Engine::Tokio && self.nats.is_some() {
            return Err(invalid(
                "engine",
                "the tokio baseline engine serves standalone clients only (no nats)",
            ));
        }
        if self.history.is_some() && self.nats.is_none() {
            return Err(invalid(
                "history",
                "history is kept in NATS JetStream: it needs cluster mode (nats)",
            ));
        }
        if let Some(history) = &self.history
            && history.replay_max_bytes > self.max_pending_bytes
        {
            return Err(invalid(
                "history",
                "history.replayMaxBytes must not exceed maxPendingBytes (a replay is queued for one client)",
            ));
        }
        positive("statsInterval", self.stats_interval.as_millis())?;
        positive(
            "maxClientMessagesPerSecond",
            u128::from(self.max_client_messages_per_second),
        )?;
        Ok(())
    }
}

/// The kernel's host name (a pod's name in Kubernetes), or `volley-gateway`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "volley-gateway".to_owned())
}

fn positive(key: &'static str, value: u128) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(())
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
