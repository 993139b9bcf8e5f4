//! Parent ↔ child messages, one JSON object per line over the child's stdin/stdout.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::accounting::Tallies;
use crate::hist::Histogram;
use crate::plan::Shape;

/// Parent → child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Connect(ConnectSpec),
    Report,
    Exit,
}

/// Which connections a child opens and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectSpec {
    pub server: SocketAddr,
    /// Connection indices `first..first+count` of the whole run.
    pub first: usize,
    pub count: usize,
    pub shape: Shape,
    /// Source addresses to rotate over (127.0.0.2 onwards).
    pub sources: usize,
    /// Connects in flight at once in this child.
    pub inflight: usize,
    /// Extra attempts after a failed connect or upgrade.
    pub retries: u32,
    pub timeout_ms: u64,
    /// HS256 secret to sign each per-user connection's token with (`sub` = its index).
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Ask for `format=raw` frames (the payload alone) instead of the envelope.
    #[serde(default)]
    pub raw: bool,
}

/// Child → parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Connected(ConnectOutcome),
    Report(ChildReport),
    Error { message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectOutcome {
    pub ok: u64,
    /// Indices that never upgraded, after all retries.
    pub failed: Vec<usize>,
    pub retries: u64,
    /// Per connection, first attempt to 101, microseconds.
    pub connect_us: Histogram,
    pub first_start_ns: u64,
    pub last_done_ns: u64,
}

impl ConnectOutcome {
    pub fn merge(&mut self, o: &ConnectOutcome) {
        self.ok += o.ok;
        self.failed.extend_from_slice(&o.failed);
        self.retries += o.retries;
        self.connect_us.merge(&o.connect_us);
        self.first_start_ns = match (self.first_start_ns, o.first_start_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_done_ns = self.last_done_ns.max(o.last_done_ns);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    pub tallies: Tallies,
    /// Connections the server closed (or that failed) after the upgrade.
    pub closed: u64,
    /// Data frames without a benchmark payload (replies, other traffic).
    pub unparsed: u64,
}
