//! A simulated disk: power loss, torn writes and failing I/O, on demand and reproducibly.
//!
//! [`SimDisk::mount`] puts a directory under simulation. From then on every file operation
//! the engine makes below it (through [`DataFile`](super::DataFile) and the directory
//! helpers of this module's parent) is played against a model of a disk with a volatile
//! cache:
//!
//! - The real files play the **page cache**: writes land in them, and the running engine
//!   reads them (by `pread` and through its memory maps) exactly as it would in production.
//! - The **disk** is kept in memory: each file's content as of its last completed
//!   `fdatasync`, and each directory's entries as of its last directory sync. `fdatasync`
//!   is not passed to the kernel; it moves the file's pending changes to the disk model.
//! - At a **power loss** ([`SimDisk::power_off`], or a scheduled [`Fault::PowerLoss`]) the
//!   operation in progress and every later one fail with EIO and nothing more reaches the
//!   disk. [`SimDisk::restart`] then rewrites the directory as the disk holds it after the
//!   crash: per file, the synced content plus a random prefix of the changes made since its
//!   last sync, the last of them torn at a 512-byte sector boundary; per directory, the
//!   synced entries plus a random prefix of later creates, renames and removes (the order a
//!   metadata journal keeps).
//! - A **failed `fdatasync`** loses the file's pending changes for good, as Linux does: the
//!   pages are marked clean, so the cache still shows data that the disk will never hold.
//!   An engine that acknowledges anything after that loses it at the next crash.
//! - **Scheduled faults** ([`SimDisk::schedule`]) fail one operation with EIO or ENOSPC; a
//!   failing write may leave a sector-aligned prefix of its bytes in the cache.
//!
//! Files written through memory maps (the sparse indexes) are invisible to the model; at a
//! crash each one the engine opened keeps its cached content, loses a tail of 8-byte words
//! (an older state of an append-only index), or is cut short. Recovery must rebuild
//! whatever it cannot trust. Files the engine creates without telling the model (lock
//! files) vanish at a crash.
//!
//! Every random choice comes from the seed given to `mount`, and operations are numbered
//! in the order they happen, so a single-threaded workload on one commit group replays a
//! run exactly. Only the std commit backend goes through the model: an engine on a
//! simulated disk must use [`IoBackend::Std`](super::IoBackend::Std) (the io_uring backend
//! falls back to it for simulated files).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Sector size: the unit a torn write keeps or loses.
pub const SECTOR_BYTES: u64 = 512;

/// A kind of file operation, as counted and matched by [`SimDisk::schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Creating a file.
    Create,
    /// A positioned write.
    Write,
    /// `fdatasync` of a file.
    Sync,
    /// Changing a file's length.
    SetLen,
    /// Punching a hole (freeing a range that then reads as zeros).
    Punch,
    /// Renaming a file.
    Rename,
    /// Removing a file or a directory tree.
    Remove,
    /// Creating a directory.
    Mkdir,
    /// Syncing a directory (making its entry changes durable).
    SyncDir,
}

/// What happens to a scheduled operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with EIO. A failing `fdatasync` loses the file's pending changes.
    Eio,
    /// The operation fails with ENOSPC.
    NoSpace,
    /// Power fails as the operation starts: it and everything after it fail with EIO.
    PowerLoss,
}

/// Counts of what the simulation did, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// File operations seen (all kinds).
    pub ops: u64,
    /// Operations failed by a scheduled EIO or ENOSPC.
    pub faults: u64,
    /// Power losses.
    pub power_losses: u64,
    /// Restarts after a power loss.
    pub restarts: u64,
    /// Pending file changes dropped at restarts (never synced).
    pub changes_lost: u64,
    /// Writes torn at a sector boundary at restarts.
    pub torn_writes: u64,
    /// Pending directory changes dropped at restarts.
    pub entries_lost: u64,
}

/// A directory under simulation. See the [module documentation](self).
#[derive(Debug)]
pub struct SimDisk {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

/// A change to the namespace, not yet durable.
#[derive(Debug, Clone)]
enum Entry {
    Link(PathBuf, Node),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl Entry {
    fn touches(&self, dir: &Path) -> bool {
        let parent = |p: &Path| p.parent() == Some(dir);
        match self {
            Entry::Link(p, _) | Entry::Unlink(p) => parent(p),
            Entry::Rename(a, b) => parent(a) || parent(b),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, Node>) {
        match self {
            Entry::Link(p, node) => {
                names.insert(p.clone(), *node);
            }
            Entry::Unlink(p) => {
                let doomed: Vec<PathBuf> = names
                    .range(p.clone()..)
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(p))
                    .cloned()
                    .collect();
                for k in doomed {
                    names.remove(&k);
                }
            }
            Entry::Rename(from, to) => {
                if let Some(node) = names.remove(from) {
                    names.insert(to.clone(), node);
                }
            }
        }
    }
}

/// A change to a file's content or length, not yet durable.
#[derive(Debug, Clone)]
enum Change {
    Write { at: u64, bytes: Vec<u8> },
    Zero { at: u64, len: u64 },
    SetLen(u64),
}

/// A file's content: `bytes` up to the highest byte written, zeros from there to `len`.
#[derive(Debug, Clone, Default)]
struct Content {
    bytes: Vec<u8>,
    len: u64,
}

impl Content {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Write { at, bytes } => self.write(*at, bytes),
            Change::Zero { at, len } => {
                let end = (*at + *len).min(self.bytes.len() as u64);
                if *at < end {
                    self.bytes[*at as usize..end as usize].fill(0);
                }
            }
            Change::SetLen(len) => {
                self.len = *len;
                self.bytes.truncate(*len as usize);
            }
        }
    }

    fn write(&mut self, at: u64, bytes: &[u8]) {
        let end = at as usize + bytes.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[at as usize..end].copy_from_slice(bytes);
        self.len = self.len.max(end as u64);
    }
}

#[derive(Debug)]
struct Inode {
    /// Where the live file is (for reading an untracked file's cached content).
    live_path: Option<PathBuf>,
    kind: InodeKind,
}

#[derive(Debug)]
enum InodeKind {
    /// Written through `DataFile`: the model knows its durable content and pending changes.
    Tracked { disk: Content, pending: Vec<Change> },
    /// Written behind the model's back (memory maps). `touched`: opened for writing since
    /// the last restart, so its cached content may differ from the disk's.
    Untracked { touched: bool },
}

#[derive(Debug)]
struct Rule {
    kind: Option<OpKind>,
    from_op: u64,
    fault: Fault,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    powered: bool,
    next_op: u64,
    rules: Vec<Rule>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// The namespace the running system sees, by path relative to the root.
    live: BTreeMap<PathBuf, Node>,
    /// The durable namespace.
    disk: BTreeMap<PathBuf, Node>,
    /// Live namespace changes not yet durable, oldest first.
    journal: Vec<Entry>,
    stats: SimStats,
}

/// Directories under simulation. `MOUNTED` lets unsimulated processes skip the lock.
static MOUNTED: AtomicUsize = AtomicUsize::new(0);
static MOUNTS: Mutex<Vec<Weak<SimDisk>>> = Mutex::new(Vec::new());

/// The simulated disk `path` is on, if any.
pub(crate) fn disk_for(path: &Path) -> Option<Arc<SimDisk>> {
    if MOUNTED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mounts = MOUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    mounts.iter().filter_map(Weak::upgrade).find(|d| path.starts_with(&d.root))
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl SimDisk {
    /// Puts `root` (an existing directory) under simulation, with every random choice drawn
    /// from `seed`. What the directory holds now is taken as durable. Paths given to the
    /// engine must start with `root` spelled the same way. The simulation ends when the
    /// returned handle is dropped.
    pub fn mount(root: &Path, seed: u64) -> io::Result<Arc<SimDisk>> {
        let mut mounts = MOUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        mounts.retain(|w| w.strong_count() > 0);
        let overlaps = |d: Arc<SimDisk>| d.root.starts_with(root) || root.starts_with(&d.root);
        if mounts.iter().filter_map(Weak::upgrade).any(overlaps) {
            return Err(io::Error::other(format!(
                "{} overlaps a mounted simulated disk",
                root.display()
            )));
        }
        let mut state = State {
            rng: SplitMix64(seed),
            powered: true,
            next_op: 0,
            rules: Vec::new(),
            inodes: HashMap::new(),
            next_inode: 1,
            live: BTreeMap::new(),
            disk: BTreeMap::new(),
            journal: Vec::new(),
            stats: SimStats::default(),
        };
        import(root, Path::new(""), &mut state)?;
        state.disk = state.live.clone();
        // Counted before the handle exists, so that its drop always has a mount to undo.
        MOUNTED.fetch_add(1, Ordering::AcqRel);
        let disk = Arc::new(SimDisk { root: root.to_path_buf(), state: Mutex::new(state) });
        mounts.push(Arc::downgrade(&disk));
        Ok(disk)
    }

    /// The directory under simulation.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the first operation numbered `from_op` or later (of `kind`, if given) fail
    /// with `fault`. Operations are numbered from 0 in the order they happen; see
    /// [`SimDisk::ops`].
    pub fn schedule(&self, kind: Option<OpKind>, from_op: u64, fault: Fault) {
        self.lock().rules.push(Rule { kind, from_op, fault });
    }

    /// Forgets every scheduled fault that has not fired.
    pub fn clear_schedule(&self) {
        self.lock().rules.clear();
    }

    /// How many operations have been numbered so far.
    pub fn ops(&self) -> u64 {
        self.lock().next_op
    }

    /// Whether the power is on (false between a power loss and [`SimDisk::restart`]).
    pub fn powered(&self) -> bool {
        self.lock().powered
    }

    /// Counts so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Cuts the power now: every later operation fails with EIO and changes nothing.
    pub fn power_off(&self) {
        let mut state = self.lock();
        if state.powered {
            state.powered = false;
            state.stats.power_losses += 1;
        }
    }

    /// Brings the machine back after a power loss (cutting the power first if it is still
    /// on): rewrites the directory as the disk holds it after the crash, drawing what
    /// survives of the unsynced changes from the seed, and powers on. Whatever used the
    /// files (the engine) must have been dropped; the files are replaced.
    pub fn restart(&self) -> io::Result<()> {
        self.power_off();
        let mut state = self.lock();
        let state = &mut *state;
        // Namespace: the synced entries, then a random prefix of the journal.
        let keep = state.rng.below(state.journal.len() as u64 + 1) as usize;
        state.stats.entries_lost += (state.journal.len() - keep) as u64;
        let mut names = state.disk.clone();
        for entry in state.journal.drain(..keep) {
            entry.apply(&mut names);
        }
        state.journal.clear();
        // Content: per file that survives, what its sectors hold after the crash.
        let mut contents: BTreeMap<u64, Content> = BTreeMap::new();
        for node in names.values() {
            if let Node::File(ino) = node {
                if !contents.contains_key(ino) {
                    let content = state.crash_content(*ino, &self.root)?;
                    contents.insert(*ino, content);
                }
            }
        }
        // Rewrite the directory.
        for entry in std::fs::read_dir(&self.root)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        let mut survivors = BTreeMap::new();
        for (path, node) in &names {
            if path
                .parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !survivors.contains_key(p))
            {
                continue; // its directory did not survive
            }
            let real = self.root.join(path);
            match node {
                Node::Dir => std::fs::create_dir(&real)?,
                Node::File(ino) => {
                    let content = &contents[ino];
                    let file = File::create(&real)?;
                    file.write_all_at(&content.bytes, 0)?;
                    file.set_len(content.len)?;
                }
            }
            survivors.insert(path.clone(), *node);
        }
        // The new state: everything on disk, nothing pending.
        let mut inodes = HashMap::new();
        for (path, node) in &survivors {
            if let Node::File(ino) = node {
                let live_path = Some(path.clone());
                let kind = match state.inodes.get(ino).map(|i| &i.kind) {
                    Some(InodeKind::Tracked { .. }) => {
                        InodeKind::Tracked { disk: contents[ino].clone(), pending: Vec::new() }
                    }
                    _ => InodeKind::Untracked { touched: false },
                };
                inodes.insert(*ino, Inode { live_path, kind });
            }
        }
        state.inodes = inodes;
        state.live = survivors.clone();
        state.disk = survivors;
        state.rules.clear();
        state.powered = true;
        state.stats.restarts += 1;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn relative<'a>(&self, path: &'a Path) -> io::Result<&'a Path> {
        path.strip_prefix(&self.root).map_err(|_| {
            io::Error::other(format!("{} is not under the simulated disk", path.display()))
        })
    }

    // ---- Operations, called by the io module. Each runs whole under the lock. ----

    pub(crate) fn create_new(&self, path: &Path) -> io::Result<(File, u64)> {
        let rel = self.relative(path)?.to_path_buf();
        let mut state = self.lock();
        state.begin(OpKind::Create)?;
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        let ino = state
            .link_new(&rel, InodeKind::Tracked { disk: Content::default(), pending: Vec::new() });
        Ok((file, ino))
    }

    /// A file opened through `DataFile`: tracked from now on.
    pub(crate) fn opened(&self, path: &Path, file: &File) -> io::Result<u64> {
        let rel = self.relative(path)?.to_path_buf();
        let mut state = self.lock();
        match state.live.get(&rel).copied() {
            Some(Node::File(ino)) => {
                let inode = state.inodes.get_mut(&ino).expect("live inode");
                if let InodeKind::Untracked { .. } = inode.kind {
                    // Known so far only by name (found at mount or restart): its cached content
                    // is its durable content.
                    inode.kind = InodeKind::Tracked { disk: read_all(file)?, pending: Vec::new() };
                }
                Ok(ino)
            }
            _ => Err(io::Error::other(format!(
                "{} was created behind the simulated disk's back",
                path.display()
            ))),
        }
    }

    /// A file created or opened for writing outside `DataFile` (an index written through a
    /// memory map).
    pub(crate) fn untracked(&self, path: &Path, created: bool) -> io::Result<()> {
        let rel = self.relative(path)?.to_path_buf();
        let mut state = self.lock();
        if created {
            state.begin(OpKind::Create)?;
        } else if !state.powered {
            return Err(eio());
        }
        match state.live.get(&rel).copied() {
            Some(Node::File(ino)) => {
                if let Some(Inode { kind: InodeKind::Untracked { touched }, .. }) =
                    state.inodes.get_mut(&ino)
                {
                    *touched = true;
                }
            }
            _ => {
                state.link_new(&rel, InodeKind::Untracked { touched: true });
            }
        }
        Ok(())
    }

    pub(crate) fn write(&self, ino: u64, file: &File, bytes: &[u8], at: u64) -> io::Result<()> {
        let mut state = self.lock();
        if let Err(e) = state.begin(OpKind::Write) {
            if state.powered {
                // A failing write may have put part of its bytes in the cache.
                let sectors = bytes.len() as u64 / SECTOR_BYTES;
                let keep = (state.rng.below(sectors + 1) * SECTOR_BYTES) as usize;
                if keep > 0 {
                    file.write_all_at(&bytes[..keep], at)?;
                    state.pending(ino).push(Change::Write { at, bytes: bytes[..keep].to_vec() });
                }
            }
            return Err(e);
        }
        file.write_all_at(bytes, at)?;
        state.pending(ino).push(Change::Write { at, bytes: bytes.to_vec() });
        Ok(())
    }

    pub(crate) fn sync(&self, ino: u64) -> io::Result<()> {
        let mut state = self.lock();
        let outcome = state.begin(OpKind::Sync);
        let powered = state.powered;
        let Some(Inode { kind: InodeKind::Tracked { disk, pending }, .. }) =
            state.inodes.get_mut(&ino)
        else {
            return outcome;
        };
        match outcome {
            Ok(()) => {
                for change in pending.drain(..) {
                    disk.apply(&change);
                }
            }
            Err(_) if powered => {
                // Writeback failed: the pages are marked clean, their data never reaches
                // the disk (unless written again).
                let lost = pending.len() as u64;
                pending.clear();
                state.stats.changes_lost += lost;
            }
            Err(_) => {}
        }
        outcome
    }

    pub(crate) fn set_len(&self, ino: u64, file: &File, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.begin(OpKind::SetLen)?;
        file.set_len(len)?;
        state.pending(ino).push(Change::SetLen(len));
        Ok(())
    }

    /// Records a punched hole; the caller has already zeroed the range in the real file.
    pub(crate) fn punch(&self, ino: u64, at: u64, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.begin(OpKind::Punch)?;
        state.pending(ino).push(Change::Zero { at, len });
        Ok(())
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (rel_from, rel_to) =
            (self.relative(from)?.to_path_buf(), self.relative(to)?.to_path_buf());
        let mut state = self.lock();
        state.begin(OpKind::Rename)?;
        std::fs::rename(from, to)?;
        if let Some(node) = state.live.remove(&rel_from) {
            if let Node::File(ino) = node {
                if let Some(inode) = state.inodes.get_mut(&ino) {
                    inode.live_path = Some(rel_to.clone());
                }
            }
            state.live.insert(rel_to.clone(), node);
        }
        state.journal.push(Entry::Rename(rel_from, rel_to));
        Ok(())
    }

    /// Removes a file or a whole directory tree. A missing path is not an error.
    pub(crate) fn remove(&self, path: &Path, tree: bool) -> io::Result<()> {
        let rel = self.relative(path)?.to_path_buf();
        let mut state = self.lock();
        state.begin(OpKind::Remove)?;
        let result = if tree { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let entry = Entry::Unlink(rel);
        entry.apply(&mut state.live);
        state.journal.push(entry);
        Ok(())
    }

    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let rel = self.relative(path)?.to_path_buf();
        let mut state = self.lock();
        let mut missing = Vec::new();
        for dir in rel.ancestors().filter(|p| !p.as_os_str().is_empty()) {
            if state.live.contains_key(dir) {
                break;
            }
            missing.push(dir.to_path_buf());
        }
        for dir in missing.into_iter().rev() {
            state.begin(OpKind::Mkdir)?;
            std::fs::create_dir(self.root.join(&dir))?;
            state.live.insert(dir.clone(), Node::Dir);
            state.journal.push(Entry::Link(dir, Node::Dir));
        }
        Ok(())
    }

    /// Makes every namespace change up to the last one in `dir` durable (a journal commits
    /// in order).
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let rel = self.relative(dir)?.to_path_buf();
        let mut state = self.lock();
        state.begin(OpKind::SyncDir)?;
        if let Some(last) = state.journal.iter().rposition(|e| e.touches(&rel)) {
            let done: Vec<Entry> = state.journal.drain(..=last).collect();
            for entry in done {
                entry.apply(&mut state.disk);
            }
        }
        Ok(())
    }
}

impl Drop for SimDisk {
    fn drop(&mut self) {
        MOUNTED.fetch_sub(1, Ordering::AcqRel);
    }
}

impl State {
    /// Numbers an operation and decides whether it fails.
    fn begin(&mut self, kind: OpKind) -> io::Result<()> {
        let op = self.next_op;
        self.next_op += 1;
        self.stats.ops += 1;
        if !self.powered {
            return Err(eio());
        }
        let fired =
            self.rules.iter().position(|r| op >= r.from_op && r.kind.is_none_or(|k| k == kind));
        let Some(i) = fired else { return Ok(()) };
        match self.rules.remove(i).fault {
            Fault::Eio => {
                self.stats.faults += 1;
                Err(eio())
            }
            Fault::NoSpace => {
                self.stats.faults += 1;
                Err(enospc())
            }
            Fault::PowerLoss => {
                self.powered = false;
                self.stats.power_losses += 1;
                Err(eio())
            }
        }
    }

    fn link_new(&mut self, rel: &Path, kind: InodeKind) -> u64 {
        let ino = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(ino, Inode { live_path: Some(rel.to_path_buf()), kind });
        let entry = Entry::Link(rel.to_path_buf(), Node::File(ino));
        entry.apply(&mut self.live);
        self.journal.push(entry);
        ino
    }

    fn pending(&mut self, ino: u64) -> &mut Vec<Change> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(InodeKind::Tracked { pending, .. }) => pending,
            _ => panic!("simulated inode {ino} is not tracked"),
        }
    }

    /// What a file holds after the crash.
    fn crash_content(&mut self, ino: u64, root: &Path) -> io::Result<Content> {
        let Some(inode) = self.inodes.get(&ino) else { return Ok(Content::default()) };
        match &inode.kind {
            InodeKind::Tracked { disk, pending } => {
                let mut content = disk.clone();
                let keep = self.rng.below(pending.len() as u64 + 1) as usize;
                for change in &pending[..keep] {
                    content.apply(change);
                }
                self.stats.changes_lost += (pending.len() - keep) as u64;
                if let Some(Change::Write { at, bytes }) = pending.get(keep) {
                    // The first lost write is torn: some of its whole sectors made it.
                    let end = at + bytes.len() as u64;
                    let first_boundary = at.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
                    if first_boundary < end {
                        let boundaries = (end - first_boundary) / SECTOR_BYTES + 1;
                        let cut = first_boundary + self.rng.below(boundaries) * SECTOR_BYTES;
                        let cut = cut.min(end);
                        if cut > *at {
                            content.write(*at, &bytes[..(cut - at) as usize]);
                            self.stats.torn_writes += 1;
                        }
                    }
                }
                Ok(content)
            }
            InodeKind::Untracked { touched } => {
                let cached = match &inode.live_path {
                    Some(p) => match File::open(root.join(p)) {
                        Ok(f) => read_all(&f)?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Content::default(),
                        Err(e) => return Err(e),
                    },
                    None => Content::default(),
                };
                if !touched {
                    return Ok(cached);
                }
                let mut content = cached;
                match self.rng.below(4) {
                    0 | 1 => {} // every page made it
                    2 => {
                        // An older state: a tail of words never reached the disk.
                        let words = content.len / 8;
                        let from = self.rng.below(words + 1) * 8;
                        content.apply(&Change::Zero { at: from, len: content.len - from });
                    }
                    _ => {
                        // Cut short: the length change made it, the data did not.
                        let words = content.len / 8;
                        let len = self.rng.below(words + 1) * 8;
                        content.apply(&Change::SetLen(len));
                    }
                }
                Ok(content)
            }
        }
    }
}

fn read_all(file: &File) -> io::Result<Content> {
    let len = file.metadata()?.len();
    let mut bytes =
        vec![0u8; usize::try_from(len).map_err(|_| io::Error::other("file too large"))?];
    file.read_exact_at(&mut bytes, 0)?;
    // Keep only up to the last nonzero byte: sparse preallocated files stay small.
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes.truncate(used);
    Ok(Content { bytes, len })
}

/// Takes what `dir` holds as the live (and durable) namespace.
fn import(root: &Path, rel: &Path, state: &mut State) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            state.live.insert(rel_path.clone(), Node::Dir);
            import(root, &rel_path, state)?;
        } else {
            let ino = state.next_inode;
            state.next_inode += 1;
            state.inodes.insert(
                ino,
                Inode {
                    live_path: Some(rel_path.clone()),
                    kind: InodeKind::Untracked { touched: false },
                },
            );
            state.live.insert(rel_path, Node::File(ino));
        }
    }
    Ok(())
}

/// splitmix64: small, fast, and good enough to draw crash outcomes.
#[derive(Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{self, DataFile};

    fn content(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_default()
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_ones_survive_as_a_sector_prefix_at_most() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let root = tempfile::tempdir().expect("tempdir");
            std::fs::write(root.path().join("f"), b"").expect("create");
            let disk = SimDisk::mount(root.path(), seed).expect("mount");
            let path = root.path().join("f");
            let file = DataFile::open(&path).expect("open");
            file.write_all_at(&[1u8; 1000], 0).expect("write");
            file.sync_data().expect("sync");
            file.write_all_at(&[2u8; 2048], 1000).expect("write");
            drop(file);
            disk.restart().expect("restart");
            let after = content(&path);
            assert!(
                after.len() >= 1000 && after[..1000] == [1u8; 1000],
                "seed {seed}: synced bytes lost"
            );
            let kept = after.len() - 1000;
            assert!(after[1000..].iter().all(|b| *b == 2), "seed {seed}: foreign bytes");
            // The unsynced write keeps whole sectors (its first ends at 1024) or all of it.
            assert!(
                kept == 2048 || kept == 0 || (1000 + kept).is_multiple_of(512),
                "seed {seed}: kept {kept}"
            );
            outcomes.insert(kept);
        }
        assert!(outcomes.len() >= 3, "torn, lost and whole writes all occur: {outcomes:?}");
    }

    #[test]
    fn a_failed_fdatasync_loses_its_data_for_good() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("f"), b"").expect("create");
        let disk = SimDisk::mount(root.path(), 1).expect("mount");
        let path = root.path().join("f");
        let file = DataFile::open(&path).expect("open");
        file.write_all_at(b"lost", 0).expect("write");
        disk.schedule(Some(OpKind::Sync), 0, Fault::Eio);
        assert!(file.sync_data().is_err());
        file.write_all_at(b"kept", 4).expect("write");
        file.sync_data().expect("a later sync succeeds");
        assert_eq!(content(&path), b"lostkept", "the cache still shows both");
        drop(file);
        disk.restart().expect("restart");
        assert_eq!(content(&path), b"\0\0\0\0kept", "the disk never got the first write");
    }

    #[test]
    fn namespace_changes_need_a_directory_sync() {
        let mut reverted = 0;
        for seed in 0..32 {
            let root = tempfile::tempdir().expect("tempdir");
            let disk = SimDisk::mount(root.path(), seed).expect("mount");
            let (tmp, dst, other) =
                (root.path().join("a.tmp"), root.path().join("a"), root.path().join("b.tmp"));
            let file = DataFile::create_new(&tmp).expect("create");
            file.write_all_at(b"data", 0).expect("write");
            file.sync_data().expect("sync");
            io::rename(&tmp, &dst).expect("rename");
            io::sync_dir(root.path()).expect("sync dir");
            DataFile::create_new(&other).expect("create");
            drop(file);
            disk.restart().expect("restart");
            assert_eq!(content(&dst), b"data", "seed {seed}: a synced rename survives");
            assert!(!tmp.exists());
            reverted += usize::from(!other.exists());
        }
        assert!(reverted > 0 && reverted < 32, "an unsynced create may or may not survive");
    }

    #[test]
    fn after_a_power_loss_everything_fails_until_the_restart() {
        let root = tempfile::tempdir().expect("tempdir");
        let disk = SimDisk::mount(root.path(), 3).expect("mount");
        let file = DataFile::create_new(&root.path().join("f")).expect("create");
        disk.schedule(None, disk.ops() + 1, Fault::PowerLoss);
        file.write_all_at(b"x", 0).expect("the op before the power loss");
        assert!(file.sync_data().is_err());
        assert!(!disk.powered());
        assert!(file.write_all_at(b"y", 1).is_err());
        assert!(io::sync_dir(root.path()).is_err());
        drop(file);
        disk.restart().expect("restart");
        assert!(disk.powered());
        let left = content(&root.path().join("f"));
        assert!(left.is_empty() || left == b"x", "the unsynced write is whole or gone: {left:?}");
        assert!(SimDisk::mount(root.path(), 4).is_err(), "one simulation per directory");
    }
}
