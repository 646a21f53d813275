//! riffle-server: the thread-per-core io_uring daemon `riffled`, the binary protocol, the
//! Rust client and the `riffle` CLI.
//!
//! Built so far: the protocol codec ([`protocol`]), specified in `server/PROTOCOL.md`, and
//! the transport-independent request dispatcher ([`service`]). The daemon, client and CLI
//! are in progress (issue 4); the engine (`riffle-engine`) is usable on its own today.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod kinesis;
pub mod protocol;
pub mod service;
pub mod sigv4;
