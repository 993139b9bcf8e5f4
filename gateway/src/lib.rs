//! Volley gateway: holds client WebSocket connections in epoll shards and fans published
//! messages out to them with one encode per message and one vectored write per connection.
pub mod envelope;
pub mod protocol;
pub mod topic;
pub mod topic_index;
