//! A whole server connection (handshake, frames, the engine behind) fed arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riffle_server::fuzzing::connection(data));
