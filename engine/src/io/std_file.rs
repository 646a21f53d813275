//! The std backend: `pwrite` then `fdatasync`, one file after another.

use super::{CommitIo, CycleOp};

/// Plain positioned writes and syncs on the committing thread.
pub(crate) struct StdIo;

impl CommitIo for StdIo {
    fn run(&mut self, ops: &mut [CycleOp]) {
        // Write everything first, then sync: the kernel can start writeback of later files
        // while the first sync waits. An op that already failed keeps its error (a commit
        // driver reruns a cycle cut short this way).
        for op in ops.iter_mut().filter(|op| op.result.is_ok()) {
            if !op.range.is_empty() {
                op.result = op.file.write_all_at(&op.buf[op.range.clone()], op.file_offset);
            }
        }
        for op in ops.iter_mut() {
            if op.sync && op.result.is_ok() {
                op.result = op.file.sync_data();
            }
        }
    }

    fn forget(&mut self, _file_uid: u64) {}

    fn name(&self) -> &'static str {
        "std"
    }
}
