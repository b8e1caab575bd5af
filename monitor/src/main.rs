//! `monitor`: command-line entry point. Only wiring lives here.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use monitor::{
    baseline::{BaselineConfig, ItemKind, store::Store},
    config::{Config, Dur, Sources},
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
    /// Watch the node and deliver an alert for every event a rule or baseline flags (needs
    /// root); by default as JSON lines on stdout, or to the sinks the configuration names.
    /// Rules reload on SIGHUP and when their files change.
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
        /// Instead of benchmarking, write the first 64 distinct-kind records to this directory
        /// (the decoder's fuzzing corpus).
        #[arg(long)]
        dump_records: Option<PathBuf>,
    },
    /// The configuration: check it, list its options.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Learned per-workload baselines: show, export, import, reset.
    Baseline {
        /// Directory of the profiles.
        #[arg(long, env = "MONITOR_BASELINES_DIR", default_value = DEFAULT_BASELINE_DIR, global = true)]
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

/// Where the configuration comes from; shared by `run`, `trace` and `config check`.
#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (YAML, or TOML if it ends in .toml). Every option can also be set by
    /// an environment variable MONITOR_<SECTION>_<KEY> (see `monitor config keys`) or --set.
    #[arg(long, env = "MONITOR_CONFIG")]
    config: Option<PathBuf>,
    /// Set any option, e.g. --set metrics.addr=0.0.0.0:9750 (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Rule files or directories (*.yaml), in addition to rules.paths.
    #[arg(long, value_delimiter = ',')]
    rules: Vec<PathBuf>,
    /// Do not load the built-in rules (rules.builtin=false).
    #[arg(long)]
    no_default_rules: bool,
    /// Directory where learned baselines persist (baselines.dir).
    #[arg(long)]
    baseline_dir: Option<PathBuf>,
    /// Learning period of a workload from its first event (baselines.learn).
    #[arg(long, value_parser = parse_duration_arg)]
    baseline_learn: Option<std::time::Duration>,
    /// Turn learned baselines off (baselines.enabled=false).
    #[arg(long)]
    no_baselines: bool,
    #[command(flatten)]
    common: TraceArgs,
}

#[derive(Args)]
struct TraceArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only these event kinds (comma-separated, e.g. exec,open,connect).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Only these processes and their descendants.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Only processes with this comm.
    #[arg(long, value_delimiter = ',')]
    comm: Vec<String>,
    /// Capture only tasks in these cgroup2 directories (capture.cgroups).
    #[arg(long)]
    cgroup: Vec<PathBuf>,
    /// Kernel ring buffer size in bytes (capture.ring_buffer_bytes).
    #[arg(long)]
    ring_buffer_bytes: Option<u32>,
    /// Pending ring-buffer bytes that wake the reader (capture.wakeup_bytes).
    #[arg(long)]
    wakeup_bytes: Option<u32>,
    /// Events queued between the ring reader and enrichment (capture.queue).
    #[arg(long)]
    queue: Option<usize>,
    /// Node name on events (node; default: $NODE_NAME, else the hostname).
    #[arg(long)]
    node: Option<String>,
    /// Write the final pipeline counters as JSON to this file on exit.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// Create this file once probes are attached and the process table is seeded.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Container runtime (CRI) socket (runtime.cri_socket).
    #[arg(long)]
    cri_socket: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here, e.g. 0.0.0.0:9750 (metrics.addr).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Milliseconds the events of a new container may wait for pod metadata
    /// (runtime.metadata_hold).
    #[arg(long)]
    metadata_hold_ms: Option<u64>,
}

impl TraceArgs {
    /// Loads the configuration and applies this command's flags on top.
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(&Sources::from_process(
            self.config.config.clone(),
            self.config.set.clone(),
        ))?;
        if let Some(v) = self.ring_buffer_bytes {
            c.capture.ring_buffer_bytes = v;
        }
        if let Some(v) = self.wakeup_bytes {
            c.capture.wakeup_bytes = v;
        }
        if let Some(v) = self.queue {
            c.capture.queue = v;
        }
        c.capture.cgroups.extend(self.cgroup.iter().cloned());
        if let Some(v) = &self.node {
            c.node = v.clone();
        }
        if let Some(v) = &self.cri_socket {
            c.runtime.cri_socket = Some(v.clone());
        }
        if let Some(v) = self.metrics_addr {
            c.metrics.addr = Some(v);
        }
        if let Some(v) = self.metadata_hold_ms {
            c.runtime.metadata_hold = Dur(std::time::Duration::from_millis(v));
        }
        Ok(c)
    }
}

impl RunArgs {
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut c = self.common.load_config()?;
        c.rules.paths.extend(self.rules.iter().cloned());
        if self.no_default_rules {
            c.rules.builtin = false;
        }
        if let Some(d) = &self.baseline_dir {
            c.baselines.dir = d.clone();
        }
        if let Some(d) = self.baseline_learn {
            c.baselines.learn = Dur(d);
        }
        if self.no_baselines {
            c.baselines.enabled = false;
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the configuration (file, environment, --set) and print it in full as YAML;
    /// exits non-zero, naming every problem, if it is invalid.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also compile the rules the configuration names.
        #[arg(long)]
        rules: bool,
    },
    /// List every option with its environment variable.
    Keys,
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
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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

/// The agent's own paths: what the self-protection rules watch.
fn agent_files(c: &Config, config_file: Option<&std::path::Path>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        out.push(exe.display().to_string());
    }
    out.extend(config_file.map(|p| p.display().to_string()));
    out.extend(c.rules.paths.iter().map(|p| p.display().to_string()));
    if c.baselines.enabled {
        out.push(c.baselines.dir.display().to_string());
    }
    for s in &c.sinks {
        if let monitor::config::SinkKind::File { path, .. } = &s.kind {
            out.push(path.display().to_string());
        }
        out.extend(s.spool_dir.iter().map(|p| p.display().to_string()));
    }
    out
}

/// What `monitor run` evaluates and where alerts go, from the configuration.
fn rules_options(
    c: &Config,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<RulesOptions> {
    let b = &c.baselines;
    let baselines = b.enabled.then(|| {
        let cfg = BaselineConfig {
            learn_for: b.learn.0,
            learn_events: b.learn_events,
            promote_after: b.promote_after,
            rate_per_minute: b.rate_per_minute,
            ..BaselineConfig::default()
        };
        (b.dir.clone(), cfg)
    });
    Ok(RulesOptions {
        paths: c.rules.paths.clone(),
        builtin: c.rules.builtin,
        baselines,
        sinks: c.sinks.clone(),
        drop_window: c.alerts.drop_window.0,
        shutdown_deadline: c.alerts.shutdown_deadline.0,
        agent_files: agent_files(c, config_file),
        redact: monitor::redact::Redactor::new(c.alerts.redact_defaults, &c.alerts.redact)?,
    })
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
    let trace_opts = |a: TraceArgs, c: &Config, rules: Option<RulesOptions>| TraceOptions {
        load: LoadOptions {
            ring_bytes: c.capture.ring_buffer_bytes,
            cgroups: Vec::new(),
            tcp_state_mask: DEFAULT_TCP_STATES,
            wakeup_bytes: c.capture.wakeup_bytes,
        },
        cgroup_paths: c.capture.cgroups.clone(),
        kinds: a.kind,
        pids: a.pid,
        comms: a.comm,
        queue: c.capture.queue,
        node: (!c.node.is_empty()).then(|| c.node.clone()),
        stats_json: a.stats_json,
        ready_file: a.ready_file,
        cri_socket: c.runtime.cri_socket.clone(),
        metadata_hold: c.runtime.metadata_hold.0,
        rules,
        metrics_addr: c.metrics.addr,
        high_cardinality: c.metrics.high_cardinality,
    };
    match cli.cmd {
        Cmd::Trace(a) => {
            let c = a.load_config()?;
            rt.block_on(trace::run(
                trace_opts(a, &c, None),
                std::io::stdout(),
                shutdown_signal(),
            ))
            .context("monitor trace")?;
        }
        Cmd::Run(r) => {
            let c = r.load_config()?;
            let rules = rules_options(&c, r.common.config.config.as_deref())?;
            rt.block_on(trace::run(
                trace_opts(r.common, &c, Some(rules)),
                std::io::stdout(),
                shutdown_signal(),
            ))
            .context("monitor run")?;
        }
        Cmd::Config {
            cmd: ConfigCmd::Keys,
        } => {
            for (key, env) in monitor::config::keys() {
                println!("{key:<28} {env}");
            }
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { config, rules },
        } => {
            let c = Config::load(&Sources::from_process(config.config.clone(), config.set))?;
            print!("{}", c.to_yaml());
            if rules {
                let set = rules_options(&c, config.config.as_deref())?
                    .load()
                    .map_err(|errors| {
                        anyhow::anyhow!(
                            "invalid rules:\n{}",
                            errors
                                .iter()
                                .map(|e| e.to_string())
                                .collect::<Vec<_>>()
                                .join("\n")
                        )
                    })?;
                eprintln!("OK: configuration valid, {} rules", set.len());
            } else {
                eprintln!("OK: configuration valid");
            }
        }
        Cmd::Baseline { dir, cmd } => baseline_cmd(&dir, cmd)?,
        Cmd::BenchPipeline {
            dump_records: Some(dir),
            ..
        } => {
            std::fs::create_dir_all(&dir)?;
            let mut seen = std::collections::HashSet::new();
            for r in monitor::benchkit::records(2000) {
                let kind = r.get(..4).map(|b| b.to_vec());
                if seen.insert(kind) {
                    let name = format!("record-{}", seen.len());
                    std::fs::write(dir.join(name), &r)?;
                }
            }
            println!("{} records in {}", seen.len(), dir.display());
        }
        Cmd::BenchPipeline {
            events,
            every_event,
            dump_records: None,
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
