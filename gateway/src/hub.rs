//! The seam between the shards and the control plane, both ways: per-shard inboxes of messages
//! and commands (each paired with a waker so a shard blocked in epoll notices new work) going in,
//! and [`ToRouter`] (interest changes, replay requests) coming out.
//!
//! Wake-ups are coalesced: a sender wakes the shard only when no wake-up is already pending, so a
//! burst of messages costs one eventfd write, not one per message.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::history::{ReplayDone, ReplayRequest};
use crate::message::Message;
use crate::metrics::Metrics;
use crate::topic_index::TopicIndex;

/// Messages one shard may have waiting before publishers are told to back off. Bounds memory when
/// publishers outrun the shards.
const INBOX_CAPACITY: usize = 16 * 1024;
/// Room kept above [`INBOX_CAPACITY`] for commands (drain, shed), so a backlog of messages never
/// holds them up, while a flood of control requests is still bounded.
const COMMAND_HEADROOM: usize = 64;
/// Hidden test knob: overrides [`INBOX_CAPACITY`] so a test can overflow an inbox with a handful
/// of messages (`tests/lossless.rs`). Not an operator setting.
const CAPACITY_ENV: &str = "VOLLEY_TEST_INBOX_CAPACITY";
/// Distinct topics a shard's [`Lost`] mark names at most; past it the mark covers every open
/// connection of the shard (bounded memory over precision, in a flood that broad).
const MAX_LOST_TOPICS: usize = 1024;
/// Close code and reason for connections that missed a message with a stream sequence: the same
/// code as a shed, so clients that resume after a shed resume after this too.
pub(crate) const LOST_CODE: u16 = 1012;
pub(crate) const LOST_REASON: &str = "overloaded, messages dropped; reconnect and resume";

/// Work for a shard.
#[derive(Debug)]
pub(crate) enum Command {
    Deliver(Arc<Message>),
    /// Stop accepting, close every connection with 1001 spread evenly over the window, then exit.
    Drain {
        over: Duration,
    },
    /// Close this many open connections with 1012 "rebalance", spread over the window.
    Shed {
        count: usize,
        over: Duration,
    },
    /// The stored messages a resuming connection missed (or why there are none).
    Replayed(Box<ReplayDone>),
    /// The router's answer to the shard's ask (`ticket`) for `pattern`: whether the gateway's
    /// NATS subscription covering it is confirmed by the server (`live`), or could not be.
    Confirmed {
        pattern: Box<str>,
        ticket: u64,
        live: bool,
    },
    /// Messages with a stream sequence were dropped for this shard (its inbox was full): take
    /// the mark ([`Inbox::take_lost`]) and close their subscribers before anything newer
    /// reaches them, so they resume from their last sequence and JetStream fills the gap.
    Lost,
}

/// What a shard lost since it last took the mark: the topics of the sequenced messages dropped
/// for it, or (past [`MAX_LOST_TOPICS`]) everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    topics: HashSet<Box<str>>,
    all: bool,
}

impl Lost {
    fn add(&mut self, topic: &str) {
        if self.all || self.topics.contains(topic) {
            return;
        }
        if self.topics.len() >= MAX_LOST_TOPICS {
            self.topics = HashSet::new();
            self.all = true;
            return;
        }
        self.topics.insert(topic.into());
    }

    /// The connections to close: every subscriber (in `index`) of a lost topic, or with the
    /// mark over its cap every one of `open`. Each key once.
    pub(crate) fn affected(
        &self,
        index: &TopicIndex<usize>,
        open: impl Iterator<Item = usize>,
    ) -> Vec<usize> {
        let mut keys: Vec<usize> = if self.all {
            open.collect()
        } else {
            let mut keys = Vec::new();
            for topic in &self.topics {
                index.for_each_match(topic, |key| keys.push(key));
            }
            keys
        };
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// A shard's lost mark, shared by the hub (which adds to it) and the shard (which takes it).
#[derive(Debug, Default)]
struct LostMark {
    lost: Lost,
    /// A [`Command::Lost`] is in the inbox and not yet handled: what is added now is taken
    /// with it, so one is enough (and at most one is ever queued).
    queued: bool,
}

/// Where a shard reports the first and last local subscriber of a pattern, so the control plane
/// holds a NATS subscription exactly while some connection on some shard wants it.
///
/// Also carries replay requests, on the same channel so that a connection's interest change
/// reaches the router before its replay request. Unbounded so a shard never blocks on it; what
/// it carries is bounded by the connections' subscriptions (one change per first and last
/// subscriber of a pattern, one replay in flight per resumed pattern per connection).
pub(crate) type InterestSink = tokio::sync::mpsc::UnboundedSender<ToRouter>;

/// What a shard tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToRouter {
    Interest(InterestChange),
    Replay(ReplayRequest),
    /// The connection whose replay requests carry this ticket is gone: nobody waits for them
    /// any more (tickets are unique for the process's life).
    ReplayGone(u64),
}

/// A shard's first subscriber of `pattern` arrived (`wanted`) or its last one left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterestChange {
    pub shard: usize,
    pub pattern: Box<str>,
    pub wanted: bool,
    /// For `wanted`: the ask's ticket, given back with the router's answer
    /// ([`Command::Confirmed`]). Every wanted change is answered exactly once.
    pub ticket: u64,
}

/// The shard's end of its inbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    wake_pending: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    lost: Arc<Mutex<LostMark>>,
}

impl Inbox {
    /// Takes the next command without blocking. Call [`Inbox::arm`] before draining so a command
    /// sent during the drain still wakes the shard.
    pub(crate) fn try_next(&self) -> Option<Command> {
        let command = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(command)
    }

    /// Re-enables wake-ups; called by the shard right before it drains the inbox.
    pub(crate) fn arm(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// Takes what was lost for this shard so far; called on [`Command::Lost`]. A loss after
    /// this queues a new command, behind everything sent before it.
    pub(crate) fn take_lost(&self) -> Lost {
        let mut mark = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        mark.queued = false;
        std::mem::take(&mut mark.lost)
    }
}

/// The sending end of one shard's inbox. The channel itself is unbounded so that no send ever
/// blocks an async task; `queued` bounds it instead, and lets a publisher claim room in every
/// inbox before it puts a message in any.
#[derive(Debug)]
struct Link {
    tx: Sender<Command>,
    waker: Arc<mio::Waker>,
    wake_pending: Arc<AtomicBool>,
    /// Commands sent and not yet taken by the shard (claimed room included).
    queued: Arc<AtomicUsize>,
    capacity: usize,
    lost: Arc<Mutex<LostMark>>,
    /// A [`Command::Drain`] was sent: one is all a shard ever needs, so it may bypass the
    /// bound (a drain must not be lost to a full inbox) and later ones are not sent.
    drain_sent: AtomicBool,
}

impl Link {
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            tracing::warn!(error = %e, "cannot wake shard");
        }
    }

    /// Claims room for one command if fewer than `limit` are queued.
    fn claim(&self, limit: usize) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back room claimed and not used.
    fn unclaim(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Sends a command whose room was claimed; false when the shard has exited.
    fn send_claimed(&self, command: Command) -> bool {
        let sent = self.tx.send(command).is_ok();
        if !sent {
            self.unclaim();
        }
        self.wake();
        sent
    }

    /// Sends a control command (never blocks). Returns false when the inbox is full even with
    /// the headroom, or the shard has exited.
    fn command(&self, command: Command) -> bool {
        self.claim(self.capacity + COMMAND_HEADROOM) && self.send_claimed(command)
    }

    /// Sends the router's answer to one of the shard's asks, bypassing the bound: the shard made
    /// each ask for connections waiting on it, and a lost answer would leave them waiting until
    /// their own deadline. What this adds is bounded by the asks a shard has out (one per
    /// pattern its connections wait for).
    fn answer(&self, command: Command) -> bool {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.send_claimed(command)
    }

    /// Sends the shard its one drain, bypassing the bound; false only when the shard has exited
    /// without one (nothing left to drain there either).
    fn drain(&self, over: Duration) -> bool {
        if self.drain_sent.swap(true, Ordering::AcqRel) {
            // Already on its way or done; the first window stands.
            return true;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.send_claimed(Command::Drain { over })
    }

    /// Marks `topic` lost for this shard and makes sure a [`Command::Lost`] is queued. It goes
    /// in FIFO order behind what the shard has not taken yet and ahead of every message sent
    /// after this, so the subscribers are closed before anything newer than the lost message
    /// reaches them. It bypasses the bound: at most one is ever queued (see [`LostMark`]).
    fn lose(&self, topic: &str) {
        let mut mark = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        mark.lost.add(topic);
        if !mark.queued {
            self.queued.fetch_add(1, Ordering::AcqRel);
            // False only when the shard has exited: nobody is left to tell.
            mark.queued = self.send_claimed(Command::Lost);
        }
    }
}

/// Publishing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PublishError {
    /// Nothing was delivered (all or nothing): retrying cannot duplicate the message.
    #[error(
        "the gateway is overloaded (a shard inbox is full); the message was not accepted, retry later"
    )]
    Overloaded,
    #[error("the gateway is shutting down")]
    Closed,
    /// Nothing was handed to NATS (not connected, or the client did not take it in time): a
    /// retry cannot duplicate it. For a JetStream publish, see [`crate::admin`]: there it means
    /// no acknowledgement came, and the outcome is unknown.
    #[error("NATS is unavailable; the message was not published")]
    Unavailable,
    /// Handed to NATS, but the server did not confirm it in time: it may still be delivered
    /// (say once a stalled server resumes, or after a reconnect), so a retry may deliver it twice.
    #[error(
        "NATS did not confirm the message in time: the outcome is unknown, it may or may not be \
         delivered (a retry may deliver it twice)"
    )]
    Unconfirmed,
    /// Over the NATS server's `max_payload` (headers included): it can never be published.
    #[error(
        "the message is over the NATS server's max_payload ({max_payload} bytes, headers \
         included); it was not published"
    )]
    TooLarge { max_payload: usize },
}

/// Where the admin API (and later NATS) hands published messages: the shard hub, or another
/// engine's equivalent.
pub(crate) trait Publish: Send + Sync {
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError>;
}

/// Fans messages and commands out to every shard.
#[derive(Debug)]
pub(crate) struct Hub {
    links: Vec<Link>,
    metrics: Metrics,
}

/// Builds an inbox for one shard; the waker must be registered on that shard's `Poll`.
pub(crate) fn inbox(waker: Arc<mio::Waker>) -> (InboxSender, Inbox) {
    let capacity = std::env::var(CAPACITY_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(INBOX_CAPACITY);
    inbox_with_capacity(waker, capacity)
}

fn inbox_with_capacity(waker: Arc<mio::Waker>, capacity: usize) -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::channel();
    let wake_pending = Arc::new(AtomicBool::new(false));
    let queued = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(Mutex::new(LostMark::default()));
    (
        InboxSender(Link {
            tx,
            waker,
            wake_pending: wake_pending.clone(),
            queued: queued.clone(),
            capacity,
            lost: lost.clone(),
            drain_sent: AtomicBool::new(false),
        }),
        Inbox {
            rx,
            wake_pending,
            queued,
            lost,
        },
    )
}

/// What [`Hub::new`] takes for each shard.
#[derive(Debug)]
pub(crate) struct InboxSender(Link);

impl Hub {
    pub(crate) fn new(senders: Vec<InboxSender>, metrics: Metrics) -> Hub {
        Hub {
            links: senders.into_iter().map(|s| s.0).collect(),
            metrics,
        }
    }

    /// Tells every shard to drain. Never blocks, and is never refused for a full inbox (each
    /// shard gets one drain, above the bound: see [`Link::drain`]). Returns how many shards
    /// could not be told (they have exited).
    pub(crate) fn drain(&self, over: Duration) -> usize {
        self.links.iter().filter(|link| !link.drain(over)).count()
    }

    /// Hands an already framed message to the shards in `shards` (bit i = shard i). Returns how
    /// many shards could not take it because their inbox was full. Each shard takes it or not on
    /// its own. A dropped message without a sequence is gone (core NATS is at most once; the
    /// caller counts and logs it). One with a sequence is marked lost for that shard: its
    /// subscribers there are closed with [`LOST_CODE`] before anything newer reaches them, and
    /// resume from their last sequence, so JetStream fills the gap.
    pub(crate) fn deliver(&self, message: &Arc<Message>, shards: u64) -> usize {
        let mut dropped = 0;
        for (i, link) in self.links.iter().enumerate() {
            if shards & (1u64 << i.min(63)) == 0 {
                continue;
            }
            if !(link.claim(link.capacity) && link.send_claimed(Command::Deliver(message.clone())))
            {
                if message.seq().is_some() {
                    link.lose(message.topic());
                }
                link.wake();
                dropped += 1;
            }
        }
        self.metrics.messages_published.inc();
        dropped
    }

    /// Hands a replay result to the shard of the connection that asked. Never blocks; with the
    /// inbox full even for commands the result is dropped, and the connection stops waiting for
    /// it after `replayTimeout` plus a grace (`recovered:false`, reason `timeout`), or sooner
    /// when live traffic fills its hold buffer (reason `overflow`); either way it goes on live.
    pub(crate) fn replay_done(&self, shard: usize, done: ReplayDone) {
        let sent = self
            .links
            .get(shard)
            .is_some_and(|link| link.command(Command::Replayed(Box::new(done))));
        if !sent {
            tracing::warn!(shard, "shard inbox full; replay result dropped");
        }
    }

    /// Answers shard `shard`'s ask `ticket` for `pattern` (see [`Command::Confirmed`]). Never
    /// blocks, never refused for a full inbox (see [`Link::answer`]).
    pub(crate) fn confirmed(&self, shard: usize, pattern: Box<str>, ticket: u64, live: bool) {
        if let Some(link) = self.links.get(shard) {
            // False only when the shard has exited: nobody is left to tell.
            let _ = link.answer(Command::Confirmed {
                pattern,
                ticket,
                live,
            });
        }
    }

    /// Asks shard i to shed `counts[i]` connections with 1012, spread over the window. Never
    /// blocks; a shard whose inbox is full even for commands skips this round (the operator asks
    /// again while the counts stay unbalanced). Returns how many of the connections asked for
    /// will not be shed because their shard refused.
    pub(crate) fn shed(&self, counts: &[usize], over: Duration) -> usize {
        let mut refused = 0;
        for (link, &count) in self.links.iter().zip(counts) {
            if count > 0 && !link.command(Command::Shed { count, over }) {
                tracing::warn!(count, "shard inbox full; shed request skipped");
                refused += count;
            }
        }
        refused
    }
}

impl Publish for Hub {
    /// Hands a message to every shard, or to none: room is claimed in every inbox first, so an
    /// `Overloaded` answer means no shard has it and a retry cannot deliver it twice. The frame
    /// bytes are encoded once, by whichever shard needs them first.
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        for (i, link) in self.links.iter().enumerate() {
            if !link.claim(link.capacity) {
                for claimed in &self.links[..i] {
                    claimed.unclaim();
                }
                link.wake();
                return Err(PublishError::Overloaded);
            }
        }
        let message = Message::new(topic, payload);
        let mut closed = false;
        for link in &self.links {
            // A shard only exits after a drain: the gateway is shutting down.
            closed |= !link.send_claimed(Command::Deliver(message.clone()));
        }
        if closed {
            return Err(PublishError::Closed);
        }
        self.metrics.messages_published.inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
