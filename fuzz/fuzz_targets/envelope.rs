//! libFuzzer entry point for the `envelope` invariants in `volley_fuzz::checks::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz::checks::envelope::check(data));
