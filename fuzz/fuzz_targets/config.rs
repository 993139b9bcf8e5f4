//! libFuzzer entry point for the `config` invariants in `volley_fuzz::checks::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::config::check(data));
