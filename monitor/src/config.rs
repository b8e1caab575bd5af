//! The agent's configuration: one file (YAML or TOML), every option also settable by an
//! environment variable (`MONITOR_<SECTION>_<KEY>`) or a flag (`--set section.key=value`).
//!
//! Precedence, lowest first: built-in defaults, the file, the environment, flags. Values from
//! the environment and `--set` are parsed as YAML scalars or flow collections, so
//! `MONITOR_SINKS='[{type: file, path: /var/log/monitor/alerts.json}]'` works too. Unknown keys
//! are errors everywhere, so a typo never silently falls back to a default.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
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

/// A duration written as `500ms`, `10s`, `5m`, `1h` (or a number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = self.0.as_millis();
        let text = match ms {
            0 => "0s".to_string(),
            ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t).map(Dur).ok_or_else(|| {
                serde::de::Error::custom(format!("`{t}` is not a duration like 500ms, 10s, 5m, 1h"))
            }),
        }
    }
}

/// `500ms`, `10s`, `5m`, `1h`.
pub use crate::rules::parse_duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node name on events and alerts (empty: $NODE_NAME, else the hostname).
    pub node: String,
    pub capture: CaptureConfig,
    pub runtime: RuntimeConfig,
    pub rules: RulesConfig,
    pub baselines: BaselinesConfig,
    pub metrics: MetricsConfig,
    pub alerts: AlertsConfig,
    /// Where alerts go; any number at once, each with its own queue.
    pub sinks: Vec<SinkConfig>,
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
pub struct CaptureConfig {
    /// Kernel ring buffer size in bytes (a power of two, at least 4096).
    pub ring_buffer_bytes: u32,
    /// Pending ring-buffer bytes that wake the reader (0: every record).
    pub wakeup_bytes: u32,
    /// Events queued between the ring reader and enrichment before new ones are dropped.
    pub queue: usize,
    /// Capture only tasks in these cgroup2 directories (filtered in the kernel).
    pub cgroups: Vec<PathBuf>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: 16 << 20,
            wakeup_bytes: crate::load::DEFAULT_WAKEUP_BYTES,
            queue: 65536,
            cgroups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// CRI socket (empty: the first of the usual containerd, CRI-O, k3s, cri-dockerd paths).
    pub cri_socket: Option<PathBuf>,
    /// How long the events of a new container may wait for its pod metadata.
    pub metadata_hold: Dur,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cri_socket: None,
            metadata_hold: Dur(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or directories (*.yaml), in addition to the built-in rules.
    pub paths: Vec<PathBuf>,
    /// Load the built-in rules.
    pub builtin: bool,
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
pub struct BaselinesConfig {
    pub enabled: bool,
    /// Where learned profiles persist.
    pub dir: PathBuf,
    /// Learning period of a workload from its first event.
    pub learn: Dur,
    /// End learning after this many events of the workload, if sooner.
    pub learn_events: Option<u64>,
    /// After learning, add a new item once seen this many times (0: never).
    pub promote_after: u32,
    /// Anomaly alerts per workload and kind per minute at most.
    pub rate_per_minute: u32,
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
pub struct MetricsConfig {
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9750); empty: off.
    pub addr: Option<SocketAddr>,
    /// Also export alerts by namespace, pod and binary (one series per pod: high cardinality).
    pub high_cardinality: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// An alert says events were being lost when drops happened within this window before it.
    pub drop_window: Dur,
    /// On SIGTERM, how long sinks may take to deliver what they hold before the agent exits.
    pub shutdown_deadline: Dur,
    /// Redact the built-in secret patterns (password/token/key arguments, bearer headers,
    /// URL passwords, AWS key ids) from alerts' command lines, arguments and messages.
    pub redact_defaults: bool,
    /// More patterns (regular expressions) to redact; a group named `secret` limits the
    /// redaction to that group, e.g. `--license[= ](?P<secret>\S+)`.
    pub redact: Vec<String>,
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

/// Alert encodings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The agent's own alert JSON.
    #[default]
    Native,
    /// OCSF 1.3 Detection Finding (class 2004).
    Ocsf,
    /// Elastic Common Schema 8.x field names.
    Ecs,
}

/// Unknown keys are rejected by the `type`-specific part (`SinkKind`), which receives every key
/// the common part does not take (serde cannot combine `flatten` with `deny_unknown_fields`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkConfig {
    /// Name in metrics and logs (default: the type; must be unique).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub format: Format,
    /// Alerts held in memory while the receiver is slow or down; beyond, new ones are spooled
    /// (if `spool_dir` is set) or dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Alerts per write or request at most.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Spool alerts that do not fit in memory to this directory (kept across restarts).
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Size limit of the spool; beyond, new alerts are dropped and counted.
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
    /// First retry delay after a failure; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: Dur,
    #[serde(default = "default_retry_max")]
    pub retry_max: Dur,
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn default_queue() -> usize {
    10_000
}
fn default_batch() -> usize {
    100
}
fn default_spool_bytes() -> u64 {
    256 << 20
}
fn default_retry_initial() -> Dur {
    Dur(Duration::from_millis(200))
}
fn default_retry_max() -> Dur {
    Dur(Duration::from_secs(30))
}

impl SinkConfig {
    pub fn stdout() -> SinkConfig {
        SinkConfig {
            name: String::new(),
            format: Format::Native,
            queue: default_queue(),
            batch: default_batch(),
            spool_dir: None,
            spool_max_bytes: default_spool_bytes(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            kind: SinkKind::Stdout,
        }
    }

    /// The name used in metrics: the configured one, else the type.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.kind.type_name().to_string()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkKind {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file (mode 0600), rotated by size.
    File {
        path: PathBuf,
        /// Rotate when the file would grow past this.
        #[serde(default = "default_file_bytes")]
        max_bytes: u64,
        /// Rotated files kept (`path.1` newest ... `path.N`).
        #[serde(default = "default_file_keep")]
        max_files: u32,
    },
    /// RFC 5424 syslog: `udp://host:port`, `tcp://host:port` (octet-counting framing) or
    /// `unix:///dev/log` (datagram).
    Syslog {
        address: String,
        /// Facility name (kern, user, daemon, auth, authpriv, local0..local7).
        #[serde(default = "default_facility")]
        facility: String,
        #[serde(default = "default_app_name")]
        app_name: String,
    },
    /// HTTP(S) POST of batches of JSON lines (`application/x-ndjson`).
    Webhook {
        url: String,
        /// Extra request headers (e.g. an API key header).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// File holding a bearer token, re-read on every request (rotated secrets work).
        #[serde(default)]
        bearer_token_file: Option<PathBuf>,
        /// Extra PEM CA certificates to trust (besides the system store).
        #[serde(default)]
        ca_file: Option<PathBuf>,
        #[serde(default = "default_timeout")]
        timeout: Dur,
        /// How long a partial batch may wait for more alerts.
        #[serde(default = "default_linger")]
        linger: Dur,
    },
}

fn default_file_bytes() -> u64 {
    100 << 20
}
fn default_file_keep() -> u32 {
    5
}
fn default_facility() -> String {
    "authpriv".into()
}
fn default_app_name() -> String {
    "monitor".into()
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_linger() -> Dur {
    Dur(Duration::from_millis(500))
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::Webhook { .. } => "webhook",
        }
    }
}

/// Syslog facility code by name.
pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

/// A parsed syslog destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    Udp(String),
    Tcp(String),
    Unix(PathBuf),
}

pub fn parse_syslog_addr(s: &str) -> Result<SyslogAddr, String> {
    if let Some(a) = s.strip_prefix("udp://") {
        Ok(SyslogAddr::Udp(a.to_string()))
    } else if let Some(a) = s.strip_prefix("tcp://") {
        Ok(SyslogAddr::Tcp(a.to_string()))
    } else if let Some(p) = s.strip_prefix("unix://") {
        Ok(SyslogAddr::Unix(PathBuf::from(p)))
    } else {
        Err(format!(
            "`{s}`: expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH"
        ))
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

/// Every settable key, as a dotted path, with its environment variable name.
pub fn keys() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(Value::Object(top)) = serde_json::to_value(Config::default()) else {
        return out;
    };
    for (k, v) in top {
        match v {
            Value::Object(inner) if k != "sinks" => {
                for ik in inner.keys() {
                    let path = format!("{k}.{ik}");
                    out.push((path.clone(), env_name(&path)));
                }
            }
            _ => out.push((k.clone(), env_name(&k))),
        }
    }
    out
}

fn env_name(path: &str) -> String {
    format!("MONITOR_{}", path.replace('.', "_").to_uppercase())
}

/// Environment variables the agent reads that are not configuration keys.
const OTHER_ENV: &[&str] = &[
    "MONITOR_LOG",
    "MONITOR_LOG_FORMAT",
    "MONITOR_CONFIG",
    "MONITOR_REQUIRE_ROOT",
];

fn set_path(root: &mut Value, path: &str, value: Value, origin: &str) -> Result<(), ConfigError> {
    let known = keys();
    if !known.iter().any(|(k, _)| k == path) {
        return Err(ConfigError::UnknownKey {
            origin: origin.into(),
            key: path.into(),
            known: known
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(ConfigError::Value {
                origin: origin.into(),
                key: path.into(),
                message: "the enclosing section is not a mapping".into(),
            });
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// Deserializes after one override so that a bad value is blamed on where it came from.
fn check(root: &Value, origin: &str, key: &str) -> Result<(), ConfigError> {
    serde_json::from_value::<Config>(root.clone())
        .map(|_| ())
        .map_err(|e| ConfigError::Value {
            origin: origin.into(),
            key: key.into(),
            message: e.to_string(),
        })
}

/// Parses a value given on the command line or in the environment.
fn scalar(text: &str) -> Value {
    serde_norway::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Where a configuration comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Environment variables (name, value); normally `std::env::vars()`.
    pub env: Vec<(String, String)>,
    /// `KEY=VALUE` overrides from flags, applied last.
    pub set: Vec<String>,
}

impl Sources {
    pub fn from_process(file: Option<PathBuf>, set: Vec<String>) -> Sources {
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
    pub fn from_text(text: &str, toml: bool) -> Result<Config, ConfigError> {
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
    pub fn load(src: &Sources) -> Result<Config, ConfigError> {
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
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errs = Vec::new();
        let rb = self.capture.ring_buffer_bytes;
        if rb < 4096 || !rb.is_power_of_two() {
            errs.push(format!(
                "capture.ring_buffer_bytes: {rb} must be a power of two, at least 4096"
            ));
        }
        if self.capture.queue == 0 {
            errs.push("capture.queue: must be at least 1".into());
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
                    address, facility, ..
                } => {
                    if let Err(e) = parse_syslog_addr(address) {
                        errs.push(format!("{at}: address {e}"));
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
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("monitor-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn defaults_are_valid_and_print_stdout_sink() {
        let c = Config::load(&Sources::default()).expect("defaults");
        assert_eq!(c.sinks, vec![SinkConfig::stdout()]);
        assert!(c.to_yaml().contains("type: stdout"));
    }

    #[test]
    fn yaml_and_toml_give_the_same_config() {
        let y = write(
            "a.yaml",
            "metrics:\n  addr: 127.0.0.1:9750\nsinks:\n  - type: file\n    path: /tmp/x.json\n    max_bytes: 8192\n    format: ocsf\n  - type: syslog\n    address: udp://127.0.0.1:514\n",
        );
        let t = write(
            "a.toml",
            "[metrics]\naddr = \"127.0.0.1:9750\"\n[[sinks]]\ntype = \"file\"\npath = \"/tmp/x.json\"\nmax_bytes = 8192\nformat = \"ocsf\"\n[[sinks]]\ntype = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\n",
        );
        let a = Config::load(&Sources {
            file: Some(y),
            ..Default::default()
        })
        .expect("yaml");
        let b = Config::load(&Sources {
            file: Some(t),
            ..Default::default()
        })
        .expect("toml");
        assert_eq!(a, b);
        assert_eq!(a.sinks[0].format, Format::Ocsf);
        assert_eq!(a.sinks[1].display_name(), "syslog");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let y = write(
            "b.yaml",
            "capture:\n  queue: 100\nbaselines:\n  learn: 2h\n",
        );
        let c = Config::load(&Sources {
            file: Some(y),
            env: vec![
                ("MONITOR_CAPTURE_QUEUE".into(), "200".into()),
                ("MONITOR_BASELINES_LEARN".into(), "30m".into()),
                ("MONITOR_LOG".into(), "debug".into()),
                ("PATH".into(), "/bin".into()),
            ],
            set: vec!["capture.queue=300".into()],
        })
        .expect("load");
        assert_eq!(c.capture.queue, 300);
        assert_eq!(c.baselines.learn, Dur(Duration::from_secs(1800)));
    }

    #[test]
    fn sinks_can_come_from_the_environment() {
        let c = Config::load(&Sources {
            env: vec![(
                "MONITOR_SINKS".into(),
                "[{type: webhook, url: 'http://127.0.0.1:1/x', format: ecs}]".into(),
            )],
            ..Default::default()
        })
        .expect("load");
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.sinks[0].format, Format::Ecs);
        assert_eq!(c.sinks[0].display_name(), "webhook");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let y = write("c.yaml", "capture:\n  queu: 1\n");
        let e = Config::load(&Sources {
            file: Some(y.clone()),
            ..Default::default()
        })
        .expect_err("typo");
        let s = e.to_string();
        assert!(
            s.contains(&y.display().to_string()) && s.contains("queu"),
            "{s}"
        );

        // Unknown variables are only warned about (Kubernetes service links add some).
        let c = Config::load(&Sources {
            env: vec![("MONITOR_SERVICE_HOST".into(), "10.0.0.1".into())],
            ..Default::default()
        })
        .expect("unknown env var ignored");
        assert_eq!(c, Config::default());
        let e = Config::load(&Sources {
            env: vec![("MONITOR_CAPTURE_QUEUE".into(), "many".into())],
            ..Default::default()
        })
        .expect_err("bad env value");
        assert!(e.to_string().contains("queue"), "{e}");

        let e = Config::load(&Sources {
            set: vec!["metrics.adr=1".into()],
            ..Default::default()
        })
        .expect_err("set typo");
        assert!(e.to_string().contains("metrics.adr"), "{e}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let y = write(
            "d.yaml",
            "capture:\n  ring_buffer_bytes: 5000\nsinks:\n  - type: syslog\n    address: 127.0.0.1:514\n    facility: nope\n  - type: webhook\n    url: ftp://x\n  - type: stdout\n  - type: stdout\n",
        );
        let e = Config::load(&Sources {
            file: Some(y),
            ..Default::default()
        })
        .expect_err("invalid");
        let s = e.to_string();
        for needle in [
            "ring_buffer_bytes",
            "udp://HOST:PORT",
            "facility `nope`",
            "ftp://x",
            "duplicate sink name",
        ] {
            assert!(s.contains(needle), "missing {needle} in {s}");
        }
    }

    #[test]
    fn durations_parse_in_all_forms() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("x"), None);
        let d: Dur = serde_json::from_str("5").expect("secs");
        assert_eq!(d, Dur(Duration::from_secs(5)));
        for text in ["250ms", "10s", "5m", "2h", "0s"] {
            let d: Dur = serde_json::from_str(&format!("\"{text}\"")).expect("parse");
            assert_eq!(
                serde_json::to_string(&d).expect("print"),
                format!("\"{text}\"")
            );
        }
    }
}
