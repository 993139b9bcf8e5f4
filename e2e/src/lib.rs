//! Helpers for Volley's end-to-end tests (the cluster tier lives in `tests/cluster.rs`).

pub mod crd;
pub mod poll;

pub use poll::{Timeout, eventually};
