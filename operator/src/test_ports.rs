//! Loopback ports for the nats-servers unit tests start (test builds only).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A free loopback port for a server, below the kernel's ephemeral range (Linux hands out
/// 32768-60999 by default to `bind(0)` and to outgoing connections). A port taken with `bind(0)`
/// and released for the server to bind could meanwhile be handed to another test's socket (the
/// tests of a binary run in parallel): the server then failed to start, or a test reached another
/// test's server. Ports are taken in turn from a per-process start, so the tests of one binary
/// never pick the same one, and the bind check skips any in use. (Same scheme as the gateway's
/// `tests/support/nats.rs`.)
pub(crate) fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("a port under 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port under the ephemeral range");
}
