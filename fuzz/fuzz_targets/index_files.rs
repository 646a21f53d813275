//! Arbitrary bytes as one index file (offset or time index) beside a valid log.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riffle_engine::fuzzing::index_files(data));
