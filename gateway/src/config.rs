//! Gateway configuration: command-line flags, an optional YAML file and `VOLLEY_*` environment
//! variables, merged into one validated [`Config`].
//!
//! The options themselves, their file syntax and their defaults are written once, in
//! [`volley_wire::config`] (the operator renders the same type). This module layers the sources,
//! highest first: a flag, its `VOLLEY_*` environment variable, the YAML file given with
//! `--config`, the built-in default; then it resolves and checks the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_wire::config::defaults;

use crate::secret::{Secret, redact_urls};

pub use crate::auth::JwtConfig;
pub use crate::history::{HistoryConfig, HistoryFile};
pub use volley_wire::config::defaults::MAX_CLUSTER_SHARDS;
pub use volley_wire::config::{Auth, Engine, Jwt, Options};

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

    /// The `--jwt-*` flags; in the file they are `auth.jwt.*`.
    #[command(flatten)]
    pub jwt: Jwt,
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
    pub identity: PodIdentity,
    /// JWT auth when set; otherwise connections are anonymous.
    pub jwt: Option<JwtConfig>,
    pub max_client_messages_per_second: u32,
    pub max_connections_per_ip: usize,
    pub engine: Engine,
    /// JetStream history, when topics are configured for it (cluster mode only).
    pub history: Option<HistoryConfig>,
}

/// Which pod of which PushCluster this gateway is, as the cluster protocol names it (not a
/// client's identity: that is `auth::Identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub cluster: String,
    pub pod: String,
}

/// How to reach NATS. `Debug` shows no secret: the token, password and nkey seed are
/// [`Secret`]s and credentials in the URLs are redacted.
#[derive(Clone, Default)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated (may carry `user:password@`).
    pub urls: String,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<Secret>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub nkey_seed: Option<Secret>,
    pub tls_required: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub subject_prefix: String,
    /// How long a subscription outlives its last subscriber.
    pub linger: Duration,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("urls", &redact_urls(&self.urls))
            .field("credentials_file", &self.credentials_file)
            .field("token", &self.token)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("nkey_seed", &self.nkey_seed)
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("subject_prefix", &self.subject_prefix)
            .field("linger", &self.linger)
            .finish()
    }
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
        let mut options = self.options.or(file);
        // The `--jwt-*` flags override the file's `auth.jwt` key by key.
        let file_jwt = options.auth.take().and_then(|a| a.jwt).unwrap_or_default();
        options.auth = Some(Auth {
            jwt: Some(self.jwt.or(file_jwt)),
        });
        Config::from_options(options)
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

/// The default shard count on a machine with `cores` cores ([`defaults::shards`]).
pub fn default_shards(cores: usize) -> usize {
    defaults::shards(cores)
}

impl Config {
    /// Applies defaults and checks values that the types alone do not rule out.
    pub fn from_options(o: Options) -> Result<Config, ConfigError> {
        Self::from_options_on(
            o,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )
    }

    /// [`Config::from_options`] on a machine with `cores` cores. Every unset option takes its
    /// value from [`defaults`].
    pub fn from_options_on(o: Options, cores: usize) -> Result<Config, ConfigError> {
        use defaults as d;
        let jwt = o.auth.and_then(|a| a.jwt).unwrap_or_default();
        let config = Config {
            listen: o.listen.unwrap_or(d::LISTEN),
            admin_addr: o.admin_addr.unwrap_or(d::ADMIN_ADDR),
            shards: o.shards.unwrap_or_else(|| d::shards(cores)),
            flush_interval: o.flush_interval.unwrap_or(d::FLUSH_INTERVAL),
            max_pending_bytes: o.max_pending_bytes.unwrap_or(d::MAX_PENDING_BYTES),
            max_connections: o.max_connections.unwrap_or(d::MAX_CONNECTIONS),
            max_subscriptions_per_connection: o
                .max_subscriptions_per_connection
                .unwrap_or(d::MAX_SUBSCRIPTIONS_PER_CONNECTION),
            max_message_bytes: o.max_message_bytes.unwrap_or(d::MAX_MESSAGE_BYTES),
            handshake_timeout: o.handshake_timeout.unwrap_or(d::HANDSHAKE_TIMEOUT),
            max_header_bytes: o.max_header_bytes.unwrap_or(d::MAX_HEADER_BYTES),
            ping_interval: o.ping_interval.unwrap_or(d::PING_INTERVAL),
            drain_timeout: o.drain_timeout.unwrap_or(d::DRAIN_TIMEOUT),
            allowed_origins: o.allowed_origins.unwrap_or_default(),
            api_key: o.api_key.filter(|k| !k.is_empty()).map(Secret::new),
            max_publish_bytes: o.max_publish_bytes.unwrap_or(d::MAX_PUBLISH_BYTES),
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
                    tls_required: o.nats_tls.unwrap_or(d::NATS_TLS),
                    tls_ca_file: o.nats_tls_ca,
                    tls_cert_file: o.nats_tls_cert,
                    tls_key_file: o.nats_tls_key,
                    subject_prefix: o
                        .subject_prefix
                        .unwrap_or_else(|| d::SUBJECT_PREFIX.to_owned()),
                    linger: o.subscription_linger.unwrap_or(d::SUBSCRIPTION_LINGER),
                }),
            stats_interval: o.stats_interval.unwrap_or(d::STATS_INTERVAL),
            jwt: jwt.has_key_source().then(|| JwtConfig {
                secret_file: jwt.secret_file,
                public_key_file: jwt.public_key_file,
                jwks_file: jwt.jwks_file,
                issuer: jwt.issuer,
                audience: jwt.audience,
                leeway_seconds: jwt.leeway_seconds.unwrap_or(d::JWT_LEEWAY_SECONDS),
            }),
            max_client_messages_per_second: o
                .max_client_messages_per_second
                .unwrap_or(d::MAX_CLIENT_MESSAGES_PER_SECOND),
            max_connections_per_ip: o
                .max_connections_per_ip
                .unwrap_or(d::MAX_CONNECTIONS_PER_IP),
            identity: PodIdentity {
                namespace: o
                    .pod_namespace
                    .unwrap_or_else(|| d::POD_NAMESPACE.to_owned()),
                cluster: o.cluster.unwrap_or_else(|| d::CLUSTER.to_owned()),
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
            if !valid_subject_prefix(&nats.subject_prefix) {
                return Err(invalid(
                    "subjectPrefix",
                    "a NATS subject: dot-separated non-empty tokens, no whitespace, no wildcards",
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

/// The kernel's host name (a pod's name in Kubernetes), or [`defaults::POD_NAME_FALLBACK`].
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| defaults::POD_NAME_FALLBACK.to_owned())
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

/// A subject prefix NATS accepts: what async-nats `is_valid_subject` (0.51, lib.rs) refuses —
/// empty, a leading or trailing `.`, `..`, any whitespace (space, tab, CR, LF) — makes every
/// subscribe fail (nothing is ever delivered) and every publish a 503, so it must fail at
/// start-up instead. Whitespace is taken in the wider Unicode sense, and `*`/`>` anywhere are
/// refused: the prefix is prepended to every topic and must not widen it.
fn valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || matches!(c, '*' | '>'))
        })
}

#[cfg(test)]
mod tests;
