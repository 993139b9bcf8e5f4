//! A real server round trip after a core NATS publish, so an HTTP 202 means the NATS server
//! processed the message (not only that it sat in this process's socket buffer).
//!
//! `Client::flush` of async-nats 0.51 only waits until its buffer is written into the local
//! socket (no PING/PONG), and commands queued while it reconnects are sent after the reconnect.
//! So the gateway publishes a small marker to a subject of its own that it subscribes to, right
//! after the message, and waits for the marker to come back. A NATS server processes the
//! protocol operations of one connection in order, so when the marker is delivered back, the
//! message before it was processed too (nats-server `server/client.go` `readLoop`: one
//! goroutine per client connection hands what it reads to `parse` in `server/parser.go`, which
//! runs each PUB through `processInboundMsg`, delivery to the matching subscriptions included,
//! before it parses the next operation).
//!
//! Why not a request answered by `NoResponders` (cheaper by one subscription): any subscriber of
//! `>` on the account (a `nats sub '>'` while debugging, a tap) would make the server deliver the
//! request there instead of answering "no responders", and every publish would then time out.
//! The marker comes back whoever else listens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::Client;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

/// Markers sent and not yet back, by number; an entry is removed by whoever finishes first (the
/// marker coming back, or the publisher giving up).
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

/// The gateway's marker subject and the publishers waiting on it.
#[derive(Debug)]
pub(crate) struct Acks {
    subject: String,
    next: AtomicU64,
    waiting: Waiting,
}

/// Why a marker did not come back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AckError {
    /// The marker could not even be handed to the client (it is closing).
    #[error("the NATS client is closed")]
    Closed,
}

impl Acks {
    /// Subscribes to a subject of this process's own inbox (the subscription is made again by
    /// the client after each reconnect) and routes the markers that come back to their waiters.
    pub(crate) async fn start(client: &Client) -> Result<Arc<Acks>, async_nats::SubscribeError> {
        let subject = format!("{}.volley-ack", client.new_inbox());
        let mut markers = client.subscribe(subject.clone()).await?;
        let waiting: Waiting = Arc::default();
        let acks = Arc::new(Acks {
            subject,
            next: AtomicU64::new(0),
            waiting: waiting.clone(),
        });
        tokio::spawn(async move {
            while let Some(marker) = markers.next().await {
                let number = std::str::from_utf8(&marker.payload)
                    .ok()
                    .and_then(|n| n.parse::<u64>().ok());
                let waiter = number.and_then(|n| lock(&waiting).remove(&n));
                if let Some(waiter) = waiter {
                    // The publisher may have given up meanwhile: nothing to tell.
                    let _ = waiter.send(());
                }
            }
        });
        Ok(acks)
    }

    /// Sends a marker and waits for it to come back: everything this client published before
    /// the call has then been processed by the server. Cancel-safe: dropping the future forgets
    /// the marker. Bound it with a timeout; it waits as long as the server does not answer.
    pub(crate) async fn round_trip(&self, client: &Client) -> Result<(), AckError> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(number, tx);
        let _forget = Forget {
            waiting: &self.waiting,
            number,
        };
        client
            .publish(self.subject.clone(), number.to_string().into())
            .await
            .map_err(|_| AckError::Closed)?;
        rx.await.map_err(|_| AckError::Closed)
    }
}

/// Removes a marker's waiter when its publisher stops waiting (answered or not), so markers that
/// never come back (lost with a dead connection) do not pile up.
struct Forget<'a> {
    waiting: &'a Waiting,
    number: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.number);
    }
}

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}
