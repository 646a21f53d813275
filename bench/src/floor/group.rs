//! The group-commit floor: many producers, one file, one `fdatasync` for whatever arrived
//! while the previous one ran. This is the least a durable log does per acknowledgement at a
//! rate no single sync per message can keep, written as plainly as it can be: blocking
//! sockets, a reader thread per connection, one committer thread, no engine, no format.
//!
//! Producers run an open loop: each sends on its own schedule (`rate / producers`, staggered)
//! without waiting for answers, and a message's acknowledgement is timed from its intended
//! send, as `riffle-bench run --rate` times a put. The committer takes everything pending,
//! writes it with one `pwrite`, syncs, and answers each connection with one write of the
//! stamps it acknowledges.

use std::fs::File;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{read_or_end, ACK_BYTES, FILE_BYTES, STAMP_BYTES};
use crate::stats::{Latencies, Summary};

/// Most producers (each is a sending and an acknowledgement thread, and a reader thread on
/// the committer's side).
pub const MAX_PRODUCERS: usize = 256;
/// Bytes waiting for the committer before readers stop taking more off their sockets (then
/// TCP's own window holds the producers back, as a full server would). Each message counts
/// its size and [`PER_MESSAGE`].
const MAX_PENDING_BYTES: usize = 64 << 20;
/// What a pending message costs besides its bytes: its (connection, stamp) entry, and later
/// its acknowledgement in the committer's buffer.
const PER_MESSAGE: usize = 16 + ACK_BYTES;

/// What the group phase measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupResult {
    /// Messages per second over all producers.
    pub rate: f64,
    /// Producer connections.
    pub producers: usize,
    /// From each message's intended send to its acknowledgement after the sync.
    pub ack: Summary,
    /// Messages written and acknowledged (warm-up included).
    pub messages: u64,
    /// `fdatasync` calls (warm-up included).
    pub syncs: u64,
}

#[derive(Default)]
struct Pending {
    /// Messages' bytes, in arrival order.
    bytes: Vec<u8>,
    /// (connection, stamp) of each message in `bytes`.
    stamps: Vec<(usize, u64)>,
    /// Readers still reading.
    readers: usize,
    /// The committer failed: readers stop.
    aborted: bool,
}

struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when work arrives or a reader ends (to the committer), and when the
    /// committer takes the pending bytes (to readers held back by the bound).
    changed: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the group phase: `producers` connections sending `size`-byte messages at `rate` in
/// all, for `warmup + duration`, into `file`.
pub(super) fn phase(
    rate: f64,
    producers: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    file: &File,
) -> std::io::Result<GroupResult> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // Each connection is accepted as soon as it is made: a listener's queue holds only so
    // many (128 here), and a connect beyond it would wait for a SYN retry. The server side
    // needs no pairing: it answers on the socket it read.
    let mut clients = Vec::with_capacity(producers);
    let mut served = Vec::with_capacity(producers);
    for _ in 0..producers {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        clients.push(stream);
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        served.push(stream);
    }
    drop(listener);
    let answer: Vec<TcpStream> =
        served.iter().map(TcpStream::try_clone).collect::<Result<_, _>>()?;
    let queue = Queue {
        pending: Mutex::new(Pending { readers: producers, ..Pending::default() }),
        changed: Condvar::new(),
    };
    let epoch = Instant::now();
    let period = Duration::from_secs_f64(producers as f64 / rate);
    let end = warmup + duration;
    std::thread::scope(|s| {
        let queue = &queue;
        let readers: Vec<_> = served
            .into_iter()
            .enumerate()
            .map(|(conn, stream)| s.spawn(move || read_into(queue, conn, stream, size)))
            .collect();
        let committer = s.spawn(move || commit(queue, answer, file));
        let mut producer_threads = Vec::with_capacity(producers);
        for (i, stream) in clients.into_iter().enumerate() {
            let acks = stream.try_clone()?;
            // Staggered, so that the producers' sends interleave evenly at the total rate.
            let first = period.mul_f64(i as f64 / producers as f64);
            // A failing side shuts the whole socket down (both handles): otherwise the other
            // side, or the reader and committer across it, could wait on it forever.
            let sender = s.spawn(move || {
                send(&stream, size, epoch, first, period, end)
                    .inspect_err(|_| drop(stream.shutdown(Shutdown::Both)))
            });
            let waiter = s.spawn(move || {
                await_acks(&acks, epoch, warmup)
                    .inspect_err(|_| drop(acks.shutdown(Shutdown::Both)))
            });
            producer_threads.push((sender, waiter));
        }
        let mut ack = Latencies::default();
        let mut first_error = None;
        for (sender, waiter) in producer_threads {
            if let Err(e) = sender.join().expect("sender thread") {
                first_error.get_or_insert(e);
            }
            match waiter.join().expect("ack thread") {
                Ok(l) => ack.merge(&l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for reader in readers {
            if let Err(e) = reader.join().expect("reader thread") {
                first_error.get_or_insert(e);
            }
        }
        let committed = committer.join().expect("committer thread");
        // The committer's error first: it is the cause when the others only saw an end.
        let (messages, syncs) = committed?;
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(GroupResult { rate, producers, ack: ack.summary(), messages, syncs })
    })
}

/// A producer's sends: one message per `period` from `first`, stamped with its intended
/// send, until `end`; then it half-closes, which ends its reader on the other side.
fn send(
    mut stream: &TcpStream,
    size: usize,
    epoch: Instant,
    first: Duration,
    period: Duration,
    end: Duration,
) -> std::io::Result<()> {
    let mut msg = vec![0xA5u8; size];
    let mut slot = first;
    while slot < end {
        if let Some(wait) = slot.checked_sub(epoch.elapsed()) {
            std::thread::sleep(wait);
        }
        // Late sends are not skipped: the open loop's schedule stands, as `run --rate`'s.
        msg[..STAMP_BYTES].copy_from_slice(&(slot.as_nanos() as u64).to_le_bytes());
        stream.write_all(&msg)?;
        slot += period;
    }
    stream.shutdown(Shutdown::Write)
}

/// A producer's acknowledgements, timed from the stamps they carry back.
fn await_acks(
    mut stream: &TcpStream,
    epoch: Instant,
    warmup: Duration,
) -> std::io::Result<Latencies> {
    let mut ack = [0u8; ACK_BYTES];
    let mut latencies = Latencies::default();
    while read_or_end(&mut stream, &mut ack)? {
        let stamp = u64::from_le_bytes(ack[..STAMP_BYTES].try_into().expect("8 bytes"));
        let slot = Duration::from_nanos(stamp);
        if slot >= warmup {
            latencies.record(epoch.elapsed().saturating_sub(slot));
        }
    }
    Ok(latencies)
}

/// A connection's reader: hands each message to the committer, holding back while the
/// committer has [`MAX_PENDING_BYTES`] waiting.
fn read_into(
    queue: &Queue,
    conn: usize,
    mut stream: TcpStream,
    size: usize,
) -> std::io::Result<()> {
    let mut msg = vec![0u8; size];
    let outcome = loop {
        match read_or_end(&mut stream, &mut msg) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
        let stamp = u64::from_le_bytes(msg[..STAMP_BYTES].try_into().expect("8 bytes"));
        let mut pending = queue.lock();
        let cost = |p: &Pending| p.bytes.len() + p.stamps.len() * PER_MESSAGE;
        while cost(&pending) + size + PER_MESSAGE > MAX_PENDING_BYTES.max(size + PER_MESSAGE)
            && !pending.aborted
        {
            pending = queue.changed.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        if pending.aborted {
            break Ok(());
        }
        pending.bytes.extend_from_slice(&msg);
        pending.stamps.push((conn, stamp));
        drop(pending);
        queue.changed.notify_all();
    };
    queue.lock().readers -= 1;
    queue.changed.notify_all();
    outcome
}

/// The committer: takes what is pending, writes it, syncs, answers; until every reader has
/// ended and nothing is pending. Returns (messages, syncs). Closing `answer` on return ends
/// the producers' acknowledgement threads.
fn commit(queue: &Queue, mut answer: Vec<TcpStream>, file: &File) -> std::io::Result<(u64, u64)> {
    let (mut messages, mut syncs) = (0u64, 0u64);
    let mut offset = 0u64;
    let mut taken = Pending::default();
    let mut acks: Vec<Vec<u8>> = vec![Vec::new(); answer.len()];
    let outcome = loop {
        {
            let mut pending = queue.lock();
            while pending.stamps.is_empty() && pending.readers > 0 {
                pending = queue.changed.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            if pending.stamps.is_empty() {
                break Ok((messages, syncs));
            }
            std::mem::swap(&mut pending.bytes, &mut taken.bytes);
            std::mem::swap(&mut pending.stamps, &mut taken.stamps);
        }
        queue.changed.notify_all();
        if let Err(e) =
            write_wrapping(file, &taken.bytes, &mut offset).and_then(|()| file.sync_data())
        {
            break Err(e);
        }
        syncs += 1;
        messages += taken.stamps.len() as u64;
        for &(conn, stamp) in &taken.stamps {
            acks[conn].extend_from_slice(&stamp.to_le_bytes());
            acks[conn].extend_from_slice(&[0u8; ACK_BYTES - STAMP_BYTES]);
        }
        let sent = acks.iter_mut().zip(&mut answer).try_for_each(|(buf, stream)| {
            let r = if buf.is_empty() { Ok(()) } else { stream.write_all(buf) };
            buf.clear();
            r
        });
        if let Err(e) = sent {
            break Err(e);
        }
        taken.bytes.clear();
        taken.stamps.clear();
    };
    if outcome.is_err() {
        // Nobody will drain the queue: readers stop, and closing `answer` (with theirs)
        // resets the producers' connections, so that no thread waits on a full socket.
        queue.lock().aborted = true;
        queue.changed.notify_all();
        for stream in &answer {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    outcome
}

/// Writes `bytes` at `offset` in the `FILE_BYTES` file, going round to its start as needed.
fn write_wrapping(file: &File, mut bytes: &[u8], offset: &mut u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        if *offset >= FILE_BYTES {
            *offset = 0;
        }
        let room = (FILE_BYTES - *offset).min(bytes.len() as u64) as usize;
        file.write_all_at(&bytes[..room], *offset)?;
        *offset += room as u64;
        bytes = &bytes[room..];
    }
    Ok(())
}
