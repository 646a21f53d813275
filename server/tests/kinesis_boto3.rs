//! The Kinesis HTTP API against real boto3 (from PyPI): `tests/kinesis/boto3_conformance.py`
//! runs the operations a Kinesis user starts with, and the errors they expect, against a
//! real `riffled`. `scripts/test.sh` installs boto3 when it is missing.

use std::io::BufRead;
use std::process::{Command, Stdio};

#[test]
fn boto3_runs_the_conformance_script_against_riffled() {
    let has_boto3 =
        Command::new("python3").args(["-c", "import boto3"]).status().is_ok_and(|s| s.success());
    assert!(
        has_boto3,
        "python3 with boto3 is needed: python3 -m pip install boto3 (scripts/test.sh does it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffled"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kinesis-listen",
            "127.0.0.1:0",
            "--no-limits",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start riffled");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut endpoint = None;
    for _ in 0..2 {
        let line = lines.next().expect("a line").expect("read");
        if let Some(addr) = line.strip_prefix("kinesis api listening on ") {
            endpoint = Some(format!("http://{addr}"));
        }
    }
    let endpoint = endpoint.expect("the Kinesis API address");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kinesis/boto3_conformance.py");
    let out = Command::new("python3").arg(&script).arg(&endpoint).output().expect("run python3");
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "boto3 conformance failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("boto3 conformance: ok"), "{stdout}");
}
