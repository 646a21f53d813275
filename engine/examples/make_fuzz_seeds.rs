//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/*`) from real engine output:
//! `cargo run -p riffle-engine --example make_fuzz_seeds -- fuzz/corpus`.

use std::path::PathBuf;
use std::sync::Arc;

use riffle_engine::batch::{encode_batch, Record};
use riffle_engine::{CommitConfig, CommitGroup, IoBackend, LogConfig, ManualClock, ShardLog};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let batches = out.join("batch_decode");
    std::fs::create_dir_all(&batches)?;
    let r = |k: &'static [u8], d: &'static [u8], h: Option<u128>| Record {
        partition_key: k,
        explicit_hash_key: h,
        data: d,
    };
    std::fs::write(batches.join("one_record"), encode_batch(0, &[r(b"k", b"v", None)], 1))?;
    std::fs::write(
        batches.join("three_records_hash_key"),
        encode_batch(
            77,
            &[r(b"alpha", b"one", None), r(b"beta", b"", Some(42)), r(b"", b"three", None)],
            1_700_000_000_000,
        ),
    )?;
    let mut two = encode_batch(0, &[r(b"a", b"1", None)], 5);
    two.extend(encode_batch(1, &[r(b"b", b"2", None)], 6));
    std::fs::write(batches.join("two_batches"), two)?;

    // A small real segment: 64 KiB preallocated, a dozen batches.
    let segments = out.join("segment_recovery");
    std::fs::create_dir_all(&segments)?;
    let dir = std::env::temp_dir().join(format!("riffle-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let group = CommitGroup::start(CommitConfig {
            io_backend: IoBackend::Std,
            ..CommitConfig::default()
        })?;
        let clock = ManualClock::new(1_700_000_000_000);
        let config = LogConfig {
            segment_bytes: 64 * 1024,
            index_interval_bytes: 128,
            batch_bytes_target: 16 * 1024,
            clock: Arc::new(clock.clone()),
            ..LogConfig::default()
        };
        let log = ShardLog::open(&dir, config, &group)?;
        for i in 0..12u32 {
            clock.advance(7);
            let data = format!("record {i}").repeat(i as usize + 1);
            log.append_wait(&[Record {
                partition_key: b"pk",
                explicit_hash_key: None,
                data: data.as_bytes(),
            }])?;
        }
        log.close()?;
    }
    let segment = std::fs::read(dir.join(format!("{:020}.log", 0)))?;
    // Keep seeds small: the used part, plus one torn variant.
    let used = segment.iter().rposition(|b| *b != 0).map_or(64, |i| i + 1);
    std::fs::write(segments.join("twelve_batches"), &segment[..used])?;
    std::fs::write(segments.join("torn_tail"), &segment[..used - 10])?;
    std::fs::write(segments.join("header_only"), &segment[..64])?;
    // Odd length: the property pads it to its capacity, so it opens as an active segment.
    let active = if used % 2 == 1 { used } else { used + 1 };
    std::fs::write(segments.join("active_twelve_batches"), &segment[..active])?;
    std::fs::remove_dir_all(&dir)?;

    // The differential target reads any bytes as choices: seed it with pseudo-random runs
    // of a few lengths (each byte picks an operation or an argument).
    let differential = out.join("differential");
    std::fs::create_dir_all(&differential)?;
    let mut state = 0x5EED_u64;
    for (i, len) in [64usize, 160, 320, 640, 1200, 2400].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (z ^ (z >> 31)) as u8
            })
            .collect();
        std::fs::write(differential.join(format!("run_{i}_{len}")), bytes)?;
    }
    println!("wrote seeds under {}", out.display());
    Ok(())
}
