//! The gateway's default option values: the one place they are written. The gateway resolves
//! unset options to these, [`super::Options::defaults`] lists them for the docs, and tests check
//! the `--help` text and the README against that list.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// `listen`: every interface, port 8080.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// `adminAddr`: every interface, port 9090.
pub const ADMIN_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9090));
/// `flushInterval`.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// `maxPendingBytes`: 1 MiB.
pub const MAX_PENDING_BYTES: usize = 1 << 20;
/// `maxConnections`.
pub const MAX_CONNECTIONS: usize = 100_000;
/// `maxSubscriptionsPerConnection`.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;
/// `maxMessageBytes`.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// `handshakeTimeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// `maxHeaderBytes`.
pub const MAX_HEADER_BYTES: usize = 8192;
/// `pingInterval`.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// `drainTimeout`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `maxPublishBytes`: 1 MiB.
pub const MAX_PUBLISH_BYTES: usize = 1 << 20;
/// `subjectPrefix`.
pub const SUBJECT_PREFIX: &str = "push";
/// `natsTls`.
pub const NATS_TLS: bool = false;
/// `subscriptionLinger`.
pub const SUBSCRIPTION_LINGER: Duration = Duration::from_secs(2);
/// `statsInterval`.
pub const STATS_INTERVAL: Duration = Duration::from_secs(5);
/// `auth.jwt.leewaySeconds`.
pub const JWT_LEEWAY_SECONDS: u64 = 30;
/// `maxClientMessagesPerSecond`.
pub const MAX_CLIENT_MESSAGES_PER_SECOND: u32 = 20;
/// `maxConnectionsPerIp`: 0 turns the limit off.
pub const MAX_CONNECTIONS_PER_IP: usize = 0;
/// `podNamespace`.
pub const POD_NAMESPACE: &str = "default";
/// `cluster`.
pub const CLUSTER: &str = "volley";
/// `podName` when the host name cannot be read.
pub const POD_NAME_FALLBACK: &str = "volley-gateway";
/// Most shards in cluster mode: each shard is one bit of the `u64` mask the NATS router keeps per
/// subscription.
pub const MAX_CLUSTER_SHARDS: usize = 64;

/// `shards`: one per core, at most [`MAX_CLUSTER_SHARDS`] so the default is valid in every mode
/// (a 96-core node would otherwise refuse to start in cluster mode).
pub fn shards(cores: usize) -> usize {
    cores.clamp(1, MAX_CLUSTER_SHARDS)
}

/// `history.stream`: the JetStream stream name.
pub const HISTORY_STREAM: &str = "VOLLEY_HISTORY";
/// `history.maxMessagesPerTopic`: messages kept per concrete topic.
pub const HISTORY_MAX_MESSAGES_PER_TOPIC: i64 = 1_000;
/// `history.maxAge`: how long a message is kept.
pub const HISTORY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// `history.replicas`: stream replicas (one: a single `nats-server -js` is enough).
pub const HISTORY_REPLICAS: usize = 1;
/// `history.replayMaxMessages`: most messages one resume replays.
pub const HISTORY_REPLAY_MAX_MESSAGES: usize = 1_000;
/// `history.replayMaxBytes`: most payload bytes one resume replays.
pub const HISTORY_REPLAY_MAX_BYTES: usize = 512 * 1024;
/// `history.maxConsumers`: most JetStream live consumers (patterns with history) per gateway.
pub const HISTORY_MAX_CONSUMERS: usize = 1_000;
/// `history.replayTimeout`: deadline of one replay.
pub const HISTORY_REPLAY_TIMEOUT: Duration = Duration::from_secs(5);
