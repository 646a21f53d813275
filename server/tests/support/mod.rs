//! Shared by the Kinesis API tests: a real `riffled` on ephemeral loopback ports.

use std::io::BufRead;
use std::process::{Command, Stdio};

/// A running `riffled` with its Kinesis API on an ephemeral port; killed on drop.
pub struct Daemon {
    child: std::process::Child,
    /// The Kinesis API's `http://host:port`.
    pub endpoint: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `riffled` on `dir` with both listeners on ephemeral loopback ports (plus `extra`
/// flags) and waits until it has printed where its Kinesis API listens.
pub fn start(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_riffled"))
        .args(["--listen", "127.0.0.1:0", "--kinesis-listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
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
    Daemon { child, endpoint: endpoint.expect("the Kinesis API address") }
}
