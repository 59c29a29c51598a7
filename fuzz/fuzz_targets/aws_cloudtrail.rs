//! `Normalizer::normalize_bytes` with `--format aws_cloudtrail`:
//! AWS CloudTrail (any delivery shape, KMS EventBridge events).
//! The input is the buffer as a source would hand it over, with the default budgets.
#![no_main]

use kmswatch_fuzz::{normalize_checked, normalizer, options};
use kmswatch_normalize::Format;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    normalize_checked(&normalizer(options(0, Format::AwsCloudtrail)), data);
});
