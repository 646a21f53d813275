//! The daemon's network side: one thread per core, each with its own runtime and its own
//! listening socket on the shared port (SO_REUSEPORT; the kernel spreads connections by
//! hashing their addresses), each serving its connections to the end.
//!
//! Each core runs a tokio-uring runtime (io_uring for the sockets); where the kernel refuses
//! io_uring (old kernel, seccomp, some containers) every core falls back to a plain tokio
//! runtime (epoll) and the daemon logs one line saying so. One connection loop serves both,
//! through [`Conn`].
//!
//! Writes: every shard belongs to one of the engine's commit groups, and under io_uring
//! core `i` runs group `i` itself (`DaemonConfig::commit_on_cores`, riffled's `--commit
//! cores`): a task on the core's runtime ([`riffle_engine::group_commit::CommitDriver`])
//! writes the group's dirty segments, syncs through the core's ring while the core goes on
//! serving its sockets, and acknowledges the waiters. A request that lands on the shard's own
//! core crosses no thread; one on another core appends to the shard's open batch under its
//! lock, and the owning core is woken to commit it and wakes the request back (two wake-ups
//! per cycle, not per record). Under epoll, or with `--commit threads`, each group keeps its
//! committing thread. Requests that commit the catalog run on a short-lived thread so they
//! never stall a reactor.
//!
//! A connection: handshake (10 s to send a hello), then frames. At most `max_in_flight`
//! requests may be unanswered (the excess gets `LimitExceededException`); a frame that
//! cannot be decoded gets a `SerializationException` error frame and the connection is
//! closed. A connection that sends nothing for `idle_timeout` while nothing is in flight is
//! closed. At shutdown the cores stop accepting, connections stop reading, answer what is in
//! flight, and close.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::protocol::{
    self, ClientHello, FrameDecoder, Request, ServerHello, HELLO_BYTES, HELLO_OK,
};
use crate::service::{Reply, Service};

mod conn;
mod subscribe;

pub use conn::Conn;
use conn::{read_exact, TokioConn, UringConn, WRITE_BUFS_MAX, WRITE_BYTES_MAX};
use subscribe::{subscribe, Subscription};

/// Network settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Address to listen on; port 0 picks a free port (all cores share it).
    pub listen: SocketAddr,
    /// Network threads (one per core).
    pub cores: usize,
    /// Largest frame accepted.
    pub max_frame: u32,
    /// Most unanswered requests per connection.
    pub max_in_flight: u16,
    /// Most subscriptions per connection.
    pub max_subscriptions: u16,
    /// Time allowed for the client hello.
    pub handshake_timeout: Duration,
    /// A connection idle this long (nothing in flight) is closed.
    pub idle_timeout: Duration,
    /// Use io_uring if the kernel allows (else the tokio fallback directly).
    pub io_uring: bool,
    /// How long a subscription lasts before it ends (Kinesis: 5 minutes).
    pub subscription_lifetime: Duration,
    /// Longest silence of an idle subscription: an empty event is sent at least this often.
    pub heartbeat: Duration,
    /// Under io_uring, core `i` runs the engine's commit group `i` itself (its writes, its
    /// syncs through the core's ring, its acknowledgements) instead of the group's thread.
    pub commit_on_cores: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4617)),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_frame: protocol::MAX_FRAME_DEFAULT,
            max_in_flight: 1024,
            max_subscriptions: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            io_uring: true,
            subscription_lifetime: Duration::from_secs(300),
            heartbeat: Duration::from_secs(1),
            commit_on_cores: true,
        }
    }
}

/// A running daemon: its address, and a way to stop it.
#[derive(Debug)]
pub struct Daemon {
    local_addr: SocketAddr,
    backend: &'static str,
    shutdown: watch::Sender<bool>,
    cores: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Binds every core's socket and starts serving `service`.
    pub fn start(config: DaemonConfig, service: Service) -> std::io::Result<Daemon> {
        if config.listen.port() != 0 {
            ensure_unused(config.listen)?;
        }
        let first = listener(config.listen)?;
        let local_addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..config.cores.max(1) {
            sockets.push(listener(local_addr)?);
        }
        let (shutdown, watcher) = watch::channel(false);
        let uring = config.io_uring && uring_available();
        let backend = if uring { "io_uring" } else { "epoll" };
        if config.io_uring && !uring {
            tracing::warn!("io_uring is unavailable here (kernel, seccomp or container); serving with epoll instead");
        }
        let mut cores = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let (service, config, watcher) = (service.clone(), config.clone(), watcher.clone());
            let engine = service.engine();
            let driver = if uring && config.commit_on_cores && i < engine.commit_groups() {
                Some(engine.commit_driver(i).map_err(std::io::Error::other)?)
            } else {
                None
            };
            let handle =
                std::thread::Builder::new().name(format!("riffle-core-{i}")).spawn(move || {
                    if let Err(e) = run_core(uring, socket, service, config, watcher, driver) {
                        tracing::error!(core = i, error = %e, "network core stopped");
                    }
                })?;
            cores.push(handle);
        }
        tracing::info!(%local_addr, cores = cores.len(), backend, "riffled listening");
        Ok(Daemon { local_addr, backend, shutdown, cores })
    }

    /// The address the daemon listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `"io_uring"` or `"epoll"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Stops accepting, lets connections answer what is in flight, and waits for the cores.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for core in self.cores {
            let _ = core.join();
        }
    }
}

/// Fails with `AddrInUse` if something already listens on `addr`.
///
/// The cores' sockets carry SO_REUSEPORT, and Linux lets any process of the same user join
/// such a group: a second `riffled` on the same address would start without a word and take
/// a share of the connections (seen here: a benchmark that half-reached a stale daemon). So
/// the address is first bound without SO_REUSEPORT, which any listener on it refuses;
/// SO_REUSEADDR keeps connections in TIME_WAIT from a previous run from counting.
fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(e.kind(), format!("{addr} is already in use (another riffled?)"))
        } else {
            e
        }
    })
}

/// A listening socket with SO_REUSEPORT, so that every core can bind the same port.
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener: std::net::TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn uring_available() -> bool {
    tokio_uring::Runtime::new(&tokio_uring::builder()).is_ok()
}

fn run_core(
    uring: bool,
    socket: std::net::TcpListener,
    service: Service,
    config: DaemonConfig,
    watcher: watch::Receiver<bool>,
    driver: Option<riffle_engine::group_commit::CommitDriver>,
) -> std::io::Result<()> {
    if uring {
        let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())?;
        runtime.block_on(async move {
            if let Some(driver) = driver {
                tokio_uring::spawn(driver.run());
            }
            let listener = tokio_uring::net::TcpListener::from_std(socket);
            let accept = || async {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(UringConn(stream))
            };
            let spawn = |task| drop(tokio_uring::spawn(task));
            accept_until_stopped(accept, spawn, service, config, watcher).await;
        });
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let listener = match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => l,
                Err(e) => return tracing::error!(error = %e, "listener"),
            };
            let accept = || async {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(TokioConn(stream))
            };
            let spawn = |task| drop(tokio::task::spawn_local(task));
            accept_until_stopped(accept, spawn, service, config, watcher).await;
        });
    }
    Ok(())
}

/// A connection's task, as the accept loop hands it to its runtime.
type ConnTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Accepts connections until shutdown, each served by a task of this thread (`spawn`), then
/// drains them.
async fn accept_until_stopped<C: Conn, A: std::future::Future<Output = std::io::Result<C>>>(
    mut accept: impl FnMut() -> A,
    spawn: impl Fn(ConnTask),
    service: Service,
    config: DaemonConfig,
    watcher: watch::Receiver<bool>,
) {
    let live = Rc::new(Cell::new(0usize));
    let mut stop = watcher.clone();
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok(conn) => {
                    // Counted before it is spawned, so that a drain starting before the task
                    // first runs still waits for it.
                    live.set(live.get() + 1);
                    let serving = serve(Rc::new(conn), service.clone(), config.clone(), watcher.clone());
                    spawn(Box::pin(counted(Rc::clone(&live), serving)));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = stop.changed() => break,
        }
    }
    drain(&live).await;
}

/// After shutdown: give connection tasks (on this thread) time to answer what is in flight.
async fn drain(live: &Rc<Cell<usize>>) {
    // Connections answer what is in flight, end their subscriptions, and close (each bounds
    // its own wait); give up after 15 s in all.
    for _ in 0..1500 {
        if live.get() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a connection counted among the core's live connections (by its caller), and uncounts
/// it when it ends.
async fn counted(live: Rc<Cell<usize>>, connection: impl std::future::Future<Output = ()>) {
    connection.await;
    live.set(live.get() - 1);
}

/// The writer's queue: replies in the order they are sent, each marked if it answers a
/// request counted in flight (a push event or a refused subscription answers none).
#[derive(Clone)]
pub(super) struct Replies(mpsc::UnboundedSender<(Reply, bool)>);

impl Replies {
    /// Queues a reply that answers no request counted in flight.
    pub(super) fn send(&self, reply: Reply) -> Result<(), Reply> {
        self.0.send((reply, false)).map_err(|e| e.0 .0)
    }

    /// Queues the answer to a request counted in flight.
    fn answer(&self, reply: Reply) -> Result<(), Reply> {
        self.0.send((reply, true)).map_err(|e| e.0 .0)
    }
}

/// Serves one connection to its end.
pub async fn serve<C: Conn>(
    conn: Rc<C>,
    service: Service,
    config: DaemonConfig,
    mut stop: watch::Receiver<bool>,
) {
    // Handshake.
    let hello =
        match tokio::time::timeout(config.handshake_timeout, read_exact(&*conn, HELLO_BYTES)).await
        {
            Ok(Ok(bytes)) => {
                let mut a = [0u8; HELLO_BYTES];
                a.copy_from_slice(&bytes);
                ClientHello::decode(&a)
            }
            _ => return conn.close(),
        };
    let answer = ServerHello::answer(
        hello.clone(),
        config.max_frame,
        config.max_in_flight,
        config.max_subscriptions,
    );
    if conn.write_all(Bytes::copy_from_slice(&answer.encode())).await.is_err()
        || answer.status != HELLO_OK
    {
        return conn.close();
    }
    let max_frame = hello.map_or(config.max_frame, |h| h.max_frame.min(config.max_frame));
    // (The server accepts frames up to its own max_frame; replies are bounded by the
    // engine's 10 MiB GetRecords limit, below the client's minimum of 64 KiB only for
    // tiny frames.)

    // Writer: replies in the order they complete.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Reply, bool)>();
    let tx = Replies(tx);
    let in_flight = Rc::new(Cell::new(0usize));
    let writer = {
        let (conn, in_flight) = (Rc::clone(&conn), Rc::clone(&in_flight));
        async move {
            // Every reply ready now goes out in one vectored write (heads and the stored
            // batches as they are, no copy): a push consumer's events for many shards,
            // or a pipelining client's answers, cost one send instead of two per reply.
            while let Some(reply) = rx.recv().await {
                let mut bufs = Vec::new();
                let mut bytes = 0;
                let mut replies = 0;
                let mut next = Some(reply);
                while let Some((reply, answers)) = next.take() {
                    bytes += reply.len();
                    replies += usize::from(answers);
                    bufs.push(Bytes::from(reply.head));
                    bufs.extend(reply.batches.into_iter().filter(|b| !b.is_empty()));
                    if bufs.len() < WRITE_BUFS_MAX && bytes < WRITE_BYTES_MAX {
                        next = rx.try_recv().ok();
                    }
                }
                // One buffer (a put's answer, most often) takes the plain write: measured,
                // a one-buffer writev cost riffled more CPU per single-record put.
                let ok = if bufs.len() == 1 {
                    conn.write_all(bufs.pop().unwrap_or_default()).await.is_ok()
                } else {
                    conn.write_all_vectored(bufs).await.is_ok()
                };
                in_flight.set(in_flight.get().saturating_sub(replies));
                if !ok {
                    // The peer cannot be answered any more: close, so that the reader
                    // stops taking requests whose replies would never go out.
                    conn.close();
                    break;
                }
            }
        }
    };
    let writer_done = Rc::new(tokio::sync::Notify::new());
    {
        let done = Rc::clone(&writer_done);
        spawn_local(async move {
            writer.await;
            done.notify_one();
        });
    }

    // Reader.
    let subscriptions: Rc<std::cell::RefCell<std::collections::HashMap<u64, Rc<Subscription>>>> =
        Rc::default();
    let mut decoder = FrameDecoder::new(max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    'conn: loop {
        // Answer every complete frame held.
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let request = match Request::decode(frame.opcode, &frame.body) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Reply::error(
                                frame.request_id,
                                frame.opcode,
                                "SerializationException",
                                &e.to_string(),
                            ));
                            break 'conn;
                        }
                    };
                    if let Request::Credit { subscription_request_id, bytes } = request {
                        if let Some(sub) = subscriptions.borrow().get(&subscription_request_id) {
                            sub.credit.set(sub.credit.get() + i64::from(bytes));
                            sub.wake.notify_one();
                        }
                        continue;
                    }
                    if let Request::SubscribeToShard { .. } = request {
                        if subscriptions.borrow().len() >= usize::from(config.max_subscriptions) {
                            let _ = tx.send(Reply::error(
                                frame.request_id,
                                frame.opcode,
                                "LimitExceededException",
                                &format!(
                                    "More than {} subscriptions on this connection.",
                                    config.max_subscriptions
                                ),
                            ));
                            continue;
                        }
                        let sub = Rc::new(Subscription {
                            credit: Cell::new(0),
                            wake: tokio::sync::Notify::new(),
                        });
                        subscriptions.borrow_mut().insert(frame.request_id, Rc::clone(&sub));
                        let (service, tx, config, stop, subscriptions) = (
                            service.clone(),
                            tx.clone(),
                            config.clone(),
                            stop.clone(),
                            Rc::clone(&subscriptions),
                        );
                        let id = frame.request_id;
                        spawn_local(async move {
                            subscribe(&service, id, request, &sub, &tx, &config, stop).await;
                            subscriptions.borrow_mut().remove(&id);
                        });
                        continue;
                    }
                    in_flight.set(in_flight.get() + 1);
                    if in_flight.get() > usize::from(config.max_in_flight) {
                        let _ = tx.answer(Reply::error(
                            frame.request_id,
                            frame.opcode,
                            "LimitExceededException",
                            &format!("More than {} requests in flight on this connection; wait for replies.", config.max_in_flight),
                        ));
                        continue;
                    }
                    let (service, tx) = (service.clone(), tx.clone());
                    let control = Service::is_control(&request);
                    spawn_local(async move {
                        let reply = if control {
                            // Catalog commits block for an fdatasync: not on the reactor.
                            let (done, wait) = tokio::sync::oneshot::channel();
                            let id = frame.request_id;
                            std::thread::spawn(move || {
                                let _ = done.send(block_on_local(service.call(id, request)));
                            });
                            wait.await.ok().flatten()
                        } else {
                            service.call(frame.request_id, request).await
                        };
                        // Credit, the one request without a reply, never gets here.
                        let _ = tx.answer(reply.unwrap_or_else(|| {
                            Reply::error(
                                frame.request_id,
                                frame.opcode,
                                "InternalFailure",
                                "no reply",
                            )
                        }));
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Reply::error(0, 0, "SerializationException", &e.to_string()));
                    break 'conn;
                }
            }
        }
        let idle = in_flight.get() == 0;
        tokio::select! {
            (result, back) = conn.read(std::mem::take(&mut buf)) => {
                buf = back;
                match result {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => decoder.extend(&buf[..n]),
                }
            }
            _ = tokio::time::sleep(config.idle_timeout), if idle => break 'conn,
            _ = stop.changed() => break 'conn,
        }
    }
    // Let in-flight requests and subscriptions finish (their replies still go out), then
    // close. Subscriptions end at shutdown or when the connection's reader stops.
    // At shutdown, subscriptions see the stop themselves and end with the reason; when the
    // peer went away, end them now.
    if !*stop.borrow() {
        for sub in subscriptions.borrow().values() {
            sub.credit.set(i64::MIN / 2);
            sub.wake.notify_one();
        }
    }
    for _ in 0..200 {
        if in_flight.get() == 0 && subscriptions.borrow().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_done.notified()).await;
    conn.close();
}

fn spawn_local<F: std::future::Future<Output = ()> + 'static>(f: F) {
    // Both runtimes run a tokio LocalSet-compatible current-thread scheduler on this core.
    tokio::task::spawn_local(f);
}

/// Runs a future to completion on the current (plain) thread.
fn block_on_local<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
