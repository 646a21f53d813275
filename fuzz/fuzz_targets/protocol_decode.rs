//! The binary protocol's decoders (hellos, frames, every request and response) on any bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riffle_server::fuzzing::protocol_decode(data));
