//! Renders a PushCluster spec into the gateway's YAML config file (`gateway.yaml`) and
//! validates the parts of the spec the API server's schema cannot check.
//!
//! The file type is the gateway's own, `volley_wire::config::Options` (re-exported as `volley_crds::wire`): the operator fills it
//! and serializes it, the gateway deserializes it, so the two cannot disagree on a key.

use std::time::Duration;

use volley_crds::wire::config::{Auth, Jwt, Options, defaults};
use volley_crds::{PushCluster, SecretKeyRef};

/// Where the ConfigMap is mounted in the gateway container.
pub const CONFIG_DIR: &str = "/etc/volley/config";
/// ConfigMap key (and file name) of the gateway config.
pub const CONFIG_KEY: &str = "gateway.yaml";
/// Where the JWT secret or public key is mounted.
pub const JWT_DIR: &str = "/etc/volley/jwt";
/// Where the NATS credentials Secret is mounted.
pub const NATS_DIR: &str = "/etc/volley/nats";
/// The NATS credentials file inside the gateway container.
pub const NATS_CREDS_FILE: &str = "/etc/volley/nats/creds";
/// Client port inside the pod: the gateway's default `listen` port.
pub const CLIENT_PORT: i32 = defaults::LISTEN.port() as i32;
/// Admin port inside the pod (health, readiness, metrics, publish API): the default `adminAddr`.
pub const ADMIN_PORT: i32 = defaults::ADMIN_ADDR.port() as i32;
/// The gateway's drain window when the spec sets none (the gateway's own default).
pub const DEFAULT_DRAIN: Duration = defaults::DRAIN_TIMEOUT;
/// Drains longer than this would keep rollouts hanging for too long; reject them.
pub const MAX_DRAIN: Duration = Duration::from_secs(600);

/// A spec the operator refuses to deploy; surfaced as `Ready=False, reason=InvalidSpec`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The name is used as a NATS subject token and in child names (the Service's among them).
    #[error(
        "metadata.name {0:?} must be a DNS-1035 label, as the Service named after it must be: lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 52 characters"
    )]
    BadName(String),
    /// A humantime duration failed to parse.
    #[error("{field}: {value:?} is not a duration like \"10ms\" or \"5s\"")]
    BadDuration {
        /// Spec path.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// A duration outside the allowed range.
    #[error("{field}: {value:?} is out of range ({reason})")]
    DurationRange {
        /// Spec path.
        field: &'static str,
        /// What was given.
        value: String,
        /// The bound it broke.
        reason: &'static str,
    },
    /// JWT auth needs exactly one key source.
    #[error("gateway.auth.jwt: set exactly one of secretRef or publicKeyRef")]
    JwtKeySource,
    /// Empty Secret name or key.
    #[error("{0}: Secret name and key must not be empty")]
    EmptySecretRef(&'static str),
    /// NATS URL not usable (held with its credentials hidden, see [`redact_nats_url`]).
    #[error(
        "nats.url {0:?} is not a NATS URL: expected nats://, tls://, ws:// or wss:// followed by host[:port] (comma-separated for several servers)"
    )]
    BadNatsUrl(String),
    /// `credentialsSecret` given but empty.
    #[error("nats.credentialsSecret must not be empty")]
    EmptyCredentialsSecret,
    /// Subject prefix must be a plain subject.
    #[error("nats.subjectPrefix {0:?} must be dot-separated tokens without wildcards or spaces")]
    BadSubjectPrefix(String),
    /// A count the gateway takes as a positive integer (the CRD schema says `minimum: 1`; this
    /// guards a spec that reached the operator without that check).
    #[error("{field}: {value} must be at least 1")]
    NotPositive {
        /// Spec path.
        field: &'static str,
        /// What was given.
        value: i64,
    },
    /// `spec.history` is not usable as given.
    #[error("history.{field}: {message}")]
    BadHistory {
        /// Key under `history`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Replica bounds inverted.
    #[error("autoscaling: minReplicas {min} is greater than maxReplicas {max}")]
    ReplicaBounds {
        /// minReplicas.
        min: i32,
        /// maxReplicas.
        max: i32,
    },
}

/// Whether `name` is a DNS-1035 label short enough that `<name>-config` etc. and pod names stay
/// valid, and usable as one NATS subject token.
///
/// DNS-1035, not DNS-1123: the Service takes the cluster's name, and "the name of a Service
/// object must be a valid RFC 1035 label name"
/// (<https://kubernetes.io/docs/concepts/services-networking/service/>), so it starts with a
/// letter. KEP-5311 (RelaxedServiceNameValidation, alpha in 1.34, beta in 1.36,
/// <https://github.com/kubernetes/enhancements/issues/5311>) relaxes that to DNS-1123 only from
/// then on; the chart supports Kubernetes 1.30 and later, where `1web` would get every child but
/// the Service (a 422 on every pass).
pub fn is_valid_cluster_name(name: &str) -> bool {
    name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name.len() <= 52
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

/// Whether `url` is something the gateway's NATS client can connect to: a known scheme, then
/// one or more comma-separated `[user[:pass]@]host[:port]` servers with a valid port.
pub fn is_nats_url(url: &str) -> bool {
    let Some(rest) = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
    else {
        return false;
    };
    let server_ok = |server: &str| {
        let server = server.trim();
        // Strip a scheme repeated per server (`nats://a:4222,nats://b:4222`).
        let server = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|s| server.strip_prefix(s))
            .unwrap_or(server);
        let hostport = server.rsplit_once('@').map_or(server, |(_, h)| h);
        let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, p)) => (h, p.strip_prefix(':')),
                None => return false,
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        !host.is_empty()
            && !host.contains(['/', ' ', '?', '#'])
            && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
    };
    !rest.is_empty() && rest.split(',').all(server_ok)
}

/// `url` as the operator may repeat it in a condition, an Event or a log line: the credentials
/// of every server hidden. `user:pass@` becomes `user:***@`; a lone userinfo is a NATS token
/// (`token@`) and becomes `***@`. Works on any text, so a URL that does not parse is hidden too.
///
/// Credentials in the URL are accepted (user/password and token auth have no other way in the
/// spec; `credentialsSecret` takes a creds file), but the status and Events reach a wider
/// audience than the spec's readers: logs are shipped elsewhere, Events are readable by the
/// default `view` role.
///
/// A password may hold ',' and '@' (one URL parses so), and a list separates servers with ','.
/// So servers are told apart only where a new one names its scheme (`,nats://`); within one
/// such stretch everything up to the last '@' is userinfo. When that userinfo holds a ',' it
/// cannot be told from a list of schemeless servers (`u:p@h1,u2:p2@h2`), so all of it is hidden:
/// a host too many hidden, never a secret shown.
pub fn redact_nats_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while !rest.is_empty() {
        let scheme = scheme_len(rest);
        out.push_str(&rest[..scheme]);
        let tail = &rest[scheme..];
        // This stretch ends where the next server with a scheme starts.
        let end = tail
            .find("://")
            .and_then(|j| {
                let c = tail[..j].rfind(',')?;
                (scheme_len(tail[c + 1..].trim_start()) > 0).then_some(c + 1)
            })
            .unwrap_or(tail.len());
        let stretch = &tail[..end];
        // The host follows the LAST '@': a password may hold one.
        match stretch.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _)) if !userinfo.contains(',') => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    _ => out.push_str("***"),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(stretch),
        }
        rest = &tail[end..];
    }
    out
}

/// Length of `s`'s leading `scheme://` (leading spaces included), 0 without one.
fn scheme_len(s: &str) -> usize {
    let trimmed = s.trim_start();
    let Some(i) = trimmed.find("://") else {
        return 0;
    };
    let name = &trimmed[..i];
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid {
        s.len() - trimmed.len() + i + 3
    } else {
        0
    }
}

fn parse_duration(field: &'static str, value: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(value).map_err(|_| SpecError::BadDuration {
        field,
        value: value.to_string(),
    })
}

/// A spec count as the gateway's `usize`, refusing zero and negatives.
fn positive(field: &'static str, value: Option<i64>) -> Result<Option<usize>, SpecError> {
    value
        .map(|v| {
            usize::try_from(v)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(SpecError::NotPositive { field, value: v })
        })
        .transpose()
}

fn check_ref(field: &'static str, r: &SecretKeyRef) -> Result<(), SpecError> {
    if r.name.is_empty() || r.key.is_empty() {
        return Err(SpecError::EmptySecretRef(field));
    }
    Ok(())
}

/// The key material the gateway needs from a Secret, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// HMAC secret.
    Secret(SecretKeyRef),
    /// PEM public key.
    PublicKey(SecretKeyRef),
}

impl JwtKey {
    /// The Secret reference.
    pub fn secret_ref(&self) -> &SecretKeyRef {
        match self {
            Self::Secret(r) | Self::PublicKey(r) => r,
        }
    }

    /// File name inside [`JWT_DIR`].
    pub fn file_name(&self) -> &'static str {
        match self {
            Self::Secret(_) => "secret",
            Self::PublicKey(_) => "public.pem",
        }
    }
}

/// Everything the build step needs from a validated spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The rendered config: serialize it with [`to_yaml`].
    pub config: Options,
    /// Drain window, for terminationGracePeriodSeconds.
    pub drain: Duration,
    /// JWT key source, for the Secret volume.
    pub jwt_key: Option<JwtKey>,
}

/// Validates the spec and renders the gateway config.
pub fn render(pc: &PushCluster) -> Result<Validated, SpecError> {
    let name = pc.metadata.name.clone().unwrap_or_default();
    if !is_valid_cluster_name(&name) {
        return Err(SpecError::BadName(name));
    }
    let spec = &pc.spec;
    let a = &spec.autoscaling;
    if a.min_replicas > a.max_replicas {
        return Err(SpecError::ReplicaBounds {
            min: a.min_replicas,
            max: a.max_replicas,
        });
    }
    let g = &spec.gateway;
    let flush_interval = match &g.flush_interval {
        Some(f) => {
            let d = parse_duration("gateway.flushInterval", f)?;
            if d.is_zero() || d > Duration::from_secs(1) {
                return Err(SpecError::DurationRange {
                    field: "gateway.flushInterval",
                    value: f.clone(),
                    reason: "must be between 1ns and 1s",
                });
            }
            Some(d)
        }
        None => None,
    };
    let drain = match &g.drain_timeout {
        Some(d) => {
            let parsed = parse_duration("gateway.drainTimeout", d)?;
            if parsed > MAX_DRAIN {
                return Err(SpecError::DurationRange {
                    field: "gateway.drainTimeout",
                    value: d.clone(),
                    reason: "must be at most 10m",
                });
            }
            parsed
        }
        None => DEFAULT_DRAIN,
    };
    let (nats, subject_prefix) = match &spec.nats {
        Some(n) => {
            if !is_nats_url(&n.url) {
                return Err(SpecError::BadNatsUrl(redact_nats_url(&n.url)));
            }
            if n.credentials_secret.as_deref() == Some("") {
                return Err(SpecError::EmptyCredentialsSecret);
            }
            if let Some(p) = &n.subject_prefix
                && !p.split('.').all(volley_crds::wire::is_subject_token)
            {
                return Err(SpecError::BadSubjectPrefix(p.clone()));
            }
            (Some(n.url.clone()), n.subject_prefix.clone())
        }
        None => (None, None),
    };
    if let Some(r) = &g.api_key_ref {
        check_ref("gateway.apiKeyRef", r)?;
    }
    let (auth, jwt_key) = match g.auth.as_ref().and_then(|a| a.jwt.as_ref()) {
        Some(jwt) => {
            let key = match (&jwt.secret_ref, &jwt.public_key_ref) {
                (Some(s), None) => {
                    check_ref("gateway.auth.jwt.secretRef", s)?;
                    JwtKey::Secret(s.clone())
                }
                (None, Some(p)) => {
                    check_ref("gateway.auth.jwt.publicKeyRef", p)?;
                    JwtKey::PublicKey(p.clone())
                }
                _ => return Err(SpecError::JwtKeySource),
            };
            let path = format!("{JWT_DIR}/{}", key.file_name());
            let (secret_file, public_key_file) = match key {
                JwtKey::Secret(_) => (Some(path), None),
                JwtKey::PublicKey(_) => (None, Some(path)),
            };
            let cfg = Auth {
                jwt: Some(Jwt {
                    secret_file: secret_file.map(Into::into),
                    public_key_file: public_key_file.map(Into::into),
                    issuer: jwt.issuer.clone(),
                    audience: jwt.audience.clone(),
                    ..Jwt::default()
                }),
            };
            (Some(cfg), Some(key))
        }
        None => (None, None),
    };
    let history = history::validate(spec.history.as_ref(), nats.is_some())?;
    let config = Options {
        // Written although they are the defaults: the pod's ports and probes name them.
        listen: Some(defaults::LISTEN),
        admin_addr: Some(defaults::ADMIN_ADDR),
        flush_interval,
        max_pending_bytes: positive("gateway.maxPendingBytes", g.max_pending_bytes)?,
        max_connections: positive("gateway.maxConnectionsPerPod", g.max_connections_per_pod)?,
        max_subscriptions_per_connection: positive(
            "gateway.maxSubscriptionsPerConnection",
            g.max_subscriptions_per_connection,
        )?,
        // Always written, so the pod's terminationGracePeriodSeconds and the gateway agree.
        drain_timeout: Some(drain),
        allowed_origins: (!g.allowed_origins.is_empty()).then(|| g.allowed_origins.clone()),
        nats_credentials: spec
            .nats
            .as_ref()
            .and_then(|n| n.credentials_secret.as_ref())
            .map(|_| NATS_CREDS_FILE.into()),
        nats,
        subject_prefix,
        auth,
        history,
        ..Options::default()
    };
    Ok(Validated {
        config,
        drain,
        jwt_key,
    })
}

/// The YAML text stored in the ConfigMap: only the keys the spec sets, in the type's order.
pub fn to_yaml(config: &Options) -> String {
    // Plain strings, integers, addresses and durations always serialize.
    serde_yaml::to_string(config).unwrap_or_default()
}

mod history;
#[cfg(test)]
mod tests;
