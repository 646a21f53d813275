//! What the harness drives. Today: the embedded engine, in-process. The trait is the seam
//! where a Riffle server target (binary protocol) and a Kinesis HTTP target plug in.

use std::path::PathBuf;

use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, IoBackend, IteratorType, LimitsConfig,
    PutRecordInput,
};

/// How a request ended, per record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Records stored and acknowledged.
    pub ok: u64,
    /// Records refused by a throughput limit (`ProvisionedThroughputExceededException`).
    pub throttled: u64,
    /// Records that failed otherwise.
    pub failed: u64,
}

/// The first failure of the run, kept for the report: a count of errors always comes with
/// one of their messages.
static FIRST_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records `message` if it is the run's first failure (the closure runs only then).
pub fn note_error(message: impl FnOnce() -> String) {
    if FIRST_ERROR.get().is_none() {
        let _ = FIRST_ERROR.set(message());
    }
}

/// The run's first failure, if any.
pub fn first_error() -> Option<&'static str> {
    FIRST_ERROR.get().map(String::as_str)
}

/// A put that was sent and is not yet acknowledged.
pub trait PendingPut: Send {
    /// Blocks until the outcome is known.
    fn wait(self: Box<Self>) -> PutOutcome;
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// The record's data.
    pub data: bytes::Bytes,
}

/// A page of records and where to continue.
#[derive(Debug, Clone)]
pub struct ReadPage {
    /// Records in shard order.
    pub records: Vec<ReadRecord>,
    /// `None` at the end of a closed shard.
    pub next: Option<String>,
    /// True if the read was refused by a throughput limit.
    pub throttled: bool,
}

/// One event of a push subscription: a page of records.
pub struct PushEvent {
    /// Index of its shard in the list given to [`Target::subscribe`].
    pub shard: usize,
    /// The records, in order.
    pub records: Vec<ReadRecord>,
    /// When the subscription handed it to the consumer's code, which is where delivery
    /// latency ends (not when the harness's checking thread gets to it, a thread hop later).
    pub received: std::time::Instant,
}

/// Events of push subscriptions.
pub trait EventStream: Send {
    /// The next event (blocking), `None` when every subscription ended.
    fn next(&mut self) -> Option<Result<PushEvent, String>>;
}

/// A future that stays on the thread that polls it.
pub type LocalFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

/// Connects a target's [`LoopPutter`]s (on the event loop's runtime).
pub type ConnectLoop = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Box<dyn LoopPutter>>, String>> + Send>,
>;

/// Puts for producers that run as tasks on one thread's event loop.
pub trait LoopPutter: Send {
    /// Sends one PutRecords (or PutRecord, for one record); resolves when it is answered.
    /// The request is copied before this returns and written when the future is first
    /// polled.
    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> LocalFuture<PutOutcome>;
}

/// A system under test.
pub trait Target: Send + Sync {
    /// Description for reports.
    fn describe(&self) -> String;
    /// Creates the stream with `shards` shards, replacing one of the same name.
    fn setup(&self, stream: &str, shards: u32) -> Result<(), String>;
    /// Sends one PutRecords (or PutRecord, for one record) without waiting.
    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut>;
    /// The stream's shard ids.
    fn shards(&self, stream: &str) -> Result<Vec<String>, String>;
    /// An iterator at the shard's tip (`latest`) or its oldest record.
    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String>;
    /// One GetRecords.
    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String>;
    /// Registers consumer `name` and subscribes it to every shard in `shards` from the tip
    /// (push fan-out). Targets without push refuse.
    fn subscribe(
        &self,
        _stream: &str,
        _name: &str,
        _shards: &[String],
    ) -> Result<Box<dyn EventStream>, String> {
        Err(format!("{} has no push subscriptions; use the server target", self.describe()))
    }
    /// Connections for producers that run as tasks on one event-loop thread (a
    /// current-thread tokio runtime) instead of a thread and a completer thread each;
    /// `None` (the default): this target's producers are threads.
    fn loop_putters(&self) -> Option<ConnectLoop> {
        None
    }
}

/// Settings of the in-process engine target.
#[derive(Debug, Clone)]
pub struct EngineTargetConfig {
    /// Data directory; a temporary one (deleted at exit) if `None`.
    pub data_dir: Option<PathBuf>,
    /// Durability of appends.
    pub durability: Durability,
    /// I/O backend.
    pub io_backend: IoBackend,
    /// Kinesis per-shard limits on (off by default in benchmarks).
    pub limits: bool,
}

/// The embedded engine.
pub struct EngineTarget {
    engine: Engine,
    description: String,
    _temp: Option<tempfile::TempDir>,
}

impl EngineTarget {
    /// Opens the engine.
    pub fn open(config: &EngineTargetConfig) -> Result<Self, String> {
        let (dir, temp) = match &config.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let engine = Engine::open(
            &dir,
            EngineConfig {
                commit: CommitConfig {
                    durability: config.durability,
                    io_backend: config.io_backend,
                    ..CommitConfig::default()
                },
                limits: if config.limits {
                    LimitsConfig::default()
                } else {
                    LimitsConfig::unlimited()
                },
                ..EngineConfig::default()
            },
        )
        .map_err(|e| format!("opening the engine in {}: {e}", dir.display()))?;
        let description = format!(
            "engine in-process ({}, durability {:?}, limits {}) in {}",
            engine.backend_name(),
            config.durability,
            if config.limits { "on" } else { "off" },
            dir.display()
        );
        Ok(EngineTarget { engine, description, _temp: temp })
    }
}

struct EnginePending(Result<riffle_engine::PendingPutRecords, (riffle_engine::Error, u64)>);

impl PendingPut for EnginePending {
    fn wait(self: Box<Self>) -> PutOutcome {
        match self.0 {
            Ok(pending) => {
                let out = pending.wait();
                let throttled = out
                    .records
                    .iter()
                    .filter(|r| r.as_ref().is_err_and(|f| f.error_code.starts_with("Provisioned")))
                    .count() as u64;
                PutOutcome {
                    ok: (out.records.len() - out.failed_record_count) as u64,
                    throttled,
                    failed: out.failed_record_count as u64 - throttled,
                }
            }
            Err((e, n)) if e.kinesis_name() == "ProvisionedThroughputExceededException" => {
                PutOutcome { throttled: n, ..PutOutcome::default() }
            }
            Err((e, n)) => {
                note_error(|| format!("put: {e}"));
                PutOutcome { failed: n, ..PutOutcome::default() }
            }
        }
    }
}

impl Target for EngineTarget {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn setup(&self, stream: &str, shards: u32) -> Result<(), String> {
        if self.engine.describe_stream_summary(stream).is_ok() {
            self.engine.delete_stream(stream, true).map_err(|e| e.to_string())?;
        }
        // Deletion and creation complete at the next call (transition time 0).
        let _ = self.engine.list_streams(None, None, None);
        self.engine.create_stream(stream, Some(shards), None, &[]).map_err(|e| e.to_string())?;
        self.engine.describe_stream_summary(stream).map(|_| ()).map_err(|e| e.to_string())
    }

    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut> {
        let input: Vec<PutRecordInput<'_>> =
            records.iter().map(|(k, d)| PutRecordInput::new(k, d)).collect();
        let n = records.len() as u64;
        Box::new(EnginePending(self.engine.put_records_begin(stream, &input).map_err(|e| (e, n))))
    }

    fn shards(&self, stream: &str) -> Result<Vec<String>, String> {
        let d =
            self.engine.describe_stream(stream, Some(10_000), None).map_err(|e| e.to_string())?;
        Ok(d.shards.into_iter().map(|s| s.shard_id).collect())
    }

    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String> {
        let kind = if latest { IteratorType::Latest } else { IteratorType::TrimHorizon };
        self.engine.get_shard_iterator(stream, shard, kind, None, None).map_err(|e| e.to_string())
    }

    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String> {
        match self.engine.get_records(iterator, Some(limit)) {
            Ok(page) => Ok(ReadPage {
                records: page.records.into_iter().map(|r| ReadRecord { data: r.data }).collect(),
                next: page.next_shard_iterator,
                throttled: false,
            }),
            Err(e) if e.kinesis_name() == "ProvisionedThroughputExceededException" => {
                Ok(ReadPage {
                    records: Vec::new(),
                    next: Some(iterator.to_string()),
                    throttled: true,
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A Riffle server (`riffled`) over the binary protocol: a pool of async connections on a
/// background runtime, requests spread over them round-robin, each connection pipelined.
pub struct ServerTarget {
    runtime: tokio::runtime::Runtime,
    clients: Vec<riffle_server::client::AsyncClient>,
    next: std::sync::atomic::AtomicUsize,
    endpoint: String,
}

impl ServerTarget {
    /// Connects `connections` times to `endpoint`.
    pub fn connect(endpoint: &str, connections: usize) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let clients = runtime.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..connections.max(1) {
                clients.push(
                    riffle_server::client::AsyncClient::connect(endpoint)
                        .await
                        .map_err(|e| format!("connecting to {endpoint}: {e}"))?,
                );
            }
            Ok::<_, String>(clients)
        })?;
        Ok(ServerTarget {
            runtime,
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
            endpoint: endpoint.into(),
        })
    }

    /// The connection of the calling thread: each producer thread keeps to one connection,
    /// so that its requests reach the server in the order it sent them (requests on
    /// different connections race). Threads are dealt connections round-robin.
    fn client(&self) -> riffle_server::client::AsyncClient {
        thread_local! {
            static SLOT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
        }
        let i = SLOT.with(|slot| match slot.get() {
            Some(i) => i,
            None => {
                let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                slot.set(Some(i));
                i
            }
        });
        self.clients[i % self.clients.len()].clone()
    }

    fn call(
        &self,
        request: riffle_server::protocol::Request,
    ) -> Result<riffle_server::protocol::Response, String> {
        let client = self.client();
        self.runtime.block_on(async move { client.call(&request).await }).map_err(|e| e.to_string())
    }
}

struct ServerEvents(std::sync::mpsc::Receiver<Result<PushEvent, String>>);

impl EventStream for ServerEvents {
    fn next(&mut self) -> Option<Result<PushEvent, String>> {
        self.0.recv_timeout(std::time::Duration::from_millis(200)).ok().or_else(|| {
            let received = std::time::Instant::now();
            Some(Ok(PushEvent { shard: 0, records: Vec::new(), received }))
        })
    }
}

struct ServerPending(tokio::sync::oneshot::Receiver<PutOutcome>);

impl PendingPut for ServerPending {
    fn wait(self: Box<Self>) -> PutOutcome {
        self.0.blocking_recv().unwrap_or_else(|_| {
            note_error(|| "put: the request task ended without an answer".to_string());
            PutOutcome { failed: 1, ..PutOutcome::default() }
        })
    }
}

/// A connection of the event-loop producers (see [`Target::loop_putters`]).
struct ServerLoopPutter(riffle_server::client::AsyncClient);

impl LoopPutter for ServerLoopPutter {
    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> LocalFuture<PutOutcome> {
        Box::pin(server_put(self.0.clone(), stream, records))
    }
}

/// One PutRecords (PutRecord for one record) on `client`, counted per record.
fn server_put(
    client: riffle_server::client::AsyncClient,
    stream: &str,
    records: &[(String, Vec<u8>)],
) -> impl std::future::Future<Output = PutOutcome> + Send + 'static {
    use riffle_server::protocol::{Entry, PutResult, Request, Response};
    let n = records.len() as u64;
    let request = if records.len() == 1 {
        Request::PutRecord {
            stream: stream.into(),
            partition_key: records[0].0.clone(),
            explicit_hash_key: None,
            sequence_number_for_ordering: None,
            data: bytes::Bytes::copy_from_slice(&records[0].1),
        }
    } else {
        Request::PutRecords {
            stream: stream.into(),
            records: records
                .iter()
                .map(|(k, d)| Entry {
                    partition_key: k.clone(),
                    explicit_hash_key: None,
                    data: bytes::Bytes::copy_from_slice(d),
                })
                .collect(),
        }
    };
    async move {
        match client.call(&request).await {
            Ok(Response::PutRecord { .. }) => PutOutcome { ok: 1, ..PutOutcome::default() },
            Ok(Response::PutRecords { results, .. }) => {
                let mut o = PutOutcome::default();
                for r in results {
                    match r {
                        PutResult::Ok { .. } => o.ok += 1,
                        PutResult::Failed { error_code, .. }
                            if error_code.starts_with("Provisioned") =>
                        {
                            o.throttled += 1
                        }
                        PutResult::Failed { error_code, error_message } => {
                            note_error(|| format!("put record: {error_code}: {error_message}"));
                            o.failed += 1
                        }
                    }
                }
                o
            }
            Err(riffle_server::client::ClientError::Server { code, .. })
                if code.starts_with("Provisioned") =>
            {
                PutOutcome { throttled: n, ..PutOutcome::default() }
            }
            Ok(other) => {
                note_error(|| format!("put: unexpected response {other:?}"));
                PutOutcome { failed: n, ..PutOutcome::default() }
            }
            Err(e) => {
                note_error(|| format!("put: {e}"));
                PutOutcome { failed: n, ..PutOutcome::default() }
            }
        }
    }
}

impl Target for ServerTarget {
    fn describe(&self) -> String {
        format!("riffled at {} ({} connections)", self.endpoint, self.clients.len())
    }

    fn setup(&self, stream: &str, shards: u32) -> Result<(), String> {
        use riffle_server::protocol::{Request, Response};
        if self.call(Request::DescribeStreamSummary { stream: stream.into() }).is_ok() {
            self.call(Request::DeleteStream {
                stream: stream.into(),
                enforce_consumer_deletion: true,
            })?;
        }
        for _ in 0..100 {
            match self.call(Request::CreateStream {
                stream: stream.into(),
                shard_count: Some(shards),
                on_demand: false,
            }) {
                Ok(_) => break,
                Err(e) if e.contains("ResourceInUseException") => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        }
        for _ in 0..200 {
            if let Ok(Response::Summary(s)) =
                self.call(Request::DescribeStreamSummary { stream: stream.into() })
            {
                if s.status == 1 {
                    return Ok(());
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("stream {stream} did not become ACTIVE"))
    }

    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let put = server_put(self.client(), stream, records);
        self.runtime.spawn(async move {
            let _ = tx.send(put.await);
        });
        Box::new(ServerPending(rx))
    }

    fn loop_putters(&self) -> Option<ConnectLoop> {
        let (endpoint, connections) = (self.endpoint.clone(), self.clients.len());
        Some(Box::pin(async move {
            let mut putters: Vec<Box<dyn LoopPutter>> = Vec::with_capacity(connections);
            for _ in 0..connections {
                let client = riffle_server::client::AsyncClient::connect(endpoint.as_str())
                    .await
                    .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
                putters.push(Box::new(ServerLoopPutter(client)));
            }
            Ok(putters)
        }))
    }

    fn shards(&self, stream: &str) -> Result<Vec<String>, String> {
        use riffle_server::protocol::{Request, Response};
        match self.call(Request::ListShards {
            stream: Some(stream.into()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: Some(1000),
            filter: None,
        })? {
            Response::ListShards { shards, .. } => {
                Ok(shards.into_iter().map(|s| s.shard_id).collect())
            }
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String> {
        use riffle_server::protocol::{Request, Response};
        match self.call(Request::GetShardIterator {
            stream: stream.into(),
            shard_id: shard.into(),
            iterator_type: if latest { 1 } else { 0 },
            starting_sequence_number: None,
            timestamp_ms: None,
        })? {
            Response::ShardIterator(it) => Ok(it),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    fn subscribe(
        &self,
        stream: &str,
        name: &str,
        shards: &[String],
    ) -> Result<Box<dyn EventStream>, String> {
        use riffle_server::protocol::Request;
        match self
            .call(Request::RegisterConsumer { stream: stream.into(), consumer_name: name.into() })
        {
            Ok(_) => {}
            Err(e) if e.contains("ResourceInUseException") => {}
            Err(e) => return Err(e),
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // Each consumer subscribes over connections of its own, as a Kinesis consumer
        // application would, no more subscriptions on one than riffled allows (on the
        // shared pool, 8 consumers of 16 shards met that limit on one connection).
        // The server says in its hello how many it takes per connection.
        let mut open: Option<(riffle_server::client::AsyncClient, usize)> = None;
        for (i, shard) in shards.iter().enumerate() {
            let client = match open.as_mut() {
                Some((c, used)) if *used < usize::from(c.server_hello().max_subscriptions) => {
                    *used += 1;
                    c.clone()
                }
                _ => {
                    let endpoint = &self.endpoint;
                    let c = self
                        .runtime
                        .block_on(riffle_server::client::AsyncClient::connect(endpoint))
                        .map_err(|e| format!("connecting to {endpoint}: {e}"))?;
                    open = Some((c.clone(), 1));
                    c
                }
            };
            let request = Request::SubscribeToShard {
                stream: stream.into(),
                consumer_name: name.into(),
                shard_id: shard.clone(),
                iterator_type: 1,
                starting_sequence_number: None,
                timestamp_ms: None,
                credit_bytes: 8 * 1024 * 1024,
            };
            let tx = tx.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            self.runtime.spawn(async move {
                let mut sub = match client.subscribe(&request).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // The first event (records or a heartbeat) confirms the subscription.
                let mut first = true;
                while let Some(event) = sub.next_event().await {
                    if first {
                        let _ = ready_tx.send(Ok(()));
                        first = false;
                    }
                    let received = std::time::Instant::now();
                    let page = event.map_err(|e| e.to_string()).and_then(|records| {
                        riffle_server::client::decode_records(&records)
                            .map(|rs| rs.into_iter().map(|r| ReadRecord { data: r.data }).collect())
                    });
                    let event = page.map(|records| PushEvent { shard: i, records, received });
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                if first {
                    let _ = ready_tx.send(Err("the subscription ended at once".into()));
                }
            });
            ready_rx.recv().map_err(|_| "subscription task died".to_string())??;
        }
        Ok(Box::new(ServerEvents(rx)))
    }

    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String> {
        use riffle_server::protocol::{Request, Response};
        match self.call(Request::GetRecords { shard_iterator: iterator.into(), limit: Some(limit) })
        {
            Ok(Response::Records(page)) => {
                let records = riffle_server::client::decode_records(&page)?
                    .into_iter()
                    .map(|r| ReadRecord { data: r.data })
                    .collect();
                Ok(ReadPage { records, next: page.next, throttled: false })
            }
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) if e.contains("ProvisionedThroughputExceeded") => Ok(ReadPage {
                records: Vec::new(),
                next: Some(iterator.to_string()),
                throttled: true,
            }),
            Err(e) => Err(e),
        }
    }
}

/// Any Kinesis-compatible HTTP endpoint (AWS JSON 1.1, unsigned): Riffle's Kinesis API, or
/// another implementation. Requests go through a pooled HTTP/1.1 client on a background
/// runtime.
pub struct KinesisTarget {
    runtime: tokio::runtime::Runtime,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    endpoint: String,
}

impl KinesisTarget {
    /// A client of the endpoint (`http://host:port`).
    pub fn connect(endpoint: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let client = {
            let _guard = runtime.enter();
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build_http()
        };
        Ok(KinesisTarget { runtime, client, endpoint: endpoint.trim_end_matches('/').to_string() })
    }

    fn request(
        &self,
        operation: &str,
        body: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<serde_json::Value, String>> + Send + 'static {
        let client = self.client.clone();
        let uri = format!("{}/", self.endpoint);
        let operation = operation.to_string();
        async move {
            use http_body_util::BodyExt;
            let request = http::Request::post(uri)
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
                .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
                .map_err(|e| e.to_string())?;
            let response = client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            let value: serde_json::Value = if bytes.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
            };
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!(
                    "{}: {}",
                    value["__type"].as_str().unwrap_or("error"),
                    value["message"].as_str().or(value["Message"].as_str()).unwrap_or("")
                ))
            }
        }
    }

    fn call(&self, operation: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        self.runtime.block_on(self.request(operation, body))
    }
}

impl Target for KinesisTarget {
    fn describe(&self) -> String {
        format!("Kinesis API at {}", self.endpoint)
    }

    fn setup(&self, stream: &str, shards: u32) -> Result<(), String> {
        use serde_json::json;
        if self.call("DescribeStreamSummary", json!({"StreamName": stream})).is_ok() {
            self.call(
                "DeleteStream",
                json!({"StreamName": stream, "EnforceConsumerDeletion": true}),
            )?;
        }
        for _ in 0..200 {
            match self.call("CreateStream", json!({"StreamName": stream, "ShardCount": shards})) {
                Ok(_) => break,
                Err(e) if e.starts_with("ResourceInUseException") => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        }
        for _ in 0..200 {
            if let Ok(v) = self.call("DescribeStreamSummary", json!({"StreamName": stream})) {
                if v["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                    return Ok(());
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("stream {stream} did not become ACTIVE"))
    }

    fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> Box<dyn PendingPut> {
        use base64::Engine as _;
        let encode = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let n = records.len() as u64;
        let (operation, body) = if records.len() == 1 {
            (
                "PutRecord",
                serde_json::json!({"StreamName": stream, "PartitionKey": records[0].0, "Data": encode(&records[0].1)}),
            )
        } else {
            let entries: Vec<serde_json::Value> = records
                .iter()
                .map(|(k, d)| serde_json::json!({"PartitionKey": k, "Data": encode(d)}))
                .collect();
            ("PutRecords", serde_json::json!({"StreamName": stream, "Records": entries}))
        };
        let future = self.request(operation, body);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let outcome = match future.await {
                Ok(v) if v.get("Records").is_some() => {
                    let mut o = PutOutcome::default();
                    for r in v["Records"].as_array().into_iter().flatten() {
                        match r["ErrorCode"].as_str() {
                            None => o.ok += 1,
                            Some(c) if c.starts_with("Provisioned") => o.throttled += 1,
                            Some(c) => {
                                note_error(|| format!("put record: {c}: {}", r["ErrorMessage"]));
                                o.failed += 1
                            }
                        }
                    }
                    o
                }
                Ok(_) => PutOutcome { ok: n, ..PutOutcome::default() },
                Err(e) if e.starts_with("Provisioned") => {
                    PutOutcome { throttled: n, ..PutOutcome::default() }
                }
                Err(e) => {
                    note_error(|| format!("put: {e}"));
                    PutOutcome { failed: n, ..PutOutcome::default() }
                }
            };
            let _ = tx.send(outcome);
        });
        Box::new(ServerPending(rx))
    }

    fn shards(&self, stream: &str) -> Result<Vec<String>, String> {
        let v = self.call("ListShards", serde_json::json!({"StreamName": stream}))?;
        Ok(v["Shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
            .collect())
    }

    fn iterator(&self, stream: &str, shard: &str, latest: bool) -> Result<String, String> {
        let kind = if latest { "LATEST" } else { "TRIM_HORIZON" };
        let v = self.call(
            "GetShardIterator",
            serde_json::json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}),
        )?;
        v["ShardIterator"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no ShardIterator".to_string())
    }

    fn get_records(&self, iterator: &str, limit: u32) -> Result<ReadPage, String> {
        use base64::Engine as _;
        match self
            .call("GetRecords", serde_json::json!({"ShardIterator": iterator, "Limit": limit}))
        {
            Ok(v) => {
                let records = v["Records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let data = base64::engine::general_purpose::STANDARD
                            .decode(r["Data"].as_str().unwrap_or(""))
                            .map_err(|e| e.to_string())?;
                        Ok(ReadRecord { data: bytes::Bytes::from(data) })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(ReadPage {
                    records,
                    next: v["NextShardIterator"].as_str().map(str::to_string),
                    throttled: false,
                })
            }
            Err(e) if e.starts_with("ProvisionedThroughputExceeded") => Ok(ReadPage {
                records: Vec::new(),
                next: Some(iterator.to_string()),
                throttled: true,
            }),
            Err(e) => Err(e),
        }
    }
}
