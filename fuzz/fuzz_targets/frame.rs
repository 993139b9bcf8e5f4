//! libFuzzer entry point for the `frame` invariants in `volley_fuzz::checks::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::frame::check(data));
