//! The command line: arguments, and the subcommands that are not the agent itself (rules,
//! config, baseline, the pipeline bench). `monitor run` and `monitor trace` hand over to
//! [`crate::agent`].
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line prints its results on stdout and its errors on stderr"
)]
mod args;
mod baseline;
mod bench;
mod config;
mod rules;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use thiserror::Error;
use tracing_subscriber::EnvFilter;

use self::{
    args::{RunArgs, TraceArgs},
    baseline::BaselineCmd,
    config::ConfigCmd,
    rules::RulesCmd,
};
use crate::{
    agent::{self, AgentError, Mode, Options, RulesOptions},
    config::ConfigError,
    detect::{baseline::store::StoreError, rules::RuleError},
    output::redact::RedactError,
};

/// The `monitor` command line.
#[derive(Parser)]
#[command(
    name = "monitor",
    version,
    about = "eBPF runtime security monitor for Kubernetes nodes"
)]
pub struct Cli {
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
        /// Pipeline workers (threads), as `capture.workers`; with more than one, this thread
        /// decodes and routes the records as the ring reader does.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Instead of benchmarking, write the first 64 distinct-kind records to this directory
        /// (the decoder's fuzzing corpus).
        #[arg(long)]
        dump_records: Option<PathBuf>,
    },
    /// The mechanism floor for `cargo xtask bench`: the agent's tracepoints with programs that
    /// return at once, attached until SIGTERM (needs root).
    #[command(hide = true)]
    BenchFloor {
        /// Written once the programs are attached.
        #[arg(long)]
        ready_file: PathBuf,
    },
    /// The configuration: check it, list its options.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Remove the programs an agent left pinned (capture.pin_dir), detaching them: the step
    /// of a deliberate uninstall, once no agent runs any more.
    Unpin {
        /// The pin directory (capture.pin_dir).
        #[arg(long, env = "MONITOR_CAPTURE_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
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
/// Where the DaemonSet pins its programs.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/monitor";

/// Why a command failed.
#[derive(Debug, Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("monitor {what} failed")]
    Agent {
        what: &'static str,
        source: Box<AgentError>,
    },
    #[error("invalid rules:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error(transparent)]
    Redact(#[from] RedactError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pin(#[from] crate::load::pin::PinError),
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding JSON: {0}")]
    Json(serde_json::Error),
    #[error("encoding YAML: {0}")]
    Yaml(serde_norway::Error),
}

fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listening starts here, not when the future is first polled: a SIGTERM that arrives while
    // the agent is still loading (a pod deleted right after it started) is kept and ends the
    // agent cleanly once it runs, instead of killing it by the default action.
    let listeners = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = listeners else {
            // Without signal handlers we can only run until killed.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}

fn init_logging(filter: &str, format: &str) -> Result<(), CliError> {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| CliError::Usage(format!("invalid --log filter `{filter}`: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => {
            return Err(CliError::Usage(format!(
                "--log-format must be `text` or `json`, not `{other}`"
            )));
        }
    }
    Ok(())
}

/// Runs the agent in `mode` until SIGTERM or SIGINT.
fn run_agent(
    what: &'static str,
    config: crate::config::Config,
    mode: Mode,
    a: TraceArgs,
) -> Result<(), CliError> {
    // A thread per pipeline worker (each reads its own ring), and one for everything else.
    let threads = config.capture.pipeline_workers() + 1;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(2))
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let opts = Options {
        config,
        mode,
        stats_json: a.stats_json,
        ready_file: a.ready_file,
    };
    rt.block_on(async { agent::run(opts, std::io::stdout(), shutdown_signal()).await })
        .map_err(|source| CliError::Agent {
            what,
            source: Box::new(source),
        })?;
    Ok(())
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, CliError> {
    match cmd {
        Cmd::Trace(a) => {
            let c = a.load_config()?;
            let mode = Mode::Trace {
                kinds: a.kind.clone(),
                pids: a.pid.clone(),
                comms: a.comm.clone(),
            };
            run_agent("trace", c, mode, a)?;
        }
        Cmd::Run(r) => {
            let c = r.load_config()?;
            let rules = RulesOptions::from_config(&c, r.common.config.config.as_deref())?;
            if r.explain_interest {
                explain_interest(&c, &rules)?;
                return Ok(ExitCode::SUCCESS);
            }
            run_agent("run", c, Mode::Run(rules), r.common)?;
        }
        Cmd::Config { cmd } => config::run(cmd)?,
        Cmd::Baseline { dir, cmd } => baseline::run(&dir, cmd)?,
        Cmd::BenchPipeline {
            dump_records: Some(dir),
            ..
        } => bench::dump_records(&dir)?,
        Cmd::BenchPipeline {
            events,
            every_event,
            workers,
            dump_records: None,
        } => bench::pipeline(events, every_event, workers)?,
        Cmd::Rules { cmd } => return Ok(rules::run(cmd)),
        Cmd::Unpin { pin_dir } => unpin(&pin_dir)?,
        Cmd::BenchFloor { ready_file } => bench::floor(&ready_file)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `monitor run --explain-interest`: what the kernel captures for these rules and baselines.
fn explain_interest(c: &crate::config::Config, rules: &RulesOptions) -> Result<(), CliError> {
    let set = rules.load().map_err(CliError::Rules)?;
    let filter = c.capture.interest_filter;
    let d = rules.interest(&set, filter);
    if filter {
        println!(
            "Captured for {} rules{} (capture.interest_filter: true); the rest is left out in the kernel and counted in monitor_events_filtered_total.\n",
            set.len(),
            if rules.baselines.is_some() {
                " and the baselines"
            } else {
                ""
            }
        );
    } else {
        println!("capture.interest_filter is false: every hooked call is captured.\n");
    }
    print!("{}", d.explain());
    Ok(())
}

/// `monitor unpin`: removes every pinned set; says what it removed.
fn unpin(dir: &std::path::Path) -> Result<(), CliError> {
    if !dir.exists() {
        tracing::info!(dir = %dir.display(), "nothing pinned");
        return Ok(());
    }
    let pins = crate::load::pin::PinDir::open(dir)?;
    let removed = pins.remove_others("")?;
    std::fs::remove_dir(dir).map_err(|source| CliError::Io {
        what: "removing the pin directory",
        path: dir.to_path_buf(),
        source,
    })?;
    tracing::info!(dir = %dir.display(), sets = %removed.join(","), "pinned programs removed");
    Ok(())
}

/// Sets up the process's allocator (mimalloc, linked by the binary) before anything else runs.
pub fn tune_heap() {
    crate::pipeline::tune_heap();
}

/// Runs a parsed command line; errors are printed with their causes.
pub fn run(cli: Cli) -> ExitCode {
    let result = init_logging(&cli.log, &cli.log_format).and_then(|()| dispatch(cli.cmd));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
