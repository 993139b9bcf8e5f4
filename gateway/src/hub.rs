//! The seam between the shards and the control plane, both ways: per-shard inboxes of messages
//! and commands (each paired with a waker so a shard blocked in epoll notices new work) going in,
//! and [`ToRouter`] (interest changes, replay requests) coming out.
//!
//! Wake-ups are coalesced: a sender wakes the shard only when no wake-up is already pending, so a
//! burst of messages costs one eventfd write, not one per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use bytes::Bytes;

use crate::history::{ReplayDone, ReplayRequest};
use crate::message::Message;
use crate::metrics::Metrics;

/// Messages one shard may have waiting before publishers are told to back off. Bounds memory when
/// publishers outrun the shards.
const INBOX_CAPACITY: usize = 16 * 1024;
/// Room kept above [`INBOX_CAPACITY`] for commands (drain, shed), so a backlog of messages never
/// holds them up, while a flood of control requests is still bounded.
const COMMAND_HEADROOM: usize = 64;

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
}

/// A shard's first subscriber of `pattern` arrived (`wanted`) or its last one left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterestChange {
    pub shard: usize,
    pub pattern: Box<str>,
    pub wanted: bool,
}

/// The shard's end of its inbox.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    wake_pending: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
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
    #[error("NATS is unavailable; the message was not published")]
    Unavailable,
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
    inbox_with_capacity(waker, INBOX_CAPACITY)
}

fn inbox_with_capacity(waker: Arc<mio::Waker>, capacity: usize) -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::channel();
    let wake_pending = Arc::new(AtomicBool::new(false));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        InboxSender(Link {
            tx,
            waker,
            wake_pending: wake_pending.clone(),
            queued: queued.clone(),
            capacity,
        }),
        Inbox {
            rx,
            wake_pending,
            queued,
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

    /// Tells every shard to drain. Never blocks: commands have room of their own above the
    /// message backlog.
    pub(crate) fn drain(&self, over: Duration) {
        for link in &self.links {
            // False only for a shard that already exited (nothing left to drain) or with a
            // flood of commands queued ahead, which includes a drain already.
            let _ = link.command(Command::Drain { over });
        }
    }

    /// Hands an already framed message to the shards in `shards` (bit i = shard i). Returns how
    /// many shards could not take it because their inbox was full. Each shard takes it or not on
    /// its own: NATS delivery is at most once anyway, and nobody is told to retry.
    pub(crate) fn deliver(&self, message: &Arc<Message>, shards: u64) -> usize {
        let mut dropped = 0;
        for (i, link) in self.links.iter().enumerate() {
            if shards & (1u64 << i.min(63)) == 0 {
                continue;
            }
            if !(link.claim(link.capacity) && link.send_claimed(Command::Deliver(message.clone())))
            {
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

    /// Asks shard i to shed `counts[i]` connections with 1012, spread over the window. Never
    /// blocks; a shard whose inbox is full even for commands skips this round (the operator asks
    /// again while the counts stay unbalanced).
    pub(crate) fn shed(&self, counts: &[usize], over: Duration) {
        for (link, &count) in self.links.iter().zip(counts) {
            if count > 0 && !link.command(Command::Shed { count, over }) {
                tracing::warn!("shard inbox full; shed request skipped");
            }
        }
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
