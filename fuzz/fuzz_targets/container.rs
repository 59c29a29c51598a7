//! gzip and zip built from the input (`kmswatch_fuzz::container`), so the fuzzer reaches the
//! records inside them; a transparent wrapping must normalize exactly like its payload, and
//! one deeper than the container depth cap must be one `too_deep` rejection and nothing else.
#![no_main]

use kmswatch_fuzz::{container, normalize_checked, normalizer, options, outcome};
use kmswatch_normalize::options::DEFAULT_MAX_CONTAINER_DEPTH;
use kmswatch_normalize::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let built = container::build(data);
    let n = normalizer(options(built.selector, Format::Auto));
    let wrapped = normalize_checked(&n, &built.bytes);
    // A transparent program keeps the default options (selector 0), so the default cap holds.
    if built.transparent && built.layers > DEFAULT_MAX_CONTAINER_DEPTH {
        let (events, summary) = outcome(&wrapped);
        assert!(
            events.is_empty(),
            "{} layers: events past the depth cap",
            built.layers
        );
        assert_eq!(
            summary
                .rejected
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect::<Vec<_>>(),
            [("too_deep", 1)],
            "{} layers past the depth cap of {DEFAULT_MAX_CONTAINER_DEPTH}: {summary:?}",
            built.layers
        );
    } else if built.transparent && built.layers > 0 {
        let plain = normalize_checked(&n, &built.payload);
        assert_eq!(
            outcome(&wrapped),
            outcome(&plain),
            "{} container layers changed what the payload normalizes to",
            built.layers
        );
    }
});
