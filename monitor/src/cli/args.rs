//! Arguments of `monitor run` and `monitor trace`, and how they override the configuration.
use std::path::PathBuf;

use clap::Args;

use crate::config::{Config, ConfigError, Dur, Sources, parse_duration};

/// Where the configuration comes from; shared by `run`, `trace` and `config check`.
#[derive(Args)]
pub(crate) struct ConfigArgs {
    /// Configuration file (YAML, or TOML if it ends in .toml). Every option can also be set by
    /// an environment variable MONITOR_<SECTION>_<KEY> (see `monitor config keys`) or --set.
    #[arg(long, env = "MONITOR_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Set any option, e.g. --set metrics.addr=0.0.0.0:9750 (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(super) set: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Rule files or directories (*.yaml), in addition to rules.paths.
    #[arg(long, value_delimiter = ',')]
    pub(super) rules: Vec<PathBuf>,
    /// Do not load the built-in rules (rules.builtin=false).
    #[arg(long)]
    pub(super) no_default_rules: bool,
    /// Directory where learned baselines persist (baselines.dir).
    #[arg(long)]
    pub(super) baseline_dir: Option<PathBuf>,
    /// Learning period of a workload from its first event (baselines.learn).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(super) baseline_learn: Option<std::time::Duration>,
    /// Turn learned baselines off (baselines.enabled=false).
    #[arg(long)]
    pub(super) no_baselines: bool,
    /// Print what the kernel will capture for these rules and baselines, and which rule or
    /// consumer asked for each part, then exit (no privileges needed).
    #[arg(long)]
    pub(super) explain_interest: bool,
    #[command(flatten)]
    pub(super) common: TraceArgs,
}

#[derive(Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    pub(super) config: ConfigArgs,
    /// Only these event kinds (comma-separated, e.g. exec,open,connect).
    #[arg(long, value_delimiter = ',')]
    pub(super) kind: Vec<String>,
    /// Only these processes and their descendants.
    #[arg(long, value_delimiter = ',')]
    pub(super) pid: Vec<u32>,
    /// Only processes with this comm.
    #[arg(long, value_delimiter = ',')]
    pub(super) comm: Vec<String>,
    /// Capture only tasks in these cgroup2 directories (capture.cgroups).
    #[arg(long)]
    pub(super) cgroup: Vec<PathBuf>,
    /// Kernel ring buffer size in bytes (capture.ring_buffer_bytes).
    #[arg(long)]
    pub(super) ring_buffer_bytes: Option<u32>,
    /// Pending ring-buffer bytes that wake the reader (capture.wakeup_bytes).
    #[arg(long)]
    pub(super) wakeup_bytes: Option<u32>,
    /// No longer used (capture.queue): each pipeline worker reads its own ring buffer.
    #[arg(long)]
    pub(super) queue: Option<usize>,
    /// Node name on events (node; default: $NODE_NAME, else the hostname).
    #[arg(long)]
    pub(super) node: Option<String>,
    /// Write the final pipeline counters as JSON to this file on exit.
    #[arg(long)]
    pub(super) stats_json: Option<PathBuf>,
    /// Create this file once probes are attached and the process table is seeded.
    #[arg(long)]
    pub(super) ready_file: Option<PathBuf>,
    /// Container runtime (CRI) socket (runtime.cri_socket).
    #[arg(long)]
    pub(super) cri_socket: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here, e.g. 0.0.0.0:9750 (metrics.addr).
    #[arg(long)]
    pub(super) metrics_addr: Option<std::net::SocketAddr>,
    /// Milliseconds the events of a new container may wait for pod metadata
    /// (runtime.metadata_hold).
    #[arg(long)]
    pub(super) metadata_hold_ms: Option<u64>,
}

impl TraceArgs {
    /// Loads the configuration and applies this command's flags on top.
    pub(super) fn load_config(&self) -> Result<Config, ConfigError> {
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
    pub(super) fn load_config(&self) -> Result<Config, ConfigError> {
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

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration like 30s, 5m, 1h"))
}
