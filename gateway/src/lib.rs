//! Volley gateway: holds client WebSocket connections in epoll shards and fans published
//! messages out to them with one encode per message and one vectored write per connection.

pub mod access;
pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod control;
pub mod engine_tokio;
pub mod envelope;
pub mod frame;
pub mod gateway;
pub mod handshake;
pub mod history;
pub mod hub;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod pace;
pub mod protocol;
pub mod rate;
pub mod secret;
pub mod session;
pub mod shard;
pub mod state;
pub mod topic;
pub mod topic_index;
