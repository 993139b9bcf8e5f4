//! libFuzzer entry point for the `control` invariants in `volley_fuzz::checks::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::control::check(data));
