//! The SQS message parser of the `aws_s3_sqs` source (`kmswatch_sources::s3event`): raw
//! bodies, and announced objects that must round-trip (`kmswatch_fuzz::s3`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kmswatch_fuzz::s3::check(data));
