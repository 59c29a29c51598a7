//! gzip and zip built from the input (`kmswatch_fuzz::container`), so the fuzzer reaches the
//! records inside them; a transparent wrapping must normalize exactly like its payload.
#![no_main]

use kmswatch_fuzz::{container, normalize_checked, normalizer, options, outcome};
use kmswatch_normalize::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let built = container::build(data);
    let n = normalizer(options(built.selector, Format::Auto));
    let wrapped = normalize_checked(&n, &built.bytes);
    if built.transparent && built.layers > 0 {
        let plain = normalize_checked(&n, &built.payload);
        assert_eq!(
            outcome(&wrapped),
            outcome(&plain),
            "{} container layers changed what the payload normalizes to",
            built.layers
        );
    }
});
