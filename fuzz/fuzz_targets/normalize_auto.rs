//! `Normalizer::normalize_bytes` with format detection: containers, every envelope, every
//! provider. The first byte picks the budgets (`kmswatch_fuzz::options`), the rest is the
//! buffer as a source would hand it over.
#![no_main]

use kmswatch_fuzz::{normalize_checked, normalizer, options};
use kmswatch_normalize::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (selector, bytes) = match data.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, data),
    };
    normalize_checked(&normalizer(options(selector, Format::Auto)), bytes);
});
