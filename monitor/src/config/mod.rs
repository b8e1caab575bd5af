//! The agent's configuration: one file (YAML or TOML), every option also settable by an
//! environment variable (`MONITOR_<SECTION>_<KEY>`) or a flag (`--set section.key=value`).
//!
//! Precedence, lowest first: built-in defaults, the file, the environment, flags. Values from
//! the environment and `--set` are parsed as YAML scalars or flow collections, so
//! `MONITOR_SINKS='[{type: file, path: /var/log/monitor/alerts.json}]'` works too. Unknown keys
//! are errors everywhere, so a typo never silently falls back to a default.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

mod duration;
mod keys;
mod sinks;
#[cfg(test)]
mod tests;

pub(crate) use duration::{Dur, parse_duration};
pub(crate) use keys::keys;
use keys::{OTHER_ENV, check, scalar, set_path};
pub(crate) use sinks::*;

/// Default wake-up threshold of the ring reader: a few hundred records.
pub(crate) const DEFAULT_WAKEUP_BYTES: u32 = 64 * 1024;

#[derive(Debug, Error)]
pub(crate) enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{key}` is not a configuration option (known: {known})")]
    UnknownKey {
        origin: String,
        key: String,
        known: String,
    },
    #[error("{origin}: value for `{key}`: {message}")]
    Value {
        origin: String,
        key: String,
        message: String,
    },
    #[error("--set `{0}`: expected KEY=VALUE (e.g. metrics.addr=0.0.0.0:9750)")]
    SetSyntax(String),
    #[error("configuration is invalid:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Node name on events and alerts (empty: $NODE_NAME, else the hostname).
    pub(crate) node: String,
    pub(crate) capture: CaptureConfig,
    pub(crate) runtime: RuntimeConfig,
    pub(crate) rules: RulesConfig,
    pub(crate) baselines: BaselinesConfig,
    pub(crate) metrics: MetricsConfig,
    pub(crate) alerts: AlertsConfig,
    /// Where alerts go; any number at once, each with its own queue.
    pub(crate) sinks: Vec<SinkConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node: String::new(),
            capture: CaptureConfig::default(),
            runtime: RuntimeConfig::default(),
            rules: RulesConfig::default(),
            baselines: BaselinesConfig::default(),
            metrics: MetricsConfig::default(),
            alerts: AlertsConfig::default(),
            sinks: vec![SinkConfig::stdout()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CaptureConfig {
    /// Kernel ring buffer bytes in all (a power of two, at least 4096), shared out evenly
    /// over the workers' rings (each the largest power of two that fits its share).
    pub(crate) ring_buffer_bytes: u32,
    /// Pending ring-buffer bytes that wake the reader (0: every record).
    pub(crate) wakeup_bytes: u32,
    /// No longer used: each pipeline worker reads its own ring buffer, with no queue between
    /// (size the rings with `ring_buffer_bytes`). Still accepted, so that older files load;
    /// the agent warns when it is set.
    pub(crate) queue: usize,
    /// Capture only tasks in these cgroup2 directories (filtered in the kernel).
    pub(crate) cgroups: Vec<PathBuf>,
    /// bpffs directory where the programs stay pinned, so that capture goes on while no agent
    /// runs (restarts, upgrades); the next agent adopts them. Unset: detached at exit.
    pub(crate) pin_dir: Option<PathBuf>,
    /// Remove the pins when the agent stops (a deliberate uninstall; `monitor unpin` does the
    /// same with no agent running).
    pub(crate) unpin_on_exit: bool,
    /// Capture only what the loaded rules, baselines and trace filters can use, filtered in
    /// the kernel (`monitor run --explain-interest` shows what and why). false: capture every
    /// hooked call, as a debugging aid or to compare.
    pub(crate) interest_filter: bool,
    /// Identical syscall records of one process (same call, outcome, flags, path or address)
    /// within this window are folded in the kernel: the first is sent, the others counted, and
    /// the next one sent carries their count (`folded`). Keeps one process's flood from
    /// crowding out everyone else's events. 0s: send every record.
    pub(crate) fold_window: Dur,
    /// Pipeline workers (process table, attribution, rules), each owning the events of some
    /// cgroups and reading them from its own kernel ring buffer. 0: one per CPU this agent may
    /// use (the pod's CPU limit, read from its cgroup); at most 8.
    pub(crate) workers: usize,
}

/// Pipeline workers at most (`capture.workers`): one kernel ring buffer each.
pub(crate) const MAX_WORKERS: usize = monitor_common::MAX_RINGS as usize;
/// Pipeline workers at most when sized to the CPU limit.
const AUTO_WORKERS: usize = MAX_WORKERS;

impl CaptureConfig {
    /// The pipeline workers to run: as configured, or one per CPU this process may use
    /// (`available_parallelism` honours the cgroup's CPU quota and the affinity mask), at most
    /// [`AUTO_WORKERS`].
    pub(crate) fn pipeline_workers(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .min(AUTO_WORKERS),
            n => n,
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: 16 << 20,
            wakeup_bytes: DEFAULT_WAKEUP_BYTES,
            queue: 65536,
            cgroups: Vec::new(),
            pin_dir: None,
            unpin_on_exit: false,
            interest_filter: true,
            fold_window: Dur(Duration::from_secs(1)),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RuntimeConfig {
    /// CRI socket (empty: the first of the usual containerd, CRI-O, k3s, cri-dockerd paths).
    pub(crate) cri_socket: Option<PathBuf>,
    /// How long the events of a new container may wait for its pod metadata.
    pub(crate) metadata_hold: Dur,
    /// The host's cgroup2 tree (or the cgroup mount above it, for hybrid hosts), scanned for
    /// containers at start and searched by inode for vanished ones. Unset: /sys/fs/cgroup,
    /// which in a container with its own cgroup namespace shows only the agent's subtree: the
    /// DaemonSet mounts the host's tree read-only and names it here.
    pub(crate) cgroup_root: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cri_socket: None,
            metadata_hold: Dur(Duration::from_secs(1)),
            cgroup_root: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RulesConfig {
    /// Rule files or directories (*.yaml), in addition to the built-in rules.
    pub(crate) paths: Vec<PathBuf>,
    /// Load the built-in rules.
    pub(crate) builtin: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            paths: Vec::new(),
            builtin: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct BaselinesConfig {
    pub(crate) enabled: bool,
    /// Where learned profiles persist.
    pub(crate) dir: PathBuf,
    /// Learning period of a workload from its first event a profile can record.
    pub(crate) learn: Dur,
    /// End learning after this many recordable events of the workload, if sooner.
    pub(crate) learn_events: Option<u64>,
    /// After learning, add a new item once seen this many times (0: never).
    pub(crate) promote_after: u32,
    /// Anomaly alerts per workload and kind per minute at most.
    pub(crate) rate_per_minute: u32,
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        BaselinesConfig {
            enabled: true,
            dir: PathBuf::from("/var/lib/monitor/baselines"),
            learn: Dur(Duration::from_secs(3600)),
            learn_events: None,
            promote_after: 0,
            rate_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9750); empty: off.
    pub(crate) addr: Option<SocketAddr>,
    /// Also export alerts by namespace, pod and binary (one series per pod: high cardinality).
    pub(crate) high_cardinality: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AlertsConfig {
    /// An alert says events were being lost when drops happened within this window before it.
    pub(crate) drop_window: Dur,
    /// On SIGTERM, how long sinks may take to deliver what they hold before the agent exits.
    pub(crate) shutdown_deadline: Dur,
    /// Redact the built-in secret patterns (password/token/key arguments, bearer headers,
    /// URL passwords, AWS key ids) from alerts' command lines, arguments and messages.
    pub(crate) redact_defaults: bool,
    /// More patterns (regular expressions) to redact; a group named `secret` limits the
    /// redaction to that group, e.g. `--license[= ](?P<secret>\S+)`.
    pub(crate) redact: Vec<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            drop_window: Dur(Duration::from_secs(60)),
            shutdown_deadline: Dur(Duration::from_secs(10)),
            redact_defaults: true,
            redact: Vec::new(),
        }
    }
}

fn parse_text(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parse_err = |message: String| ConfigError::Parse {
        path: path.into(),
        message,
    };
    if is_toml {
        let v: toml::Value = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        serde_json::to_value(v).map_err(|e| parse_err(e.to_string()))
    } else {
        let v: Value = serde_norway::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        Ok(if v.is_null() {
            Value::Object(Default::default())
        } else {
            v
        })
    }
}

/// Where a configuration comes from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    pub(crate) file: Option<PathBuf>,
    /// Environment variables (name, value); normally `std::env::vars()`.
    pub(crate) env: Vec<(String, String)>,
    /// `KEY=VALUE` overrides from flags, applied last.
    pub(crate) set: Vec<String>,
}

impl Sources {
    pub(crate) fn from_process(file: Option<PathBuf>, set: Vec<String>) -> Sources {
        Sources {
            file,
            env: std::env::vars().collect(),
            set,
        }
    }
}

impl Config {
    /// Parses and validates a configuration text alone (`toml` picks the syntax); used by
    /// `load` for files and by the fuzzer.
    pub(crate) fn from_text(text: &str, toml: bool) -> Result<Config, ConfigError> {
        let name = PathBuf::from(if toml { "<text>.toml" } else { "<text>.yaml" });
        let root = parse_text(&name, text)?;
        let cfg: Config = serde_json::from_value(root).map_err(|e| ConfigError::Parse {
            path: name,
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Builds the configuration from its sources and validates it.
    pub(crate) fn load(src: &Sources) -> Result<Config, ConfigError> {
        let mut root = Value::Object(Default::default());
        if let Some(path) = &src.file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            root = parse_text(path, &text)?;
            if !root.is_object() {
                return Err(ConfigError::Parse {
                    path: path.clone(),
                    message: "the top level must be a mapping".into(),
                });
            }
            // Deserialize once on its own so errors name the file.
            serde_json::from_value::<Config>(root.clone()).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
        let known = keys();
        let mut env: Vec<_> = src
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("MONITOR_") && !OTHER_ENV.contains(&k.as_str()))
            .collect();
        env.sort();
        for (name, value) in env {
            match known.iter().find(|(_, e)| e == name) {
                Some((path, _)) => {
                    set_path(&mut root, path, scalar(value), name)?;
                    check(&root, name, path)?;
                }
                // Not fatal: Kubernetes injects MONITOR_SERVICE_HOST and the like for a
                // Service named `monitor`, and a node must not crash-loop over that.
                None => tracing::warn!(
                    variable = %name,
                    "environment variable is not a configuration option; ignored (see `monitor config keys`)"
                ),
            }
        }
        for s in &src.set {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| ConfigError::SetSyntax(s.clone()))?;
            set_path(&mut root, k.trim(), scalar(v), "--set")?;
            check(&root, "--set", k.trim())?;
        }
        let cfg: Config = serde_json::from_value(root).map_err(|e| ConfigError::Value {
            origin: "configuration".into(),
            key: "(top level)".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what types alone cannot; every problem is reported, not only the first.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let rb = self.capture.ring_buffer_bytes;
        if rb < 4096 || !rb.is_power_of_two() {
            errs.push(format!(
                "capture.ring_buffer_bytes: {rb} must be a power of two, at least 4096"
            ));
        }
        if self.capture.workers > MAX_WORKERS {
            errs.push(format!(
                "capture.workers: {} is more than {MAX_WORKERS} (0 sizes it to the CPU limit)",
                self.capture.workers
            ));
        }
        if !self.rules.builtin && self.rules.paths.is_empty() {
            errs.push("rules: builtin is false and no paths are given: nothing to run".into());
        }
        if self.sinks.is_empty() {
            errs.push("sinks: at least one sink is needed (e.g. `- type: stdout`)".into());
        }
        for (i, p) in self.alerts.redact.iter().enumerate() {
            if let Err(e) = regex::Regex::new(p) {
                errs.push(format!("alerts.redact[{i}]: `{p}`: {e}"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let name = s.display_name();
            let at = format!("sinks[{i}] ({name})");
            if !names.insert(name.clone()) {
                errs.push(format!(
                    "{at}: duplicate sink name; give each sink of the same type a `name`"
                ));
            }
            if s.queue == 0 {
                errs.push(format!("{at}: queue must be at least 1"));
            }
            if s.batch == 0 {
                errs.push(format!("{at}: batch must be at least 1"));
            }
            if s.retry_initial.0.is_zero() || s.retry_max.0 < s.retry_initial.0 {
                errs.push(format!(
                    "{at}: retry_initial must be > 0 and at most retry_max"
                ));
            }
            match &s.kind {
                SinkKind::Stdout => {}
                SinkKind::File {
                    path, max_bytes, ..
                } => {
                    if path.as_os_str().is_empty() {
                        errs.push(format!("{at}: path is empty"));
                    }
                    if *max_bytes < 4096 {
                        errs.push(format!("{at}: max_bytes must be at least 4096"));
                    }
                }
                SinkKind::Syslog {
                    address,
                    facility,
                    tls,
                    ..
                } => {
                    match parse_syslog_addr(address) {
                        Err(e) => errs.push(format!("{at}: address {e}")),
                        Ok(SyslogAddr::Tls(_)) => {}
                        Ok(_) if *tls != SyslogTls::default() => {
                            errs.push(format!("{at}: `tls` settings need a tls:// address"));
                        }
                        Ok(_) => {}
                    }
                    if tls.cert_file.is_some() != tls.key_file.is_some() {
                        errs.push(format!(
                            "{at}: tls.cert_file and tls.key_file go together (a client certificate and its key)"
                        ));
                    }
                    for (what, f) in [
                        ("ca_file", &tls.ca_file),
                        ("cert_file", &tls.cert_file),
                        ("key_file", &tls.key_file),
                    ] {
                        if let Some(f) = f
                            && !f.is_file()
                        {
                            errs.push(format!(
                                "{at}: tls.{what} {} is not a readable file",
                                f.display()
                            ));
                        }
                    }
                    if facility_code(facility).is_none() {
                        errs.push(format!("{at}: unknown facility `{facility}`"));
                    }
                }
                SinkKind::Webhook {
                    url,
                    ca_file,
                    timeout,
                    ..
                } => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        errs.push(format!(
                            "{at}: url `{url}` must start with http:// or https://"
                        ));
                    }
                    if let Some(ca) = ca_file
                        && let Err(e) = std::fs::metadata(ca)
                    {
                        errs.push(format!("{at}: ca_file {}: {e}", ca.display()));
                    }
                    if timeout.0.is_zero() {
                        errs.push(format!("{at}: timeout must be > 0"));
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errs))
        }
    }

    /// The effective configuration as YAML (what `monitor config check` prints).
    pub(crate) fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
