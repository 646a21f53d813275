//! `riffled`: the Riffle daemon. Runs with no configuration: data in `./riffle-data`,
//! listening on `127.0.0.1:4617`. Every flag also reads an environment variable
//! (`RIFFLE_DATA_DIR`, ...) and a key of the optional TOML file given with `--config`
//! (`data-dir = "..."`, `cores = 4`, ...); a flag beats the environment, which beats the
//! file. SIGTERM or SIGINT: stop accepting, answer what is in flight, end subscriptions with
//! a reason, close the engine (every acknowledged record is durable), exit 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use riffle_engine::{
    CommitConfig, Durability, Engine, EngineConfig, IoBackend, LimitsConfig, LogConfig,
};
use riffle_server::daemon::{Daemon, DaemonConfig};
use riffle_server::service::Service;

#[derive(Parser, Debug)]
#[command(
    name = "riffled",
    version,
    about = "The Riffle daemon: Kinesis-style streams over a binary protocol"
)]
struct Args {
    /// TOML file with any of the keys below (`data-dir`, `listen`, `cores`, `durability`,
    /// `no-limits`, `journal-bytes`, `segment-bytes`, `io`, `commit`, `log-level`).
    #[arg(long, env = "RIFFLE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "RIFFLE_DATA_DIR", default_value = "riffle-data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, env = "RIFFLE_LISTEN", default_value = "127.0.0.1:4617")]
    listen: SocketAddr,
    /// Address of the Kinesis-compatible HTTP API (AWS JSON 1.1), or `off`.
    #[arg(long, env = "RIFFLE_KINESIS_LISTEN", default_value = "127.0.0.1:4567")]
    kinesis_listen: String,
    /// Kinesis API credentials, `AKID:SECRET[,AKID:SECRET...]`: requests must be signed
    /// (SigV4) with one of them. Without, signatures are not checked.
    #[arg(long, env = "RIFFLE_CREDENTIALS")]
    credentials: Option<riffle_server::sigv4::Credentials>,
    /// Network threads and commit groups (default: one per core).
    #[arg(long, env = "RIFFLE_CORES")]
    cores: Option<usize>,
    /// `sync` (acknowledge after fdatasync), `interval:<ms>` or `none` (benchmarks only).
    #[arg(long, env = "RIFFLE_DURABILITY", default_value = "sync")]
    durability: Durability,
    /// Under `sync`, commit through a journal of this many bytes per core: one fdatasync per
    /// commit cycle instead of one per dirty shard. 0 turns it off.
    #[arg(long, env = "RIFFLE_JOURNAL_BYTES", default_value_t = 32 * 1024 * 1024)]
    journal_bytes: u64,
    /// Turn off Kinesis's per-shard throughput limits.
    #[arg(long, env = "RIFFLE_NO_LIMITS")]
    no_limits: bool,
    /// Segment file size in bytes (2 MiB ..= 1 GiB).
    #[arg(long, env = "RIFFLE_SEGMENT_BYTES", default_value_t = 128 * 1024 * 1024)]
    segment_bytes: u64,
    /// Storage I/O backend: `auto` (io_uring where available, except under the journal, where
    /// plain calls cost less), `std` or `uring`.
    #[arg(long, env = "RIFFLE_IO", default_value = "auto")]
    io: IoBackend,
    /// Who runs each commit group's cycles (writes, syncs, acknowledgements): `cores` (the
    /// network core the group belongs to, syncing through its io_uring; needs io_uring for
    /// the network, else `threads`) or `threads` (a committing thread per group).
    #[arg(long, env = "RIFFLE_COMMIT", default_value = "cores", value_parser = ["cores", "threads"])]
    commit: String,
    /// Log filter (tracing syntax: `info`, `debug`, `riffle_server=debug`, ...).
    #[arg(long, env = "RIFFLE_LOG", default_value = "info")]
    log_level: String,
}

/// The keys a config file may set, with the environment variable each one feeds.
const CONFIG_KEYS: &[(&str, &str)] = &[
    ("data-dir", "RIFFLE_DATA_DIR"),
    ("listen", "RIFFLE_LISTEN"),
    ("cores", "RIFFLE_CORES"),
    ("durability", "RIFFLE_DURABILITY"),
    ("no-limits", "RIFFLE_NO_LIMITS"),
    ("journal-bytes", "RIFFLE_JOURNAL_BYTES"),
    ("segment-bytes", "RIFFLE_SEGMENT_BYTES"),
    ("io", "RIFFLE_IO"),
    ("commit", "RIFFLE_COMMIT"),
    ("log-level", "RIFFLE_LOG"),
    ("kinesis-listen", "RIFFLE_KINESIS_LISTEN"),
    ("credentials", "RIFFLE_CREDENTIALS"),
];

/// Reads the `--config` file (if any) into environment variables that are not already set,
/// so that clap sees them with the precedence flag > environment > file > default.
fn apply_config_file() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().collect();
    let path = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1).cloned())
        .or_else(|| argv.iter().find_map(|a| a.strip_prefix("--config=").map(str::to_string)))
        .or_else(|| std::env::var("RIFFLE_CONFIG").ok());
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e| format!("--config {path}: {e}"))?;
    for (key, value) in table {
        let Some((_, var)) = CONFIG_KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = CONFIG_KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "--config {path}: unknown key {key:?}; known keys: {}",
                known.join(", ")
            ));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "--config {path}: {key} must be a string, integer or boolean, not {other}"
                ))
            }
        };
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, text);
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = apply_config_file() {
        eprintln!("riffled: {e}");
        std::process::exit(2);
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("riffled: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let cores = args
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let engine = Engine::open(
        &args.data_dir,
        EngineConfig {
            commit: CommitConfig {
                durability: args.durability,
                io_backend: args.io,
                ..CommitConfig::default()
            },
            commit_groups: cores,
            journal_bytes: args.journal_bytes,
            log: LogConfig { segment_bytes: args.segment_bytes, ..LogConfig::default() },
            limits: if args.no_limits {
                LimitsConfig::unlimited()
            } else {
                LimitsConfig::default()
            },
            ..EngineConfig::default()
        },
    )
    .map_err(|e| format!("opening {}: {e}", args.data_dir.display()))?;
    let service = Service::new(engine.clone());
    let daemon = Daemon::start(
        DaemonConfig {
            listen: args.listen,
            cores,
            commit_on_cores: args.commit == "cores",
            ..DaemonConfig::default()
        },
        service.clone(),
    )
    .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let kinesis = match args.kinesis_listen.as_str() {
        "off" => None,
        addr => {
            let addr: SocketAddr =
                addr.parse().map_err(|e| format!("--kinesis-listen {addr}: {e}"))?;
            Some(
                riffle_server::kinesis::KinesisApi::start(
                    addr,
                    engine.clone(),
                    cores,
                    args.credentials.clone(),
                    std::sync::Arc::clone(service.subscriptions()),
                )
                .map_err(|e| format!("Kinesis API on {addr}: {e}"))?,
            )
        }
    };
    // Scripts and tests read these lines to find the ports.
    println!(
        "riffled listening on {} ({} cores, {}, data {})",
        daemon.local_addr(),
        cores,
        daemon.backend(),
        args.data_dir.display()
    );
    if let Some(k) = &kinesis {
        println!("kinesis api listening on {}", k.local_addr());
    }
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("signal runtime: {e}"))?;
    signals.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("SIGTERM handler: {e}"))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    daemon.shutdown();
    if let Some(k) = kinesis {
        k.shutdown();
    }
    engine.close().map_err(|e| format!("closing the engine: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}
