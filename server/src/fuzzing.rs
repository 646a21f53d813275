//! Properties the fuzz targets check (`fuzz/fuzz_targets/protocol_*.rs`); `cargo test`
//! replays their corpora through the same functions (`server/tests/fuzz_corpus.rs`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::daemon::{serve, Conn, DaemonConfig};
use crate::protocol::{
    ClientHello, FrameDecoder, Request, Response, ServerHello, HELLO_BYTES, MAX_FRAME_MIN,
};
use crate::service::Service;

/// Any bytes through the frame decoder and every message decoder: no panic, and every
/// request that decodes re-encodes to a frame that decodes to the same request.
pub fn protocol_decode(data: &[u8]) {
    if data.len() >= HELLO_BYTES {
        let mut hello = [0u8; HELLO_BYTES];
        hello.copy_from_slice(&data[..HELLO_BYTES]);
        let _ = ClientHello::decode(&hello);
        let _ = ServerHello::decode(&hello);
    }
    let mut decoder = FrameDecoder::new(MAX_FRAME_MIN);
    // Feed in uneven pieces, as a socket would.
    for chunk in data.chunks(7) {
        decoder.extend(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Ok(request) = Request::decode(frame.opcode, &frame.body) {
                        let again =
                            Request::decode(request.opcode(), &Bytes::from(request.encode_body()));
                        assert_eq!(
                            again.as_ref(),
                            Ok(&request),
                            "a decoded request re-encodes to itself"
                        );
                    }
                    let _ = Response::decode(frame.opcode, frame.flags, &frame.body);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A socket in memory: reads hand out the input in pieces, writes are collected.
struct MemConn {
    input: RefCell<Vec<u8>>,
    output: RefCell<Vec<u8>>,
}

impl Conn for MemConn {
    async fn read(&self, mut buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
        let mut input = self.input.borrow_mut();
        let n = input.len().min(buf.len()).min(61);
        buf[..n].copy_from_slice(&input[..n]);
        input.drain(..n);
        (Ok(n), buf)
    }

    async fn write_all(&self, buf: Bytes) -> std::io::Result<()> {
        self.output.borrow_mut().extend_from_slice(&buf);
        Ok(())
    }

    fn close(&self) {}
}

thread_local! {
    static SERVICE: Service = {
        let dir = std::env::temp_dir().join(format!("riffle-fuzz-connection-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = riffle_engine::Engine::open(
            &dir,
            riffle_engine::EngineConfig {
                commit: riffle_engine::CommitConfig {
                    durability: riffle_engine::Durability::None,
                    io_backend: riffle_engine::IoBackend::Std,
                    ..riffle_engine::CommitConfig::default()
                },
                maintenance_interval_ms: 0,
                ..riffle_engine::EngineConfig::default()
            },
        )
        .expect("the fuzz engine opens");
        Service::new(engine)
    };
}

/// A whole server connection fed arbitrary bytes (after a valid hello, or as the hello):
/// no panic, and everything the server writes is a server hello followed by well-formed
/// frames.
pub fn connection(data: &[u8]) {
    let mut input = Vec::with_capacity(HELLO_BYTES + data.len());
    // Half the inputs start with a valid hello, so that frames get past the handshake.
    if data.first().is_some_and(|b| b & 1 == 0) {
        input.extend_from_slice(&ClientHello::current().encode());
    }
    input.extend_from_slice(data);
    let conn = Rc::new(MemConn { input: RefCell::new(input), output: RefCell::new(Vec::new()) });
    let service = SERVICE.with(Service::clone);
    let config = DaemonConfig {
        handshake_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(50),
        ..DaemonConfig::default()
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let served = Rc::clone(&conn);
    local.block_on(&runtime, async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), serve(served, service, config, stop))
            .await;
    });
    let output = conn.output.borrow();
    if output.is_empty() {
        return; // closed before a whole hello arrived
    }
    assert!(output.len() >= HELLO_BYTES, "the server hello is written whole");
    let mut hello = [0u8; HELLO_BYTES];
    hello.copy_from_slice(&output[..HELLO_BYTES]);
    assert!(ServerHello::decode(&hello).is_ok());
    let mut decoder = FrameDecoder::new(crate::protocol::MAX_FRAME_DEFAULT);
    decoder.extend(&output[HELLO_BYTES..]);
    while let Some(frame) = decoder.next_frame().expect("the server writes well-formed frames") {
        assert!(
            frame.flags & crate::protocol::FLAG_END != 0
                || frame.flags & crate::protocol::FLAG_EVENT != 0
        );
    }
    assert_eq!(decoder.buffered(), 0, "no partial frame at the end");
}
