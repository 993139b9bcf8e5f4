//! libFuzzer entry point for the `handshake` invariants in `volley_fuzz::checks::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::handshake::check(data));
