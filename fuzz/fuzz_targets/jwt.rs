//! libFuzzer entry point for the `jwt` invariants in `volley_fuzz::checks::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::jwt::check(data));
