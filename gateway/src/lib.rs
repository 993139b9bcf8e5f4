//! Volley gateway: holds client WebSocket connections in epoll shards and fans published
//! messages out to them with one encode per message and one vectored write per connection.
//!
//! Modules are crate-private unless something outside needs them: the binary and the tests start
//! gateways (`gateway`, `config`, `admin`'s limits), and the fuzz crate reaches the pure codecs
//! through [`fuzzing`]. `unreachable_pub` keeps a `pub` item from claiming more than that.
#![deny(unreachable_pub)]

pub(crate) mod access;
pub mod admin;
/// Public while `config::Config` names its types (`JwtConfig`).
pub mod auth;
pub(crate) mod capacity;
pub mod config;
pub(crate) mod conn;
pub(crate) mod control;
pub(crate) mod engine_tokio;
pub(crate) mod envelope;
pub(crate) mod frame;
pub mod fuzzing;
pub mod gateway;
pub(crate) mod handshake;
/// Public for `config::Config` (it names `HistoryConfig`) and the client-side
/// [`history::positions::Positions`] tracker the example client uses.
pub mod history;
pub(crate) mod hub;
pub(crate) mod message;
pub(crate) mod metrics;
pub(crate) mod nats;
pub(crate) mod outbox;
pub(crate) mod pace;
pub(crate) mod protocol;
pub(crate) mod rate;
/// Public while `config::Config` names its types (`Secret`).
pub mod secret;
pub(crate) mod session;
pub(crate) mod shard;
pub(crate) mod topic;
pub(crate) mod topic_index;
