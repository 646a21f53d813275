//! Arbitrary bytes as a sequence of engine operations, faults, power losses and reopens on a
//! simulated disk, checked against a model of Kinesis semantics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    riffle_engine::fuzzing::simulation::run_bytes(data);
});
