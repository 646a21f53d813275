//! The embeddable engine: streams of shards with the semantics of Kinesis Data Streams.
//!
//! ```text
//!  Engine ── control plane (one Mutex) ──▶ Catalog (atomic file)  ◀── every change commits
//!    │
//!    └─ streams (RwLock<name → StreamState>)
//!         └─ StreamState ── view (RwLock): status, retention, shards, routing table
//!              └─ ShardState: ShardLog (its commit group's thread writes it) + token buckets
//! ```
//!
//! # Concurrency
//!
//! Control-plane operations (create, delete, reshard, retention, consumers, tags) run one at
//! a time under the control lock, commit the catalog, then publish a new view of the stream
//! under its write lock. Data-plane operations (put, get) take read locks only: the streams
//! map, then the stream's view. Lock order: control, streams map, view. A split takes the
//! parent's view write lock *before* it seals the parent log, and puts hold the view read
//! lock while they hand records to a log, so a put never meets a sealed parent: it goes to
//! the parent before the switch or to a child after it. Puts wait for durability after
//! releasing the lock.
//!
//! # Durability of catalog changes
//!
//! Each change is: do what must precede the commit (seal parent logs), commit the catalog
//! (write temp, sync, rename, sync dir), then act on the new state (open child logs, delete
//! directories). A crash before the rename leaves the old state; the logs agree with it (a
//! sealed parent log reopens and takes writes again). A crash after it leaves the new state,
//! and opening finishes the work: missing logs are created, directories of deleted streams
//! and expired shards are removed. If a catalog commit fails, the engine stops (every call
//! answers the error) until it is reopened, because memory and disk may disagree.
//!
//! # Choices where the spec leaves room (see the README for the full list)
//!
//! - Status transitions (CREATING → ACTIVE, UPDATING → ACTIVE, DELETING → gone, consumer
//!   CREATING → ACTIVE) complete [`EngineConfig::transition_ms`] after the call (default 0:
//!   at the next call), checked lazily by every operation, so a [`ManualClock`] drives them.
//! - Splits and merges take effect at once: writes go to the children as soon as the call
//!   returns; the stream shows UPDATING until the transition time passes.
//! - Retention: a record is readable iff `now - arrival < retention`, and never if it had
//!   expired before a retention increase. Whole segments are deleted by
//!   [`Engine::run_maintenance`] (a background thread calls it every
//!   [`EngineConfig::maintenance_interval_ms`]).
//!
//! [`ManualClock`]: crate::ManualClock

mod consumers;
mod control;
mod data;
mod maintenance;
mod reshape;
pub mod types;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::catalog::{
    Catalog, CatalogStore, CommitStep, ConsumerStatus, ShardMeta, StreamMeta, StreamStatus,
};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::group_commit::{CommitConfig, CommitGroup};
use crate::limits::{LimitsConfig, ShardLimits};
use crate::sequence::shard_id;
use crate::shard_log::{LogConfig, ShardLog};
use crate::token::TokenKey;
use crate::validate::Messages;

pub use data::{PendingPutRecord, PendingPutRecords};
pub use types::*;

/// Smallest segment an engine accepts: room for one largest record plus headers.
pub const SEGMENT_BYTES_ENGINE_MIN: u64 = 2 * 1024 * 1024;

/// Settings of an [`Engine`]. `EngineConfig::default()` is a complete, Kinesis-like setup.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Durability and I/O backend of the commit groups. Its `journal` is ignored: see
    /// [`EngineConfig::journal_bytes`].
    pub commit: CommitConfig,
    /// Under `sync` durability, each commit group commits through a journal of this many
    /// bytes (`journal-<n>.log` in the data directory): one `fdatasync` per commit cycle
    /// instead of one per dirty shard ([`crate::journal`]). The file is two halves; when
    /// one fills, a background thread syncs the segments it covered while cycles go on in
    /// the other. 0 turns journals off. Journals left by an earlier run are replayed at open
    /// either way. Default 32 MiB; smallest 64 KiB.
    pub journal_bytes: u64,
    /// Number of commit groups (committing threads); shards are spread over them. Default 1.
    pub commit_groups: usize,
    /// Segment settings of every shard log (its `clock` is replaced by `clock` below).
    pub log: LogConfig,
    /// Source of arrival times, retention, iterator expiry and status transitions.
    pub clock: Arc<dyn Clock>,
    /// Per-shard throughput limits (Kinesis's by default).
    pub limits: LimitsConfig,
    /// Account id in ARNs and messages.
    pub account_id: String,
    /// Region in ARNs and messages.
    pub region: String,
    /// Most open shards across all streams (the account's shard quota).
    pub shard_limit: u32,
    /// Most on-demand streams.
    pub on_demand_stream_limit: u32,
    /// How long CREATING, UPDATING and DELETING (streams and consumers) last, in ms.
    pub transition_ms: u64,
    /// Period of the background maintenance (retention) thread in ms; 0 for none (then call
    /// [`Engine::run_maintenance`] yourself).
    pub maintenance_interval_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            commit: CommitConfig::default(),
            commit_groups: 1,
            log: LogConfig::default(),
            clock: Arc::new(SystemClock),
            limits: LimitsConfig::default(),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            shard_limit: 20_000,
            on_demand_stream_limit: 50,
            transition_ms: 0,
            maintenance_interval_ms: 60_000,
            journal_bytes: crate::journal::JOURNAL_BYTES_DEFAULT,
        }
    }
}

/// One shard at run time: its log and its limits. Shared by the views that list it.
#[derive(Debug)]
pub(crate) struct ShardState {
    pub index: u32,
    pub id: Arc<str>,
    pub log: ShardLog,
    pub limits: ShardLimits,
}

/// A stream's state as the data plane sees it; replaced under the write lock by every
/// control-plane change.
#[derive(Debug)]
pub(crate) struct StreamView {
    pub meta: StreamMeta,
    /// Every shard of `meta.shards`, by index.
    pub shards: BTreeMap<u32, Arc<ShardState>>,
    /// Open shards as `(starting hash key, ending hash key, shard)`, by starting key.
    pub open: Vec<(u128, u128, Arc<ShardState>)>,
}

impl StreamView {
    pub(crate) fn shard_meta(&self, index: u32) -> Option<&ShardMeta> {
        let at = self.meta.shards.binary_search_by_key(&index, |s| s.index).ok()?;
        Some(&self.meta.shards[at])
    }

    /// The open shard owning `hash_key`.
    pub(crate) fn route(&self, hash_key: u128) -> Option<&Arc<ShardState>> {
        let at = self.open.partition_point(|(start, _, _)| *start <= hash_key);
        let (_, end, shard) = self.open.get(at.checked_sub(1)?)?;
        (hash_key <= *end).then_some(shard)
    }

    /// Oldest arrival time still readable: a record is readable iff
    /// `now - arrival < retention`, i.e. `arrival >= now - retention + 1`, and never if it
    /// arrived before the trim floor.
    pub(crate) fn cutoff_ms(&self, now_ms: u64) -> u64 {
        let retention = u64::from(self.meta.retention_hours) * 3_600_000;
        (now_ms + 1).saturating_sub(retention).max(self.meta.trim_floor_ms)
    }
}

#[derive(Debug)]
pub(crate) struct StreamState {
    pub name: String,
    pub epoch: u32,
    pub view: RwLock<StreamView>,
}

impl StreamState {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, StreamView> {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, StreamView> {
        self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The catalog and its file: owned by the control lock.
#[derive(Debug)]
pub(crate) struct Control {
    pub catalog: Catalog,
    pub store: CatalogStore,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub config: EngineConfig,
    pub groups: Vec<CommitGroup>,
    pub key: TokenKey,
    pub control: Mutex<Control>,
    pub streams: RwLock<BTreeMap<String, Arc<StreamState>>>,
    /// Earliest pending status transition (`u64::MAX`: none), so that operations check for
    /// due transitions with one atomic load.
    pub next_due_ms: AtomicU64,
    /// Set when a catalog commit failed: the engine refuses everything until reopened.
    pub failed: Mutex<Option<Arc<str>>>,
    /// Stops the maintenance thread.
    pub stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    _lock: File,
}

/// A set of Kinesis-like streams stored in one data directory. Cheap to clone; clones
/// share the engine. See the [module docs](self) for the design.
///
/// ```
/// use riffle_engine::{Engine, EngineConfig, IteratorType, PutRecordInput};
///
/// let dir = tempfile::tempdir()?;
/// let engine = Engine::open(dir.path(), EngineConfig::default())?;
/// engine.create_stream("orders", Some(4), None, &[])?;
/// let put = engine.put_record("orders", &PutRecordInput::new("customer-42", b"hello"))?;
/// let it = engine.get_shard_iterator("orders", &put.shard_id.to_string(), IteratorType::TrimHorizon, None, None)?;
/// let page = engine.get_records(&it, None)?;
/// assert_eq!(&page.records[0].data[..], b"hello");
/// assert_eq!(page.records[0].sequence_number, put.sequence_number);
///
/// let missing = engine.describe_stream("nope", None, None).unwrap_err();
/// assert_eq!(missing.kinesis_name(), "ResourceNotFoundException");
/// assert_eq!(missing.to_string(), "Stream nope under account 000000000000 not found.");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Directory of a stream's shard logs: `<data>/streams/<name>.<epoch>`. The epoch keeps a
/// stream re-created under the same name apart from the old one's leftovers.
fn stream_dir(data: &Path, name: &str, epoch: u32) -> PathBuf {
    data.join("streams").join(format!("{name}.{epoch}"))
}

impl Engine {
    /// Opens (creating if needed) the engine stored in `dir`: loads the catalog, opens and
    /// recovers every shard log, finishes the catalog changes a crash interrupted, and
    /// starts the commit groups (and the maintenance thread, if configured).
    pub fn open(dir: impl AsRef<Path>, mut config: EngineConfig) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        if config.commit_groups == 0 {
            return Err(Error::Config("commit_groups must be at least 1".into()));
        }
        // The largest record Kinesis accepts (1 MiB of data and key) must fit a segment.
        if config.log.segment_bytes < SEGMENT_BYTES_ENGINE_MIN {
            return Err(Error::Config(format!(
                "segment size {} is below {SEGMENT_BYTES_ENGINE_MIN} bytes, too small for a 1 MiB \
                 record",
                config.log.segment_bytes
            )));
        }
        crate::io::create_dir_all(&dir.join("streams"))?;
        let lock_path = dir.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        config.log.clock = Arc::clone(&config.clock);
        let store = CatalogStore::new(&dir);
        let mut catalog = store.load()?;
        // What was loaded must be on disk before anything builds on it: a catalog rename or
        // a stream directory whose directory sync failed before the process restarted is in
        // the page cache only (found by the simulated disk).
        crate::io::sync_dir(&dir)?;
        crate::io::sync_dir(&dir.join("streams"))?;
        let key = match TokenKey::from_hex(&catalog.token_key) {
            Some(key) => key,
            None => {
                let key = TokenKey::random().map_err(|e| Error::io("/dev/urandom", e))?;
                catalog.token_key = key.to_hex();
                catalog.generation += 1;
                store.commit(&catalog)?;
                key
            }
        };
        let journal_path = |i: usize| dir.join(format!("journal-{i}.log"));
        let journaled = config.journal_bytes > 0
            && config.commit.durability == crate::group_commit::Durability::Sync;
        // Journals this run will not use (fewer groups, or journals off) are replayed now.
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let index = path.file_name().and_then(|n| n.to_str()).and_then(|n| {
                n.strip_prefix("journal-")?.strip_suffix(".log")?.parse::<usize>().ok()
            });
            if let Some(i) = index {
                if !journaled || i >= config.commit_groups {
                    crate::journal::replay(&path)?;
                    crate::io::remove_file(&path)?;
                    crate::io::sync_dir(&dir)?;
                }
            }
        }
        let groups = (0..config.commit_groups)
            .map(|i| {
                let journal = journaled.then(|| journal_path(i));
                CommitGroup::start(CommitConfig {
                    journal,
                    journal_bytes: config.journal_bytes,
                    ..config.commit.clone()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inner = Inner {
            dir: dir.clone(),
            config,
            groups,
            key,
            control: Mutex::new(Control { catalog: catalog.clone(), store }),
            streams: RwLock::new(BTreeMap::new()),
            next_due_ms: AtomicU64::new(u64::MAX),
            failed: Mutex::new(None),
            stop: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            _lock: lock_file,
        };
        let engine = Engine { inner: Arc::new(inner) };
        let mut streams = BTreeMap::new();
        for meta in catalog.streams.values() {
            let state = engine.build_stream(meta, &BTreeMap::new())?;
            streams.insert(meta.name.clone(), Arc::new(state));
        }
        engine.remove_orphans(&catalog)?;
        *engine.inner.streams.write().unwrap_or_else(std::sync::PoisonError::into_inner) = streams;
        engine.reschedule(&catalog);
        engine.advance()?;
        if engine.inner.config.maintenance_interval_ms > 0 {
            engine.start_maintenance()?;
        }
        Ok(engine)
    }

    /// Stops the maintenance thread and waits for every shard log's pending appends.
    /// Dropping the last handle also shuts down cleanly.
    pub fn close(&self) -> Result<()> {
        self.stop_maintenance();
        let streams = self.streams_snapshot();
        for stream in streams.values() {
            let view = stream.read();
            for shard in view.shards.values() {
                shard.log.close()?;
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The I/O backend the commit groups use (`"io_uring"` or `"std"`).
    pub fn backend_name(&self) -> &'static str {
        self.inner.groups[0].backend_name()
    }

    /// How many commit groups the engine runs ([`EngineConfig::commit_groups`]). Shard
    /// `i` of a stream created with epoch `e` belongs to group `(i + e) % commit_groups`.
    pub fn commit_groups(&self) -> usize {
        self.inner.groups.len()
    }

    /// Moves commit group `group`'s cycles from its thread to a task on the caller's
    /// tokio-uring runtime: see [`CommitGroup::driver`] and [`crate::group_commit::CommitDriver`].
    /// A server with one runtime per core takes group `i` onto core `i`.
    #[cfg(feature = "io-uring")]
    pub fn commit_driver(&self, group: usize) -> Result<crate::group_commit::CommitDriver> {
        match self.inner.groups.get(group) {
            Some(g) => g.driver(),
            None => Err(Error::Config(format!(
                "commit group {group} does not exist (the engine runs {})",
                self.inner.groups.len()
            ))),
        }
    }

    /// The stream ARN for `name`.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{}",
            self.inner.config.region, self.inner.config.account_id, name
        )
    }

    /// Makes the next catalog commit fail at `step` (crash-injection tests).
    #[doc(hidden)]
    pub fn inject_catalog_failure(&self, step: Option<CommitStep>) {
        self.control().store.fail_at(step);
    }

    pub(crate) fn msg(&self) -> Messages<'_> {
        Messages { account: &self.inner.config.account_id, region: &self.inner.config.region }
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    pub(crate) fn key(&self) -> &TokenKey {
        &self.inner.key
    }

    pub(crate) fn control(&self) -> MutexGuard<'_, Control> {
        self.inner.control.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn streams_snapshot(&self) -> BTreeMap<String, Arc<StreamState>> {
        self.inner.streams.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn stream_state(&self, name: &str) -> Option<Arc<StreamState>> {
        self.inner
            .streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Fails if a catalog commit failed earlier; applies due status transitions.
    pub(crate) fn enter(&self) -> Result<()> {
        if let Some(reason) = self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(Error::Poisoned { reason });
        }
        if self.now() >= self.inner.next_due_ms.load(Ordering::Acquire) {
            self.advance()?;
        }
        Ok(())
    }

    /// A stream name from a name or a stream ARN of this account and region.
    pub(crate) fn resolve<'a>(&self, stream: &'a str) -> Result<&'a str> {
        let Some(rest) = stream.strip_prefix("arn:") else {
            crate::validate::check_name(stream, "streamName")?;
            return Ok(stream);
        };
        // arn:{partition}:kinesis:{region}:{account}:stream/{name}
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let name = parts.get(4).and_then(|r| r.strip_prefix("stream/"));
        match (parts.as_slice(), name) {
            ([_, "kinesis", region, account, _], Some(name))
                if *region == self.inner.config.region
                    && *account == self.inner.config.account_id
                    && !name.contains('/') =>
            {
                crate::validate::check_name(name, "streamARN")?;
                Ok(name)
            }
            (_, Some(name)) if !name.contains('/') => Err(self.msg().stream_not_found(name)),
            _ => Err(crate::validate::validation(
                &format!("'{stream}'"),
                "streamARN",
                "Member must satisfy regular expression pattern: \
                 arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
            )),
        }
    }

    /// Commits `catalog` as the new durable state. A failure stops the engine.
    pub(crate) fn commit(&self, control: &mut Control, mut catalog: Catalog) -> Result<()> {
        catalog.generation = control.catalog.generation + 1;
        if let Err(e) = control.store.commit(&catalog) {
            let reason: Arc<str> =
                format!("a catalog commit failed ({e}); reopen the engine to recover").into();
            tracing::error!(%reason, "engine stopped");
            *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            return Err(e);
        }
        self.reschedule(&catalog);
        control.catalog = catalog;
        Ok(())
    }

    /// Opens the logs of `meta`'s shards (reusing those in `existing`) and builds its view.
    pub(crate) fn build_stream(
        &self,
        meta: &StreamMeta,
        existing: &BTreeMap<u32, Arc<ShardState>>,
    ) -> Result<StreamState> {
        let view = self.build_view(meta, existing)?;
        Ok(StreamState { name: meta.name.clone(), epoch: meta.epoch, view: RwLock::new(view) })
    }

    pub(crate) fn build_view(
        &self,
        meta: &StreamMeta,
        existing: &BTreeMap<u32, Arc<ShardState>>,
    ) -> Result<StreamView> {
        let dir = stream_dir(&self.inner.dir, &meta.name, meta.epoch);
        let mut shards = BTreeMap::new();
        for shard in &meta.shards {
            let state = match existing.get(&shard.index) {
                Some(s) => Arc::clone(s),
                None => Arc::new(self.open_shard(&dir, meta.epoch, shard)?),
            };
            shards.insert(shard.index, state);
        }
        let mut open: Vec<(u128, u128, Arc<ShardState>)> = meta
            .shards
            .iter()
            .filter(|s| s.closed.is_none())
            .map(|s| (s.starting_hash_key, s.ending_hash_key, Arc::clone(&shards[&s.index])))
            .collect();
        open.sort_by_key(|(start, _, _)| *start);
        Ok(StreamView { meta: meta.clone(), shards, open })
    }

    fn open_shard(&self, stream_dir: &Path, epoch: u32, meta: &ShardMeta) -> Result<ShardState> {
        let id: Arc<str> = shard_id(meta.index).into();
        let dir = stream_dir.join(&*id);
        let groups = &self.inner.groups;
        let group = &groups[(meta.index as usize + epoch as usize) % groups.len()];
        let log = ShardLog::open(&dir, self.inner.config.log.clone(), group)?;
        if let Some(closed) = meta.closed {
            if log.end_position() != closed.end_position {
                return Err(Error::corrupt(
                    &dir,
                    0,
                    format!(
                        "closed shard {id} holds {} records, the catalog says {}",
                        log.end_position(),
                        closed.end_position
                    ),
                ));
            }
        }
        let limits = ShardLimits::new(self.inner.config.limits, self.now());
        Ok(ShardState { index: meta.index, id, log, limits })
    }

    /// Removes directories the catalog does not know: streams whose deletion completed,
    /// shards that expired, or a creation that crashed before its commit.
    fn remove_orphans(&self, catalog: &Catalog) -> Result<()> {
        let root = self.inner.dir.join("streams");
        for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
            let entry = entry.map_err(|e| Error::io(&root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let live = name.rsplit_once('.').and_then(|(stream, epoch)| {
                let meta = catalog.streams.get(stream)?;
                (epoch.parse::<u32>().ok()? == meta.epoch).then_some(meta)
            });
            match live {
                None => crate::io::remove_dir_all(&entry.path())?,
                Some(meta) => {
                    for shard in std::fs::read_dir(entry.path()).map_err(|e| Error::io(&root, e))? {
                        let shard = shard.map_err(|e| Error::io(&root, e))?;
                        let id = shard.file_name().to_string_lossy().into_owned();
                        let known = crate::sequence::parse_shard_id(&id)
                            .is_some_and(|i| meta.shards.iter().any(|s| s.index == i));
                        if !known {
                            crate::io::remove_dir_all(&shard.path())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Recomputes the earliest pending transition.
    fn reschedule(&self, catalog: &Catalog) {
        let due = catalog
            .streams
            .values()
            .flat_map(|s| {
                s.status_due_ms
                    .into_iter()
                    .chain(s.consumers.iter().filter_map(|c| c.status_due_ms))
            })
            .min()
            .unwrap_or(u64::MAX);
        self.inner.next_due_ms.store(due, Ordering::Release);
    }

    /// Applies every status transition whose time has come, in one catalog commit.
    pub(crate) fn advance(&self) -> Result<()> {
        let now = self.now();
        let mut control = self.control();
        let mut catalog = control.catalog.clone();
        let mut changed = Vec::new();
        let mut deleted = Vec::new();
        for meta in catalog.streams.values_mut() {
            let mut touched = false;
            if meta.status_due_ms.is_some_and(|due| due <= now) {
                meta.status_due_ms = None;
                touched = true;
                match meta.status {
                    StreamStatus::Deleting => deleted.push(meta.name.clone()),
                    _ => meta.status = StreamStatus::Active,
                }
            }
            let before = meta.consumers.len();
            meta.consumers.retain(|c| {
                c.status != ConsumerStatus::Deleting || c.status_due_ms.is_none_or(|due| due > now)
            });
            touched |= meta.consumers.len() != before;
            for consumer in &mut meta.consumers {
                if consumer.status_due_ms.is_some_and(|due| due <= now) {
                    consumer.status_due_ms = None;
                    consumer.status = ConsumerStatus::Active;
                    touched = true;
                }
            }
            if touched {
                changed.push(meta.name.clone());
            }
        }
        if changed.is_empty() {
            self.reschedule(&control.catalog);
            return Ok(());
        }
        let mut gone = Vec::new();
        for name in &deleted {
            if let Some(meta) = catalog.streams.remove(name) {
                gone.push(meta);
            }
        }
        self.commit(&mut control, catalog)?;
        for name in &changed {
            if let (Some(meta), Some(state)) =
                (control.catalog.streams.get(name), self.stream_state(name))
            {
                let mut view = state.write();
                view.meta = meta.clone();
            }
        }
        for meta in gone {
            self.drop_stream(&meta)?;
        }
        Ok(())
    }

    /// After a stream left the catalog: unlist it, close its logs, delete its files.
    pub(crate) fn drop_stream(&self, meta: &StreamMeta) -> Result<()> {
        let state = self
            .inner
            .streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&meta.name);
        if let Some(state) = state {
            let view = state.read();
            for shard in view.shards.values() {
                let _ = shard.log.close();
            }
        }
        crate::io::remove_dir_all(&stream_dir(&self.inner.dir, &meta.name, meta.epoch))
    }

    pub(crate) fn shard_dir(&self, meta: &StreamMeta, index: u32) -> PathBuf {
        stream_dir(&self.inner.dir, &meta.name, meta.epoch).join(shard_id(index))
    }

    fn start_maintenance(&self) -> Result<()> {
        // The thread holds the engine only during a pass, so dropping the last handle
        // between passes shuts it down.
        let weak = Arc::downgrade(&self.inner);
        let stop = Arc::clone(&self.inner.stop);
        let period = std::time::Duration::from_millis(self.inner.config.maintenance_interval_ms);
        std::thread::Builder::new()
            .name("riffle-maintenance".into())
            .spawn(move || loop {
                let (stopped, wake) = &*stop;
                let guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) =
                    wake.wait_timeout(guard, period).unwrap_or_else(|e| e.into_inner());
                if *guard {
                    return;
                }
                drop(guard);
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                if let Err(e) = engine.run_maintenance() {
                    tracing::warn!(error = %e, "maintenance pass failed");
                }
            })
            .map_err(|e| Error::io("riffle-maintenance thread", e))?;
        Ok(())
    }

    fn stop_maintenance(&self) {
        let (stopped, wake) = &*self.inner.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
    }
}
