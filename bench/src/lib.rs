//! # riffle-bench
//!
//! Riffle's load and latency harness as a library: record payloads that check themselves
//! ([`payload`]), key distributions ([`keys`]), the open-loop schedule and its
//! coordinated-omission correction ([`schedule`]), HDR histograms ([`stats`]), the systems
//! under test ([`target`]), the runner ([`run`]), the reports ([`report`]) and the machine's own latency floor to
//! quote them against ([`floor`]). The
//! `riffle-bench` binary is its command line; `bench/README.md` is the manual.

#![warn(missing_docs)]

pub mod floor;
pub mod keys;
pub mod payload;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod target;
