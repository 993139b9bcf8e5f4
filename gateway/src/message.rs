//! A published message and its WebSocket frames, encoded at most once per wire format and then
//! shared by reference with every subscriber on every shard.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::envelope::Envelope;
use crate::frame;
use crate::handshake::Format;

#[derive(Debug)]
pub(crate) struct Message {
    topic: Box<str>,
    payload: Bytes,
    /// The JetStream stream sequence, for topics with history.
    seq: Option<u64>,
    // Lazily built: a gateway whose clients all use one format never encodes the other.
    envelope: OnceLock<Bytes>,
    raw: OnceLock<Bytes>,
}

impl Message {
    pub(crate) fn new(topic: &str, payload: Bytes) -> Arc<Message> {
        Message::with_seq(topic, payload, None)
    }

    /// A message with its stream sequence, which the envelope then carries as `"seq"`.
    pub(crate) fn with_seq(topic: &str, payload: Bytes, seq: Option<u64>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload,
            seq,
            envelope: OnceLock::new(),
            raw: OnceLock::new(),
        })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn seq(&self) -> Option<u64> {
        self.seq
    }

    /// The longest frame this message has in any wire format (the envelope: the payload inlined,
    /// escaped or base64-encoded, plus the topic). Encodes the envelope, which is kept for the
    /// shards to reuse.
    pub(crate) fn largest_frame_len(&self) -> usize {
        let raw = self.payload.len() + frame::header_len(self.payload.len());
        self.frame(Format::Envelope).len().max(raw)
    }

    /// The complete frame for `format`, encoded on first use.
    pub(crate) fn frame(&self, format: Format) -> &Bytes {
        match format {
            Format::Envelope => self.envelope.get_or_init(|| {
                let envelope = Envelope::new(&self.topic, &self.payload, self.seq);
                frame::encode_text_with(envelope.len(), |out| envelope.write_to(out))
            }),
            Format::Raw => self.raw.get_or_init(|| {
                let kind = if std::str::from_utf8(&self.payload).is_ok() {
                    Data::Text
                } else {
                    Data::Binary
                };
                frame::encode(OpCode::Data(kind), &self.payload)
            }),
        }
    }
}

/// [`Message::largest_frame_len`] without building the message: what a publish of `payload` to
/// `topic` would put in a subscriber's queue at most.
pub(crate) fn largest_frame_len(topic: &str, payload: &[u8]) -> usize {
    let envelope = crate::envelope::envelope_len(topic, payload, None);
    let raw = payload.len() + frame::header_len(payload.len());
    (envelope + frame::header_len(envelope)).max(raw)
}

#[cfg(test)]
mod tests;
