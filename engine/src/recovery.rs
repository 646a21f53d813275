//! Opening a shard log after a clean stop or a crash.
//!
//! Steps, in order:
//! 1. Remove `<base>.log.tmp` files: segments whose creation did not finish (a `.log` is
//!    only ever renamed into place after its header is durable).
//! 2. Remove index files whose segment is gone (retention deletes the `.log` first).
//! 3. Open every segment in position order. Sealed segments (trimmed files) are trusted to
//!    their length and walked by batch header from their last index entry; the active
//!    segment is validated by CRC from its last good index entry, and its torn or stale
//!    tail is cut (see `Segment::open`). Missing or damaged indexes are rebuilt.
//! 4. Check that segments are contiguous: each starts where the previous one ends. A gap
//!    after a sealed segment is corruption; a gap after the segment that was being written
//!    is an interrupted roll, and the unacknowledged segments past it are removed.
//! 5. Make durable what was accepted before anything is acknowledged after it: the active
//!    segment's batches past its last index entry are written again and synced, and the
//!    log's directory and its parent are synced (`ShardLog::open`). What recovery reads is
//!    the page cache, which after a failed `fdatasync` or directory sync (and a restart of
//!    the process, not the machine) can hold bytes and entries the disk does not; Linux
//!    marks such pages clean, so no later sync would write them. Both cases were found by
//!    the simulated disk (`io::sim`, `tests/simulation.rs`).
//!
//! Only the last segment is scanned by CRC, so opening costs one index walk per segment
//! plus at most one segment's unindexed tail, not a read of the whole log.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io;
use crate::segment::{self, Segment};

/// Recovers the segments of the log in `dir`, oldest first.
pub(crate) fn open_segments(dir: &Path, index_interval_bytes: u32) -> Result<Vec<Arc<Segment>>> {
    let bases = crate::shard_log::segment_paths(dir)?;
    remove_orphan_indexes(dir, &bases)?;
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        if let Some(previous) = segments.last() {
            if previous.end_position() != base {
                if previous.is_sealed() {
                    return Err(Error::corrupt(
                        dir.join(segment::file_name(base, "log")),
                        0,
                        format!(
                            "segment starts at position {base} but the sealed one before it ends at {}",
                            previous.end_position()
                        ),
                    ));
                }
                // The previous segment was still being written: a crash interrupted a
                // cycle that rolled, after this segment was created but before the
                // previous one's part of the cycle was durable. Nothing past the gap was
                // acknowledged (a cycle acknowledges only after all of its writes), so
                // the log ends at the gap.
                tracing::warn!(
                    dir = %dir.display(),
                    gap_at = previous.end_position(),
                    removed = bases.len() - i,
                    "removing unacknowledged segments after an interrupted roll"
                );
                for &later in &bases[i..] {
                    for ext in ["log", "idx", "tix"] {
                        io::remove_file(&dir.join(segment::file_name(later, ext)))?;
                    }
                }
                io::sync_dir(dir)?;
                break;
            }
        }
        let segment = Segment::open(dir, base, index_interval_bytes)?;
        if let Some(previous) = segments.last() {
            if !previous.is_sealed() {
                // A crash between creating the next segment and trimming this one: seal now.
                previous.seal(true)?;
            }
        }
        segments.push(segment);
    }
    Ok(segments)
}

fn remove_orphan_indexes(dir: &Path, bases: &[u64]) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".idx").or_else(|| name.strip_suffix(".tix")) else {
            continue;
        };
        let Some(base) = segment::parse_log_name(&format!("{stem}.log")) else { continue };
        if bases.binary_search(&base).is_err() {
            io::remove_file(&entry.path())?;
        }
    }
    Ok(())
}
