//! Invariants of the gateway's pure parsers and encoders, driven by arbitrary bytes.
//!
//! Each `checks::<target>::check(data)` interprets `data` (partly as raw input, partly as a
//! recipe for structured input) and panics when an invariant breaks. The libFuzzer targets in
//! `fuzz_targets/` call them, and so do the stable property tests in
//! `gateway/tests/properties.rs` (which include `src/checks/` by path), so both test the same
//! rules.

pub mod checks;
