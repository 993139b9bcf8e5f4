//! Cluster mode, NATS side: connects to NATS, holds a subscription for a pattern exactly while
//! some connection on some shard wants it (releasing it after a linger so churn does not flap),
//! and hands each NATS message, framed once, to the shards that have subscribers for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::{StreamExt, StreamMap};

use crate::config::NatsConfig;
use crate::history::store::{HistoryState, Incoming, Store};
use crate::history::{NotRecovered, ReplayDone, ReplayRequest};
use crate::hub::{Hub, InterestChange, PublishError, ToRouter};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::secret::redact_urls;
use crate::shard::interests::ConfirmEpoch;
use crate::topic_index::TopicIndex;

mod ack;
mod route;

pub(crate) use ack::Acks;

use route::{Matches, Routing};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up the NATS connection to {urls}: {message}")]
    Connect { urls: String, message: String },
}

/// NATS connection state, readable from the admin server.
#[derive(Debug, Default)]
pub(crate) struct NatsState {
    /// The client whose connection state this reports, once made.
    client: OnceLock<Client>,
    /// Set once the gateway was first [`NatsState::settled`]; never cleared.
    settled: AtomicBool,
    /// The publish confirmation self-test ([`check_publish_confirmation`]) failed over a live
    /// connection, and has not passed since.
    confirm_failing: AtomicBool,
    /// The server refused a marker publish to `_INBOX` (a Permissions Violation): the user
    /// lacks the right, as opposed to a server that merely did not answer. Cleared with
    /// `confirm_failing` once the self-test passes.
    inbox_denied: AtomicBool,
    /// A self-test round trip reached a verdict (passed, or failed over a live connection;
    /// a reconnect meanwhile is inconclusive). [`NatsState::settled`] waits for it.
    self_tested: AtomicBool,
    /// When [`NatsState::settled`] first saw a connection made: the wait for the self-test is
    /// bounded from there ([`SELF_TEST_WAIT`]).
    connected_seen: OnceLock<std::time::Instant>,
}

impl NatsState {
    /// Reports on `client`'s connection from now on (the first client given wins).
    pub(crate) fn attach(&self, client: &Client) {
        let _ = self.client.set(client.clone());
    }

    /// Whether the client is connected now. Read from the client's connection state, a watch
    /// channel that never misses an update (async-nats 0.51 `Client::connection_state`, set in
    /// `connector.rs` on connect and in `handle_disconnect`), not from the `Connected` and
    /// `Disconnected` events: those go through a channel of 128 with `try_send`, so a burst of
    /// `SlowConsumer` events can drop them, and a lost `Connected` would leave every new
    /// pattern unsubscribed and every publish refused until the next reconnect.
    pub(crate) fn is_connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// Whether HTTP publishes cannot be confirmed: the marker round trip of the self-test did not
    /// come back over a live connection (most likely no publish right on `_INBOX.>`).
    pub(crate) fn confirm_failing(&self) -> bool {
        self.confirm_failing.load(Ordering::Acquire)
    }

    /// Why `/readyz` must fail now whatever else holds: the self-test failed because the NATS
    /// user may not publish to `_INBOX.>`. Then no new subscription can be confirmed (each is
    /// answered `unavailable`, URL topics included), so a rolling upgrade with such a user must
    /// stall on its first pod instead of replacing every working one. A server that merely did
    /// not answer the marker (frozen, slow) does not count: an outage must not take every
    /// gateway out of the Service at once.
    pub(crate) fn unfit(&self) -> Option<&'static str> {
        (self.confirm_failing() && self.inbox_denied.load(Ordering::Acquire)).then_some(
            "the NATS user may not publish to _INBOX.> (publish rights on _INBOX.> are needed \
             to confirm subscriptions and HTTP publishes)",
        )
    }

    /// Whether the start-up wait for NATS is over: connected once, the first publish
    /// confirmation self-test over with (so a user lacking `_INBOX.>` rights is never reported
    /// ready, not even for the few seconds before the self-test's verdict: with the Deployment
    /// default `minReadySeconds: 0` a pod counts as available as soon as it is Ready, and the
    /// rollout would scale down a working pod for it) and, with history, the stream checked once
    /// over that connection. Until then `/readyz` says no, so clients moved
    /// here to resume (a shed steers them to the emptiest, often newest pod) do not meet a
    /// gateway that answers every resume `recovered:false, unavailable` only because it is not
    /// connected yet. Once settled, it stays so: a later NATS outage must not take every
    /// gateway out of the Service at once (clients are better served live than not at all).
    ///
    /// Both conditions are latches of their own, not read from the state at probe time: the
    /// client's connect count (async-nats counts every connection made) and the history
    /// maintainer's `checked` (set once a check ran over a live connection). So a gateway that
    /// connected and checked, then lost NATS before the next probe, is still ready. The
    /// self-test is waited for only while connected and at most [`SELF_TEST_WAIT`] from the
    /// first probe that saw a connection: one that cannot end (NATS lost before it could run,
    /// a connection that keeps dropping) must not hold readiness for ever. A frozen server that
    /// keeps the connection is a verdict after the self-test's own timeout (failing, but not
    /// `unfit`).
    pub(crate) fn settled(&self, history: Option<&HistoryState>) -> Result<(), &'static str> {
        self.settled_at(history, std::time::Instant::now())
    }

    /// [`NatsState::settled`] at clock `now` (a test moves it past [`SELF_TEST_WAIT`]).
    fn settled_at(
        &self,
        history: Option<&HistoryState>,
        now: std::time::Instant,
    ) -> Result<(), &'static str> {
        if self.settled.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.client.get().is_none_or(|c| connects(c) == 0) {
            return Err("waiting for NATS");
        }
        let seen = *self.connected_seen.get_or_init(|| now);
        // Only while connected: disconnected, the self-test cannot reach a verdict, and a
        // gateway that connected and lost NATS before the verdict is ready as before.
        if !self.self_tested.load(Ordering::Acquire)
            && self.is_connected()
            && now.saturating_duration_since(seen) < SELF_TEST_WAIT
        {
            return Err("waiting for the publish confirmation self-test");
        }
        if history.is_some_and(|h| !h.checked()) {
            return Err("waiting for the first history check");
        }
        self.settled.store(true, Ordering::Release);
        Ok(())
    }
}

/// Hidden test knob: the NATS client's per-subscription buffer (async-nats default 65,536), so a
/// test can overflow it with a small burst (`tests/nats_outage.rs`). Not an operator setting.
const SUBSCRIPTION_CAPACITY_ENV: &str = "VOLLEY_TEST_NATS_SUBSCRIPTION_CAPACITY";

/// Connects in the background: the gateway serves its clients whether or not NATS is up, and the
/// client retries forever with backoff, resubscribing everything after a reconnect.
pub(crate) async fn connect(
    config: &NatsConfig,
    metrics: Metrics,
    confirm_epoch: Arc<ConfirmEpoch>,
) -> Result<(Client, Arc<NatsState>), ClusterError> {
    let state = Arc::new(NatsState::default());
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("volley-gateway {}", env!("CARGO_PKG_VERSION")))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(PING_INTERVAL)
        // Cap the reconnect backoff so a restarted NATS is found again quickly.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * 2u64.saturating_pow(attempts.min(5) as u32)).min(2_000))
        });
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ClusterError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(seed) = &config.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if config.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(capacity) = std::env::var(SUBSCRIPTION_CAPACITY_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        options = options.subscription_capacity(capacity);
    }
    let slow = Arc::new(std::sync::Mutex::new(Throttle::default()));
    let events_state = state.clone();
    // The events drive the metric and the log only (they may be dropped in a burst); the
    // connection state the gateway acts on is read from the client ([`NatsState::is_connected`]).
    options = options.event_callback(move |event| {
        let metrics = metrics.clone();
        let slow = slow.clone();
        let confirm_epoch = confirm_epoch.clone();
        let state = events_state.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    metrics.nats_connected.set(1);
                    tracing::info!("NATS connected");
                }
                // A disconnect ends every confirmation given so far: at once here, and within a
                // router tick should the event be dropped (`Router::watch_connection`). Nothing
                // is confirmed while disconnected, so the reconnect needs no bump of its own.
                async_nats::Event::Disconnected => {
                    confirm_epoch.bump();
                    metrics.nats_connected.set(0);
                    metrics.nats_disconnects.inc();
                    tracing::warn!("NATS disconnected; clients stay connected, retrying");
                }
                // Each failed connect attempt (NATS down, wrong credentials, an untrusted
                // certificate) comes only as a client error event, and is retried for ever: at
                // info it would be invisible in a warn-level log while nothing gets delivered.
                async_nats::Event::ClientError(error) => tracing::warn!(
                    %error,
                    "cannot connect to NATS (down, or refusing the credentials or TLS \
                     settings); clients stay connected, retrying"
                ),
                // An -ERR from the server, say a permissions violation on a subscription.
                async_nats::Event::ServerError(error) => {
                    if error.to_string().contains(INBOX_PUBLISH_DENIED) {
                        state.inbox_denied.store(true, Ordering::Release);
                        tracing::error!(
                            %error,
                            "the NATS user may not publish to _INBOX.>: HTTP publishes cannot be \
                             confirmed and answer 503 while their messages are delivered, and \
                             new subscriptions cannot be confirmed and are answered \
                             unavailable; grant the gateway's NATS user publish rights on \
                             _INBOX.>"
                        );
                    } else {
                        tracing::warn!(%error, "NATS server error");
                    }
                }
                // async-nats dropped a message for a subscription whose channel was full: the
                // router did not keep up. One event per message (a flood of them in a burst):
                // counted, and logged at most once per LOG_EVERY. The client's event channel
                // holds 128 events and drops the rest, so in a burst the count is a lower bound.
                async_nats::Event::SlowConsumer(sid) => {
                    metrics.dropped.inc();
                    metrics.nats_dropped.inc();
                    let due = slow.lock().unwrap_or_else(|e| e.into_inner()).note(1);
                    if let Some(dropped) = due {
                        tracing::warn!(
                            sid,
                            dropped,
                            "NATS messages dropped by the NATS client: the gateway is not keeping \
                             up (volley_nats_dropped_total); their subscribers miss them"
                        );
                    }
                }
                other => tracing::info!(event = %other, "NATS event"),
            }
        }
    });
    let client =
        options
            .connect(config.urls.as_str())
            .await
            .map_err(|e| ClusterError::Connect {
                urls: redact_urls(&config.urls),
                message: redact_urls(&e.to_string()),
            })?;
    state.attach(&client);
    Ok((client, state))
}

/// Warns once NATS is first connected (its INFO read) if `maxPublishBytes` lets through bodies
/// the server's `max_payload` refuses: those publishes are answered 413, which an operator who
/// raised `maxPublishBytes` would not expect.
pub(crate) async fn warn_if_over_max_payload(
    client: Client,
    state: Arc<NatsState>,
    max_publish_bytes: usize,
) {
    while !state.is_connected() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let max_payload = client.max_payload();
    if max_publish_bytes > max_payload {
        tracing::warn!(
            max_publish_bytes,
            max_payload,
            "maxPublishBytes is over the NATS server's max_payload: larger publishes are \
             refused with 413; lower maxPublishBytes or raise max_payload"
        );
    }
}

/// What nats-server says (`-ERR`) when the user may not publish the confirmation marker.
const INBOX_PUBLISH_DENIED: &str = "Permissions Violation for Publish to \"_INBOX";

/// How long the publish confirmation self-test waits for its marker, and how long it waits
/// before trying again after a failure (the permission may be granted by a config reload).
const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(5);
const SELF_TEST_RETRY: Duration = Duration::from_secs(10);
/// How long `/readyz` waits for the first self-test to end once connected: its own timeout
/// twice over, so that on a loaded machine a refused marker is reported before the wait ends
/// (the self-test starts within a poll of the connection, the wait at the first probe after it).
const SELF_TEST_WAIT: Duration = Duration::from_secs(2 * SELF_TEST_TIMEOUT.as_secs());

/// Self-test once NATS is first connected: one marker round trip, what every HTTP publish needs
/// to be answered 202 ([`publish`]). A NATS user without the publish right on `_INBOX.>` (a
/// usual least-privilege requester setup) has every marker refused by the server, so every
/// publish would answer 503 "outcome unknown" although its message is delivered, and publishers
/// that retry would deliver everything twice. Said loudly in the log and in `/healthz`, and
/// tried again until it passes. Only a marker lost over a connection that stayed up counts as a
/// failure: a reconnect meanwhile proves nothing either way.
pub(crate) async fn check_publish_confirmation(
    client: Client,
    state: Arc<NatsState>,
    acks: Arc<Acks>,
) {
    loop {
        while !state.is_connected() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let before = connects(&client);
        match tokio::time::timeout(SELF_TEST_TIMEOUT, acks.round_trip(&client)).await {
            Ok(Ok(())) => {
                state.inbox_denied.store(false, Ordering::Release);
                if state.confirm_failing.swap(false, Ordering::AcqRel) {
                    tracing::warn!("publish confirmation works again: HTTP publishes answer 202");
                }
                // A verdict: `settled` waits no longer (stored after the flags above, so a
                // probe that sees it sees them).
                state.self_tested.store(true, Ordering::Release);
                return;
            }
            // The client is closed: the gateway is shutting down.
            Ok(Err(_)) => return,
            Err(_) if connects(&client) == before && state.is_connected() => {
                if !state.confirm_failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        timeout_ms = SELF_TEST_TIMEOUT.as_millis() as u64,
                        "publish confirmation self-test failed: a marker published to the \
                         gateway's own _INBOX subject did not come back over a live NATS \
                         connection. Most likely the gateway's NATS user lacks the publish right \
                         on _INBOX.> (look for a Permissions Violation above): every HTTP \
                         publish answers 503 \"outcome unknown\" while its message is delivered, \
                         and every new subscription is answered unavailable"
                    );
                }
            }
            // Reconnected meanwhile: inconclusive, tried again at once (`settled` keeps
            // waiting, bounded by `SELF_TEST_WAIT`).
            Err(_) => continue,
        }
        // A verdict (failed over a live connection): after `confirm_failing`, as above.
        state.self_tested.store(true, Ordering::Release);
        tokio::time::sleep(SELF_TEST_RETRY).await;
    }
}

/// How long an HTTP publish waits for NATS: to hand the message to the client, then for the
/// server round trip that confirms it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the client pings an otherwise silent server. async-nats declares the connection
/// dead after two unanswered pings, so a frozen or unreachable server (no RST) is noticed in
/// about three intervals instead of three minutes (the default is 60 s), and `/healthz`,
/// `volley_nats_connected` and the publish API stop reporting a dead connection as up.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes to NATS and waits for a server round trip after it ([`Acks`]), so an HTTP 202 means
/// the server processed the message. Errors say whether the message may still go out:
/// [`PublishError::Unavailable`] only when nothing was handed to the client (a retry cannot
/// duplicate it), [`PublishError::Unconfirmed`] when it was handed over but the server did not
/// confirm in time (it may be delivered, for example once a frozen server resumes or the client
/// reconnects and sends what it had queued).
pub(crate) async fn publish(
    client: &Client,
    state: &NatsState,
    acks: &Acks,
    prefix: &str,
    topic: &str,
    payload: Bytes,
) -> Result<(), PublishError> {
    if !state.is_connected() {
        return Err(PublishError::Unavailable);
    }
    // Read before the message is handed over: see `confirm`.
    let connects = connects(client);
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    // Sending into the client's command channel is cancel-safe: on a timeout here the message
    // was not queued, so it cannot be sent later.
    match tokio::time::timeout_at(
        deadline,
        client.publish(format!("{prefix}.{topic}"), payload),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
            return Err(PublishError::TooLarge {
                max_payload: client.max_payload(),
            });
        }
        Ok(Err(_)) | Err(_) => return Err(PublishError::Unavailable),
    }
    confirm(client, acks, deadline, connects).await
}

/// How many times the client has connected so far (the first connect and every reconnect).
/// async-nats 0.51 counts it in `Connector::connect` (`connector.rs`) as soon as a connection is
/// made, before that connection's resubscriptions and before any later command is handled.
fn connects(client: &Client) -> u64 {
    client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Acquire)
}

/// Waits for the server round trip after a message handed over when the client had connected
/// `connects_before` times. The round trip proves the message was processed only if both went
/// over one connection: on a reconnect async-nats drops the old connection's write buffer (what
/// it had taken and not yet written), while commands still in its channel go out on the new one.
/// So a marker back over a newer connection says nothing about the message:
/// [`PublishError::Unconfirmed`] (conservative: a reconnect just before the message was handed
/// over answers so too).
async fn confirm(
    client: &Client,
    acks: &Acks,
    deadline: Instant,
    connects_before: u64,
) -> Result<(), PublishError> {
    match tokio::time::timeout_at(deadline, acks.round_trip(client)).await {
        Ok(Ok(())) if connects(client) == connects_before => Ok(()),
        Ok(Ok(())) => {
            tracing::warn!(
                "NATS reconnected while a publish was being confirmed; answered unconfirmed \
                 (the message may have been lost with the old connection)"
            );
            Err(PublishError::Unconfirmed)
        }
        Ok(Err(_)) | Err(_) => Err(PublishError::Unconfirmed),
    }
}

/// How long a new pattern's subscribers wait at most for the gateway's NATS subscription to be
/// confirmed (a marker round trip after the SUB, or the JetStream consumer open) before they are
/// answered `unavailable`. Past it the server is not answering this connection in any useful
/// time; the client may retry.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the router waits for the NATS client to take a SUB (room in its command channel).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_millis(100);
/// After a SUB was not taken in time, how long no other is tried.
const STALL_BACKOFF: Duration = Duration::from_secs(1);

/// Replay requests kept at most per pattern while its consumer opens; past it one is answered
/// unavailable at once. (Each is one resumed pattern of one connection: the bound only matters
/// for a mass resume landing on a pattern whose consumer is being opened.)
const MAX_REPLAYS_WAITING_FOR_OPEN: usize = 65_536;

/// A pattern the gateway holds (or is about to release) a NATS subscription for.
#[derive(Debug)]
struct Held {
    pattern: Box<str>,
    /// Shards with at least one subscriber (bit i = shard i).
    shards: u64,
    /// Set once no shard wants it; released when the moment passes.
    release_at: Option<Instant>,
    /// Consumed through JetStream (its messages carry a stream sequence), not a core
    /// subscription.
    durable: bool,
    /// Stream sequence of the last message its JetStream feed delivered, and the epoch that feed
    /// was opened in: a feed reopened in the same epoch starts right after it (no gap).
    last_seq: Option<u64>,
    epoch: Option<Arc<str>>,
    /// Its JetStream consumer is being opened (in a task of its own): meanwhile it counts as
    /// consumed through JetStream (`durable`), so no core copy of its subjects is delivered and
    /// nothing is delivered twice at the switch; its messages flow once the consumer is open.
    /// Subscribers of an overlapping pattern without history miss what is published to the
    /// subjects only this pattern's consumer will carry meanwhile (at most the 2 s an open may
    /// take; README, docs/history.md). Counting a fresh pattern's open as not durable (tried
    /// and reverted after review) let overlapping open consumers deliver a sequence twice, and
    /// still hid core copies when the history pattern was the older one.
    opening: Option<Opening>,
    /// The server has confirmed the gateway's subscription (a marker round trip after the SUB
    /// came back, or the JetStream consumer is open), with the disconnect count
    /// ([`ConfirmEpoch::disconnects`]) when the round trip or open started: while it is current
    /// and NATS connected, a shard's ask is answered at once ([`Router::is_confirmed`]); a
    /// feed replacement sets it to none ([`Router::unconfirm`]).
    confirmed: Option<u64>,
    /// Shard asks (shard, ticket) waiting for the confirmation.
    waiters: Vec<(usize, u64)>,
    /// When the waiters are answered `unavailable` at the latest (set by the first of them).
    confirm_by: Option<Instant>,
    /// The marker round trip in flight, if any (its answer names it; a newer one supersedes).
    confirm_attempt: Option<u64>,
    /// Replay requests that came while shards wait for the confirmation: a resume's reply must
    /// not go out before its pattern is live, so they go on once it is (or is not).
    confirm_replays: Vec<ReplayRequest>,
}

/// A marker round trip's answer, back to the router.
struct Confirmation {
    id: u64,
    attempt: u64,
    live: bool,
    /// The disconnect count ([`ConfirmEpoch::disconnects`]) when the round trip started.
    epoch: u64,
}

/// A consumer being opened for a held pattern.
#[derive(Debug)]
struct Opening {
    /// Which open this is: a later one (the stream recreated meanwhile) supersedes it, and the
    /// answer of a superseded one is dropped.
    attempt: u64,
    /// The epoch it is opened in.
    epoch: Option<Arc<str>>,
    /// The disconnect count ([`ConfirmEpoch::disconnects`]) when the open started.
    confirm_epoch: u64,
    /// Replay requests for the pattern that came meanwhile: fetched once the consumer is open,
    /// so a replay reaches at least as far as where live delivery starts (no gap).
    replays: Vec<ReplayRequest>,
}

/// The answer of a consumer open, back to the router.
struct Opened {
    id: u64,
    attempt: u64,
    from: Option<u64>,
    feed: Option<BoxStream<'static, Incoming>>,
}

impl Held {
    /// Where a reopened JetStream feed of this pattern starts: right after the last message its
    /// feed delivered, when that feed was a JetStream one of the stream as it is now (`epoch`).
    /// Otherwise (a new stream, a core subscription before) with the next message stored.
    fn resume_from(&self, epoch: Option<&str>) -> Option<u64> {
        if !self.durable || epoch.is_none() || self.epoch.as_deref() != epoch {
            return None;
        }
        self.last_seq.map(|seq| seq.saturating_add(1))
    }

    /// Records the feed just opened for this pattern.
    fn reopened(&mut self, durable: bool, epoch: Option<Arc<str>>) {
        if !durable || self.epoch != epoch {
            self.last_seq = None;
        }
        self.durable = durable;
        self.epoch = if durable { epoch } else { None };
    }
}

/// Owns the NATS subscriptions and routes their messages to the shards.
pub(crate) struct Router {
    client: Client,
    /// Whether the client is connected: while it is not, no subscription is made (see
    /// [`Router::open_core`]).
    state: Arc<NatsState>,
    /// Set when a subscribe could not even be queued in time (the client's command channel is
    /// full): no subscribe is tried again before then, so the router never stalls for more than
    /// [`SUBSCRIBE_TIMEOUT`] per [`STALL_BACKOFF`].
    stalled_until: Option<Instant>,
    /// Patterns left without a feed while NATS was down or the client stalled, logged once per
    /// burst.
    deferred: Throttle,
    prefix: String,
    linger: Duration,
    hub: Arc<Hub>,
    metrics: Metrics,
    /// `maxPendingBytes`: a NATS message framed larger than this is dropped, not delivered.
    max_frame_bytes: usize,
    oversized: Throttle,
    /// Deliveries dropped because a shard inbox was full, logged once per burst.
    dropped: Throttle,
    /// Subscription id by pattern. Ids grow, so a smaller id is an older subscription.
    ids: HashMap<Box<str>, u64>,
    held: HashMap<u64, Held>,
    /// Held patterns by subscription id, for matching a subject against all of them.
    index: TopicIndex<u64>,
    subs: StreamMap<u64, BoxStream<'static, Incoming>>,
    next_id: u64,
    /// History, when configured: patterns it covers are consumed through JetStream.
    history: Option<Store>,
    /// Bumped by the history maintainer when live consumers must be opened again.
    generation: watch::Receiver<u64>,
    /// Which copy of a message matched by several feeds is delivered, and the stream epoch its
    /// sequences belong to.
    routing: Routing,
    routing_epoch: Option<Arc<str>>,
    /// Where open tasks answer. Unbounded: at most one open in flight per held pattern.
    opened_tx: UnboundedSender<Opened>,
    opened_rx: Option<UnboundedReceiver<Opened>>,
    next_attempt: u64,
    /// The marker round trips that confirm subscriptions ([`Router::with_acks`]); without them
    /// nothing can be confirmed and every ask is answered `unavailable`.
    acks: Option<Arc<Acks>>,
    /// Where round trips answer. Unbounded: at most one in flight per held pattern.
    confirmed_tx: UnboundedSender<Confirmation>,
    confirmed_rx: Option<UnboundedReceiver<Confirmation>>,
    /// Shared with the shards and the client's event callback ([`Router::with_confirm_epoch`]).
    confirm_epoch: Arc<ConfirmEpoch>,
    /// The connection as last seen by [`Router::watch_connection`]: connected, connects.
    seen_connection: (bool, u64),
}

impl Router {
    pub(crate) fn new(
        client: Client,
        state: Arc<NatsState>,
        prefix: String,
        linger: Duration,
        hub: Arc<Hub>,
        metrics: Metrics,
        max_frame_bytes: usize,
    ) -> Router {
        let (opened_tx, opened_rx) = unbounded_channel();
        let (confirmed_tx, confirmed_rx) = unbounded_channel();
        Router {
            client,
            state,
            stalled_until: None,
            deferred: Throttle::default(),
            prefix,
            linger,
            hub,
            metrics,
            max_frame_bytes,
            oversized: Throttle::default(),
            dropped: Throttle::default(),
            ids: HashMap::new(),
            held: HashMap::new(),
            index: TopicIndex::new(),
            subs: StreamMap::new(),
            next_id: 1,
            history: None,
            generation: watch::channel(0).1,
            routing: Routing::default(),
            routing_epoch: None,
            opened_tx,
            opened_rx: Some(opened_rx),
            next_attempt: 0,
            acks: None,
            confirmed_tx,
            confirmed_rx: Some(confirmed_rx),
            confirm_epoch: Arc::default(),
            seen_connection: (false, 0),
        }
    }

    /// Shares the confirmation epoch with the shards (see `shard/interests.rs`).
    pub(crate) fn with_confirm_epoch(mut self, epoch: Arc<ConfirmEpoch>) -> Router {
        self.confirm_epoch = epoch;
        self
    }

    /// Whether held pattern `id`'s confirmation still holds: given since the last disconnect (its
    /// feed replaced since clears it: [`Router::unconfirm`]) and NATS connected now.
    /// Its feed must still be there too: a JetStream consumer that gave up leaves `subs` (a
    /// `StreamMap` drops an ended stream silently) before the tick notices and reopens it.
    fn is_confirmed(&self, id: u64) -> bool {
        self.held.get(&id).is_some_and(|held| {
            held.confirmed == Some(self.confirm_epoch.disconnects())
                && self.state.is_connected()
                && self.subs.contains_key(&id)
        })
    }

    /// The feed of held pattern `id` is about to be dropped or replaced: its confirmation ends.
    /// Shards learn it through their epoch, which moves for every pattern; the others keep their
    /// confirmations here (their feeds are untouched), so a shard's re-ask for them is answered
    /// at once. O(1): a mass reopen (every history pattern at a stream recreation) does not
    /// walk every held pattern once per reopened one.
    fn unconfirm(&mut self, id: u64) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        if held.confirmed.take().is_some() {
            self.confirm_epoch.bump_feed();
        }
    }

    /// Backstop for a dropped `Disconnected` event (the client's event channel drops events in
    /// a burst): a connection seen up on a tick and seen down, or replaced (a reconnect between
    /// two ticks), on the next ends every confirmation. Coming up from down needs no bump (the
    /// disconnect had one), and a spurious one would only cost re-asks.
    fn watch_connection(&mut self) {
        let now = (self.state.is_connected(), connects(&self.client));
        if now == self.seen_connection {
            return;
        }
        let was_up = self.seen_connection.0;
        self.seen_connection = now;
        if was_up {
            self.confirm_epoch.bump();
        }
        if !now.0 {
            return;
        }
        // Back: asks that came during the outage for patterns that kept their feed (the client
        // re-sent the SUB on reconnect) are confirmed now.
        let waiting: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| {
                !h.waiters.is_empty() && h.confirm_attempt.is_none() && h.opening.is_none()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.confirm(id);
        }
    }

    /// Confirms subscriptions with marker round trips on `acks` (the publish confirmation's).
    pub(crate) fn with_acks(mut self, acks: Arc<Acks>) -> Router {
        self.acks = Some(acks);
        self
    }

    /// Consumes the patterns `store` covers through JetStream; `generation` is the
    /// maintainer's signal to (re)open those consumers.
    pub(crate) fn with_history(mut self, store: Store, generation: watch::Receiver<u64>) -> Router {
        self.history = Some(store);
        self.generation = generation;
        self
    }

    /// History became available (again) or its stream was recreated: every pattern it covers
    /// whose feed is not a JetStream consumer of the stream as it is now gets one (same id, so
    /// its place among overlapping patterns is kept). A healthy consumer of the current stream
    /// is left alone; one that must move to core subscriptions (history gone for good) or off
    /// them is replaced.
    async fn reopen_history(&mut self) {
        let Some(store) = &self.history else {
            return;
        };
        let epoch = store.state().epoch();
        let available = store.state().is_available();
        if epoch != self.routing_epoch {
            // A recreated stream numbers its messages from 1 again.
            self.routing.clear();
            self.routing_epoch = epoch.clone();
        }
        let covered: Vec<(u64, Box<str>, Option<u64>)> = self
            .held
            .iter()
            .filter(|(_, h)| store.config().covers_pattern(&h.pattern))
            .filter(|(id, h)| {
                if let Some(opening) = &h.opening {
                    // Already being opened on the stream as it is now: leave it be.
                    return !(available && opening.epoch == epoch);
                }
                let healthy = h.durable && h.epoch == epoch && self.subs.contains_key(id);
                !(healthy && available)
            })
            .map(|(id, h)| (*id, h.pattern.clone(), h.resume_from(epoch.as_deref())))
            .collect();
        self.reopen(covered, epoch).await;
    }

    /// Opens each `(id, pattern, resume from)` feed again under its old id (so its place among
    /// overlapping patterns is kept), as a JetStream consumer where history and `maxConsumers`
    /// allow, else a core subscription.
    async fn reopen(&mut self, feeds: Vec<(u64, Box<str>, Option<u64>)>, epoch: Option<Arc<str>>) {
        for (id, _, from) in feeds {
            self.open(id, from, epoch.clone()).await;
        }
        self.count_consumers();
    }

    /// Opens the feed of held pattern `id`. A JetStream consumer (history covers the pattern,
    /// is available, and `maxConsumers` has room) is opened in a task of its own: that is a
    /// JetStream request, up to [`crate::history::store`]'s open timeout, and the router goes on
    /// routing every other message meanwhile; the answer comes back as [`Opened`]. Otherwise a
    /// core subscription is made at once (no round trip to wait for).
    async fn open(&mut self, id: u64, from: Option<u64>, epoch: Option<Arc<str>>) {
        let Some(pattern) = self.held.get(&id).map(|h| h.pattern.clone()) else {
            return;
        };
        let store = self.history.as_ref().filter(|store| {
            store.config().covers_pattern(&pattern) && store.state().is_available()
        });
        let Some(store) = store.cloned() else {
            self.open_core(id).await;
            return;
        };
        if !self.room_for(id) {
            tracing::warn!(
                %pattern,
                max_consumers = store.config().max_consumers,
                "history.maxConsumers reached; serving the pattern live only"
            );
            self.open_core(id).await;
            return;
        }
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        // The feed it replaces (a core subscription, a consumer of a recreated stream, or one
        // that ended) stops now: while the consumer opens the pattern counts as consumed
        // through JetStream, so core copies of its subjects would be dropped anyway.
        self.unconfirm(id);
        drop(self.subs.remove(&id));
        let confirm_epoch = self.confirm_epoch.disconnects();
        if let Some(held) = self.held.get_mut(&id) {
            let replays = held.opening.take().map(|o| o.replays).unwrap_or_default();
            held.durable = true;
            // A round trip under way confirms the core SUB just dropped, not this consumer:
            // waiters are answered when it is open (`on_opened`).
            held.confirm_attempt = None;
            held.opening = Some(Opening {
                attempt,
                epoch,
                confirm_epoch,
                replays,
            });
        }
        let opened = self.opened_tx.clone();
        tokio::spawn(async move {
            let feed = match store.live(&pattern, from).await {
                Ok(feed) => Some(feed),
                Err(e) => {
                    tracing::warn!(
                        %pattern,
                        error = %e,
                        "cannot open the history consumer; serving the pattern live only"
                    );
                    None
                }
            };
            // The router is gone only when the gateway is shutting down.
            let _ = opened.send(Opened {
                id,
                attempt,
                from,
                feed,
            });
        });
    }

    /// An open task answered. Dropped when the pattern was released or opened again since;
    /// otherwise the consumer becomes the pattern's feed or, when it could not be opened, a core
    /// subscription does (live only). Replay requests that waited for it go on.
    async fn on_opened(&mut self, opened: Opened) {
        let Opened {
            id,
            attempt,
            from,
            feed,
        } = opened;
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        if held.opening.as_ref().is_none_or(|o| o.attempt != attempt) {
            return;
        }
        match feed {
            Some(feed) => {
                let Some(opening) = held.opening.take() else {
                    return;
                };
                held.reopened(true, opening.epoch);
                self.subs.insert(id, feed);
                if from.is_none() {
                    self.routing.restart(id);
                }
                // The consumer exists on the server (its create request was answered): every
                // message stored from now on is delivered through it, and it is this loop that
                // routes them, after the answers below reach the shards.
                self.answer_waiters(id, Some(opening.confirm_epoch));
                self.count_consumers();
                for request in opening.replays {
                    self.on_replay(request);
                }
            }
            None => self.open_core(id).await,
        }
    }

    /// Confirms held pattern `id` for the shards waiting on it, unless already done or under
    /// way. A core subscription is confirmed by a marker round trip after its SUB ([`Acks`]:
    /// the server processes one connection's operations in order, so the marker back means
    /// the SUB was processed first; async-nats 0.51 `Client::subscribe` returns once its
    /// command is in the client's channel, ahead of the marker's publish, and after a
    /// reconnect `handle_reconnect` (`lib.rs`) writes every subscription again before any
    /// later command, so a reconnect in between cannot reorder them). A JetStream consumer is
    /// confirmed when it is open ([`Router::on_opened`]). With no SUB sent (NATS down, the
    /// client not taking commands) the waiters wait for NATS until their deadline: the pattern
    /// is subscribed (and this called again) by [`Router::reopen_ended`] once NATS is back, and
    /// [`Router::expire_confirmations`] answers them `unavailable` if it is not back in time.
    ///
    /// A confirmation that no longer holds ([`Router::is_confirmed`]: NATS disconnected or
    /// reconnected, or the feed replaced since) is confirmed again the same way: after a
    /// reconnect the marker comes back only after the client re-sent the SUB.
    fn confirm(&mut self, id: u64) {
        let has_feed = self.subs.contains_key(&id);
        let acks = self.acks.clone();
        let epoch = self.confirm_epoch.disconnects();
        let connected = self.state.is_connected();
        let confirmed = self.is_confirmed(id);
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        if confirmed {
            self.answer_waiters(id, Some(epoch));
            return;
        }
        if held.waiters.is_empty() {
            return;
        }
        // The first waiter's deadline holds for all, across a consumer open and its fallback.
        let deadline = *held
            .confirm_by
            .get_or_insert_with(|| Instant::now() + CONFIRM_TIMEOUT);
        if held.opening.is_some() || held.confirm_attempt.is_some() {
            // The consumer open or round trip under way answers them.
            return;
        }
        let Some(acks) = acks else {
            // Nothing can confirm a subscription: refusing is the honest answer.
            self.answer_waiters(id, None);
            return;
        };
        if !has_feed || !connected {
            // Tried again when NATS is back (`reopen_ended` for a pattern without a feed,
            // `watch_connection` for one whose SUB the client re-sends), or refused by
            // `expire_confirmations` at the deadline.
            return;
        }
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        held.confirm_attempt = Some(attempt);
        let client = self.client.clone();
        let confirmed = self.confirmed_tx.clone();
        tokio::spawn(async move {
            let back = tokio::time::timeout_at(deadline, acks.round_trip(&client)).await;
            let live = matches!(back, Ok(Ok(())));
            // The router is gone only when the gateway is shutting down.
            let _ = confirmed.send(Confirmation {
                id,
                attempt,
                live,
                epoch,
            });
        });
    }

    /// Waiters of patterns still without a feed (NATS down) past their deadline are answered
    /// `unavailable`; the replays that waited on them go on (answered unavailable too). Runs on
    /// the router's tick, after [`Router::reopen_ended`] had its chance.
    fn expire_confirmations(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| {
                h.confirm_attempt.is_none()
                    && h.opening.is_none()
                    && !h.waiters.is_empty()
                    && h.confirm_by.is_some_and(|by| by <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(held) = self.held.get(&id) {
                tracing::warn!(
                    pattern = %held.pattern,
                    "NATS is down or not taking commands: a new pattern's subscribers are \
                     answered unavailable"
                );
            }
            self.answer_waiters(id, None);
        }
    }

    /// A marker round trip answered: the waiting shards are told, then the replays that waited.
    fn on_confirmation(&mut self, confirmation: Confirmation) {
        let Confirmation {
            id,
            attempt,
            live,
            epoch,
        } = confirmation;
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        if held.confirm_attempt != Some(attempt) {
            return;
        }
        held.confirm_attempt = None;
        if live && epoch != self.confirm_epoch.disconnects() {
            // The round trip started before NATS dropped: the marker proves a SUB on a
            // connection that is gone. Confirm again (now if connected, else after the
            // reconnect), within the same deadline.
            self.confirm(id);
            return;
        }
        if !live {
            tracing::warn!(
                pattern = %held.pattern,
                timeout_ms = CONFIRM_TIMEOUT.as_millis() as u64,
                inbox_publish_refused = self.state.confirm_failing(),
                "NATS did not confirm a subscription in time (a marker round trip on the \
                 gateway's _INBOX subject: the NATS user needs publish rights on _INBOX.>); its \
                 subscribers are answered unavailable"
            );
        }
        self.answer_waiters(id, live.then_some(epoch));
    }

    /// Answers every shard waiting on held pattern `id`: live when confirmed in epoch
    /// `confirmed` (which marks it confirmed), then the replay requests that waited for the
    /// answer: after it, on the same shard inboxes, so a resume's reply never goes out before its
    /// pattern is live.
    fn answer_waiters(&mut self, id: u64, confirmed: Option<u64>) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        let live = confirmed.is_some();
        if live {
            held.confirmed = confirmed;
        }
        held.confirm_by = None;
        for (shard, ticket) in std::mem::take(&mut held.waiters) {
            self.hub
                .confirmed(shard, held.pattern.clone(), ticket, live);
        }
        for request in std::mem::take(&mut held.confirm_replays) {
            self.on_replay(request);
        }
    }

    /// Serves held pattern `id` through a core subscription (live only), then answers the
    /// replay requests that waited for a consumer being opened for it (unavailable; that open,
    /// if still running, is superseded).
    async fn open_core(&mut self, id: u64) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        let replays = held.opening.take().map(|o| o.replays).unwrap_or_default();
        held.reopened(false, None);
        self.unconfirm(id);
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        let subject = format!("{}.{}", self.prefix, held.pattern);
        self.routing.restart(id);
        // The feed it had (say an ordered JetStream consumer) goes now, whether or not the core
        // subscription can be made at once: `reopen_ended` only subscribes patterns without a
        // feed, and a consumer kept here would hold the pattern hostage while JetStream stays
        // down after NATS is back (it retries for ever, so it never ends by itself).
        drop(self.subs.remove(&id));
        if self.may_subscribe() {
            // Queuing the SUB waits for room in the client's command channel, which nobody
            // drains while it reconnects or while a stalled server takes no bytes: bounded, so
            // the router (and every shard's interest, replay and linger behind it) never waits
            // on NATS.
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.client.subscribe(subject.clone()))
                .await
            {
                Ok(Ok(subscriber)) => {
                    let feed = subscriber.map(|m| Incoming {
                        subject: m.subject.to_string(),
                        payload: m.payload,
                        seq: None,
                    });
                    self.subs.insert(id, Box::pin(feed));
                }
                // Opened again by a later tick (see `reopen_ended`).
                Ok(Err(e)) => tracing::error!(%subject, error = %e, "cannot subscribe"),
                Err(_) => {
                    self.stalled_until = Some(Instant::now() + STALL_BACKOFF);
                    self.note_deferred(&subject);
                }
            }
        } else {
            // Held without a feed; `reopen_ended` subscribes once NATS is back.
            self.note_deferred(&subject);
        }
        self.count_consumers();
        // A round trip under way confirmed the feed just replaced, if any: waiters need one
        // after this SUB.
        if let Some(held) = self.held.get_mut(&id) {
            held.confirm_attempt = None;
        }
        self.confirm(id);
        for request in replays {
            self.on_replay(request);
        }
    }

    /// Whether a core subscription may be made now: the client is connected and did not just
    /// stall. Otherwise patterns are held without a feed and subscribed by `reopen_ended` later
    /// (async-nats would queue the SUB anyway and send it after the reconnect; deferring it
    /// keeps the router off the client's command channel while nobody drains it).
    fn may_subscribe(&mut self) -> bool {
        if self.stalled_until.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        self.stalled_until = None;
        self.state.is_connected()
    }

    fn note_deferred(&mut self, subject: &str) {
        if let Some(deferred) = self.deferred.note(1) {
            tracing::warn!(
                subject,
                deferred,
                "NATS is down or not taking commands; subscriptions are made once it is back"
            );
        }
    }

    /// Whether the feed `id` (a new one: an id not held) may be a JetStream consumer under
    /// `maxConsumers`: one already consuming through JetStream keeps its place when reopened.
    /// Past the cap a pattern is served live only, so the consumers one gateway creates on the
    /// server stay bounded whatever patterns clients ask for.
    fn room_for(&self, id: u64) -> bool {
        let Some(store) = &self.history else {
            return false;
        };
        if self.held.get(&id).is_some_and(|h| h.durable) {
            return true;
        }
        let durable = self.held.values().filter(|h| h.durable).count();
        durable < store.config().max_consumers
    }

    /// Sets the gauges. A consumer still being opened is not counted yet: the gauge says which
    /// patterns JetStream is feeding now (a message published once it counts one is delivered
    /// live), while `room_for` does count it against `maxConsumers`.
    fn count_consumers(&self) {
        let durable = self
            .held
            .values()
            .filter(|h| h.durable && h.opening.is_none())
            .count();
        self.metrics.history_consumers.set(durable as i64);
        self.metrics.nats_subscriptions.set(self.held.len() as i64);
    }

    /// A resuming connection asks for what it missed. Answered at once when the pattern is not
    /// consumed through JetStream; otherwise fetched in a task of its own (never blocking this
    /// loop or a shard), the result going back through the shard's inbox. The request follows
    /// the connection's interest change on the same channel, and one for a pattern whose
    /// consumer is still being opened waits for it ([`Opening::replays`]), so the live consumer
    /// exists when the fetch starts: the replay reaches at least as far as where live delivery
    /// begins.
    fn on_replay(&mut self, request: ReplayRequest) {
        let shard = request.shard;
        let confirmed = self
            .ids
            .get(&request.pattern)
            .is_some_and(|&id| self.is_confirmed(id));
        let held = self
            .ids
            .get(&request.pattern)
            .and_then(|id| self.held.get_mut(id));
        if let Some(opening) = held.as_ref().and_then(|h| h.opening.as_ref())
            && opening.replays.len() < MAX_REPLAYS_WAITING_FOR_OPEN
        {
            // Fetched once the consumer is open (or answered unavailable if it cannot be).
            if let Some(opening) = held.and_then(|h| h.opening.as_mut()) {
                opening.replays.push(request);
            }
            return;
        }
        if let Some(held) = held
            && !confirmed
            && !held.waiters.is_empty()
            && held.confirm_replays.len() < MAX_REPLAYS_WAITING_FOR_OPEN
        {
            // Answered once the pattern is live (or cannot be): see `confirm_replays`.
            held.confirm_replays.push(request);
            return;
        }
        let durable = self
            .ids
            .get(&request.pattern)
            .and_then(|id| self.held.get(id))
            .is_some_and(|h| h.durable && h.opening.is_none());
        let store = match &self.history {
            Some(store) if durable => store.clone(),
            other => {
                let reason = match other {
                    Some(store) if store.config().covers_pattern(&request.pattern) => {
                        NotRecovered::Unavailable
                    }
                    _ => NotRecovered::NoHistory,
                };
                let epoch = other.as_ref().and_then(|s| s.state().epoch());
                self.hub.replay_done(
                    shard,
                    ReplayDone {
                        key: request.key,
                        serial: request.serial,
                        pattern: request.pattern,
                        epoch,
                        outcome: Err(reason),
                    },
                );
                return;
            }
        };
        store.replay(request, self.hub.clone());
    }

    /// The connection with replay ticket `ticket` is gone: its requests waiting for a consumer
    /// to open or for a confirmation are dropped, and a replay fetched for it alone stops.
    fn on_replay_gone(&mut self, ticket: u64) {
        for held in self.held.values_mut() {
            if let Some(opening) = &mut held.opening {
                opening.replays.retain(|r| r.serial != ticket);
            }
            held.confirm_replays.retain(|r| r.serial != ticket);
        }
        if let Some(store) = &self.history {
            store.cancel(ticket);
        }
    }

    /// Runs until the shards stop reporting interest (the gateway is shutting down).
    pub(crate) async fn run(mut self, mut interest: UnboundedReceiver<ToRouter>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut generation = self.generation.clone();
        let mut watching = self.history.is_some();
        let Some(mut opened) = self.opened_rx.take() else {
            return;
        };
        let Some(mut confirmed) = self.confirmed_rx.take() else {
            return;
        };
        loop {
            tokio::select! {
                Some(answer) = opened.recv() => self.on_opened(answer).await,
                Some(answer) = confirmed.recv() => self.on_confirmation(answer),
                change = interest.recv() => match change {
                    Some(ToRouter::Interest(change)) => self.on_interest(change).await,
                    Some(ToRouter::Replay(request)) => self.on_replay(request),
                    Some(ToRouter::ReplayGone(ticket)) => self.on_replay_gone(ticket),
                    None => return,
                },
                Some((id, message)) = self.subs.next(), if !self.subs.is_empty() => {
                    self.on_message(id, message);
                }
                changed = generation.changed(), if watching => match changed {
                    Ok(()) => self.reopen_history().await,
                    Err(_) => watching = false,
                },
                _ = tick.tick() => {
                    self.watch_connection();
                    self.release_expired().await;
                    self.reopen_ended().await;
                    self.expire_confirmations();
                }
            }
        }
    }

    /// A feed that ended (a JetStream consumer that gave up) is opened again, so a held pattern
    /// never silently stops delivering.
    async fn reopen_ended(&mut self) {
        // A feed that ended took its confirmation with it: the shards must stop answering new
        // subscribers of it at once (their epoch moves), even while nothing can be reopened.
        let lost: Vec<u64> = self
            .held
            .iter()
            .filter(|(id, h)| h.confirmed.is_some() && !self.subs.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.unconfirm(id);
        }
        // Nothing can be subscribed now: every pattern would only be deferred again.
        if !self.may_subscribe() {
            return;
        }
        let epoch = self.history.as_ref().and_then(|h| h.state().epoch());
        let ended: Vec<(u64, Box<str>, Option<u64>)> = self
            .held
            .iter()
            .filter(|(id, h)| !self.subs.contains_key(id) && h.opening.is_none())
            .map(|(id, h)| (*id, h.pattern.clone(), h.resume_from(epoch.as_deref())))
            .collect();
        // One line, not one per pattern: after an outage every pattern subscribed meanwhile
        // (deferred) is opened here at once.
        if let Some((_, pattern, from)) = ended.first() {
            tracing::warn!(
                %pattern,
                ?from,
                feeds = ended.len(),
                "feeds ended or deferred (NATS was down); opening them again"
            );
        }
        self.reopen(ended, epoch).await;
    }

    async fn on_interest(&mut self, change: InterestChange) {
        let bit = 1u64 << change.shard.min(63);
        if change.wanted {
            let confirmed = self
                .ids
                .get(&change.pattern)
                .is_some_and(|&id| self.is_confirmed(id));
            if let Some(&id) = self.ids.get(&change.pattern)
                && let Some(held) = self.held.get_mut(&id)
            {
                held.shards |= bit;
                held.release_at = None;
                held.waiters.push((change.shard, change.ticket));
                if !confirmed && held.opening.is_none() && !self.subs.contains_key(&id) {
                    // Held without a feed (NATS was down when it was first wanted): subscribed
                    // now if NATS is back, rather than at the next `reopen_ended`, so this ask is
                    // not refused for an outage that is over. `open` confirms it.
                    let epoch = self.history.as_ref().and_then(|h| h.state().epoch());
                    let from = held.resume_from(epoch.as_deref());
                    self.open(id, from, epoch).await;
                    self.count_consumers();
                }
                self.confirm(id);
                return;
            }
            let epoch = self.history.as_ref().and_then(|h| h.state().epoch());
            let id = self.next_id;
            self.next_id += 1;
            self.index.insert(&change.pattern, id);
            self.ids.insert(change.pattern.clone(), id);
            self.held.insert(
                id,
                Held {
                    pattern: change.pattern,
                    shards: bit,
                    release_at: None,
                    durable: false,
                    last_seq: None,
                    epoch: None,
                    opening: None,
                    confirmed: None,
                    waiters: vec![(change.shard, change.ticket)],
                    confirm_by: None,
                    confirm_attempt: None,
                    confirm_replays: Vec::new(),
                },
            );
            self.open(id, None, epoch).await;
            self.confirm(id);
            self.count_consumers();
        } else if let Some(held) = self
            .ids
            .get(&change.pattern)
            .and_then(|id| self.held.get_mut(id))
        {
            held.shards &= !bit;
            // Its ask was withdrawn: nobody there waits for the answer.
            held.waiters.retain(|&(shard, _)| shard != change.shard);
            if held.shards == 0 {
                held.release_at = Some(Instant::now() + self.linger);
            }
        }
    }

    async fn release_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.release_at.is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(held) = self.held.remove(&id) {
                self.ids.remove(&held.pattern);
                self.index.remove(&held.pattern, id);
                // Dropping a core subscriber unsubscribes; dropping an ordered consumer stops
                // its pulls and the server removes the ephemeral consumer.
                drop(self.subs.remove(&id));
                self.routing.restart(id);
                // A consumer still opening is dropped when it answers; whoever waited for a
                // replay on it is answered now (unavailable: the pattern is no longer held).
                let waiting = held.opening.map(|o| o.replays).unwrap_or_default();
                for request in waiting.into_iter().chain(held.confirm_replays) {
                    self.on_replay(request);
                }
            }
        }
        self.count_consumers();
    }

    fn on_message(&mut self, via: u64, message: Incoming) {
        let Some(topic) = message
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            return;
        };
        if let (Some(seq), Some(held)) = (message.seq, self.held.get_mut(&via)) {
            held.last_seq = Some(seq);
        }
        // NATS delivers a message once per matching subscription or consumer: `route` says
        // which copy a client gets.
        let mut found = Matches::default();
        let mut shards = 0u64;
        let held = &self.held;
        self.index.for_each_match(topic, |id| {
            if let Some(h) = held.get(&id) {
                found.add(id, h.durable);
                shards |= h.shards;
            }
        });
        if !self.routing.accept(topic, message.seq, via, &found) || shards == 0 {
            return;
        }
        let framed = Message::with_seq(topic, message.payload, message.seq);
        // A frame over the pending bound fits no subscriber's queue: handing it out would close
        // every healthy subscriber of the topic as a slow consumer. Counted and logged instead.
        let frame = framed.largest_frame_len();
        if frame > self.max_frame_bytes {
            self.metrics.oversized_messages.inc();
            if let Some(dropped) = self.oversized.note(1) {
                tracing::warn!(
                    topic,
                    frame_bytes = frame,
                    max_pending_bytes = self.max_frame_bytes,
                    dropped,
                    "NATS message too large for any client queue; dropped \
                     (volley_oversized_messages_total)"
                );
            }
            return;
        }
        let dropped = self.hub.deliver(&framed, shards);
        if dropped > 0 {
            self.metrics.dropped.inc_by(dropped as u64);
            if let Some(dropped) = self.dropped.note(dropped as u64) {
                tracing::warn!(
                    topic,
                    dropped,
                    "shard inbox full; deliveries dropped (volley_dropped_total): subscribers of \
                     topics with history are closed with 1012 to resume, others miss them"
                );
            }
        }
    }
}

/// Lets a log line through at most once per [`LOG_EVERY`], counting the events it stands for, so
/// a burst (a publisher sending nothing but large messages, a flood overflowing a shard inbox)
/// logs once, not once per message.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Throttle {
    /// Counts `n` events; returns how many to report when a line is due.
    fn note(&mut self, n: u64) -> Option<u64> {
        self.unlogged += n;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests;
