//! # riffle-engine
//!
//! The storage engine of Riffle, a durable sharded streaming log with the semantics of
//! Amazon Kinesis Data Streams. No networking: embed it behind any front end.
//!
//! **Start with [`Engine`]**: streams of shards with Kinesis semantics (create, put,
//! iterators, get, split/merge, retention, limits, consumers), in one data directory. The
//! rest of this page describes the layer below it, one shard's log.
//!
//! ## Architecture
//!
//! ```text
//!  producers ──append──▶ ShardLog ──(dirty queue)──▶ CommitGroup thread
//!                          │  open batch                 │ one write + one fdatasync per
//!                          │                             │ dirty segment per cycle
//!                          ▼                             ▼ (io_uring or std)
//!  readers ◀──Bytes── Segment mmap ◀── durable watermark published, waiters acked
//! ```
//!
//! - A [`ShardLog`] is a directory of segments (`<base>.log` + `.idx` + `.tix`). Records are
//!   appended in [batches](batch) whose bytes are the same on disk and on the wire.
//! - A [`CommitGroup`] owns a thread that commits the appends of its logs in cycles: group
//!   commit across producers and across shards ([`group_commit`]). Under `sync`, a cycle
//!   syncs only the group's [`journal`]; a background thread syncs the segments each time
//!   one of the journal's two halves fills.
//! - [`io::sim`] is a simulated disk (power loss, torn writes, failing I/O) that the
//!   engine's crash tests and the `differential` fuzz target run on.
//! - Reads return [`bytes::Bytes`] that borrow the segment's memory map (no copy), bounded
//!   by the durable watermark, with no lock.
//! - Opening a log recovers it: the active segment's torn tail is cut, indexes rebuilt
//!   (module `recovery`).
//!
//! ## Glossary
//! - **position**: a record's number within its shard, from 0.
//! - **file offset**: a byte within a segment file. Never a bare "offset".
//! - **durable**: acknowledged and readable, under the [`Durability`] mode in force.
//!
//! ## Example
//! ```
//! use riffle_engine::{CommitGroup, CommitConfig, LogConfig, Record, ShardLog};
//! let dir = tempfile::tempdir()?;
//! let group = CommitGroup::start(CommitConfig::default())?;
//! let log = ShardLog::open(dir.path(), LogConfig::default(), &group)?;
//! let position = log.append_wait(&[Record { partition_key: b"k", explicit_hash_key: None, data: b"hi" }])?;
//! let read = log.read(position, 1 << 20)?.expect("durable");
//! for batch in riffle_engine::batch::split_batches(&read.bytes) {
//!     let (_, bytes) = batch?;
//!     for record in riffle_engine::batch::RecordIter::new(bytes)? {
//!         assert_eq!(record?.data, b"hi");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod catalog;
pub mod clock;
pub mod constants;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod group_commit;
#[doc(hidden)]
pub mod handoff;
mod index;
pub mod io;
pub mod journal;
pub mod limits;
mod mmap;
pub mod prepare;
mod recovery;
mod reshard;
pub mod routing;
pub mod segment;
pub mod sequence;
pub mod shard_log;
mod sync;
pub mod token;
pub mod validate;
#[doc(hidden)]
pub mod watermark;

pub use batch::{Record, RecordView};
pub use catalog::{ConsumerStatus, StreamMode, StreamStatus};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::types::*;
pub use engine::{Engine, EngineConfig, PendingPutRecord, PendingPutRecords};
pub use error::{Error, Result};
pub use group_commit::{CommitConfig, CommitGroup, Durability};
pub use io::IoBackend;
pub use limits::LimitsConfig;
pub use segment::SegmentRead;
pub use sequence::SequenceNumber;
pub use shard_log::{AppendTicket, DurableBeyond, LogConfig, ShardLog};
