//! What the harness drives. Today: the embedded engine, in-process. The trait is the seam
//! where a Riffle server target (binary protocol) and a Kinesis HTTP target plug in.

use std::path::PathBuf;

use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, IoBackend, IteratorType, LimitsConfig,
    PutRecordInput,
};

/// How a request ended, per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Records stored and acknowledged.
    pub ok: u64,
    /// Records refused by a throughput limit (`ProvisionedThroughputExceededException`).
    pub throttled: u64,
    /// Records that failed otherwise.
    pub failed: u64,
}

/// A put that was sent and is not yet acknowledged.
pub trait PendingPut: Send {
    /// Blocks until the outcome is known.
    fn wait(self: Box<Self>) -> PutOutcome;
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// The record's data.
    pub data: bytes::Bytes,
}

/// A page of records and where to continue.
#[derive(Debug, Clone)]
pub struct ReadPage {
    /// Records in shard order.
    pub records: Vec<ReadRecord>,
    /// `None` at the end of a closed shard.
    pub next: Option<String>,
    /// True if the read was refused by a throughput limit.
    pub throttled: bool,
}

/// A system under test.
pub trait Target: Send + Sync {
    /// Description for reports.
    fn describe(&self) -> String;
    /// Creates the stream with `shards` shards, replacing one of the same name.
    fn setup(&self, stream: &str, shards: u32) -> Result<(), String>;
    /// Sends one PutRecords (or PutRecord, for one record) without waiting.
    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut>;
    /// The stream's shard ids.
    fn shards(&self, stream: &str) -> Result<Vec<String>, String>;
    /// An iterator at the shard's tip (`latest`) or its oldest record.
    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String>;
    /// One GetRecords.
    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String>;
}

/// Settings of the in-process engine target.
#[derive(Debug, Clone)]
pub struct EngineTargetConfig {
    /// Data directory; a temporary one (deleted at exit) if `None`.
    pub data_dir: Option<PathBuf>,
    /// Durability of appends.
    pub durability: Durability,
    /// I/O backend.
    pub io_backend: IoBackend,
    /// Kinesis per-shard limits on (off by default in benchmarks).
    pub limits: bool,
}

/// The embedded engine.
pub struct EngineTarget {
    engine: Engine,
    description: String,
    _temp: Option<tempfile::TempDir>,
}

impl EngineTarget {
    /// Opens the engine.
    pub fn open(config: &EngineTargetConfig) -> Result<Self, String> {
        let (dir, temp) = match &config.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let engine = Engine::open(
            &dir,
            EngineConfig {
                commit: CommitConfig {
                    durability: config.durability,
                    io_backend: config.io_backend,
                },
                limits: if config.limits {
                    LimitsConfig::default()
                } else {
                    LimitsConfig::unlimited()
                },
                ..EngineConfig::default()
            },
        )
        .map_err(|e| format!("opening the engine in {}: {e}", dir.display()))?;
        let description = format!(
            "engine in-process ({}, durability {:?}, limits {}) in {}",
            engine.backend_name(),
            config.durability,
            if config.limits { "on" } else { "off" },
            dir.display()
        );
        Ok(EngineTarget { engine, description, _temp: temp })
    }
}

struct EnginePending(Result<riffle_engine::PendingPutRecords, (riffle_engine::Error, u64)>);

impl PendingPut for EnginePending {
    fn wait(self: Box<Self>) -> PutOutcome {
        match self.0 {
            Ok(pending) => {
                let out = pending.wait();
                let throttled = out
                    .records
                    .iter()
                    .filter(|r| r.as_ref().is_err_and(|f| f.error_code.starts_with("Provisioned")))
                    .count() as u64;
                PutOutcome {
                    ok: (out.records.len() - out.failed_record_count) as u64,
                    throttled,
                    failed: out.failed_record_count as u64 - throttled,
                }
            }
            Err((e, n)) if e.kinesis_name() == "ProvisionedThroughputExceededException" => {
                PutOutcome { throttled: n, ..PutOutcome::default() }
            }
            Err((_, n)) => PutOutcome { failed: n, ..PutOutcome::default() },
        }
    }
}

impl Target for EngineTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn setup(&self, stream: &str, shards: u32) -> Result<(), String> {
        if self.engine.describe_stream_summary(stream).is_ok() {
            self.engine.delete_stream(stream, true).map_err(|e| e.to_string())?;
        }
        // Deletion and creation complete at the next call (transition time 0).
        let _ = self.engine.list_streams(None, None, None);
        self.engine.create_stream(stream, Some(shards), None, &[]).map_err(|e| e.to_string())?;
        self.engine.describe_stream_summary(stream).map(|_| ()).map_err(|e| e.to_string())
    }

    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut> {
        let input: Vec<PutRecordInput<'_>> =
            records.iter().map(|(k, d)| PutRecordInput::new(k, d)).collect();
        let n = records.len() as u64;
        Box::new(EnginePending(self.engine.put_records_begin(stream, &input).map_err(|e| (e, n))))
    }

    fn shards(&self, stream: &str) -> Result<Vec<String>, String> {
        let d =
            self.engine.describe_stream(stream, Some(10_000), None).map_err(|e| e.to_string())?;
        Ok(d.shards.into_iter().map(|s| s.shard_id).collect())
    }

    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String> {
        let kind = if latest { IteratorType::Latest } else { IteratorType::TrimHorizon };
        self.engine.get_shard_iterator(stream, shard, kind, None, None).map_err(|e| e.to_string())
    }

    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String> {
        match self.engine.get_records(iterator, Some(limit)) {
            Ok(page) => Ok(ReadPage {
                records: page.records.into_iter().map(|r| ReadRecord { data: r.data }).collect(),
                next: page.next_shard_iterator,
                throttled: false,
            }),
            Err(e) if e.kinesis_name() == "ProvisionedThroughputExceededException" => {
                Ok(ReadPage {
                    records: Vec::new(),
                    next: Some(iterator.to_string()),
                    throttled: true,
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
