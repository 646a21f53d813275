//! The io_uring backend, on tokio-uring.
//!
//! Each committing thread owns one tokio-uring runtime (built with `Runtime::new`, which
//! returns an error where io_uring is blocked; `tokio_uring::start` would panic). A cycle
//! submits every file's write-then-`fdatasync` chain as one task and waits for all of them,
//! so N segments' syncs are in flight together.
//!
//! tokio-uring's `File` is not `Send`, so the runtime-side handle of each segment file is a
//! `dup` of the std descriptor, cached here by the file's uid and dropped by `forget` when
//! the segment is sealed or closed.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use tokio_uring::buf::BoundedBuf;

use super::std_file::StdIo;
use super::{CommitIo, CycleOp, DataFile};
use crate::error::Error;

pub(crate) struct UringIo {
    runtime: tokio_uring::Runtime,
    files: RingFiles,
}

impl UringIo {
    pub(crate) fn new() -> io::Result<Self> {
        let runtime = tokio_uring::Runtime::new(tokio_uring::builder().entries(256))?;
        Ok(UringIo { runtime, files: RingFiles::default() })
    }
}

/// Runtime-side descriptors (`dup`s) of data files, by file uid, with a weak reference to
/// the file so that entries of files dropped elsewhere (a deleted segment) are swept.
#[derive(Default)]
pub(crate) struct RingFiles {
    files: HashMap<u64, (std::sync::Weak<DataFile>, Rc<tokio_uring::fs::File>)>,
}

impl RingFiles {
    /// The runtime-side handle of `file`, made on first use.
    pub(crate) fn handle(
        &mut self,
        file: &std::sync::Arc<DataFile>,
    ) -> io::Result<Rc<tokio_uring::fs::File>> {
        if let Some((_, f)) = self.files.get(&file.uid()) {
            return Ok(f.clone());
        }
        let std_file = file.std_file().try_clone()?;
        let handle = Rc::new(tokio_uring::fs::File::from_std(std_file));
        self.files.insert(file.uid(), (std::sync::Arc::downgrade(file), handle.clone()));
        Ok(handle)
    }

    /// Removes a file's handle (closed when its last in-flight operation lets go).
    pub(crate) fn remove(&mut self, file_uid: u64) -> Option<Rc<tokio_uring::fs::File>> {
        self.files.remove(&file_uid).map(|(_, f)| f)
    }

    /// Uids of files that no longer exist anywhere else.
    pub(crate) fn dead(&self) -> Vec<u64> {
        self.files
            .iter()
            .filter(|(_, (weak, _))| weak.strong_count() == 0)
            .map(|(uid, _)| *uid)
            .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub(crate) fn uids(&self) -> Vec<u64> {
        self.files.keys().copied().collect()
    }
}

async fn write_then_sync(
    file: Rc<tokio_uring::fs::File>,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    file_offset: u64,
    sync: bool,
) -> (io::Result<()>, Vec<u8>) {
    let buf = if range.is_empty() {
        buf
    } else {
        let (result, slice) = file.write_all_at(buf.slice(range), file_offset).await;
        let buf = slice.into_inner();
        if let Err(e) = result {
            return (Err(e), buf);
        }
        buf
    };
    if sync {
        if let Err(e) = file.sync_data().await {
            return (Err(e), buf);
        }
    }
    (Ok(()), buf)
}

impl CommitIo for UringIo {
    fn run(&mut self, ops: &mut [CycleOp]) {
        // One op has nothing to overlap with. io_uring punts buffered file writes on ext4
        // to an io-wq worker thread, so a lone write+sync through the ring costs two thread
        // hand-offs more than doing it here (measured: a single-shard `sync` cycle ran at
        // 0.26 of raw through the ring against 0.47 with direct calls, and the `none`
        // round trip took 49-69 us against 8-10 us; bench/README.md). The ring is used
        // where it pays: many segments' writes and syncs in flight together.
        // A simulated disk's model sees only the std calls.
        if ops.len() < 2 || ops.iter().any(|op| op.file.is_simulated()) {
            return StdIo.run(ops);
        }
        let mut tasks = Vec::with_capacity(ops.len());
        for op in ops.iter_mut() {
            match self.files.handle(&op.file) {
                Ok(file) => {
                    let buf = std::mem::take(&mut op.buf);
                    tasks.push(Some((file, buf)));
                }
                Err(e) => {
                    op.result = Err(Error::io(op.file.path(), e));
                    tasks.push(None);
                }
            }
        }
        let results = self.runtime.block_on(async {
            let mut handles = Vec::with_capacity(tasks.len());
            for (task, op) in tasks.into_iter().zip(ops.iter()) {
                handles.push(task.map(|(file, buf)| {
                    tokio_uring::spawn(write_then_sync(
                        file,
                        buf,
                        op.range.clone(),
                        op.file_offset,
                        op.sync,
                    ))
                }));
            }
            let mut results = Vec::with_capacity(handles.len());
            for handle in handles {
                results.push(match handle {
                    Some(h) => Some(h.await),
                    None => None,
                });
            }
            results
        });
        for (op, result) in ops.iter_mut().zip(results) {
            match result {
                Some(Ok((r, buf))) => {
                    op.buf = buf;
                    // The error may be the sync's (or the write's, which the sync would
                    // then not make good either): recorded as a failed sync either way.
                    op.result = if op.sync {
                        op.file.synced(r)
                    } else {
                        r.map_err(|e| Error::io(op.file.path(), e))
                    };
                }
                Some(Err(join_error)) => {
                    op.result =
                        Err(Error::io(op.file.path(), io::Error::other(join_error.to_string())));
                }
                None => {}
            }
        }
    }

    fn forget(&mut self, file_uid: u64) {
        if let Some(file) = self.files.remove(file_uid) {
            // Close inside the runtime so the descriptor is released now, not "eventually".
            if let Ok(file) = std::rc::Rc::try_unwrap(file) {
                let _ = self.runtime.block_on(file.close());
            }
        }
    }

    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn holds_files(&self) -> bool {
        !self.files.is_empty()
    }

    fn sweep(&mut self) {
        for uid in self.files.dead() {
            self.forget(uid);
        }
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        for uid in self.files.uids() {
            self.forget(uid);
        }
    }
}
