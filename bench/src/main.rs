//! `riffle-bench`: load and latency harness. See `bench/README.md`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use riffle_bench::keys::KeyDistribution;
use riffle_bench::run::{self, RecordSize, RunConfig, RunResult, Workload};
use riffle_bench::target::{EngineTarget, EngineTargetConfig, Target};
use riffle_bench::{floor, report};
use riffle_engine::{Durability, IoBackend};

#[derive(Parser)]
#[command(name = "riffle-bench", version, about = "Load and latency harness for Riffle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run; prints a table and writes <out>.json, <out>.hlog and <out>.html.
    Run(RunArgs),
    /// Open-loop runs at several rates, to find the knee of the latency curve.
    Sweep {
        /// Records per second, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        rates: Vec<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// The machine's own latency floor at a rate: loopback round trips bare, then with a
    /// write + fdatasync before the answer and a forward to a subscriber (nothing of
    /// Riffle), to quote Riffle's latencies against. Prints a table; writes <out>.json.
    Floor(FloorArgs),
    /// Two result files side by side, with ratios.
    Compare {
        /// Baseline result (JSON).
        a: PathBuf,
        /// Result to compare with it.
        b: PathBuf,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// System under test: `engine` (in-process), `server` (riffled's binary protocol at
    /// `--endpoint`) or `kinesis` (any Kinesis HTTP API at `--endpoint http://host:port`).
    #[arg(long, default_value = "engine")]
    target: String,
    /// Server target: address of riffled.
    #[arg(long, default_value = "127.0.0.1:4617")]
    endpoint: String,
    /// Server target: connections (requests are spread over them; each is pipelined).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Engine target: data directory (default: a temporary directory, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Engine target: durability, `sync`, `interval:<ms>` or `none`.
    #[arg(long, default_value = "sync")]
    durability: Durability,
    /// Engine target: I/O backend, `auto`, `std` or `uring`.
    #[arg(long, default_value = "auto")]
    io: IoBackend,
    /// Turn Kinesis's per-shard limits on (off by default: they cap a shard at 1 MiB/s).
    #[arg(long)]
    limits: bool,
    /// `produce` (acknowledgement latency) or `e2e` (consumers poll and check every
    /// record; put-to-delivery latency).
    #[arg(long, default_value = "produce")]
    workload: Workload,
    /// Stream name.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Shards.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// Producers: tasks of one event-loop thread against `server`, threads against the others
    #[arg(long, default_value_t = 4)]
    producers: u32,
    /// Consumer threads (e2e).
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Record size in bytes, `N` or `uniform:LO:HI` (at least 20).
    #[arg(long, default_value = "1024")]
    record_size: RecordSize,
    /// Records per request (PutRecords; 1..=500).
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// Requests in flight per producer.
    #[arg(long, default_value_t = 1)]
    window: u32,
    /// Partition keys: `uniform[:N]`, `zipf[:N[:S]]` or `hot`.
    #[arg(long, default_value = "uniform")]
    keys: KeyDistribution,
    /// Open loop at this many records per second in total, spread evenly over the producers (omit for closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop each producer after this many records.
    #[arg(long)]
    records: Option<u64>,
    /// Warm-up seconds (executed, not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// GetRecords limit (e2e).
    #[arg(long, default_value_t = 10_000)]
    read_limit: u32,
    /// Milliseconds to wait after an empty GetRecords (e2e).
    #[arg(long, default_value_t = 1.0)]
    poll_interval_ms: f64,
    /// Seed for keys and record sizes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output files: <out>.json, <out>.hlog, <out>.html.
    #[arg(long, default_value = "bench-results/run")]
    out: PathBuf,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct FloorArgs {
    /// Messages per second, in each phase.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured seconds of each phase.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up seconds before each phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Message bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Directory for the durable phase's 4 MiB file: put it on the file system Riffle's
    /// data directory is on.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Also measure the group-commit floor at this many messages per second in all: producers
    /// in an open loop, one committer syncing whatever arrived during its previous sync.
    /// Give it the rate a `riffle-bench run --rate` measured Riffle at.
    #[arg(long)]
    group_rate: Option<f64>,
    /// Producer connections of the group-commit phase.
    #[arg(long, default_value_t = floor::default_group_producers())]
    group_producers: usize,
    /// Output file: <out>.json.
    #[arg(long, default_value = "bench-results/floor")]
    out: PathBuf,
}

impl FloorArgs {
    fn run(&self) -> Result<(), String> {
        let seconds = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {s} is not a duration"))
        };
        let config = floor::FloorConfig {
            rate: self.rate,
            duration: seconds("duration", self.duration)?,
            warmup: seconds("warmup", self.warmup)?,
            size: self.size,
            dir: self.dir.clone(),
            group_rate: self.group_rate,
            group_producers: self.group_producers,
        };
        let result = floor::measure(&config)?;
        print!("{}", floor::table(&result));
        let json = self.out.with_extension("json");
        if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
        println!("wrote {}", json.display());
        Ok(())
    }
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig, String> {
        if !(1..=500).contains(&self.batch) {
            return Err("--batch must be in 1..=500 (PutRecords)".into());
        }
        let secs = |v: f64, name: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("{name} must be a non-negative number of seconds"))
            }
        };
        Ok(RunConfig {
            workload: self.workload,
            stream: self.stream.clone(),
            shards: self.shards,
            producers: self.producers,
            consumers: self.consumers,
            record_size: self.record_size,
            batch: self.batch,
            window: self.window.max(1),
            keys: self.keys,
            rate: self.rate,
            duration: secs(self.duration, "--duration")?,
            records: self.records,
            warmup: secs(self.warmup, "--warmup")?,
            read_limit: self.read_limit,
            poll_interval: Duration::from_secs_f64(self.poll_interval_ms.max(0.0) / 1e3),
            seed: self.seed,
            progress: !self.quiet,
        })
    }

    fn target(&self) -> Result<Box<dyn Target>, String> {
        match self.target.as_str() {
            "engine" => Ok(Box::new(EngineTarget::open(&EngineTargetConfig {
                data_dir: self.data_dir.clone(),
                durability: self.durability,
                io_backend: self.io,
                limits: self.limits,
            })?)),
            "server" => Ok(Box::new(riffle_bench::target::ServerTarget::connect(
                &self.endpoint,
                self.connections,
            )?)),
            "kinesis" => {
                Ok(Box::new(riffle_bench::target::KinesisTarget::connect(&self.endpoint)?))
            }
            other => Err(format!("unknown target {other:?}: `engine`, `server` or `kinesis`")),
        }
    }
}

fn run_once(args: &RunArgs, config: &RunConfig) -> Result<RunResult, String> {
    let target = args.target()?;
    let result = run::run(target.as_ref(), config)?;
    if config.progress {
        eprintln!();
    }
    Ok(result)
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => args.config().and_then(|config| {
            let result = run_once(&args, &config)?;
            println!("{}", report::table(&result));
            for file in report::write_files(&result, &args.out)? {
                println!("wrote {}", file.display());
            }
            Ok(())
        }),
        Command::Sweep { rates, run } => run.config().and_then(|base| {
            println!(
                "{:>12} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "rate", "achieved/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
            );
            let mut results = Vec::new();
            for rate in rates {
                let config = RunConfig { rate: Some(rate), ..base.clone() };
                let r = run_once(&run, &config)?;
                println!(
                    "{:>12.0} {:>14.0} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10}",
                    rate,
                    r.produce_records_per_sec,
                    r.put_latency.p50_ms,
                    r.put_latency.p99_ms,
                    r.put_latency.p999_ms,
                    r.put_latency.max_ms,
                    r.produced.errors + r.produced.throttled
                );
                let base = run.out.with_file_name(format!(
                    "{}-rate{rate}",
                    run.out
                        .file_name()
                        .map_or("sweep".into(), |n| n.to_string_lossy().into_owned())
                ));
                report::write_files(&r, &base)?;
                results.push((format!("{rate} records/s"), r));
            }
            let refs: Vec<(String, &RunResult)> =
                results.iter().map(|(n, r)| (n.clone(), r)).collect();
            let page = run.out.with_extension("sweep.html");
            std::fs::write(&page, report::html(&refs)?)
                .map_err(|e| format!("{}: {e}", page.display()))?;
            println!("wrote {}", page.display());
            Ok(())
        }),
        Command::Floor(args) => args.run(),
        Command::Compare { a, b } => {
            let load = |p: &PathBuf| -> Result<RunResult, String> {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
            };
            load(&a).and_then(|ra| load(&b).map(|rb| print!("{}", report::compare(&ra, &rb))))
        }
    };
    if let Err(e) = outcome {
        eprintln!("riffle-bench: {e}");
        std::process::exit(1);
    }
}
