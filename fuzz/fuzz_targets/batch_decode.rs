//! Arbitrary bytes into the record batch decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riffle_engine::fuzzing::batch_decode(data));
