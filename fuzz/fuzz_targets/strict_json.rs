//! Differential: the normalizer's strict JSON scanner accepts exactly what serde_json
//! accepts (`kmswatch_fuzz::json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmswatch_fuzz::json::check(data));
