//! libFuzzer entry point for the `ops` invariants in `volley_fuzz::checks::ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::ops::check(data));
