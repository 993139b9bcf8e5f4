//! The gateway's pure parts as the fuzz crate (`fuzz/`) sees them: a small, explicit surface of
//! the codecs and rules that take untrusted bytes, so the rest of the library stays
//! crate-private. Each submodule re-exports only what the fuzz targets and properties call.

/// The per-connection access rules (`access.rs`).
pub mod access {
    pub use crate::access::{Sub, SubRefusal, check_sub};
}

/// JWT verification and topic rules (`auth.rs`).
pub mod auth {
    pub use crate::auth::{AuthError, Identity, JwtConfig, Verifier, anonymous_may_subscribe};
}

/// Shed arithmetic of the control plane (`control.rs`).
pub mod control {
    pub use crate::control::split_shed;
}

/// The message envelope (`envelope.rs`).
pub mod envelope {
    pub use crate::envelope::{Envelope, envelope_len, write_envelope};
}

/// RFC 6455 framing (`frame.rs`).
pub mod frame {
    pub use crate::frame::{
        ClientEvent, Fragments, MAX_CONTROL_PAYLOAD, ProtocolError, decode, encode, encode_close,
        encode_text_with, header_len,
    };
}

/// The HTTP upgrade (`handshake.rs`).
pub mod handshake {
    pub use crate::handshake::{
        Format, HandshakeConfig, Parsed, SUBPROTOCOL, UpgradeRequest, accept_response, parse,
        reject_response,
    };
}

/// The `volley.v1` ops and replies (`protocol.rs`).
pub mod protocol {
    pub use crate::protocol::{ClientOp, ErrorCode, error, parse_op, subscribed, unsubscribed};
}

/// Topic validation and matching (`topic.rs`, `topic_index.rs`).
pub mod topic {
    pub use crate::topic::{
        MAX_TOPIC_LEN, TopicError, is_wildcard, matches, validate_pattern, validate_subject,
    };
    pub use crate::topic_index::TopicIndex;
}
