//! libFuzzer entry point for the `topic` invariants in `volley_fuzz::checks::topic`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::topic::check(data));
