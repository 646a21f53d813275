//! The narrow boundary through which the engine does file I/O.
//!
//! Everything the engine does to files goes through `DataFile` (positioned read and write,
//! `fdatasync`, `set_len`) and the directory helpers here (create, rename, remove, directory
//! sync). The commit path batches its writes and syncs into one `CommitIo::run` call per
//! cycle, which a backend is free to execute concurrently:
//!
//! - `std_file::StdIo`: `pwrite` and `fdatasync`, one after another. Used by embedders
//!   and tests, and wherever io_uring is unavailable.
//! - `uring::UringIo` (feature `io-uring`, on by default): submits every file's writes and
//!   syncs of a cycle to io_uring at once through tokio-uring, so that the syncs of many
//!   segments overlap in the block layer instead of queueing one behind another.
//!
//! The backend is chosen when a commit group starts ([`IoBackend`]). `Auto` tries io_uring
//! and falls back to std with one log line if the kernel refuses it (old kernel, seccomp,
//! gVisor). A group that commits through a journal takes std under `Auto`: its cycles sync
//! one file, so io_uring has nothing to overlap, and ext4 punts each buffered write to an
//! io-wq worker thread (see `CommitGroup::start`).
//!
//! Under a directory mounted as a [`sim::SimDisk`], every operation here goes through the
//! simulated disk instead (crash, torn-write and fault testing).

pub mod sim;
pub(crate) mod std_file;
#[cfg(feature = "io-uring")]
pub(crate) mod uring;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use sim::SimDisk;

/// Which implementation runs the commit path's writes and syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring if the kernel allows it, otherwise std (logged once).
    #[default]
    Auto,
    /// Plain positioned writes and `fdatasync`.
    Std,
    /// io_uring through tokio-uring; opening fails if it is unavailable.
    Uring,
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoBackend::Auto),
            "std" => Ok(IoBackend::Std),
            "uring" | "io-uring" | "io_uring" => Ok(IoBackend::Uring),
            other => Err(format!("unknown I/O backend {other:?}; expected auto, std or uring")),
        }
    }
}

static NEXT_FILE_UID: AtomicU64 = AtomicU64::new(1);

/// An open data file (a segment log). Positioned I/O only; no cursor.
#[derive(Debug)]
pub struct DataFile {
    path: PathBuf,
    file: File,
    /// Process-unique id, so a backend can cache its own handle for this file.
    uid: u64,
    /// The simulated disk the file is on, and its inode there.
    sim: Option<(Arc<SimDisk>, u64)>,
    /// An `fdatasync` of this file failed: bytes written before it may never reach the
    /// disk, whatever later syncs say (Linux marks the pages clean).
    sync_failed: std::sync::atomic::AtomicBool,
}

impl DataFile {
    /// Opens an existing file for reading and writing.
    pub(crate) fn open(path: &Path) -> Result<Arc<Self>> {
        let file =
            OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io(path, e))?;
        let sim = match sim::disk_for(path) {
            Some(disk) => {
                let ino = disk.opened(path, &file).map_err(|e| Error::io(path, e))?;
                Some((disk, ino))
            }
            None => None,
        };
        Ok(Self::wrap(path, file, sim))
    }

    /// Creates a new file; fails if it exists.
    pub(crate) fn create_new(path: &Path) -> Result<Arc<Self>> {
        if let Some(disk) = sim::disk_for(path) {
            let (file, ino) = disk.create_new(path).map_err(|e| Error::io(path, e))?;
            return Ok(Self::wrap(path, file, Some((disk, ino))));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self::wrap(path, file, None))
    }

    fn wrap(path: &Path, file: File, sim: Option<(Arc<SimDisk>, u64)>) -> Arc<Self> {
        Arc::new(DataFile {
            path: path.to_path_buf(),
            file,
            uid: NEXT_FILE_UID.fetch_add(1, Ordering::Relaxed),
            sim,
            sync_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the file is on a simulated disk (whose model only the std backend drives).
    pub(crate) fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }

    pub(crate) fn std_file(&self) -> &File {
        &self.file
    }

    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().map_err(|e| Error::io(&self.path, e))?.len())
    }

    pub(crate) fn write_all_at(&self, bytes: &[u8], file_offset: u64) -> Result<()> {
        match &self.sim {
            Some((disk, ino)) => disk.write(*ino, &self.file, bytes, file_offset),
            None => std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, file_offset),
        }
        .map_err(|e| Error::io(&self.path, e))
    }

    pub(crate) fn read_exact_at(&self, buf: &mut [u8], file_offset: u64) -> Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, file_offset)
            .map_err(|e| Error::io(&self.path, e))
    }

    pub(crate) fn sync_data(&self) -> Result<()> {
        let result = match &self.sim {
            Some((disk, ino)) => disk.sync(*ino),
            None => self.file.sync_data(),
        };
        self.synced(result)
    }

    /// Records how an `fdatasync` of this file (made here or elsewhere, through a dup of
    /// its descriptor) went.
    pub(crate) fn synced(&self, result: std::io::Result<()>) -> Result<()> {
        if result.is_err() {
            self.sync_failed.store(true, Ordering::Release);
        }
        result.map_err(|e| Error::io(&self.path, e))
    }

    /// Whether an `fdatasync` of this file (through this handle) ever failed.
    pub(crate) fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::Acquire)
    }

    /// Frees the blocks of `[file_offset, file_offset + len)` so that they read as zeros,
    /// without changing the file's size (`fallocate(PUNCH_HOLE | KEEP_SIZE)`).
    pub(crate) fn punch_hole(&self, file_offset: u64, len: u64) -> Result<()> {
        use rustix::fs::FallocateFlags;
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if let Some((disk, ino)) = &self.sim {
            disk.punch(*ino, file_offset, len).map_err(|e| Error::io(&self.path, e))?;
        }
        match rustix::fs::fallocate(&self.file, flags, file_offset, len) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => self.write_zeros(file_offset, len),
            Err(e) => Err(Error::io(&self.path, e.into())),
        }
    }

    /// Overwrites a range with zeros (where the file system cannot punch holes).
    fn write_zeros(&self, file_offset: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(zeros.len() as u64) as usize;
            self.write_all_at(&zeros[..n], file_offset + at)?;
            at += n as u64;
        }
        Ok(())
    }

    pub(crate) fn set_len(&self, len: u64) -> Result<()> {
        match &self.sim {
            Some((disk, ino)) => disk.set_len(*ino, &self.file, len),
            None => self.file.set_len(len),
        }
        .map_err(|e| Error::io(&self.path, e))
    }
}

/// Makes a directory entry change (create, rename, unlink) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    match sim::disk_for(dir) {
        Some(disk) => disk.sync_dir(dir),
        None => File::open(dir).and_then(|d| d.sync_all()),
    }
    .map_err(|e| Error::io(dir, e))
}

/// Renames `from` to `to` (atomically replacing `to`).
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    match sim::disk_for(from) {
        Some(disk) => disk.rename(from, to),
        None => std::fs::rename(from, to),
    }
    .map_err(|e| Error::io(from, e))
}

/// Removes a file; a missing file is not an error.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    remove(path, false)
}

/// Removes a directory and everything in it; a missing directory is not an error.
pub(crate) fn remove_dir_all(path: &Path) -> Result<()> {
    remove(path, true)
}

fn remove(path: &Path, tree: bool) -> Result<()> {
    let result = match sim::disk_for(path) {
        Some(disk) => disk.remove(path, tree),
        None if tree => std::fs::remove_dir_all(path),
        None => std::fs::remove_file(path),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates a directory and any missing parents (not yet durable: sync the parent).
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    match sim::disk_for(path) {
        Some(disk) => disk.create_dir_all(path),
        None => std::fs::create_dir_all(path),
    }
    .map_err(|e| Error::io(path, e))
}

/// Tells a simulated disk about a file written through a memory map, which its model cannot
/// see: `created` (new or truncated) or merely opened for writing. Nothing otherwise.
pub(crate) fn note_mapped_file(path: &Path, created: bool) -> Result<()> {
    match sim::disk_for(path) {
        Some(disk) => disk.untracked(path, created).map_err(|e| Error::io(path, e)),
        None => Ok(()),
    }
}

/// One file's share of a commit cycle: bytes to write at an offset, then maybe a sync.
/// The buffer is owned so that an io_uring backend can hand it to the kernel; it comes
/// back to the log for reuse.
#[derive(Debug)]
pub(crate) struct CycleOp {
    pub file: Arc<DataFile>,
    pub file_offset: u64,
    pub buf: Vec<u8>,
    /// Bytes of `buf` to write: `buf[range]`.
    pub range: std::ops::Range<usize>,
    pub sync: bool,
    /// Filled in by the backend.
    pub result: Result<()>,
}

/// Runs the I/O of one commit cycle. Lives on the committing thread.
pub(crate) trait CommitIo {
    /// Performs every op: its write, then (if asked) its `fdatasync`. Ops on different
    /// files may run concurrently. Each op's `result` says how it went.
    fn run(&mut self, ops: &mut [CycleOp]);

    /// Forgets any cached state for a file that will not be written again.
    fn forget(&mut self, file_uid: u64);

    /// Whether the backend holds handles of its own to files (see [`CommitIo::sweep`]).
    fn holds_files(&self) -> bool {
        false
    }

    /// Closes the backend's handles of files that no longer exist anywhere else (deleted
    /// by retention, or with their stream), so that their space is freed. Called after
    /// every turn of the committer, and at least every second while it holds files.
    fn sweep(&mut self) {}

    /// A short name for logs and benchmark reports.
    fn name(&self) -> &'static str;
}

/// Builds the backend for a committing thread. Must be called on that thread (io_uring
/// rings are per thread).
pub(crate) fn commit_io(backend: IoBackend) -> Result<Box<dyn CommitIo>> {
    match backend {
        IoBackend::Std => Ok(Box::new(std_file::StdIo)),
        #[cfg(feature = "io-uring")]
        IoBackend::Uring => uring::UringIo::new()
            .map(|u| Box::new(u) as Box<dyn CommitIo>)
            .map_err(|e| Error::Config(format!("io_uring is unavailable: {e}"))),
        #[cfg(not(feature = "io-uring"))]
        IoBackend::Uring => Err(Error::Config(
            "this build has no io_uring backend (feature `io-uring` is off)".into(),
        )),
        #[cfg(feature = "io-uring")]
        IoBackend::Auto => match uring::UringIo::new() {
            Ok(u) => Ok(Box::new(u)),
            Err(e) => {
                log_fallback(&e);
                Ok(Box::new(std_file::StdIo))
            }
        },
        #[cfg(not(feature = "io-uring"))]
        IoBackend::Auto => Ok(Box::new(std_file::StdIo)),
    }
}

#[cfg(feature = "io-uring")]
fn log_fallback(e: &std::io::Error) {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing::warn!(error = %e, "io_uring is unavailable here; using std file I/O (pwrite + fdatasync)");
    });
}
