//! volley-bench: a load and benchmark tool for Volley gateways. Opens many WebSocket clients
//! over several child processes, publishes at a fixed rate, and reports delivery, loss,
//! latency and what the server spent (memory, CPU) from `/proc`.

pub mod accounting;
pub mod child;
pub mod fleet;
pub mod hist;
pub mod http;
pub mod interest;
pub mod ipc;
pub mod natsd;
pub mod passes;
pub mod payload;
pub mod plan;
pub mod procfs;
pub mod publisher;
pub mod rebalance;
pub mod reference;
pub mod replay;
pub mod report;
pub mod run;
pub mod server;
pub mod soak;
pub mod token;
pub mod trend;
pub mod wire;
pub mod zipf;

/// Errors of the tool's library parts.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Proc(#[from] procfs::ProcError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} did not start: {1}")]
    Start(&'static str, String),
}

/// Wall-clock nanoseconds since the Unix epoch: comparable across the processes of one machine,
/// which is what send-to-receive latency needs.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
