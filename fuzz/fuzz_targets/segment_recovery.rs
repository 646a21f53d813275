//! Arbitrary bytes as a segment file, opened and recovered, then read back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riffle_engine::fuzzing::segment_recovery(data));
