//! riffle-server: Riffle's front ends over the engine, and their clients.
//!
//! - [`daemon`]: `riffled`'s network side, thread-per-core (tokio-uring per core, epoll
//!   fallback), serving the binary protocol ([`protocol`], specified in
//!   `server/PROTOCOL.md`) through [`service`], with push fan-out subscriptions.
//! - [`kinesis`]: the Kinesis Data Streams HTTP API (AWS JSON 1.1 and CBOR, the
//!   SubscribeToShard event stream, [`sigv4`] verification) for boto3, the AWS CLI and SDKs.
//! - [`client`]: an async client (pipelining, subscriptions, retries) and a blocking one;
//!   the `riffle` CLI is built on the blocking one.
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
