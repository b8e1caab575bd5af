//! Sink settings: where alerts go, in which format, with which queue and retry settings;
//! syslog facility names and addresses.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Dur;

/// Alert encodings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// The agent's own alert JSON.
    #[default]
    Native,
    /// OCSF Detection Finding (class 2004), in the sink's `ocsf_version`.
    Ocsf,
    /// Elastic Common Schema 9.x field names.
    Ecs,
}

/// OCSF versions the encoder emits; each is validated against the published schema export of
/// that version in the tests. The newest is the default; a sink may pin an older one for a
/// receiver that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum OcsfVersion {
    V1_3,
    V1_4,
    V1_5,
    V1_6,
    V1_7,
    #[default]
    V1_8,
}

impl OcsfVersion {
    /// Every version the encoder emits, oldest first.
    pub(crate) const ALL: [OcsfVersion; 6] = [
        OcsfVersion::V1_3,
        OcsfVersion::V1_4,
        OcsfVersion::V1_5,
        OcsfVersion::V1_6,
        OcsfVersion::V1_7,
        OcsfVersion::V1_8,
    ];

    /// The version as OCSF writes it (`metadata.version`).
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            OcsfVersion::V1_3 => "1.3.0",
            OcsfVersion::V1_4 => "1.4.0",
            OcsfVersion::V1_5 => "1.5.0",
            OcsfVersion::V1_6 => "1.6.0",
            OcsfVersion::V1_7 => "1.7.0",
            OcsfVersion::V1_8 => "1.8.0",
        }
    }
}

impl Serialize for OcsfVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OcsfVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OcsfVersion, D::Error> {
        let s = String::deserialize(d)?;
        let want = s.trim();
        OcsfVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == want || v.as_str().strip_suffix(".0") == Some(want))
            .ok_or_else(|| {
                let known: Vec<&str> = OcsfVersion::ALL.iter().map(|v| v.as_str()).collect();
                serde::de::Error::custom(format!(
                    "ocsf_version `{s}` is not one the encoder emits ({})",
                    known.join(", ")
                ))
            })
    }
}

/// How a sink encodes alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Encoding {
    pub(crate) format: Format,
    /// For [`Format::Ocsf`]: which version.
    pub(crate) ocsf: OcsfVersion,
}

/// Unknown keys are rejected by the `type`-specific part (`SinkKind`), which receives every key
/// the common part does not take (serde cannot combine `flatten` with `deny_unknown_fields`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SinkConfig {
    /// Name in metrics and logs (default: the type; must be unique).
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) format: Format,
    /// OCSF version written by an `ocsf` sink (default: the newest the encoder knows).
    #[serde(default)]
    pub(crate) ocsf_version: OcsfVersion,
    /// Alerts held in memory while the receiver is slow or down; beyond, new ones are spooled
    /// (if `spool_dir` is set) or dropped and counted.
    #[serde(default = "default_queue")]
    pub(crate) queue: usize,
    /// Alerts per write or request at most.
    #[serde(default = "default_batch")]
    pub(crate) batch: usize,
    /// Spool alerts that do not fit in memory to this directory (kept across restarts).
    #[serde(default)]
    pub(crate) spool_dir: Option<PathBuf>,
    /// Size limit of the spool; beyond, new alerts are dropped and counted.
    #[serde(default = "default_spool_bytes")]
    pub(crate) spool_max_bytes: u64,
    /// First retry delay after a failure; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial")]
    pub(crate) retry_initial: Dur,
    #[serde(default = "default_retry_max")]
    pub(crate) retry_max: Dur,
    #[serde(flatten)]
    pub(crate) kind: SinkKind,
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
    /// How this sink encodes alerts.
    pub(crate) fn encoding(&self) -> Encoding {
        Encoding {
            format: self.format,
            ocsf: self.ocsf_version,
        }
    }

    pub(crate) fn stdout() -> SinkConfig {
        SinkConfig {
            name: String::new(),
            format: Format::Native,
            ocsf_version: OcsfVersion::default(),
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
    pub(crate) fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.kind.type_name().to_string()
        } else {
            self.name.clone()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum SinkKind {
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
        /// `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT` (RFC 5425) or `unix:///PATH`.
        address: String,
        /// Facility name (kern, user, daemon, auth, authpriv, local0..local7).
        #[serde(default = "default_facility")]
        facility: String,
        #[serde(default = "default_app_name")]
        app_name: String,
        /// For `tls://`: whom to trust and how to present ourselves.
        #[serde(default)]
        tls: SyslogTls,
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
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::File { .. } => "file",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::Webhook { .. } => "webhook",
        }
    }
}

/// Syslog facility code by name.
pub(crate) fn facility_code(name: &str) -> Option<u8> {
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

/// TLS settings of a `tls://` syslog sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyslogTls {
    /// PEM file of the CA certificates the receiver's certificate must chain to (default: the
    /// system's roots).
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for receivers that require one (with `key_file`).
    #[serde(default)]
    pub(crate) cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub(crate) key_file: Option<PathBuf>,
    /// Name the receiver's certificate must carry (default: the address's host).
    #[serde(default)]
    pub(crate) server_name: Option<String>,
}

/// A parsed syslog destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyslogAddr {
    Udp(String),
    Tcp(String),
    /// TCP with TLS (RFC 5425), octet-counted like TCP.
    Tls(String),
    Unix(PathBuf),
}

pub(crate) fn parse_syslog_addr(s: &str) -> Result<SyslogAddr, String> {
    if let Some(a) = s.strip_prefix("udp://") {
        Ok(SyslogAddr::Udp(a.to_string()))
    } else if let Some(a) = s.strip_prefix("tcp://") {
        Ok(SyslogAddr::Tcp(a.to_string()))
    } else if let Some(a) = s.strip_prefix("tls://") {
        Ok(SyslogAddr::Tls(a.to_string()))
    } else if let Some(p) = s.strip_prefix("unix://") {
        Ok(SyslogAddr::Unix(PathBuf::from(p)))
    } else {
        Err(format!(
            "`{s}`: expected udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH"
        ))
    }
}
