//! Replays every fuzz target's committed corpus and crash artifacts through the same
//! property functions the fuzzers call, so `cargo test` on stable covers them.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for folder in ["corpus", "artifacts"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("read corpus file");
                property(&data);
                count += 1;
            }
        }
    }
    assert!(count > 0, "no corpus for {target}");
}

#[test]
fn batch_decode_corpus_replays_clean() {
    replay("batch_decode", riffle_engine::fuzzing::batch_decode);
}

#[test]
fn segment_recovery_corpus_replays_clean() {
    replay("segment_recovery", riffle_engine::fuzzing::segment_recovery);
}

#[test]
fn index_files_corpus_replays_clean() {
    replay("index_files", riffle_engine::fuzzing::index_files);
}

#[test]
fn differential_corpus_replays_clean() {
    replay("differential", |data| {
        riffle_engine::fuzzing::simulation::run_bytes(data);
    });
}
