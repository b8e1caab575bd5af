//! `monitor`: command-line entry point. Only wiring lives here.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use monitor::{
    load::{DEFAULT_TCP_STATES, LoadOptions},
    trace::{self, TraceOptions},
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
    /// Print every captured event, enriched, as one JSON object per line on stdout (needs root).
    Trace(TraceArgs),
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, &cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.cmd {
        Cmd::Trace(a) => {
            let opts = TraceOptions {
                load: LoadOptions {
                    ring_bytes: a.ring_buffer_bytes,
                    cgroups: Vec::new(),
                    tcp_state_mask: DEFAULT_TCP_STATES,
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
            };
            rt.block_on(trace::run(opts, std::io::stdout(), shutdown_signal()))
                .context("monitor trace")?;
        }
    }
    Ok(())
}
