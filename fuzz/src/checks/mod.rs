//! One module per fuzz target; each exposes `check(data: &[u8])`, which panics on a broken
//! invariant. Shared by the libFuzzer targets and the stable property tests.

pub mod config;
pub mod control;
pub mod envelope;
pub mod frame;
pub mod handshake;
pub mod input;
pub mod jwt;
pub mod ops;
pub mod topic;
