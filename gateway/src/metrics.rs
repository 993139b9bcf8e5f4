//! Prometheus metrics of the gateway, encoded as OpenMetrics text for `GET /metrics`.
//!
//! Shards do not touch these per delivery: they count locally and add their totals once per flush
//! pass, so the shared atomics see a handful of writes per shard per interval.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::session::Cause;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

/// Handles to every metric; cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub(crate) struct Metrics {
    pub connections: Gauge,
    pub handshakes: Family<ResultLabel, Counter>,
    pub messages_published: Counter,
    pub frames_delivered: Counter,
    pub bytes_delivered: Counter,
    pub flush_duration: Histogram,
    pub socket_writes: Counter,
    pub slow_consumer_closes: Counter,
    pub protocol_closes: Family<ReasonLabel, Counter>,
    pub accept_pauses: Counter,
    pub dropped: Counter,
    pub oversized_messages: Counter,
    pub nats_dropped: Counter,
    pub nats_connected: Gauge,
    pub nats_disconnects: Counter,
    pub nats_subscriptions: Gauge,
    pub history_available: Gauge,
    pub history_consumers: Gauge,
    pub recoveries: Family<ResultLabel, Counter>,
    pub replayed_messages: Counter,
    pub replay_duration: Histogram,
    pub replays_cancelled: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under the `volley` prefix.
    pub(crate) fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            connections: Gauge::default(),
            handshakes: Family::default(),
            messages_published: Counter::default(),
            frames_delivered: Counter::default(),
            bytes_delivered: Counter::default(),
            // 50 µs .. ~1.6 s: one pass over a few connections up to a pass over 100k.
            flush_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            socket_writes: Counter::default(),
            slow_consumer_closes: Counter::default(),
            protocol_closes: Family::default(),
            accept_pauses: Counter::default(),
            dropped: Counter::default(),
            oversized_messages: Counter::default(),
            nats_dropped: Counter::default(),
            nats_connected: Gauge::default(),
            nats_disconnects: Counter::default(),
            nats_subscriptions: Gauge::default(),
            history_available: Gauge::default(),
            history_consumers: Gauge::default(),
            recoveries: Family::default(),
            replayed_messages: Counter::default(),
            // 1 ms .. ~16 s: a replay from a local JetStream up to one at its timeout.
            replay_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            replays_cancelled: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("volley");
        r.register(
            "connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        r.register(
            "handshakes",
            "Upgrade attempts by result (ok, or the rejection reason)",
            metrics.handshakes.clone(),
        );
        r.register(
            "messages_published",
            "Messages accepted for fan-out",
            metrics.messages_published.clone(),
        );
        r.register(
            "frames_delivered",
            "Message frames written to clients",
            metrics.frames_delivered.clone(),
        );
        r.register(
            "bytes_delivered",
            "Bytes written to clients",
            metrics.bytes_delivered.clone(),
        );
        r.register(
            "flush_duration_seconds",
            "Time one shard spends on one pass of batched writes",
            metrics.flush_duration.clone(),
        );
        r.register(
            "socket_writes",
            "Vectored writes to client sockets (epoll engine): one per connection per flush pass, however many frames it carries",
            metrics.socket_writes.clone(),
        );
        r.register(
            "slow_consumer_closes",
            "Connections closed with 1008 because their pending bytes passed the bound",
            metrics.slow_consumer_closes.clone(),
        );
        r.register(
            "protocol_closes",
            "Connections closed for a client protocol violation or a sustained message rate over the limit (reason=\"rate_limit\"), by reason; reason=\"subscription_unavailable\": closed 1013 because a topic that came with the connection could not be subscribed in NATS",
            metrics.protocol_closes.clone(),
        );
        r.register(
            "accept_pauses",
            "Times accepting paused because the process ran out of file descriptors",
            metrics.accept_pauses.clone(),
        );
        r.register(
            "dropped",
            "Message deliveries dropped: to a shard whose inbox was full, or (cluster mode, also in volley_nats_dropped) by the NATS client because the gateway did not keep up",
            metrics.dropped.clone(),
        );
        r.register(
            "nats_dropped",
            "NATS messages the NATS client dropped because the gateway's router did not keep up (async-nats slow consumer events: a lower bound in a burst of more than 128)",
            metrics.nats_dropped.clone(),
        );
        r.register(
            "oversized_messages",
            "NATS messages dropped because their frame is larger than maxPendingBytes (no client queue could hold it)",
            metrics.oversized_messages.clone(),
        );
        r.register(
            "nats_connected",
            "1 while the NATS connection is up (cluster mode)",
            metrics.nats_connected.clone(),
        );
        r.register(
            "nats_disconnects",
            "Times the NATS connection was lost",
            metrics.nats_disconnects.clone(),
        );
        r.register(
            "nats_subscriptions",
            "NATS subscriptions held for the patterns clients want",
            metrics.nats_subscriptions.clone(),
        );
        r.register(
            "history_available",
            "1 while the history stream (JetStream) is in place and reachable; 0 means history topics are served live only",
            metrics.history_available.clone(),
        );
        r.register(
            "history_consumers",
            "Patterns consumed through JetStream (their messages carry a stream sequence)",
            metrics.history_consumers.clone(),
        );
        r.register(
            "recoveries",
            "Resume requests by result: recovered, or the reason they were not",
            metrics.recoveries.clone(),
        );
        r.register(
            "replayed_messages",
            "Stored messages replayed to resuming clients",
            metrics.replayed_messages.clone(),
        );
        r.register(
            "replay_duration_seconds",
            "Time one replay takes, from the request to the last stored message",
            metrics.replay_duration.clone(),
        );
        r.register(
            "replays_cancelled",
            "Replays stopped (or never fetched) because every connection waiting for them closed",
            metrics.replays_cancelled.clone(),
        );
        metrics
    }

    /// Counts one connection closed for a client protocol violation or its message rate.
    pub(crate) fn protocol_close(&self, reason: &'static str) {
        self.protocol_closes
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts one resume outcome (`recovered` or the reason it was not).
    pub(crate) fn recovery(&self, result: &'static str) {
        self.recoveries.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a session closed for a protocol violation, its message rate or as a slow consumer
    /// (the shards batch slow-consumer closes themselves; see `LocalStats`).
    pub(crate) fn session_closed(&self, cause: Cause) {
        match cause {
            Cause::Violation(label) => self.protocol_close(label),
            Cause::RateLimit => self.protocol_close("rate_limit"),
            Cause::Unavailable => self.protocol_close(crate::session::UNAVAILABLE_LABEL),
            Cause::SlowConsumer => {
                self.slow_consumer_closes.inc();
            }
            Cause::Peer | Cause::TokenExpired | Cause::Planned | Cause::Rejected => {}
        }
    }

    /// Counts one handshake outcome.
    pub(crate) fn handshake(&self, result: &'static str) {
        self.handshakes.get_or_create(&ResultLabel { result }).inc();
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Encodes the registry as OpenMetrics text.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
