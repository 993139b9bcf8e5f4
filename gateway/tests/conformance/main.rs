//! One conformance suite for both engines. The epoll shards and the tokio baseline drive the same
//! sans-IO `Session`, so they must behave the same on the wire: every case here is an
//! `async fn(Engine)` run once per engine (`both_engines!`), over real sockets with real
//! WebSocket clients against in-process gateways. Engine-specific behaviour (shard batching,
//! per-IP limits, NATS, the process-level floods) stays in the other test files.

#[path = "../support/mod.rs"]
mod support;

/// Turns each listed case into a module with an `epoll` and a `tokio` test.
macro_rules! both_engines {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use crate::support::Engine;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn epoll() {
                    super::$case(Engine::Epoll).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokio() {
                    super::$case(Engine::Tokio).await;
                }
            }
        )*
    };
}

mod access;
mod delivery;
mod lifecycle;
mod liveness;
