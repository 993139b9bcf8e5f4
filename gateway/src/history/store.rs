//! The JetStream side of history: keeps the stream in place and in shape, publishes with an
//! acknowledgement, opens the live consumer of a pattern and runs replays. Everything here is IO
//! on the tokio runtime; shards only ever see its results through their inboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::{Semaphore, oneshot, watch};

use super::budget::ReplayBudget;
use super::merge::Replayed;
use super::{HistoryConfig, NotRecovered, ReplayDone, ReplayRequest, Storage};
use crate::handshake::Format;
use crate::hub::{Hub, PublishError};
use crate::message::Message;
use crate::metrics::Metrics;

/// How often the stream is checked while it is healthy, and while it is not.
const CHECK_EVERY: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long the stream must stay out of reach before the live feeds of history patterns move to
/// core subscriptions. One slow or failed check (a JetStream API call timing out under load, a
/// NATS reconnect) must not tear down healthy consumers: each switch loses or duplicates what is
/// published while it happens, and an ordered consumer rides out a short outage by itself.
const SWITCH_TO_LIVE_AFTER: Duration = Duration::from_secs(10);
/// Hidden test knob: [`SWITCH_TO_LIVE_AFTER`] in milliseconds, so a test of a long outage does
/// not wait 10 s (`tests/nats_outage.rs`). Not an operator setting.
const SWITCH_TO_LIVE_AFTER_ENV: &str = "VOLLEY_TEST_SWITCH_TO_LIVE_AFTER_MS";

fn switch_to_live_after() -> Duration {
    std::env::var(SWITCH_TO_LIVE_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(SWITCH_TO_LIVE_AFTER, Duration::from_millis)
}
/// Replays running at once per gateway: each is one consumer on the server.
const MAX_CONCURRENT_REPLAYS: usize = 64;
/// How long opening a live consumer may take. The open runs in a task of its own (the router
/// goes on routing), but the pattern's own messages wait for it: past it the pattern is served
/// live only (until history's availability or epoch next changes, like any pattern whose
/// consumer could not be opened).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an HTTP publish waits for JetStream's acknowledgement.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// A replay consumer left behind (the gateway died mid-replay) is removed by the server after
/// this idle time.
const REPLAY_CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// Why the stream cannot be put in place; the message is meant for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HistoryError {
    #[error("JetStream is not enabled on the NATS server (start it with -js)")]
    NotEnabled,
    #[error("JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("cannot create or update stream {stream}: {message}")]
    Stream { stream: String, message: String },
}

/// History's health, readable from the admin server and the shards.
#[derive(Debug, Default)]
pub(crate) struct HistoryState {
    available: AtomicBool,
    epoch: RwLock<Option<Arc<str>>>,
    problem: Mutex<Option<String>>,
    /// A check of the stream started while NATS was connected has ended (available or a
    /// definite error): from then on `is_available` means something (readiness waits for it).
    checked: AtomicBool,
}

impl HistoryState {
    pub(crate) fn checked(&self) -> bool {
        self.checked.load(Ordering::Acquire)
    }

    pub(crate) fn is_available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// The epoch of the stream as last seen: changes when the stream is recreated.
    pub(crate) fn epoch(&self) -> Option<Arc<str>> {
        self.epoch.read().map(|e| e.clone()).unwrap_or(None)
    }

    /// Why history is unavailable, when it is.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem.lock().map(|p| p.clone()).unwrap_or(None)
    }

    fn set_epoch(&self, epoch: &Arc<str>) {
        if let Ok(mut e) = self.epoch.write()
            && e.as_deref() != Some(&**epoch)
        {
            *e = Some(epoch.clone());
        }
    }

    pub(crate) fn set_available(&self, epoch: &Arc<str>) {
        self.set_epoch(epoch);
        if let Ok(mut p) = self.problem.lock() {
            *p = None;
        }
        self.available.store(true, Ordering::Release);
    }

    fn set_unavailable(&self, why: String) {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(why);
        }
        self.available.store(false, Ordering::Release);
    }
}

/// A message from NATS on its way to the shards: through a core subscription (no sequence) or
/// a JetStream consumer (with its stream sequence).
#[derive(Debug)]
pub(crate) struct Incoming {
    pub subject: String,
    pub payload: Bytes,
    pub seq: Option<u64>,
}

/// The epoch of a stream: its creation time (ns since the Unix epoch), which a recreated stream
/// cannot share with the one it replaces.
fn epoch_of(info: &stream::Info) -> Arc<str> {
    Arc::from(info.created.unix_timestamp_nanos().to_string())
}

/// Replays are shared by requests for the same `(pattern, since, epoch)`.
type ReplayKey = (Box<str>, u64, Option<String>);

/// A connection waiting for a replay: where to send the answer.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    shard: usize,
    key: usize,
    serial: u64,
}

/// A replay being fetched: who still waits for it, and how to stop it when nobody does.
#[derive(Debug)]
struct Fetching {
    waiters: Vec<Waiter>,
    /// Dropped (with the entry) when the last waiter goes: the fetch stops.
    _stop: oneshot::Sender<()>,
}

/// Deletes a replay consumer when dropped: after the fetch, and also when the fetch is given up
/// while reading (timed out, or nobody waits any more), so a stopped replay leaves nothing on the
/// server. Best effort: the server removes it after [`REPLAY_CONSUMER_IDLE`] anyway.
struct ReplayConsumer {
    stream: jetstream::stream::Stream,
    name: String,
}

impl Drop for ReplayConsumer {
    fn drop(&mut self) {
        let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = stream.delete_consumer(&name).await;
            });
        }
    }
}

/// Handle on the stream; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    js: Context,
    config: Arc<HistoryConfig>,
    prefix: Arc<str>,
    state: Arc<HistoryState>,
    metrics: Metrics,
    replays: Arc<Semaphore>,
    /// Replays not yet fetching (waiting for a slot) and who waits for each: an identical
    /// request joins instead of fetching again. Once a fetch starts, later requests start
    /// their own, so every waiter's replay is read after it began holding live messages.
    waiting: Arc<Mutex<HashMap<ReplayKey, Vec<Waiter>>>>,
    /// Replays being fetched, by a number of their own.
    fetching: Arc<Mutex<HashMap<u64, Fetching>>>,
    next_fetch: Arc<AtomicU64>,
    /// Replays each connection may ask for per minute.
    budget: Arc<ReplayBudget>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Store {
    pub(crate) fn new(
        client: async_nats::Client,
        config: Arc<HistoryConfig>,
        prefix: Arc<str>,
        state: Arc<HistoryState>,
        metrics: Metrics,
    ) -> Store {
        Store {
            js: jetstream::new(client),
            config,
            prefix,
            state,
            metrics,
            replays: Arc::new(Semaphore::new(MAX_CONCURRENT_REPLAYS)),
            waiting: Arc::new(Mutex::new(HashMap::new())),
            fetching: Arc::new(Mutex::new(HashMap::new())),
            next_fetch: Arc::new(AtomicU64::new(0)),
            budget: Arc::new(ReplayBudget::new(usize::MAX)),
        }
    }

    /// At most `per_minute` replays per connection per minute (see [`ReplayBudget`]).
    pub(crate) fn with_replay_budget(mut self, per_minute: usize) -> Store {
        self.budget = Arc::new(ReplayBudget::new(per_minute));
        self
    }

    pub(crate) fn config(&self) -> &HistoryConfig {
        &self.config
    }

    pub(crate) fn state(&self) -> &Arc<HistoryState> {
        &self.state
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.prefix)
    }

    /// The stream as the config wants it.
    pub(crate) fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            subjects: self.config.topics.iter().map(|t| self.subject(t)).collect(),
            max_messages_per_subject: self.config.max_messages_per_topic,
            max_age: self.config.max_age,
            storage: match self.config.storage {
                Storage::File => StorageType::File,
                Storage::Memory => StorageType::Memory,
            },
            num_replicas: self.config.replicas,
            ..Default::default()
        }
    }

    /// Makes sure the stream exists with our subjects and limits: created when missing,
    /// updated when it differs, left alone when it matches (so many gateways starting at once
    /// agree). Returns its epoch.
    pub(crate) async fn ensure(&self) -> Result<Arc<str>, HistoryError> {
        let want = self.stream_config();
        let name = want.name.clone();
        let stream_error = |message: String| HistoryError::Stream {
            stream: name.clone(),
            message,
        };
        match self.js.get_stream(&name).await {
            Ok(stream) => {
                let info = stream.cached_info();
                if matches_config(&info.config, &want) {
                    return Ok(epoch_of(info));
                }
                let info = self
                    .js
                    .update_stream(want.clone())
                    .await
                    .map_err(|e| stream_error(e.to_string()))?;
                tracing::info!(stream = %name, "history stream updated to the configured limits");
                Ok(epoch_of(&info))
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    let mut stream = self.js.create_stream(want.clone()).await.map_err(|e| {
                        if e.to_string().contains("not enabled") {
                            HistoryError::NotEnabled
                        } else {
                            stream_error(e.to_string())
                        }
                    })?;
                    tracing::info!(stream = %name, "history stream created");
                    let info = stream
                        .info()
                        .await
                        .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
                    Ok(epoch_of(info))
                }
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                        || js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
                {
                    Err(HistoryError::NotEnabled)
                }
                _ => Err(HistoryError::Unavailable(e.to_string())),
            },
        }
    }

    /// Keeps the stream in place for as long as the gateway runs, and tells the router (by
    /// bumping `generation`) when the feeds of history patterns must be opened again: history
    /// became available (JetStream consumers), unavailable (core subscriptions, live only), or
    /// the stream was recreated (a new epoch).
    pub(crate) async fn maintain(self, generation: watch::Sender<u64>) {
        let mut last_epoch: Option<Arc<str>> = None;
        let mut was_available = false;
        // Since when the checks fail, and whether the feeds were already moved to core
        // subscriptions for it.
        let mut failing_since: Option<Instant> = None;
        let mut switched = false;
        let switch_after = switch_to_live_after();
        loop {
            // A check made while NATS is not connected says nothing about JetStream.
            let connected =
                self.js.client().connection_state() == async_nats::connection::State::Connected;
            let pause = match self.ensure().await {
                Ok(epoch) => {
                    // An answer proves a live connection, whatever the state when the check
                    // began (the first one often starts before the first connect).
                    self.state.checked.store(true, Ordering::Release);
                    self.state.set_available(&epoch);
                    self.metrics.history_available.set(1);
                    // After any failed check too: a pattern first wanted meanwhile was opened
                    // as a core subscription. The router keeps the healthy consumers as they are.
                    if !was_available || last_epoch.as_deref() != Some(&*epoch) {
                        if last_epoch.is_some() && last_epoch.as_deref() != Some(&*epoch) {
                            tracing::warn!(%epoch, "history stream was recreated (new epoch)");
                        } else {
                            tracing::info!(%epoch, "history available");
                        }
                        generation.send_modify(|g| *g += 1);
                    }
                    last_epoch = Some(epoch);
                    was_available = true;
                    failing_since = None;
                    switched = false;
                    CHECK_EVERY
                }
                Err(e) => {
                    if was_available || self.state.problem().is_none() {
                        tracing::error!(
                            error = %e,
                            "history unavailable; history topics are served live only"
                        );
                    }
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if last_epoch.is_some() && !switched && since.elapsed() >= switch_after {
                        // Live delivery must not hang on consumers of a stream that stays
                        // gone: the router reopens those patterns as core subscriptions.
                        generation.send_modify(|g| *g += 1);
                        switched = true;
                    }
                    self.state.set_unavailable(e.to_string());
                    self.metrics.history_available.set(0);
                    was_available = false;
                    RETRY_EVERY
                }
            };
            if connected {
                self.state.checked.store(true, Ordering::Release);
            }
            tokio::time::sleep(pause).await;
            if generation.is_closed() {
                return;
            }
        }
    }

    /// Publishes to the stream with `Nats-Msg-Id: msg_id` and waits for JetStream's
    /// acknowledgement: success means stored. The id makes a retry after an unanswered attempt
    /// safe: JetStream stores a message once per id within the stream's duplicate window, and
    /// acknowledges a repeat as a duplicate (returned as `true`).
    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<bool, PublishError> {
        let js = &self.js;
        let subject = self.subject(topic);
        let message = PublishMessage::build().payload(payload).message_id(msg_id);
        let stored = async move { js.send_publish(subject, message).await?.await };
        match tokio::time::timeout(PUBLISH_ACK_TIMEOUT, stored).await {
            Ok(Ok(ack)) => Ok(ack.duplicate),
            // Refused by the client before anything was sent: it can never be published.
            Ok(Err(e)) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                Err(PublishError::TooLarge {
                    max_payload: self.js.client().max_payload(),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, topic, "JetStream publish failed");
                Err(PublishError::Unavailable)
            }
            Err(_) => Err(PublishError::Unavailable),
        }
    }

    /// Opens the live feed of `pattern`: an ordered consumer that starts at stream sequence
    /// `from` (a feed reopened right after the last message its predecessor delivered, so the
    /// switch leaves no gap) or, without one, with the next message stored; after a NATS
    /// reconnect it resumes right after the last one it delivered (the client recreates it from
    /// its last stream sequence), so no message is skipped.
    pub(crate) async fn live(
        &self,
        pattern: &str,
        from: Option<u64>,
    ) -> Result<BoxStream<'static, Incoming>, HistoryError> {
        // Without the stream info request: the pattern's messages wait for this call, so one
        // JetStream API round trip (creating the consumer) instead of two, bounded by
        // OPEN_TIMEOUT.
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
        let consumer = stream.create_consumer(pull::OrderedConfig {
            filter_subject: self.subject(pattern),
            deliver_policy: match from {
                Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
                None => DeliverPolicy::New,
            },
            ..Default::default()
        });
        let consumer = tokio::time::timeout(OPEN_TIMEOUT, consumer)
            .await
            .map_err(|_| HistoryError::Unavailable("no answer creating the consumer".into()))?
            .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
        let feed = messages.filter_map(|item| {
            let incoming = match item {
                Ok(message) => {
                    let seq = message.info().ok().map(|i| i.stream_sequence);
                    let message = message.message;
                    Some(Incoming {
                        subject: message.subject.to_string(),
                        payload: message.payload,
                        seq,
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history consumer error; it recreates itself");
                    None
                }
            };
            std::future::ready(incoming)
        });
        Ok(feed.boxed())
    }

    /// Runs a replay in a task of its own, bounded by `replayTimeout`, and always answers
    /// through the shard's inbox. Many connections moved at once (a shed) resume from the same
    /// position: a request identical to one still waiting for a slot joins it, and one fetch
    /// answers them all.
    pub(crate) fn replay(&self, request: ReplayRequest, hub: Arc<Hub>) {
        if !self.budget.take(request.serial, std::time::Instant::now()) {
            // Answered without touching JetStream: the connection's budget is spent.
            hub.replay_done(
                request.shard,
                ReplayDone {
                    key: request.key,
                    serial: request.serial,
                    pattern: request.pattern,
                    epoch: self.state.epoch(),
                    outcome: Err(NotRecovered::Limit),
                },
            );
            return;
        }
        let key: ReplayKey = (
            request.pattern.clone(),
            request.since,
            request.epoch.clone(),
        );
        let waiter = Waiter {
            shard: request.shard,
            key: request.key,
            serial: request.serial,
        };
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(waiters) = waiting.get_mut(&key) {
                waiters.push(waiter);
                return;
            }
            waiting.insert(key.clone(), vec![waiter]);
        }
        let store = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + store.config.replay_timeout;
            // Waiting for a slot counts against the same deadline.
            let permit = tokio::time::timeout_at(deadline, store.replays.acquire()).await;
            let waiters = store
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key)
                .unwrap_or_default();
            if waiters.is_empty() {
                // Everyone who asked is gone: nothing to fetch.
                store.metrics.replays_cancelled.inc();
                return;
            }
            let id = store.next_fetch.fetch_add(1, Ordering::Relaxed);
            let (stop, mut stopped) = oneshot::channel();
            store
                .fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    id,
                    Fetching {
                        waiters,
                        _stop: stop,
                    },
                );
            let outcome = match permit {
                Ok(Ok(_permit)) => tokio::select! {
                    outcome = tokio::time::timeout_at(deadline, store.fetch(&request)) => {
                        Some(outcome.unwrap_or(Err(NotRecovered::Timeout)))
                    }
                    // The last waiter went (see `cancel`): the fetch is dropped where it is.
                    _ = &mut stopped => None,
                },
                _ => Some(Err(NotRecovered::Timeout)),
            };
            let waiters = store
                .fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id)
                .map(|f| f.waiters);
            let (Some(outcome), Some(waiters)) = (outcome, waiters) else {
                store.metrics.replays_cancelled.inc();
                return;
            };
            store
                .metrics
                .replay_duration
                .observe(started.elapsed().as_secs_f64());
            if let Ok(replayed) = &outcome {
                store
                    .metrics
                    .replayed_messages
                    .inc_by((replayed.messages.len() * waiters.len()) as u64);
            }
            let epoch = store.state.epoch();
            for w in waiters {
                hub.replay_done(
                    w.shard,
                    ReplayDone {
                        key: w.key,
                        serial: w.serial,
                        pattern: key.0.clone(),
                        epoch: epoch.clone(),
                        outcome: outcome.clone(),
                    },
                );
            }
        });
    }

    /// The connection with replay ticket `ticket` is gone: it stops waiting for its replays. A
    /// replay nobody waits for any more is not fetched, or stops where its fetch is (its
    /// consumer deleted), instead of reading up to `replayMaxMessages` for nobody.
    pub(crate) fn cancel(&self, ticket: u64) {
        self.budget.forget(ticket);
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            // An emptied list stays: its task finds nobody when it gets a slot.
            for waiters in waiting.values_mut() {
                waiters.retain(|w| w.serial != ticket);
            }
        }
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        fetching.retain(|_, f| {
            f.waiters.retain(|w| w.serial != ticket);
            !f.waiters.is_empty()
        });
    }

    async fn fetch(&self, request: &ReplayRequest) -> Result<Replayed<Arc<Message>>, NotRecovered> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(|_| NotRecovered::Unavailable)?;
        let info = stream.cached_info();
        let epoch = epoch_of(info);
        self.state.set_epoch(&epoch);
        if request.epoch.as_deref() != Some(&*epoch) {
            return Err(NotRecovered::EpochChanged);
        }
        let since = request.since;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        plan(since, first, last)?;
        if since == last {
            return Ok(Replayed {
                messages: Vec::new(),
                through: last,
            });
        }
        // Start AT `since`, not after it: finding the client's own last message there proves the
        // history still reaches back to it (nothing between it and the next one was discarded).
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.subject(&request.pattern),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: since.max(1),
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: REPLAY_CONSUMER_IDLE,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|_| NotRecovered::Unavailable)?;
        let _delete = ReplayConsumer {
            stream: stream.clone(),
            name: consumer.cached_info().name.clone(),
        };
        let pending = consumer.cached_info().num_pending;
        self.collect(&consumer, since, last, pending).await
    }

    async fn collect(
        &self,
        consumer: &jetstream::consumer::Consumer<pull::Config>,
        since: u64,
        last: u64,
        pending: u64,
    ) -> Result<Replayed<Arc<Message>>, NotRecovered> {
        if pending == 0 {
            if since > 0 {
                // The client's own last message is gone (aged out or over the per-topic limit),
                // and so may be what followed it: the gap cannot be proven empty.
                return Err(NotRecovered::TooOld);
            }
            return Ok(Replayed {
                messages: Vec::new(),
                through: last,
            });
        }
        let own = u64::from(since > 0);
        if pending.saturating_sub(own) > self.config.replay_max_messages as u64 {
            return Err(NotRecovered::Limit);
        }
        let mut batch = consumer
            .batch()
            .max_messages(pending as usize)
            .expires(self.config.replay_timeout)
            .messages()
            .await
            .map_err(|_| NotRecovered::Unavailable)?;
        let mut messages = Vec::with_capacity(pending as usize);
        let mut per_topic = PerTopic::new(self.config.max_messages_per_topic);
        let mut bytes = 0usize;
        let mut through = since;
        let mut first = true;
        while let Some(item) = batch.next().await {
            let message = item.map_err(|_| NotRecovered::Unavailable)?;
            let info = message.info().map_err(|_| NotRecovered::Unavailable)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            if std::mem::take(&mut first) && since > 0 {
                if seq != since {
                    return Err(NotRecovered::TooOld);
                }
            } else {
                let Some(topic) = message
                    .subject
                    .as_str()
                    .strip_prefix(&*self.prefix)
                    .and_then(|t| t.strip_prefix('.'))
                else {
                    continue;
                };
                if per_topic.full_after(topic) {
                    return Err(NotRecovered::TooOld);
                }
                let replayed = Message::with_seq(topic, message.payload.clone(), Some(seq));
                // Frame bytes, not payload bytes: what the replay takes in a connection's queue
                // (the envelope frame is the larger of the two formats, and is built once here
                // for every envelope client the replay goes to).
                bytes = bytes.saturating_add(replayed.frame(Format::Envelope).len());
                if bytes > self.config.replay_max_bytes {
                    return Err(NotRecovered::Limit);
                }
                messages.push(replayed);
            }
            through = seq;
            if left == 0 {
                break;
            }
        }
        if first {
            // The batch expired before delivering what the consumer said was pending.
            return Err(NotRecovered::Timeout);
        }
        Ok(Replayed { messages, through })
    }
}

/// Finding the client's own last message proves nothing *older* was discarded, but JetStream
/// also discards per subject (`maxMessagesPerTopic`): a busy topic under a wildcard can lose
/// messages newer than the client's position while its own quiet topic keeps it. Such a topic
/// has every message it still stores above the position, as many as the limit, and all of them
/// are in the replay; a topic that still stores one at or below the position (so nothing after
/// it was discarded) has fewer in the replay. So a replay holding the limit's worth of one topic
/// is answered `too_old`. It is conservative: a topic that got exactly the limit's worth since
/// the position, and lost nothing, is refused too.
#[derive(Debug)]
pub(crate) struct PerTopic {
    limit: usize,
    counts: HashMap<Box<str>, usize>,
}

impl PerTopic {
    pub(crate) fn new(max_messages_per_topic: i64) -> PerTopic {
        PerTopic {
            limit: usize::try_from(max_messages_per_topic.max(1)).unwrap_or(usize::MAX),
            counts: HashMap::new(),
        }
    }

    /// Counts one replayed message on `topic`: true once the topic has the limit's worth above
    /// the position, so what it had after the position may have been discarded.
    pub(crate) fn full_after(&mut self, topic: &str) -> bool {
        let count = match self.counts.get_mut(topic) {
            Some(count) => count,
            None => self.counts.entry(topic.into()).or_default(),
        };
        *count += 1;
        *count >= self.limit
    }
}

/// Checks a position against the stream's bounds before anything is fetched.
pub(crate) fn plan(since: u64, first: u64, last: u64) -> Result<(), NotRecovered> {
    if since > last {
        return Err(NotRecovered::BadPosition);
    }
    // Position 0 asks for everything: only possible if nothing was ever discarded.
    if since == 0 && first > 1 {
        return Err(NotRecovered::TooOld);
    }
    Ok(())
}

/// Whether the server's stream config has what we set (the server fills in other fields).
fn matches_config(have: &stream::Config, want: &stream::Config) -> bool {
    let mut a = have.subjects.clone();
    let mut b = want.subjects.clone();
    a.sort();
    b.sort();
    a == b
        && have.max_messages_per_subject == want.max_messages_per_subject
        && have.max_age == want.max_age
        && have.storage == want.storage
        && have.num_replicas == want.num_replicas
}

#[cfg(test)]
mod tests;
