//! The durable catalog: streams, shards, lineage, consumers, retention, tags.
//!
//! The whole catalog is one small file, `<data>/catalog`, replaced atomically on every
//! change. It is metadata only (a 10,000-shard stream is about 2 MB), and changes are rare
//! next to appends, so rewriting it whole keeps every change trivially atomic.
//!
//! # File format
//!
//! | offset | width | field     | meaning                                      |
//! |-------:|------:|-----------|----------------------------------------------|
//! | 0      | 8     | `magic`   | the bytes `RIFFLCAT`                         |
//! | 8      | 4     | `version` | `1`, little-endian                           |
//! | 12     | 4     | `crc`     | CRC-32 of the body, little-endian            |
//! | 16     | 8     | `length`  | body length in bytes, little-endian          |
//! | 24     | ...   | body      | the [`Catalog`] as JSON                      |
//!
//! # Commit protocol (a rename-driven state machine)
//!
//! Write `catalog.tmp` whole, `fdatasync` it, rename it over `catalog`, `fsync` the
//! directory. A crash before the rename leaves the old catalog (and a `catalog.tmp`,
//! deleted at load); a crash after it leaves the new one. The loader never sees a mix, and
//! a damaged `catalog` is an error, never silently replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{self, DataFile};

const MAGIC: [u8; 8] = *b"RIFFLCAT";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 24;
/// Bound on the catalog body read from disk: far above any real catalog (10,000 shards in
/// each of hundreds of streams), far below what would hurt to allocate.
pub const CATALOG_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Name of the catalog file in the data directory.
pub const CATALOG_FILE: &str = "catalog";
const CATALOG_TMP: &str = "catalog.tmp";

/// Everything the engine knows about its streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Incremented by every commit.
    pub generation: u64,
    /// Epoch for the next created stream (a stream's incarnation: a stream deleted and
    /// created again under the same name gets a new epoch, so that sequence numbers and
    /// iterators of the old one are recognised as foreign).
    pub next_stream_epoch: u32,
    /// Key of the MACs on shard iterators and paging tokens (hex), made at first open so
    /// that tokens survive a restart.
    #[serde(default)]
    pub token_key: String,
    /// Every stream, whatever its status, keyed by name.
    pub streams: BTreeMap<String, StreamMeta>,
}

/// `StreamStatus` of Kinesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatus {
    /// `CREATING`: just created; it shows no shards and takes no records until `ACTIVE`.
    Creating,
    /// `ACTIVE`: readable, writable, and open to control-plane changes.
    Active,
    /// `UPDATING`: a reshard or mode change is in progress; reads and writes go on.
    Updating,
    /// `DELETING`: being deleted; the stream disappears when the deletion completes.
    Deleting,
}

impl StreamStatus {
    /// The Kinesis spelling (`ACTIVE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

/// Capacity mode (`StreamModeDetails.StreamMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMode {
    /// `PROVISIONED`: the caller sets the shard count (SplitShard, MergeShards, UpdateShardCount).
    Provisioned,
    /// `ON_DEMAND`: the service owns the shard count; explicit resharding is refused.
    OnDemand,
}

impl StreamMode {
    /// The Kinesis spelling (`PROVISIONED`, `ON_DEMAND`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

/// One stream as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// The stream name (also its key in [`Catalog::streams`]).
    pub name: String,
    /// Incarnation number, in every sequence number and token of the stream.
    pub epoch: u32,
    /// Creation time, ms since the Unix epoch (`StreamCreationTimestamp`).
    pub created_ms: u64,
    /// The stream's current status.
    pub status: StreamStatus,
    /// When the transitional `status` (CREATING, UPDATING, DELETING) ends.
    #[serde(default)]
    pub status_due_ms: Option<u64>,
    /// The capacity mode.
    pub mode: StreamMode,
    /// Retention period in hours (24..=8760).
    pub retention_hours: u32,
    /// Records that arrived before this instant are never returned, whatever the retention:
    /// raising the retention does not bring back what had already expired.
    #[serde(default)]
    pub trim_floor_ms: u64,
    /// Index the next new shard gets (indexes are never reused).
    pub next_shard_index: u32,
    /// Every shard that has not expired, open or closed, in index order.
    pub shards: Vec<ShardMeta>,
    /// The stream's tags, key to value.
    pub tags: BTreeMap<String, String>,
    /// Registered enhanced fan-out consumers, DELETING ones until their removal.
    pub consumers: Vec<ConsumerMeta>,
    /// Times of the `UpdateShardCount` calls of the last 24 hours (at most 10 allowed).
    #[serde(default)]
    pub shard_count_updates_ms: Vec<u64>,
    /// Times of the capacity-mode switches of the last 24 hours (at most 2 allowed).
    #[serde(default)]
    pub mode_switches_ms: Vec<u64>,
}

/// One shard as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Index within the stream (`shardId-` + 12 digits); allocated in order, never reused.
    pub index: u32,
    /// The shard this one was split from, or the first parent (`ShardToMerge`) of a merge.
    pub parent: Option<u32>,
    /// The second parent (`AdjacentShardToMerge`) if a merge created this shard.
    pub adjacent_parent: Option<u32>,
    #[serde(with = "u128_string")]
    /// Lowest hash key the shard covers (inclusive).
    pub starting_hash_key: u128,
    #[serde(with = "u128_string")]
    /// Highest hash key the shard covers (inclusive).
    pub ending_hash_key: u128,
    /// When the shard opened.
    pub created_ms: u64,
    /// Set when a split or merge closed the shard.
    pub closed: Option<ClosedShard>,
}

/// How a shard was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedShard {
    /// When the split or merge closed the shard, ms since the Unix epoch.
    pub closed_ms: u64,
    /// One past the last record position: the log held exactly `end_position` records when
    /// it was sealed.
    pub end_position: u64,
}

/// `ConsumerStatus` of Kinesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumerStatus {
    /// `CREATING`: being registered; it cannot read until it turns `ACTIVE`.
    Creating,
    /// `ACTIVE`: registered and able to read.
    Active,
    /// `DELETING`: being deregistered; removed when the transition ends.
    Deleting,
}

impl ConsumerStatus {
    /// The Kinesis spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
            ConsumerStatus::Deleting => "DELETING",
        }
    }
}

/// A registered enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    /// Consumer name, unique within its stream.
    pub name: String,
    /// Registration time, ms since the Unix epoch (its whole seconds end the consumer ARN).
    pub created_ms: u64,
    /// The consumer's current status.
    pub status: ConsumerStatus,
    /// When the transitional status (CREATING, DELETING) ends.
    #[serde(default)]
    pub status_due_ms: Option<u64>,
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A step of the commit protocol, named so that tests can fail each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// Writing `catalog.tmp` (an injected failure leaves half of it written).
    WriteTemp,
    /// `fdatasync` of `catalog.tmp`.
    SyncTemp,
    /// Renaming `catalog.tmp` over `catalog`.
    Rename,
    /// `fsync` of the data directory after the rename.
    SyncDir,
}

/// Reads and atomically replaces the catalog file in a data directory.
#[derive(Debug)]
pub struct CatalogStore {
    dir: PathBuf,
    /// Test hook: fail (as if the process died) at this step of the next commits.
    fail_at: Option<CommitStep>,
}

impl CatalogStore {
    /// A store for the catalog of data directory `dir`; touches no file.
    pub fn new(dir: &Path) -> Self {
        CatalogStore { dir: dir.to_path_buf(), fail_at: None }
    }

    /// Makes every later commit stop at `step`, leaving the files as a crash there would.
    #[doc(hidden)]
    pub fn fail_at(&mut self, step: Option<CommitStep>) {
        self.fail_at = step;
    }

    fn path(&self) -> PathBuf {
        self.dir.join(CATALOG_FILE)
    }

    /// Loads the catalog; an absent file is an empty catalog. A leftover `catalog.tmp` (a
    /// commit that did not reach its rename) is removed.
    pub fn load(&self) -> Result<Catalog> {
        io::remove_file(&self.dir.join(CATALOG_TMP))?;
        let path = self.path();
        let file = match DataFile::open(&path) {
            Ok(f) => f,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Catalog::default());
            }
            Err(e) => return Err(e),
        };
        let len = file.len()?;
        if len < HEADER_BYTES as u64 {
            return Err(Error::corrupt(&path, 0, "catalog shorter than its header"));
        }
        let mut header = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut header, 0)?;
        if header[0..8] != MAGIC {
            return Err(Error::corrupt(&path, 0, "bad catalog magic"));
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != VERSION {
            return Err(Error::corrupt(&path, 8, format!("unsupported catalog version {version}")));
        }
        let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let mut length = [0u8; 8];
        length.copy_from_slice(&header[16..24]);
        let body_len = u64::from_le_bytes(length);
        if body_len > CATALOG_BYTES_MAX || body_len != len - HEADER_BYTES as u64 {
            return Err(Error::corrupt(
                &path,
                16,
                format!("catalog body length {body_len} does not match the file"),
            ));
        }
        let mut body = vec![0u8; body_len as usize];
        file.read_exact_at(&mut body, HEADER_BYTES as u64)?;
        if crc32fast::hash(&body) != crc {
            return Err(Error::corrupt(&path, HEADER_BYTES as u64, "catalog checksum mismatch"));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Error::corrupt(&path, HEADER_BYTES as u64, format!("catalog does not parse: {e}"))
        })
    }

    /// Durably replaces the catalog with `catalog`.
    pub fn commit(&self, catalog: &Catalog) -> Result<()> {
        let body = serde_json::to_vec(catalog)
            .map_err(|e| Error::Config(format!("catalog encoding: {e}")))?;
        let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&body);
        let tmp = self.dir.join(CATALOG_TMP);
        io::remove_file(&tmp)?;
        let file = DataFile::create_new(&tmp)?;
        if self.fail_at == Some(CommitStep::WriteTemp) {
            // A crash mid-write: half the bytes reached the file.
            file.write_all_at(&bytes[..bytes.len() / 2], 0)?;
            return Err(injected(CommitStep::WriteTemp));
        }
        file.write_all_at(&bytes, 0)?;
        if self.fail_at == Some(CommitStep::SyncTemp) {
            return Err(injected(CommitStep::SyncTemp));
        }
        file.sync_data()?;
        if self.fail_at == Some(CommitStep::Rename) {
            return Err(injected(CommitStep::Rename));
        }
        io::rename(&tmp, &self.path())?;
        if self.fail_at == Some(CommitStep::SyncDir) {
            return Err(injected(CommitStep::SyncDir));
        }
        io::sync_dir(&self.dir)
    }
}

fn injected(step: CommitStep) -> Error {
    Error::io("catalog", std::io::Error::other(format!("injected failure at {step:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(generation: u64) -> Catalog {
        let mut c = Catalog { generation, next_stream_epoch: 2, ..Catalog::default() };
        c.streams.insert(
            "orders".into(),
            StreamMeta {
                name: "orders".into(),
                epoch: 1,
                created_ms: 1_700_000_000_000,
                status: StreamStatus::Active,
                mode: StreamMode::Provisioned,
                retention_hours: 24,
                next_shard_index: 2,
                shards: vec![
                    ShardMeta {
                        index: 0,
                        parent: None,
                        adjacent_parent: None,
                        starting_hash_key: 0,
                        ending_hash_key: u128::MAX / 2,
                        created_ms: 1,
                        closed: None,
                    },
                    ShardMeta {
                        index: 1,
                        parent: None,
                        adjacent_parent: None,
                        starting_hash_key: u128::MAX / 2 + 1,
                        ending_hash_key: u128::MAX,
                        created_ms: 1,
                        closed: Some(ClosedShard { closed_ms: 5, end_position: 42 }),
                    },
                ],
                tags: BTreeMap::from([("team".into(), "payments".into())]),
                consumers: vec![ConsumerMeta {
                    name: "billing".into(),
                    created_ms: 7,
                    status: ConsumerStatus::Active,
                    status_due_ms: None,
                }],
                status_due_ms: None,
                trim_floor_ms: 0,
                shard_count_updates_ms: vec![3],
                mode_switches_ms: vec![],
            },
        );
        c
    }

    #[test]
    fn catalog_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CatalogStore::new(dir.path());
        assert_eq!(store.load().expect("empty"), Catalog::default());
        store.commit(&sample(1)).expect("commit");
        assert_eq!(store.load().expect("load"), sample(1));
    }

    #[test]
    fn a_crash_at_any_commit_step_leaves_the_old_or_the_new_catalog() {
        for step in
            [CommitStep::WriteTemp, CommitStep::SyncTemp, CommitStep::Rename, CommitStep::SyncDir]
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = CatalogStore::new(dir.path());
            store.commit(&sample(1)).expect("first commit");
            store.fail_at(Some(step));
            assert!(store.commit(&sample(2)).is_err());
            let loaded = CatalogStore::new(dir.path()).load().expect("load after crash");
            let expected = if step == CommitStep::SyncDir { 2 } else { 1 };
            assert_eq!(loaded.generation, expected, "{step:?}");
            assert!(!dir.path().join(CATALOG_TMP).exists(), "leftover temp file removed");
        }
    }

    #[test]
    fn a_damaged_catalog_is_an_error_not_an_empty_catalog() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CatalogStore::new(dir.path());
        store.commit(&sample(1)).expect("commit");
        let path = dir.path().join(CATALOG_FILE);
        let clean = std::fs::read(&path).expect("read");
        for at in [0, 9, 13, 17, 30, clean.len() - 1] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x20;
            std::fs::write(&path, &bytes).expect("write");
            assert!(matches!(store.load(), Err(Error::Corrupt { .. })), "flip at {at}");
        }
        std::fs::write(&path, &clean[..clean.len() - 3]).expect("write");
        assert!(matches!(store.load(), Err(Error::Corrupt { .. })));
    }
}
