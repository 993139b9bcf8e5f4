//! A published message and its WebSocket frames, encoded at most once per wire format and then
//! shared by reference with every subscriber on every shard.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::envelope::Envelope;
use crate::frame;
use crate::handshake::Format;

#[derive(Debug)]
pub struct Message {
    topic: Box<str>,
    payload: Bytes,
    // Lazily built: a gateway whose clients all use one format never encodes the other.
    envelope: OnceLock<Bytes>,
    raw: OnceLock<Bytes>,
}

impl Message {
    pub fn new(topic: &str, payload: Bytes) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload,
            envelope: OnceLock::new(),
            raw: OnceLock::new(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The complete frame for `format`, encoded on first use.
    pub fn frame(&self, format: Format) -> &Bytes {
        match format {
            Format::Envelope => self.envelope.get_or_init(|| {
                let envelope = Envelope::new(&self.topic, &self.payload, None);
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
