//! Replays the protocol fuzz targets' committed corpora (and any crash artifacts) through
//! the properties the fuzzers check, so `cargo test` on stable covers them.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for folder in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            if path.is_file() {
                property(&std::fs::read(&path).expect("read corpus file"));
                count += 1;
            }
        }
    }
    assert!(count > 0, "no corpus for {target}");
}

#[test]
fn protocol_decode_corpus_replays_clean() {
    replay("protocol_decode", riffle_server::fuzzing::protocol_decode);
}

#[test]
fn protocol_connection_corpus_replays_clean() {
    replay("protocol_connection", riffle_server::fuzzing::connection);
}
