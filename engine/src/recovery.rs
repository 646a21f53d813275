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
//! 4. Check that segments are contiguous: each starts where the previous one ends.
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
    for base in bases {
        let segment = Segment::open(dir, base, index_interval_bytes)?;
        if let Some(previous) = segments.last() {
            if previous.end_position() != base {
                return Err(Error::corrupt(
                    segment.log_path(),
                    0,
                    format!(
                        "segment starts at position {base} but the previous one ends at {}",
                        previous.end_position()
                    ),
                ));
            }
            if !previous.is_sealed() {
                // A crash between creating the next segment and trimming this one: seal now.
                previous.seal()?;
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
