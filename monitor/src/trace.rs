//! `monitor trace`: the capture pipeline with every enriched event printed as a JSON line.
//!
//! Stages, data flowing one way: ring reader (decode) -> bounded queue -> process table and
//! enrichment -> filter -> JSON lines. The reader never blocks: a full queue drops and counts.
use std::{
    collections::HashSet, io::Write, os::unix::fs::MetadataExt, path::PathBuf, sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    baseline::BaselineStage,
    capture::{
        self, CaptureError, CaptureMaps, KernelCountsExporter, decode::RawEvent, kind_by_name,
    },
    drops::{CgroupDeltas, DropTracker},
    enrich::{self, Attributor, AttributorConfig},
    event::{Event, NodeContext},
    http::Health,
    load::{self, LoadError, LoadOptions},
    metrics::{Metrics, Summary},
    pipeline::{EnrichStage, Mode},
    process::{ProcessTable, procfs::Procfs},
    rules::{self, Engine, RuleError, RuleSet},
    sink::Dispatcher,
};

#[derive(Debug, Error)]
pub enum TraceError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("unknown event kind `{0}` (known: {1})")]
    UnknownKind(String, String),
    #[error(
        "cgroup {path}: {source} (give a cgroup2 directory, e.g. /sys/fs/cgroup/unified/<name>)"
    )]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {what} {path}: {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing events: {0}")]
    Output(std::io::Error),
    #[error("a pipeline task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("invalid rules:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error(transparent)]
    Baseline(#[from] crate::baseline::store::StoreError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
}

/// What to capture and print.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub load: LoadOptions,
    /// cgroup2 directories to capture exclusively (resolved to ids for the kernel filter).
    pub cgroup_paths: Vec<PathBuf>,
    pub kinds: Vec<String>,
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub queue: usize,
    pub node: Option<String>,
    pub stats_json: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
    /// CRI socket; `None` probes the usual locations.
    pub cri_socket: Option<PathBuf>,
    /// How long events of a new container wait for its metadata.
    pub metadata_hold: Duration,
    /// `Some`: evaluate rules and print alerts (`monitor run`); `None`: print events.
    pub rules: Option<RulesOptions>,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Per-pod and per-binary alert series.
    pub high_cardinality: bool,
}

/// Where `monitor run` takes its rules from.
#[derive(Debug, Clone)]
pub struct RulesOptions {
    pub paths: Vec<PathBuf>,
    pub builtin: bool,
    /// Learned baselines: their directory and settings (`None`: off).
    pub baselines: Option<(PathBuf, crate::baseline::BaselineConfig)>,
    /// Where alerts go.
    pub sinks: Vec<crate::config::SinkConfig>,
    /// Alerts note event loss within this window.
    pub drop_window: Duration,
    /// How long sinks may take to deliver what they hold at shutdown.
    pub shutdown_deadline: Duration,
    /// The agent's own files (binary, configuration, state, output), for the self-protection
    /// rules' `monitor_agent_files` list.
    pub agent_files: Vec<String>,
    /// Secret patterns to redact from alerts.
    pub redact: crate::redact::Redactor,
}

impl RulesOptions {
    pub fn load(&self) -> Result<Arc<RuleSet>, Vec<RuleError>> {
        rules::load_for_agent_with(&self.paths, self.builtin, &self.agent_files)
    }
}

/// Modification times of the rule files, to notice edits.
fn rule_mtimes(paths: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    for p in paths {
        out.push((
            p.clone(),
            std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        ));
        if let Ok(rd) = std::fs::read_dir(p) {
            let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                out.push((
                    f.clone(),
                    std::fs::metadata(&f).and_then(|m| m.modified()).ok(),
                ));
            }
        }
    }
    out
}

/// Reloads rules on SIGHUP and when a rule file changes (checked every second). Invalid rules
/// are rejected with every error logged; the rules in force stay.
async fn watch_rules(opts: RulesOptions, tx: watch::Sender<Arc<RuleSet>>, metrics: Metrics) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut last = rule_mtimes(&opts.paths);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let reason = tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick() => {
                let now = rule_mtimes(&opts.paths);
                if now == last { continue; }
                last = now;
                "rule file changed"
            }
        };
        metrics.rules_last_reload_time.set(Metrics::now_seconds());
        match opts.load() {
            Ok(rs) => {
                info!(reason, rules = rs.len(), "rules reloaded");
                metrics.rules_loaded.set(rs.len() as i64);
                metrics.rules_reloads.with_label_values(&["success"]).inc();
                metrics.rules_last_reload_success.set(1);
                let _ = tx.send(rs);
            }
            Err(errors) => {
                metrics.rules_reloads.with_label_values(&["failure"]).inc();
                metrics.rules_last_reload_success.set(0);
                for e in &errors {
                    tracing::error!("{e}");
                }
                warn!(
                    reason,
                    errors = errors.len(),
                    "rule reload rejected; keeping the previous rules"
                );
            }
        }
    }
}

/// Decides which enriched events are printed.
#[derive(Debug, Default)]
pub struct Filter {
    kinds: HashSet<&'static str>,
    pids: HashSet<u32>,
    comms: HashSet<String>,
}

impl Filter {
    pub fn new(kinds: &[String], pids: &[u32], comms: &[String]) -> Result<Filter, TraceError> {
        let mut k = HashSet::new();
        for name in kinds
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let kind = kind_by_name(name).ok_or_else(|| {
                let known: Vec<_> = monitor_common::EventKind::ALL
                    .iter()
                    .filter(|k| !k.is_internal())
                    .map(|k| k.name())
                    .collect();
                TraceError::UnknownKind(name.to_string(), known.join(", "))
            })?;
            k.insert(kind.name());
        }
        Ok(Filter {
            kinds: k,
            pids: pids.iter().copied().collect(),
            comms: comms.iter().cloned().collect(),
        })
    }

    /// A pid filter matches the process, its parent or any listed ancestor, so that a command
    /// and everything it starts are followed.
    pub fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(e.kind))
            && (self.pids.is_empty()
                || self.pids.contains(&e.process.pid)
                || e.process
                    .ancestors
                    .iter()
                    .any(|a| self.pids.contains(&a.pid)))
            && (self.comms.is_empty() || self.comms.contains(&e.process.comm))
    }
}

/// cgroup2 id of a cgroup directory: its inode number.
pub fn cgroup_id(path: &std::path::Path) -> Result<u64, TraceError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| TraceError::Cgroup {
            path: path.into(),
            source,
        })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 { v as u64 } else { 100 }
}

/// Runs until `shutdown` resolves, writing events to `out`; returns the final counters.
pub async fn run<W: Write + Send + 'static>(
    mut opts: TraceOptions,
    out: W,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, TraceError> {
    let filter = Filter::new(&opts.kinds, &opts.pids, &opts.comms)?;
    let metrics = Metrics::with_options(opts.high_cardinality);
    metrics.set_build_info();
    metrics.init_series();
    metrics.register_process_metrics();
    let health = Arc::new(Health::default());
    let drop_window = opts
        .rules
        .as_ref()
        .map_or(Duration::from_secs(60), |r| r.drop_window);
    let drops = Arc::new(DropTracker::new(drop_window));
    // Rules and sinks are validated before anything touches the kernel: bad ones stop the agent.
    let (mode, rules_watch, shutdown_deadline) = match &opts.rules {
        None => (Mode::Events, None, Duration::ZERO),
        Some(r) => {
            let set = r.load().map_err(TraceError::Rules)?;
            info!(rules = set.len(), "rules loaded");
            metrics.rules_loaded.set(set.len() as i64);
            metrics.rules_last_reload_success.set(1);
            metrics.rules_last_reload_time.set(Metrics::now_seconds());
            let (tx, rx) = watch::channel(set);
            let baselines = match &r.baselines {
                Some((dir, cfg)) => Some(Box::new(
                    BaselineStage::open(dir, cfg.clone()).map_err(TraceError::Baseline)?,
                )),
                None => None,
            };
            let sinks = Dispatcher::start(&r.sinks, &metrics)?.with_redactor(r.redact.clone());
            let mode = Mode::Alerts {
                rules: rx,
                engine: Engine::default(),
                baselines,
                metrics: metrics.clone(),
                sinks,
                drops: drops.clone(),
            };
            (
                mode,
                Some(tokio::spawn(watch_rules(r.clone(), tx, metrics.clone()))),
                r.shutdown_deadline,
            )
        }
    };
    for p in &opts.cgroup_paths {
        opts.load.cgroups.push(cgroup_id(p)?);
    }
    let metrics_server = match opts.metrics_addr {
        Some(addr) => {
            let (listener, _) =
                crate::http::bind(addr)
                    .await
                    .map_err(|source| TraceError::Write {
                        what: "metrics endpoint",
                        path: PathBuf::from(addr.to_string()),
                        source,
                    })?;
            Some(tokio::spawn(crate::http::serve(
                listener,
                metrics.clone(),
                health.clone(),
            )))
        }
        None => None,
    };
    let mut loaded = load::load(&opts.load)?;
    load::log_probes(&loaded.probes);
    load::export_probes(&loaded.probes, &metrics);
    let CaptureMaps {
        ring,
        stats,
        misc,
        drops_by_cgroup,
    } = CaptureMaps::take(&mut loaded.ebpf)?;

    let node = NodeContext::detect(opts.node.clone());
    let mut table = ProcessTable::new(Procfs::default(), boot_id(), clk_tck());
    let seeded = table.seed();
    info!(processes = seeded, node = %node.node, "process table seeded from /proc");

    let (tx, rx) = mpsc::channel::<RawEvent>(opts.queue.max(1024));
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(capture::read_ring(
        ring,
        tx,
        metrics.clone(),
        drops.clone(),
        stop_rx,
    ));
    let (req_tx, req_rx) = mpsc::channel::<String>(4096);
    let (res_tx, res_rx) = mpsc::channel(4096);
    let resolver = tokio::spawn(enrich::resolver(opts.cri_socket.clone(), req_rx, res_tx));
    let mut attributor = Attributor::new(AttributorConfig::default(), req_tx, metrics.clone());
    // After the probes are attached: a container created from now on is seen by cgroup_mkdir,
    // one that existed before by this scan.
    let containers = attributor.scan_cgroups();
    info!(containers, "container cgroups found at start-up");
    let stage = EnrichStage {
        table,
        attributor,
        node,
        filter,
        out: std::io::BufWriter::with_capacity(1 << 16, out),
        hold: opts.metadata_hold,
        mode,
        health: health.clone(),
        seen: 0,
    };
    let processor = tokio::spawn(stage.run(rx, res_rx));

    if let Some(path) = &opts.ready_file {
        std::fs::write(path, b"ready\n").map_err(|source| TraceError::Write {
            what: "ready file",
            path: path.clone(),
            source,
        })?;
    }
    info!("capturing");
    health.set_ready(true, "");

    let mut exporter = KernelCountsExporter::default();
    let mut cgroup_deltas = CgroupDeltas::default();
    let mut last_kinds: std::collections::BTreeMap<&'static str, u64> = Default::default();
    // Kernel counters feed the metrics and the drop tracker every second; drops are logged when
    // they grow.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    let mut last_dropped = 0;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                match capture::kernel_counts(&stats, &misc) {
                    Ok(k) => {
                        exporter.update(&metrics, &k);
                        let mut new_by_kind = std::collections::BTreeMap::new();
                        for (kind, c) in &k.kinds {
                            let before = last_kinds.insert(kind, c.dropped).unwrap_or(0);
                            new_by_kind.insert(*kind, c.dropped.saturating_sub(before));
                        }
                        let by_cgroup = cgroup_deltas.update(capture::drops_by_cgroup(&drops_by_cgroup));
                        drops.tick(std::time::Instant::now(), &new_by_kind, &by_cgroup);
                        let dropped = k.total_dropped();
                        if dropped > last_dropped {
                            warn!(dropped_total = dropped, new = dropped - last_dropped, "kernel ring buffer full: events dropped");
                            last_dropped = dropped;
                        }
                    }
                    Err(e) => warn!(error = %e, "reading kernel counters"),
                }
            }
        }
    }
    info!("stopping: detaching probes and draining the ring buffer");
    health.set_ready(false, "stopping");
    // Dropping the object detaches every program: nothing new can enter the ring after this.
    drop(loaded);
    let _ = stop_tx.send(true);
    reader.await??;
    let mode = processor.await?.map_err(TraceError::Output)?;
    if let Mode::Alerts { sinks, .. } = mode {
        info!(deadline = ?shutdown_deadline, "flushing alert sinks");
        sinks.shutdown(shutdown_deadline).await;
    }
    resolver.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    if let Some(w) = rules_watch {
        w.abort();
    }
    let kernel = capture::kernel_counts(&stats, &misc)?;
    exporter.update(&metrics, &kernel);
    let summary = Summary::collect(&metrics, kernel);
    info!(
        received = summary.received.values().sum::<u64>(),
        kernel_dropped = summary.kernel.total_dropped(),
        queue_dropped = summary.queue_dropped.values().sum::<u64>(),
        decode_errors = summary.decode_errors,
        "stopped"
    );
    if let Some(path) = &opts.stats_json {
        let text = serde_json::to_vec_pretty(&summary)
            .map_err(std::io::Error::other)
            .map_err(TraceError::Output)?;
        std::fs::write(path, text).map_err(|source| TraceError::Write {
            what: "stats",
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}
