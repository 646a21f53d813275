//! Segments made ready before they are needed.
//!
//! An `fdatasync` after writing into fresh or merely allocated blocks must also commit the
//! file system's extent changes; one after overwriting blocks already written need not
//! (DESIGN.md: 23 k syncs/s appending vs 29–31 k/s overwriting, 4 KiB each, and appends
//! suffer far more under a busy neighbour). So when a log's active segment is a quarter full,
//! the group's preparer thread writes the *next* segment file full of zeros and syncs it,
//! in the background, as `next.log.prep` in the log's directory. The roll then only writes
//! the header, syncs, and renames it into place, and every later write to that segment
//! overwrites blocks that already exist.
//!
//! The quarter mark leaves three quarters of a segment of lead time: starting at half full,
//! the zero-fill lost the race against a shard writing 150 MB/s in 8 of 10 measured runs.
//! Quiet shards take long to reach it, so they rarely pay for a prepared file; a log's very
//! first segment is sparse (nothing to predict from yet). A `.prep` file found at open is
//! from before a crash and is deleted.
//!
//! Only groups that sync segments on the acknowledgement path prepare: under a journal
//! ([`crate::journal`]) the syncs that acknowledge are the journal's, segments are synced
//! by its background checkpoints, and zero-filling them would write every byte twice
//! (measured in `riffled` under batched puts: the preparer took 56 % of the CPU, and
//! dropping it raised throughput 1.6×; bench/README.md).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::io::DataFile;

/// Name of the prepared file in a log directory.
pub(crate) const PREPARED_NAME: &str = "next.log.prep";

/// Bytes written per zeroing call: large enough to be sequential, small enough not to
/// hog the page cache.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

/// The state of one log's next segment file.
#[derive(Debug, Default)]
pub(crate) struct PrepSlot {
    state: Mutex<PrepState>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum PrepState {
    #[default]
    Idle,
    Working,
    Ready {
        path: PathBuf,
        capacity: u64,
    },
}

impl PrepSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, PrepState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves Idle -> Working; false if a preparation is running or ready.
    pub(crate) fn begin(&self) -> bool {
        let mut state = self.lock();
        if *state == PrepState::Idle {
            *state = PrepState::Working;
            true
        } else {
            false
        }
    }

    /// Takes a ready file of the given capacity, leaving the slot idle.
    pub(crate) fn take_ready(&self, capacity: u64) -> Option<PathBuf> {
        let mut state = self.lock();
        match &*state {
            PrepState::Ready { path, capacity: c } if *c == capacity => {
                let path = path.clone();
                *state = PrepState::Idle;
                Some(path)
            }
            _ => None,
        }
    }

    fn finish(&self, outcome: Option<(PathBuf, u64)>) {
        *self.lock() = match outcome {
            Some((path, capacity)) => PrepState::Ready { path, capacity },
            None => PrepState::Idle,
        };
    }
}

struct Job {
    dir: PathBuf,
    capacity: u64,
    slot: Arc<PrepSlot>,
}

/// Jobs waiting for the preparer thread, and whether it should stop.
#[derive(Default)]
struct Jobs {
    state: Mutex<JobsState>,
    wake: Condvar,
}

#[derive(Default)]
struct JobsState {
    queue: VecDeque<Job>,
    stop: bool,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, JobsState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next job, or `None` once stopped (queued jobs are then abandoned: the slots go
    /// back to idle and their logs create sparse segments).
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.stop {
                for job in state.queue.drain(..) {
                    job.slot.finish(None);
                }
                return None;
            }
            if let Some(job) = state.queue.pop_front() {
                return Some(job);
            }
            state = self.wake.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// The background thread that zero-fills next segment files. Stopping it (drop) does not
/// wait for the logs that hold handles to it.
pub(crate) struct Preparer {
    jobs: Arc<Jobs>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preparer")
    }
}

impl Preparer {
    pub(crate) fn start() -> Result<Self> {
        let jobs = Arc::new(Jobs::default());
        let thread_jobs = Arc::clone(&jobs);
        let thread = std::thread::Builder::new()
            .name("riffle-prepare".into())
            .spawn(move || {
                while let Some(job) = thread_jobs.next() {
                    let path = job.dir.join(PREPARED_NAME);
                    match zero_fill(&path, job.capacity, &thread_jobs) {
                        Ok(true) => job.slot.finish(Some((path, job.capacity))),
                        Ok(false) => job.slot.finish(None),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not prepare the next segment; it will be created sparse");
                            job.slot.finish(None);
                        }
                    }
                }
            })
            .map_err(|e| Error::io("riffle-prepare thread", e))?;
        Ok(Preparer { jobs, thread: Some(thread) })
    }

    /// A handle that can send requests from another thread.
    pub(crate) fn handle(&self) -> PreparerHandle {
        PreparerHandle { jobs: Arc::clone(&self.jobs) }
    }
}

/// A cloneable sender of preparation requests.
#[derive(Clone)]
pub(crate) struct PreparerHandle {
    jobs: Arc<Jobs>,
}

impl std::fmt::Debug for PreparerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparerHandle")
    }
}

impl PreparerHandle {
    /// Asks for `dir`'s next segment file; the caller has moved `slot` to Working.
    pub(crate) fn request(&self, dir: &Path, capacity: u64, slot: &Arc<PrepSlot>) {
        let job = Job { dir: dir.to_path_buf(), capacity, slot: Arc::clone(slot) };
        let mut state = self.jobs.lock();
        if state.stop {
            drop(state);
            slot.finish(None);
            return;
        }
        state.queue.push_back(job);
        drop(state);
        self.jobs.wake.notify_one();
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.jobs.lock().stop = true;
        self.jobs.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `capacity` zero bytes to a fresh file at `path` and makes them durable. Returns
/// false if the preparer was stopped meanwhile (the partial file is left for the next open
/// of the log to delete).
fn zero_fill(path: &Path, capacity: u64, jobs: &Jobs) -> Result<bool> {
    crate::io::remove_file(path)?;
    let file = DataFile::create_new(path)?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = 0u64;
    while at < capacity {
        if jobs.lock().stop {
            return Ok(false);
        }
        let n = (capacity - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    Ok(true)
}
