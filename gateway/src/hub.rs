//! The control plane's path into the shards: per-shard inboxes of messages and commands, each
//! paired with a waker so a shard blocked in epoll notices new work.
//!
//! Wake-ups are coalesced: a sender wakes the shard only when no wake-up is already pending, so a
//! burst of messages costs one eventfd write, not one per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use bytes::Bytes;

use crate::message::Message;
use crate::metrics::Metrics;

/// Messages one shard may have waiting before publishers are told to back off. Bounds memory when
/// publishers outrun the shards.
const INBOX_CAPACITY: usize = 16 * 1024;

/// Work for a shard.
#[derive(Debug)]
pub enum Command {
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
}

/// The shard's end of its inbox.
#[derive(Debug)]
pub struct Inbox {
    rx: Receiver<Command>,
    wake_pending: Arc<AtomicBool>,
}

impl Inbox {
    /// Takes the next command without blocking. Call [`Inbox::arm`] before draining so a command
    /// sent during the drain still wakes the shard.
    pub fn try_next(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }

    /// Re-enables wake-ups; called by the shard right before it drains the inbox.
    pub fn arm(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }
}

/// The sending end of one shard's inbox.
#[derive(Debug)]
struct Link {
    tx: SyncSender<Command>,
    waker: Arc<mio::Waker>,
    wake_pending: Arc<AtomicBool>,
}

impl Link {
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            tracing::warn!(error = %e, "cannot wake shard");
        }
    }
}

/// Publishing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("the gateway is overloaded: a shard inbox is full")]
    Overloaded,
    #[error("the gateway is shutting down")]
    Closed,
    #[error("NATS is unavailable; the message was not published")]
    Unavailable,
}

/// Where the admin API (and later NATS) hands published messages: the shard hub, or another
/// engine's equivalent.
pub trait Publish: Send + Sync {
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError>;
}

/// Fans messages and commands out to every shard.
#[derive(Debug)]
pub struct Hub {
    links: Vec<Link>,
    metrics: Metrics,
}

/// Builds an inbox for one shard; the waker must be registered on that shard's `Poll`.
pub fn inbox(waker: Arc<mio::Waker>) -> (InboxSender, Inbox) {
    let (tx, rx) = mpsc::sync_channel(INBOX_CAPACITY);
    let wake_pending = Arc::new(AtomicBool::new(false));
    (
        InboxSender(Link {
            tx,
            waker,
            wake_pending: wake_pending.clone(),
        }),
        Inbox { rx, wake_pending },
    )
}

/// What [`Hub::new`] takes for each shard.
#[derive(Debug)]
pub struct InboxSender(Link);

impl Hub {
    pub fn new(senders: Vec<InboxSender>, metrics: Metrics) -> Hub {
        Hub {
            links: senders.into_iter().map(|s| s.0).collect(),
            metrics,
        }
    }

    /// Tells every shard to drain. Blocks only while an inbox is full, which a live shard empties
    /// on its next loop.
    pub fn drain(&self, over: Duration) {
        for link in &self.links {
            // A shard that already exited has nothing left to drain.
            let _ = link.tx.send(Command::Drain { over });
            link.wake();
        }
    }

    /// Hands an already framed message to the shards in `shards` (bit i = shard i). Returns how
    /// many shards could not take it because their inbox was full.
    pub fn deliver(&self, message: &Arc<Message>, shards: u64) -> usize {
        let mut dropped = 0;
        for (i, link) in self.links.iter().enumerate() {
            if shards & (1u64 << i.min(63)) == 0 {
                continue;
            }
            match link.tx.try_send(Command::Deliver(message.clone())) {
                Ok(()) => link.wake(),
                Err(_) => {
                    link.wake();
                    dropped += 1;
                }
            }
        }
        self.metrics.messages_published.inc();
        dropped
    }

    /// Asks shard i to shed `counts[i]` connections with 1012, spread over the window.
    pub fn shed(&self, counts: &[usize], over: Duration) {
        for (link, &count) in self.links.iter().zip(counts) {
            if count > 0 {
                let _ = link.tx.send(Command::Shed { count, over });
                link.wake();
            }
        }
    }

    pub fn shards(&self) -> usize {
        self.links.len()
    }
}

impl Publish for Hub {
    /// Hands a message to every shard; each delivers it to its own subscribers. The frame bytes are
    /// encoded once, by whichever shard needs them first.
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), PublishError> {
        let message = Message::new(topic, payload);
        for link in &self.links {
            match link.tx.try_send(Command::Deliver(message.clone())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    link.wake();
                    return Err(PublishError::Overloaded);
                }
                Err(TrySendError::Disconnected(_)) => return Err(PublishError::Closed),
            }
            link.wake();
        }
        self.metrics.messages_published.inc();
        Ok(())
    }
}
