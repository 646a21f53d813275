//! The machine's floor under the latencies `riffle-bench run` reports: the same round trips
//! with nothing of Riffle in them, on the same machine, at the same rate.
//!
//! A put to `riffled` is a loopback TCP round trip, and a durable one waits for an
//! `fdatasync` as well; put → push adds a hop to a subscriber's socket. Each of these
//! wakes a sleeping thread, and on a shared virtual machine a wake-up alone can take
//! milliseconds at p99. `riffle-bench floor` measures those pieces bare, so that a Riffle
//! figure can be quoted as a ratio against a floor measured in the same hour:
//!
//! - **timer wake-up**: how late the sender wakes for a send it slept for (the rest of the
//!   1/rate period after the previous answer; after a late answer it sends at once);
//! - **loopback round trip**: a `size`-byte message to an echo thread, and a 16-byte
//!   answer back, timed from the intended send as `riffle-bench run --rate` times a put
//!   (so it includes the wake-up's lateness, as a put's latency does);
//! - **durable round trip**: the same, with the echo thread writing the message into a
//!   preallocated file and calling `fdatasync` before it answers: a durable put
//!   acknowledged alone, with no batching and no engine;
//! - **durable delivery**: from the intended send to a second connection (a subscriber)
//!   receiving the message, which the echo thread forwards after the sync: the put → push
//!   floor.
//!
//! Blocking std I/O, one message in flight, threads that sleep in the kernel between
//! messages, as Riffle's do at low rates.
//!
//! With `group_rate`, a third phase measures the floor of a durable put at a rate one sync
//! per message cannot keep: many producers in an open loop, and one committer syncing
//! whatever arrived during the previous sync ([`group`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::stats::{Latencies, Summary};

pub mod group;
pub use group::{GroupResult, MAX_PRODUCERS};

/// Bytes of the file the durable phase overwrites (zero-filled first, so that its syncs
/// commit data only, as a preallocated journal's do).
const FILE_BYTES: u64 = 4 << 20;
/// Largest message.
pub const MAX_SIZE: usize = 1 << 20;
/// Slowest rate (messages per second).
pub const MIN_RATE: f64 = 0.01;
/// Fastest rate: one message in flight cannot go much faster on loopback.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Longest phase, warm-up included.
const MAX_PHASE: Duration = Duration::from_secs(24 * 3600);
const ACK_BYTES: usize = 16;
const STAMP_BYTES: usize = 8;

/// What [`measure`] runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorConfig {
    /// Messages per second, in each of the two phases.
    pub rate: f64,
    /// Measured time of each phase.
    pub duration: Duration,
    /// Unmeasured time before each phase.
    pub warmup: Duration,
    /// Message bytes (at least 8, at most [`MAX_SIZE`]).
    pub size: usize,
    /// Directory of the durable phase's file (use the file system under test).
    pub dir: PathBuf,
    /// Messages per second over all producers of the group-commit phase; none: no such phase.
    #[serde(default)]
    pub group_rate: Option<f64>,
    /// Producer connections of the group-commit phase (1..=[`MAX_PRODUCERS`]).
    #[serde(default = "default_group_producers")]
    pub group_producers: usize,
}

/// The group phase's producers when not given.
pub fn default_group_producers() -> usize {
    8
}

/// The floor's distributions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorResult {
    /// What was run.
    pub config: FloorConfig,
    /// Lateness of the sender's scheduled wake-ups, both phases.
    pub timer_wakeup: Summary,
    /// Message out and 16 bytes back over loopback TCP, from the intended send.
    pub round_trip: Summary,
    /// The same with a write and an `fdatasync` before the answer.
    pub durable_round_trip: Summary,
    /// From the intended send to the subscriber's receipt of the message, which the echo
    /// thread forwards after the sync.
    pub durable_delivery: Summary,
    /// The group-commit phase, if it ran.
    #[serde(default)]
    pub group: Option<GroupResult>,
}

/// Runs the plain phase, the durable one, then the group-commit one if asked for.
pub fn measure(config: &FloorConfig) -> Result<FloorResult, String> {
    for (name, rate) in [("rate", Some(config.rate)), ("group rate", config.group_rate)] {
        if let Some(rate) = rate.filter(|r| !(MIN_RATE..=MAX_RATE).contains(r)) {
            return Err(format!("{name} must be {MIN_RATE}..={MAX_RATE} per second, not {rate}"));
        }
    }
    if config.group_rate.is_some() && !(1..=MAX_PRODUCERS).contains(&config.group_producers) {
        return Err(format!(
            "group producers must be 1..={MAX_PRODUCERS}, not {}",
            config.group_producers
        ));
    }
    if config.warmup.checked_add(config.duration).is_none_or(|t| t > MAX_PHASE) {
        return Err(format!("warm-up + duration must be at most {} s", MAX_PHASE.as_secs()));
    }
    if !(STAMP_BYTES..=MAX_SIZE).contains(&config.size) {
        return Err(format!("size must be {STAMP_BYTES}..={MAX_SIZE} bytes, not {}", config.size));
    }
    let path = config.dir.join(format!("riffle-bench-floor-{}.tmp", std::process::id()));
    let file = prepare_file(&path).map_err(|e| {
        let _ = std::fs::remove_file(&path);
        format!("{}: {e}", path.display())
    })?;
    let outcome = run_phases(config, &file);
    drop(file);
    let _ = std::fs::remove_file(&path);
    outcome
}

fn run_phases(config: &FloorConfig, file: &File) -> Result<FloorResult, String> {
    let mut wake = Latencies::default();
    let plain = phase(config, None, &mut wake).map_err(|e| format!("loopback phase: {e}"))?;
    let durable =
        phase(config, Some(file), &mut wake).map_err(|e| format!("durable phase: {e}"))?;
    let group = config
        .group_rate
        .map(|rate| {
            let c = config;
            group::phase(rate, c.group_producers, c.size, c.warmup, c.duration, file)
                .map_err(|e| format!("group-commit phase: {e}"))
        })
        .transpose()?;
    Ok(FloorResult {
        config: config.clone(),
        timer_wakeup: wake.summary(),
        round_trip: plain.round_trip.summary(),
        durable_round_trip: durable.round_trip.summary(),
        durable_delivery: durable.delivery.summary(),
        group,
    })
}

fn prepare_file(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < FILE_BYTES {
        file.write_all_at(&zeros, at)?;
        at += zeros.len() as u64;
    }
    file.sync_all()?;
    Ok(file)
}

struct Phase {
    round_trip: Latencies,
    delivery: Latencies,
}

/// One phase: an echo thread (syncing into `file` and forwarding to a subscriber if
/// given) and the sender on this thread.
fn phase(
    config: &FloorConfig,
    file: Option<&File>,
    wake: &mut Latencies,
) -> std::io::Result<Phase> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut producer = TcpStream::connect(addr)?;
    producer.set_nodelay(true)?;
    let subscriber = match file {
        Some(_) => Some(TcpStream::connect(addr)?),
        None => None,
    };
    // Loopback connections are complete once `connect` returns: accept both here, before
    // any thread starts (so that no thread can be left waiting in `accept`), and tell them
    // apart by address rather than by the order the kernel queued them in.
    let (mut echo_producer, mut echo_subscriber) = (None, None);
    for _ in 0..1 + usize::from(subscriber.is_some()) {
        let (stream, peer) = listener.accept()?;
        stream.set_nodelay(true)?;
        if peer == producer.local_addr()? {
            echo_producer = Some(stream);
        } else if subscriber.as_ref().map(TcpStream::local_addr).transpose()? == Some(peer) {
            echo_subscriber = Some(stream);
        }
    }
    drop(listener);
    let stray = || std::io::Error::other("a connection from elsewhere reached the floor's port");
    let mut echo_producer = echo_producer.ok_or_else(stray)?;
    if subscriber.is_some() && echo_subscriber.is_none() {
        return Err(stray());
    }
    let epoch = Instant::now();
    // The stamp a message carries is its slot.
    let measure_from = config.warmup.as_nanos() as u64;
    std::thread::scope(|s| {
        let echo = s.spawn(move || -> std::io::Result<()> {
            let mut msg = vec![0u8; config.size];
            let mut offset = 0u64;
            while read_or_end(&mut echo_producer, &mut msg)? {
                if let Some(file) = file {
                    if offset + msg.len() as u64 > FILE_BYTES {
                        offset = 0;
                    }
                    file.write_all_at(&msg, offset)?;
                    file.sync_data()?;
                    offset += msg.len() as u64;
                }
                echo_producer.write_all(&[0u8; ACK_BYTES])?;
                if let Some(sub) = echo_subscriber.as_mut() {
                    sub.write_all(&msg)?;
                }
            }
            Ok(())
        });
        let size = config.size;
        let delivered = subscriber.map(|mut sub| {
            s.spawn(move || -> std::io::Result<Latencies> {
                let mut msg = vec![0u8; size];
                let mut delivery = Latencies::default();
                while read_or_end(&mut sub, &mut msg)? {
                    let stamp = u64::from_le_bytes(msg[..STAMP_BYTES].try_into().expect("8"));
                    if stamp >= measure_from {
                        let slot = Duration::from_nanos(stamp);
                        delivery.record(epoch.elapsed().saturating_sub(slot));
                    }
                }
                Ok(delivery)
            })
        });
        let sent = send_all(config, &mut producer, epoch, wake);
        // Closing the producer ends the echo thread, which closes the subscriber's stream.
        drop(producer);
        let echoed = echo.join().expect("echo thread");
        let delivered = delivered.map(|h| h.join().expect("subscriber thread"));
        // The echo thread's error first: it is the cause when the sender only saw the end.
        echoed?;
        let round_trip = sent?;
        let delivery = delivered.transpose()?.unwrap_or_default();
        Ok(Phase { round_trip, delivery })
    })
}

/// Sends a message at each slot of the schedule and waits for its answer; returns the
/// round trips of the messages sent after the warm-up, from their slots (the intended
/// send, as `riffle-bench run --rate` measures). A send's wake-up lateness is recorded
/// when it slept for its slot.
fn send_all(
    config: &FloorConfig,
    producer: &mut TcpStream,
    epoch: Instant,
    wake: &mut Latencies,
) -> std::io::Result<Latencies> {
    let mut msg = vec![0xA5u8; config.size];
    let mut ack = [0u8; ACK_BYTES];
    let mut round_trip = Latencies::default();
    let end = config.warmup + config.duration;
    let period = Duration::from_secs_f64(1.0 / config.rate);
    let mut slot = Duration::ZERO;
    while slot < end {
        let now = epoch.elapsed();
        let slept = slot.checked_sub(now).map(std::thread::sleep).is_some();
        let sent = epoch.elapsed();
        let measured = slot >= config.warmup;
        if measured && slept {
            wake.record(sent.saturating_sub(slot));
        }
        msg[..STAMP_BYTES].copy_from_slice(&(slot.as_nanos() as u64).to_le_bytes());
        producer.write_all(&msg)?;
        producer.read_exact(&mut ack)?;
        if measured {
            round_trip.record(epoch.elapsed().saturating_sub(slot));
        }
        // After a late answer the next send is due at once, not queued behind it: with one
        // message in flight, queueing would charge one stall to every message after it,
        // where `run`'s pipelined producers absorb it. A floor should not be above what it
        // is a floor of.
        slot = (slot + period).max(epoch.elapsed());
    }
    Ok(round_trip)
}

/// Reads a whole message; false at a clean end of stream before its first byte.
fn read_or_end(mut stream: impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..])? {
            0 if got == 0 => return Ok(false),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(true)
}

/// The result as a table, in `riffle-bench run`'s layout.
pub fn table(r: &FloorResult) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let c = &r.config;
    let _ = writeln!(
        out,
        "floor: {} B messages at {} /s, {:.1} s per phase after {:.1} s of warm-up, file in {}",
        c.size,
        c.rate,
        c.duration.as_secs_f64(),
        c.warmup.as_secs_f64(),
        c.dir.display()
    );
    out.push('\n');
    out.push_str(&crate::report::latency_rows(&[
        ("timer wake-up", &r.timer_wakeup),
        ("loopback round trip", &r.round_trip),
        ("durable round trip", &r.durable_round_trip),
        ("durable delivery", &r.durable_delivery),
    ]));
    if let Some(g) = &r.group {
        let _ = writeln!(
            out,
            "\ngroup commit: {} producers at {} /s in all, {} messages in {} syncs ({:.1} per sync)\n",
            g.producers,
            g.rate,
            g.messages,
            g.syncs,
            g.messages as f64 / g.syncs.max(1) as f64
        );
        out.push_str(&crate::report::latency_rows(&[("group-commit ack", &g.ack)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_durable_message_is_answered_and_delivered_and_the_file_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FloorConfig {
            rate: 400.0,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            size: 1024,
            dir: dir.path().to_path_buf(),
            group_rate: None,
            group_producers: default_group_producers(),
        };
        let r = measure(&config).expect("floor");
        assert!(r.group.is_none());
        assert!(r.round_trip.count > 0, "{r:?}");
        assert!(r.durable_round_trip.count > 0, "{r:?}");
        // The subscriber sees every message answered after the warm-up, no more, no less.
        assert_eq!(r.durable_delivery.count, r.durable_round_trip.count, "{r:?}");
        assert!(r.timer_wakeup.count <= r.round_trip.count + r.durable_round_trip.count);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "file left behind");
    }

    #[test]
    fn bad_sizes_and_rates_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = FloorConfig {
            rate: 100.0,
            duration: Duration::from_millis(10),
            warmup: Duration::ZERO,
            size: 1024,
            dir: dir.path().to_path_buf(),
            group_rate: None,
            group_producers: default_group_producers(),
        };
        for bad in [
            FloorConfig { size: 4, ..base.clone() },
            FloorConfig { size: MAX_SIZE + 1, ..base.clone() },
            FloorConfig { rate: 0.0, ..base.clone() },
            FloorConfig { rate: f64::NAN, ..base.clone() },
            FloorConfig { rate: 1e-20, ..base.clone() },
            FloorConfig { rate: f64::INFINITY, ..base.clone() },
            FloorConfig { duration: Duration::MAX, ..base.clone() },
            FloorConfig { group_rate: Some(f64::NAN), ..base.clone() },
            FloorConfig { group_rate: Some(0.0), ..base.clone() },
            FloorConfig { group_rate: Some(100.0), group_producers: 0, ..base.clone() },
            FloorConfig {
                group_rate: Some(100.0),
                group_producers: MAX_PRODUCERS + 1,
                ..base.clone()
            },
        ] {
            assert!(measure(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn the_group_phase_acknowledges_every_message_once_in_fewer_syncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rate, producers) = (4000.0, 4);
        let config = FloorConfig {
            rate: 200.0,
            duration: Duration::from_millis(400),
            warmup: Duration::from_millis(100),
            size: 512,
            dir: dir.path().to_path_buf(),
            group_rate: Some(rate),
            group_producers: producers,
        };
        let r = measure(&config).expect("floor");
        let g = r.group.as_ref().expect("the group phase ran");
        // Every slot of the schedule was sent and acknowledged: rate × 0.5 s, give or take
        // one per producer at the ends.
        let expected = rate * 0.5;
        assert!((g.messages as f64 - expected).abs() <= producers as f64, "{g:?}");
        let measured = rate * 0.4;
        assert!((g.ack.count as f64 - measured).abs() <= producers as f64, "{g:?}");
        // 4,000 syncs a second are beyond a disk: some syncs carried several messages. (On
        // a file system that syncs in no time, each may carry one; then the counts match.)
        assert!(g.syncs >= 1 && g.syncs <= g.messages, "{g:?}");
        assert!(table(&r).contains("group-commit ack"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "file left behind");
    }

    #[test]
    fn the_group_phase_connects_more_producers_than_a_listen_queue_holds() {
        // A listener's queue holds 128 connections; the phase once connected them all
        // before accepting any, and the 130th connect hung until it timed out.
        let dir = tempfile::tempdir().expect("tempdir");
        let config = FloorConfig {
            rate: 1000.0,
            duration: Duration::from_millis(50),
            warmup: Duration::ZERO,
            size: 64,
            dir: dir.path().to_path_buf(),
            group_rate: Some(2000.0),
            group_producers: MAX_PRODUCERS,
        };
        let r = measure(&config).expect("floor");
        let g = r.group.as_ref().expect("the group phase ran");
        assert_eq!(g.producers, MAX_PRODUCERS);
        assert!(g.messages > 0 && g.ack.count == g.messages, "{g:?}");
    }
}
