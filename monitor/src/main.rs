//! `monitor`: command-line entry point. Only wiring lives here.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use monitor::{
    baseline::{BaselineConfig, ItemKind, store::Store},
    load::{DEFAULT_TCP_STATES, LoadOptions},
    rules::{RuleSource, fields::Ty},
    trace::{self, RulesOptions, TraceOptions},
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "monitor",
    version,
    about = "eBPF runtime security monitor for Kubernetes nodes"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); logs go to stderr.
    #[arg(long, global = true, env = "MONITOR_LOG", default_value = "info")]
    log: String,
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        env = "MONITOR_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Watch the node and print an alert, as one JSON object per line on stdout, for every event
    /// a rule flags (needs root). Rules reload on SIGHUP and when their files change.
    Run(RunArgs),
    /// Print every captured event, enriched, as one JSON object per line on stdout (needs root).
    Trace(TraceArgs),
    /// Rule files: validate them, list the fields conditions can use.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Benchmark the user-space pipeline alone (decode, process table, enrichment, default
    /// rules, JSON) on records in memory; prints JSON. Used by `cargo xtask bench`.
    #[command(hide = true)]
    BenchPipeline {
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Also write every event as JSON (trace mode), not only alerts.
        #[arg(long)]
        every_event: bool,
    },
    /// Learned per-workload baselines: show, export, import, reset.
    Baseline {
        /// Directory of the profiles.
        #[arg(long, env = "MONITOR_BASELINE_DIR", default_value = DEFAULT_BASELINE_DIR, global = true)]
        dir: PathBuf,
        #[command(subcommand)]
        cmd: BaselineCmd,
    },
}

const DEFAULT_BASELINE_DIR: &str = "/var/lib/monitor/baselines";

#[derive(Subcommand)]
enum BaselineCmd {
    /// List profiles (workload, state, items per kind), or print one as YAML.
    Show { workload: Option<String> },
    /// Print a workload's profile as YAML (to review, edit, ship with the workload).
    Export { workload: String },
    /// Validate a YAML profile and hand it to the agent (applied within a second, or at start).
    Import { file: PathBuf },
    /// Forget a workload's profile (or all): it learns anew.
    Reset {
        workload: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Validate rule files (or directories of *.yaml); prints every error with file, line and
    /// rule, exits non-zero on any. Without paths, checks the built-in rules.
    Check {
        paths: Vec<PathBuf>,
        /// Check the paths together with the built-in rules (they may use its lists and macros).
        #[arg(long)]
        with_defaults: bool,
    },
    /// List the fields conditions and outputs can use.
    Fields,
}

#[derive(Args)]
struct RunArgs {
    /// Rule files or directories (*.yaml), in addition to the built-in rules.
    #[arg(long, env = "MONITOR_RULES", value_delimiter = ',')]
    rules: Vec<PathBuf>,
    /// Do not load the built-in rules (use only --rules).
    #[arg(long)]
    no_default_rules: bool,
    /// Directory where learned baselines persist.
    #[arg(long, env = "MONITOR_BASELINE_DIR", default_value = DEFAULT_BASELINE_DIR)]
    baseline_dir: PathBuf,
    /// Learning period of a workload from its first event (e.g. 30m, 1h, 24h).
    #[arg(long, env = "MONITOR_BASELINE_LEARN", default_value = "1h", value_parser = parse_duration_arg)]
    baseline_learn: std::time::Duration,
    /// End learning after this many events of the workload, if sooner.
    #[arg(long, env = "MONITOR_BASELINE_LEARN_EVENTS")]
    baseline_learn_events: Option<u64>,
    /// After learning, add a new item to the profile once seen this many times (0: never).
    #[arg(long, env = "MONITOR_BASELINE_PROMOTE_AFTER", default_value_t = 0)]
    baseline_promote_after: u32,
    /// Anomaly alerts per workload and kind per minute at most.
    #[arg(long, env = "MONITOR_BASELINE_RATE", default_value_t = 10)]
    baseline_rate: u32,
    /// Turn learned baselines off.
    #[arg(long)]
    no_baselines: bool,
    #[command(flatten)]
    common: TraceArgs,
}

#[derive(Args)]
struct TraceArgs {
    /// Only these event kinds (comma-separated, e.g. exec,open,connect).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Only these processes and their descendants.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Only processes with this comm.
    #[arg(long, value_delimiter = ',')]
    comm: Vec<String>,
    /// Capture only tasks in these cgroup2 directories (filtered in the kernel).
    #[arg(long)]
    cgroup: Vec<PathBuf>,
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    #[arg(long, env = "MONITOR_RING_BUFFER_BYTES", default_value_t = 16 << 20)]
    ring_buffer_bytes: u32,
    /// Pending ring-buffer bytes that wake the reader (0: wake on every record; records below
    /// the threshold are read within 50 ms anyway).
    #[arg(long, env = "MONITOR_WAKEUP_BYTES", default_value_t = monitor::load::DEFAULT_WAKEUP_BYTES)]
    wakeup_bytes: u32,
    /// Events queued between the ring reader and enrichment before new ones are dropped.
    #[arg(long, default_value_t = 65536)]
    queue: usize,
    /// Node name on events (default: $NODE_NAME, else the hostname).
    #[arg(long)]
    node: Option<String>,
    /// Write the final pipeline counters as JSON to this file on exit.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Create this file once probes are attached and the process table is seeded.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Container runtime (CRI) socket; default: the first of /run/containerd/containerd.sock,
    /// /run/crio/crio.sock, /run/k3s/containerd/containerd.sock, /run/cri-dockerd.sock that exists.
    #[arg(long, env = "MONITOR_CRI_SOCKET")]
    cri_socket: Option<PathBuf>,
    /// Serve Prometheus metrics (/metrics) and /healthz on this address (e.g. 0.0.0.0:9750).
    #[arg(long, env = "MONITOR_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Milliseconds the events of a new container may wait for its pod metadata.
    #[arg(long, env = "MONITOR_METADATA_HOLD_MS", default_value_t = 1000)]
    metadata_hold_ms: u64,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn init_logging(filter: &str, format: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid --log filter `{filter}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format must be `text` or `json`, not `{other}`"),
    }
    Ok(())
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    monitor::rules::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration like 30s, 5m, 1h"))
}

fn baseline_cmd(dir: &std::path::Path, cmd: BaselineCmd) -> anyhow::Result<()> {
    let store = Store::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    match cmd {
        BaselineCmd::Show { workload: Some(w) } | BaselineCmd::Export { workload: w } => {
            let p = store.get(&w)?;
            print!("{}", serde_norway::to_string(&p)?);
        }
        BaselineCmd::Show { workload: None } => {
            let (profiles, errors) = store.load_all();
            println!(
                "{:<48} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  stable since",
                "workload", "state", "exec", "write", "read", "conn", "listen", "priv"
            );
            for p in profiles {
                let n = |k: ItemKind| p.items.get(&k).map_or(0, |s| s.len());
                println!(
                    "{:<48} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}",
                    p.workload,
                    format!("{:?}", p.state).to_lowercase(),
                    n(ItemKind::Exec),
                    n(ItemKind::Write),
                    n(ItemKind::SensitiveRead),
                    n(ItemKind::Connect),
                    n(ItemKind::Listen),
                    n(ItemKind::Privilege),
                    p.stable_since
                );
            }
            for e in errors {
                eprintln!("warning: {e}");
            }
        }
        BaselineCmd::Import { file } => {
            let p = Store::read(&file)?;
            let queued = store.queue_import(&p)?;
            println!(
                "queued {} ({} items) as {}",
                p.workload,
                p.size(),
                queued.display()
            );
        }
        BaselineCmd::Reset { workload, all } => {
            let targets: Vec<String> = match (workload, all) {
                (Some(w), false) => vec![w],
                (None, true) => store.load_all().0.into_iter().map(|p| p.workload).collect(),
                _ => anyhow::bail!("give a workload or --all"),
            };
            for w in targets {
                store.queue_reset(&w)?;
                // Without a running agent the profile goes now; a running one drops it within a second.
                let _ = store.remove(&w);
                println!("reset {w}");
            }
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, &cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let trace_opts = |a: TraceArgs, rules: Option<RulesOptions>| TraceOptions {
        load: LoadOptions {
            ring_bytes: a.ring_buffer_bytes,
            cgroups: Vec::new(),
            tcp_state_mask: DEFAULT_TCP_STATES,
            wakeup_bytes: a.wakeup_bytes,
        },
        cgroup_paths: a.cgroup,
        kinds: a.kind,
        pids: a.pid,
        comms: a.comm,
        queue: a.queue,
        node: a.node,
        stats_json: a.stats_json,
        ready_file: a.ready_file,
        cri_socket: a.cri_socket,
        metadata_hold: std::time::Duration::from_millis(a.metadata_hold_ms),
        rules,
        metrics_addr: a.metrics_addr,
    };
    match cli.cmd {
        Cmd::Trace(a) => {
            rt.block_on(trace::run(
                trace_opts(a, None),
                std::io::stdout(),
                shutdown_signal(),
            ))
            .context("monitor trace")?;
        }
        Cmd::Run(r) => {
            let baselines = (!r.no_baselines).then(|| {
                let cfg = BaselineConfig {
                    learn_for: r.baseline_learn,
                    learn_events: r.baseline_learn_events,
                    promote_after: r.baseline_promote_after,
                    rate_per_minute: r.baseline_rate,
                    ..BaselineConfig::default()
                };
                (r.baseline_dir.clone(), cfg)
            });
            let rules = RulesOptions {
                paths: r.rules,
                builtin: !r.no_default_rules,
                baselines,
            };
            if rules.paths.is_empty() && !rules.builtin {
                anyhow::bail!("--no-default-rules needs at least one --rules path");
            }
            rt.block_on(trace::run(
                trace_opts(r.common, Some(rules)),
                std::io::stdout(),
                shutdown_signal(),
            ))
            .context("monitor run")?;
        }
        Cmd::Baseline { dir, cmd } => baseline_cmd(&dir, cmd)?,
        Cmd::BenchPipeline {
            events,
            every_event,
        } => {
            println!(
                "{}",
                serde_json::to_string(&monitor::benchkit::run(events, every_event))?
            )
        }
        Cmd::Rules {
            cmd: RulesCmd::Fields,
        } => {
            for f in monitor::rules::fields::FIELDS {
                println!("{:<26} {:<8} {}", f.name, f.ty.name(), f.doc);
            }
            for (name, doc) in [
                ("pod.label[KEY]", "a pod label"),
                ("container.label[KEY]", "a container label"),
            ] {
                println!("{name:<26} {:<8} {doc}", Ty::Str.name());
            }
        }
        Cmd::Rules {
            cmd:
                RulesCmd::Check {
                    paths,
                    with_defaults,
                },
        } => {
            let mut sources = Vec::new();
            if paths.is_empty() || with_defaults {
                sources.push(RuleSource::Builtin);
            }
            sources.extend(paths.into_iter().map(RuleSource::Path));
            match monitor::rules::load(&sources) {
                Ok(set) => println!("OK: {} rules", set.len()),
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    eprintln!("{} error(s)", errors.len());
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}
