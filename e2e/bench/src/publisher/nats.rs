//! Publishing straight to NATS, as any cluster publisher does: `PUB <prefix>.<topic>`. Messages
//! are confirmed in batches: `confirm` sends a marker to the publisher's own inbox on the same
//! connection, and since the server handles one connection's messages in order, the marker
//! coming back proves the server took every message before it. Flushing alone would only prove
//! the bytes left this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures_util::StreamExt as _;

use super::Publisher;
use crate::BenchError;

#[cfg(test)]
mod tests;

/// Longest wait for a confirmation round trip (on loopback well under a millisecond), and for
/// the client to take a message: while it reconnects its command queue fills up and `publish`
/// would wait for the server indefinitely.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS subject a gateway with subject prefix `prefix` delivers to topic `topic` from.
pub fn subject(prefix: &str, topic: &str) -> String {
    format!("{prefix}.{topic}")
}

/// One NATS connection publishing benchmark messages.
pub struct NatsPublisher {
    client: Client,
    prefix: String,
    /// This connection's own inbox, where confirmation markers come back.
    inbox: String,
    echo: Subscriber,
    markers: u64,
    /// Disconnects so far (from the client's event callback): messages written before one may
    /// be lost even when a later marker comes back over the new connection.
    disconnects: Arc<AtomicU64>,
    disconnects_seen: u64,
    timeout: Duration,
}

impl std::fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPublisher")
            .field("prefix", &self.prefix)
            .field("inbox", &self.inbox)
            .field("markers", &self.markers)
            .finish_non_exhaustive()
    }
}

fn nats_error(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Nats(format!("{what}: {e}"))
}

impl NatsPublisher {
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsPublisher, BenchError> {
        let disconnects = Arc::new(AtomicU64::new(0));
        let counter = disconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name("volley-bench publisher")
            .event_callback(move |event| {
                let counter = counter.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| nats_error(&format!("connect to {url}"), e))?;
        let inbox = client.new_inbox();
        // Subscribed before any marker is sent on this connection, so the server has the
        // subscription by the time the first marker arrives.
        let echo = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| nats_error("subscribe to own inbox", e))?;
        Ok(NatsPublisher {
            client,
            prefix: prefix.to_owned(),
            inbox,
            echo,
            markers: 0,
            disconnects,
            disconnects_seen: 0,
            timeout: TIMEOUT,
        })
    }

    /// Another bound than [`TIMEOUT`] for a confirmation or a blocked publish.
    pub fn with_timeout(mut self, timeout: Duration) -> NatsPublisher {
        self.timeout = timeout;
        self
    }

    /// Sends the next marker and waits until it comes back.
    async fn round_trip(&mut self) -> Result<(), BenchError> {
        self.markers += 1;
        let marker = self.markers.to_string();
        self.client
            .publish(self.inbox.clone(), marker.clone().into())
            .await
            .map_err(|e| nats_error("publish marker", e))?;
        self.client
            .flush()
            .await
            .map_err(|e| nats_error("flush", e))?;
        if self.await_marker(marker.as_bytes()).await {
            Ok(())
        } else {
            Err(BenchError::Nats("own inbox subscription ended".into()))
        }
    }

    /// Waits for marker `marker` on the inbox, skipping older ones a timed-out confirm left.
    async fn await_marker(&mut self, marker: &[u8]) -> bool {
        while let Some(message) = self.echo.next().await {
            if message.payload.as_ref() == marker {
                return true;
            }
        }
        false
    }
}

impl Publisher for NatsPublisher {
    async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<bool, BenchError> {
        // No flush here: the client writes as soon as it can, and `confirm` settles a batch.
        let queued = self
            .client
            .publish(subject(&self.prefix, topic), payload.to_vec().into());
        tokio::time::timeout(self.timeout, queued)
            .await
            .map_err(|_| BenchError::Nats(format!("publish blocked for {:?}", self.timeout)))?
            .map_err(|e| nats_error("publish", e))?;
        Ok(true)
    }

    async fn confirm(&mut self) -> Result<(), BenchError> {
        let timeout = self.timeout;
        let round_trip = tokio::time::timeout(timeout, self.round_trip()).await;
        let disconnects = self.disconnects.load(Ordering::Relaxed);
        let reconnected = disconnects != std::mem::replace(&mut self.disconnects_seen, disconnects);
        match round_trip {
            Err(_) => Err(BenchError::Nats(format!(
                "no confirmation from the server within {timeout:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) if reconnected => Err(BenchError::Nats(
                "the connection dropped while messages were in flight".into(),
            )),
            Ok(Ok(())) => Ok(()),
        }
    }
}
