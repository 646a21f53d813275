#![cfg(loom)]
//! Pins the durable watermark's publication (`riffle_engine::watermark::Watermark`): a reader
//! that loads the watermark (acquire) sees every "disk" cell below it filled, even though the
//! writer fills the cells with relaxed stores, and the watermark never appears to go
//! backwards. This is what lets `ShardLog::read` touch segment bytes with no lock.
//!
//! A negative control (`relaxed_publication_is_caught`) runs the same model with a relaxed
//! publish and must fail, which shows the model can see a missing release/acquire pair.
//!
//! Run: `bash scripts/loom.sh` (or `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! cargo test --release -p riffle-engine --no-default-features --test loom_watermark`).
//! `LOOM_MAX_PREEMPTIONS` overrides the preemption bound (default 2).

mod loom_common;

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use riffle_engine::watermark::Watermark;

const CELLS: usize = 3;

/// The "disk": cell `i` holds `i + 1` once written, 0 before.
struct Disk {
    cells: [AtomicU64; CELLS],
}

impl Disk {
    fn new() -> Self {
        Disk { cells: std::array::from_fn(|_| AtomicU64::new(0)) }
    }

    /// Fills every cell, publishing after cell 1 and after cell 2 (two publications, as two
    /// commit cycles would).
    fn write_all(&self, publish: impl Fn(u64)) {
        for i in 0..CELLS {
            self.cells[i].store(i as u64 + 1, Ordering::Relaxed);
            if i >= 1 {
                publish(i as u64 + 1);
            }
        }
    }

    /// Loads the watermark twice; each time every cell below it must be filled.
    fn check_below(&self, load: impl Fn() -> u64) {
        let mut previous = 0;
        for _ in 0..2 {
            let w = load();
            assert!(matches!(w, 0 | 2 | 3), "unexpected watermark {w}");
            assert!(w >= previous, "watermark went backwards: {previous} -> {w}");
            for i in 0..w as usize {
                assert_eq!(
                    self.cells[i].load(Ordering::Relaxed),
                    i as u64 + 1,
                    "cell {i} below watermark {w} not visible"
                );
            }
            previous = w;
        }
    }
}

/// One writer, two readers (3 threads).
#[test]
fn readers_see_every_cell_below_the_watermark() {
    loom_common::explore_concurrent("readers_see_every_cell_below_the_watermark", || {
        let disk = Arc::new(Disk::new());
        let mark = Arc::new(Watermark::new(0));

        let writer = {
            let (disk, mark) = (Arc::clone(&disk), Arc::clone(&mark));
            thread::spawn(move || disk.write_all(|v| mark.publish(v)))
        };
        let reader = {
            let (disk, mark) = (Arc::clone(&disk), Arc::clone(&mark));
            thread::spawn(move || disk.check_below(|| mark.load()))
        };
        disk.check_below(|| mark.load());

        writer.join().expect("writer");
        reader.join().expect("reader");
        assert_eq!(mark.load(), CELLS as u64);
    });
}

/// Negative control: the same model with a relaxed store/load "watermark" must fail (a
/// reader sees the watermark at 2 or 3 but a cell below it still empty). Proves the model
/// above would catch a `Watermark` that lost its release/acquire ordering.
#[test]
#[should_panic(expected = "not visible")]
fn relaxed_publication_is_caught() {
    loom_common::explore_concurrent("relaxed_publication_is_caught", || {
        let disk = Arc::new(Disk::new());
        let mark = Arc::new(AtomicU64::new(0));

        let writer = {
            let (disk, mark) = (Arc::clone(&disk), Arc::clone(&mark));
            thread::spawn(move || disk.write_all(|v| mark.store(v, Ordering::Relaxed)))
        };
        disk.check_below(|| mark.load(Ordering::Relaxed));
        writer.join().expect("writer");
    });
}
