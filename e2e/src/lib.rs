//! Helpers for Volley's end-to-end tests (the cluster tier lives in `tests/cluster.rs`).

pub mod poll;

pub use poll::{Timeout, eventually};
