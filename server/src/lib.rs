//! riffle-server: the thread-per-core io_uring daemon `riffled`, the binary protocol, the
//! Rust client and the `riffle` CLI. Not implemented yet; the engine (`riffle-engine`) is
//! usable on its own today. See the project README for status.
#![forbid(unsafe_code)]
