//! Properties checked by the fuzz targets (`fuzz/`) and replayed over their corpora by
//! `cargo test` (`tests/fuzz_corpus.rs`), so CI covers them on stable without a fuzzer.
//! Each function panics only if the engine misbehaves; arbitrary input must not.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::{self, RecordIter};
use crate::{CommitConfig, CommitGroup, Error, IoBackend, LogConfig, ShardLog};

/// Batch decoding: any bytes either fail validation or decode completely and consistently.
pub fn batch_decode(data: &[u8]) {
    let _ = batch::parse_header(data);
    if let Ok(header) = batch::validate(data) {
        let records: Vec<_> = RecordIter::new(data).expect("validated header parses").collect();
        assert_eq!(records.len(), header.record_count as usize);
        for (i, r) in records.iter().enumerate() {
            let r = r.as_ref().expect("validated batch decodes");
            assert_eq!(r.position, header.base_position + i as u64);
            assert!(r.timestamp_ms <= header.max_timestamp_ms);
        }
    }
    for item in batch::split_batches(data) {
        if item.is_err() {
            break;
        }
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Segment recovery: any bytes as the only segment file of a log either open (and then
/// every record reads back, or reads report corruption) or fail with a corruption error.
pub fn segment_recovery(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!(
        "riffle-fuzz-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut file = data.to_vec();
    // Odd-length inputs are padded with zeros to the capacity their header claims (when
    // small), so the fuzzer reaches the active-segment path (validate by CRC, cut the torn
    // tail) as well as the sealed one (a file shorter than its capacity).
    if file.len() % 2 == 1 && file.len() >= 32 {
        let claimed = u64::from_le_bytes(file[24..32].try_into().expect("8 bytes"));
        if claimed > file.len() as u64 && claimed <= 1 << 20 {
            file.resize(claimed as usize, 0);
        }
    }
    std::fs::write(dir.join(format!("{:020}.log", 0)), &file).expect("write segment");
    let group =
        CommitGroup::start(CommitConfig { io_backend: IoBackend::Std, ..CommitConfig::default() })
            .expect("commit group");
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 128,
        batch_bytes_target: 16 * 1024,
        ..LogConfig::default()
    };
    match ShardLog::open(&dir, config, &group) {
        Ok(log) => {
            let mut position = 0;
            loop {
                match log.read(position, 1 << 16) {
                    Ok(Some(read)) => {
                        for b in batch::split_batches(&read.bytes) {
                            b.expect("a read returns only valid batches");
                        }
                        assert!(read.next_position > position);
                        position = read.next_position;
                    }
                    Ok(None) => break,
                    Err(Error::Corrupt { .. }) => break,
                    Err(e) => panic!("unexpected read error: {e}"),
                }
            }
        }
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("unexpected open error: {e}"),
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
