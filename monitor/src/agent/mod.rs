//! The agent's runtime, for `monitor run` and `monitor trace` alike: it wires the stages,
//! data flowing one way — kernel programs (`load`) -> ring reader (`capture`) -> bounded queue
//! -> process table, event and attribution (`pipeline`) -> rules and baselines (`detect`) or
//! JSON lines -> sinks (`output`) — and stops them in that order.
pub(crate) mod bench;
mod kernel;
pub(crate) mod options;

use std::{
    io::Write,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

pub(crate) use options::{Mode, Options, RulesOptions, trace_interest};
use thiserror::Error;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::info;

use crate::{
    capture::{self, CaptureError, CaptureMaps, drops::DropTracker},
    detect::{
        Detector, SharedSink,
        baseline::{BaselineStage, store::StoreError},
        rules::{RuleError, reload},
    },
    enrich::{self, Attributor, AttributorConfig, hold::HoldQueue},
    event::NodeContext,
    load::{
        self, LoadError,
        interest::{InterestMaps, KernelInterest},
    },
    output::{
        events::JsonLines,
        sink::{Dispatcher, SinkError},
    },
    pipeline::{EventSink, Filter, FilterError, Pipeline},
    process::{ProcessTable, procfs},
    telemetry::{Health, Metrics, http, metrics::Summary},
};

/// Why the agent could not start or stopped with an error.
#[derive(Debug, Error)]
pub(crate) enum AgentError {
    /// The kernel programs could not be loaded or attached.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The ring buffer or counters could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A `monitor trace` filter is invalid.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// A `--cgroup` directory is not a cgroup2 directory.
    #[error(
        "cgroup {path}: {source} (give a cgroup2 directory, e.g. /sys/fs/cgroup/unified/<name>)"
    )]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `runtime.cgroup_root` cannot be read.
    #[error(
        "runtime.cgroup_root {path}: not a cgroup2 tree ({source}): mount the host's /sys/fs/cgroup there read-only, or unset it"
    )]
    CgroupRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file the agent writes (ready file, stats) or the metrics endpoint failed.
    #[error("writing {what} {path}: {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing events (trace output) failed.
    #[error("writing events: {0}")]
    Output(std::io::Error),
    /// A stage's task panicked or was cancelled.
    #[error("a pipeline task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The rules do not load.
    #[error("invalid rules:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    /// The baseline directory cannot be used.
    #[error(transparent)]
    Baseline(#[from] StoreError),
    /// A sink cannot be started.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// cgroup2 id of a cgroup directory: its inode number.
fn cgroup_id(path: &std::path::Path) -> Result<u64, AgentError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| AgentError::Cgroup {
            path: path.into(),
            source,
        })
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|v| *v > 0).unwrap_or(100)
}

/// The end of the pipeline: JSON lines or the detector.
enum Sink<W: Write> {
    Events(JsonLines<W>),
    Alerts(Box<Detector<SharedSink<Dispatcher>>>, Duration),
}

impl<W: Write> Sink<W> {
    /// The sink of another pipeline worker: the same output, rules and rule state.
    fn worker(&self) -> Sink<W> {
        match self {
            Sink::Events(s) => Sink::Events(s.worker()),
            Sink::Alerts(d, deadline) => Sink::Alerts(Box::new(d.worker()), *deadline),
        }
    }
}

impl<W: Write> EventSink for Sink<W> {
    fn event(&mut self, e: &crate::event::Event) -> std::io::Result<()> {
        match self {
            Sink::Events(s) => s.event(e),
            Sink::Alerts(d, _) => d.event(e),
        }
    }
    fn tick(&mut self, all: bool) {
        match self {
            Sink::Events(s) => s.tick(all),
            Sink::Alerts(d, _) => d.tick(all),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Events(s) => s.flush(),
            Sink::Alerts(d, _) => d.flush(),
        }
    }
}

/// The kernel's interest maps, shared by the agent, which puts them here once the programs are
/// loaded, and the rule reload, which writes the new rules' interest before they take over.
#[derive(Clone, Default)]
struct InterestCell(Arc<Mutex<Option<InterestMaps>>>);

impl InterestCell {
    /// Makes the kernel capture `x` (once the maps are here); a failure is logged and the
    /// kernel is asked for everything instead, never for less.
    fn apply(&self, x: KernelInterest) {
        let Ok(mut guard) = self.0.lock() else {
            tracing::error!("interest maps unavailable (a writer panicked)");
            return;
        };
        let Some(maps) = guard.as_mut() else {
            return;
        };
        if let Err(e) = maps.apply(x) {
            tracing::error!(error = %e, "writing the capture interest; capturing everything");
            if let Err(e) = maps.apply(KernelInterest::everything()) {
                tracing::error!(error = %e, "widening the capture interest");
            }
        }
    }

    fn put(&self, maps: InterestMaps) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some(maps);
        }
    }
}

/// The pipeline's sink, the rule reload task (`monitor run`) and what the kernel must capture.
type SinkStart<W> = (Sink<W>, Option<JoinHandle<()>>, KernelInterest);

/// Builds the sink of the pipeline: for `monitor run` the rules (validated before anything
/// touches the kernel: bad ones stop the agent), their reload task, baselines and alert sinks.
/// Also returns what the kernel must capture for them; a reload writes its rules' interest
/// into `cell` before the new rules take over.
fn start_sink<W: Write>(
    opts: &Options,
    out: W,
    metrics: &Metrics,
    drops: &Arc<DropTracker>,
    cell: &InterestCell,
) -> Result<SinkStart<W>, AgentError> {
    let filter = opts.config.capture.interest_filter;
    let r = match &opts.mode {
        Mode::Trace { kinds, .. } => {
            let x = trace_interest(&opts.config, kinds);
            return Ok((Sink::Events(JsonLines::new(out)), None, x));
        }
        Mode::Run(r) => r,
    };
    let set = r.load().map_err(AgentError::Rules)?;
    let initial = r.interest(&set, filter).interest;
    info!(rules = set.len(), "rules loaded");
    metrics.rules_loaded.set(set.len() as i64);
    metrics.rules_last_reload_success.set(1);
    metrics.rules_last_reload_time.set(Metrics::now_seconds());
    let (tx, rx) = watch::channel(set);
    let baselines = match &r.baselines {
        Some((dir, cfg)) => Some(BaselineStage::open(dir, cfg.clone())?),
        None => None,
    };
    let sinks = Dispatcher::start(&r.sinks, metrics)?.with_redactor(r.redact.clone());
    let detector = Detector::new(
        rx,
        baselines,
        metrics.clone(),
        SharedSink::new(sinks),
        drops.clone(),
    );
    let reload_opts = r.clone();
    let reload_cell = cell.clone();
    let watch = tokio::spawn(reload::watch_rules(
        r.paths.clone(),
        move || {
            let set = reload_opts.load()?;
            // Before the new rules take over: what they need is captured when they start.
            reload_cell.apply(reload_opts.interest(&set, filter).interest);
            Ok(set)
        },
        tx,
        metrics.clone(),
    ));
    Ok((
        Sink::Alerts(Box::new(detector), r.shutdown_deadline),
        Some(watch),
        initial,
    ))
}

async fn start_metrics_server(
    opts: &Options,
    metrics: &Metrics,
    health: &Arc<Health>,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    let Some(addr) = opts.config.metrics.addr else {
        return Ok(None);
    };
    let (listener, _) = http::bind(addr).await.map_err(|source| AgentError::Write {
        what: "metrics endpoint",
        path: PathBuf::from(addr.to_string()),
        source,
    })?;
    Ok(Some(tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
    ))))
}

/// The tasks of a running agent, stopped in data-flow order.
struct Running<W: Write + Send + 'static> {
    loaded: load::Loaded,
    /// The programs stay attached after this agent exits (pinned, not uninstalling).
    keep_pins: bool,
    counters: capture::CounterMaps,
    /// Tells the workers to stop reading their rings.
    stop_reader: watch::Sender<bool>,
    /// The pipeline workers.
    pipeline: Vec<JoinHandle<std::io::Result<Sink<W>>>>,
    /// A CRI resolver per worker.
    resolver: Vec<JoinHandle<()>>,
}

/// Loads the programs and starts the pipeline workers (each reading its own ring) and their
/// resolvers.
fn start<W: Write + Send + 'static>(
    opts: &Options,
    (sink, interest, cell): (Sink<W>, KernelInterest, &InterestCell),
    metrics: &Metrics,
    health: &Arc<Health>,
) -> Result<Running<W>, AgentError> {
    let filter = match &opts.mode {
        Mode::Trace { kinds, pids, comms } => Filter::new(kinds, pids, comms)?,
        Mode::Run(_) => Filter::default(),
    };
    let mut load_opts = opts.load(interest.clone());
    for p in &opts.config.capture.cgroups {
        load_opts.cgroups.push(cgroup_id(p)?);
    }
    let mut loaded = load::load(&load_opts)?;
    let mut maps = InterestMaps::take(&mut loaded)?;
    if maps.current().is_none() {
        // An adopted set captures what the last agent's rules needed: now ours.
        maps.apply(interest)?;
    }
    cell.put(maps);
    load::log_probes(&loaded.probes);
    load::export_probes(&loaded.probes, metrics);
    metrics.programs_pinned.set(match &loaded.pinned {
        None => 0,
        Some(p) if p.adopted => 2,
        Some(_) => 1,
    });
    let c = &opts.config;
    if c.capture.queue != crate::config::CaptureConfig::default().queue {
        tracing::warn!(
            queue = c.capture.queue,
            "capture.queue is no longer used: each pipeline worker reads its own ring buffer (size them with capture.ring_buffer_bytes)"
        );
    }
    // One worker per ring the programs write to: as configured, unless the kernel's verifier
    // took the programs only for fewer (see load::load).
    let workers = loaded.rings as usize;
    let CaptureMaps { rings, counters } = CaptureMaps::take(&mut loaded, workers)?;
    // Pinned programs that stay when this agent stops keep the ring's unread records for the
    // next agent; otherwise the ring is read to its end at stop.
    let keep_pins = loaded.pinned.is_some() && !opts.config.capture.unpin_on_exit;

    let node = NodeContext::detect((!c.node.is_empty()).then(|| c.node.clone()));
    metrics.pipeline_workers.set(workers as i64);
    let attribution = match &c.runtime.cgroup_root {
        Some(root) => {
            // A configured host tree that is not there is a missing mount: say so.
            let cfg = AttributorConfig::with_cgroup_root(root);
            std::fs::metadata(cfg.cgroup2_root.join("cgroup.procs")).map_err(|source| {
                AgentError::CgroupRoot {
                    path: root.clone(),
                    source,
                }
            })?;
            cfg
        }
        None => AttributorConfig::default(),
    };
    info!(cgroup2 = %attribution.cgroup2_root.display(), workers, "container cgroups are read here");

    let mut pipeline = Vec::with_capacity(workers);
    let mut resolver = Vec::with_capacity(workers);
    let mut sink = Some(sink);
    let runtime = enrich::RuntimeConn::default();
    let (stop_reader, stop_rx) = watch::channel(false);
    for (worker, ring) in rings.into_iter().enumerate() {
        let ring = capture::Ring::new(ring, metrics.clone(), worker, workers)?;
        // Every worker's table follows every process (see capture::route).
        let mut table = ProcessTable::new(procfs::Procfs::default(), procfs::boot_id(), clk_tck());
        let seeded = table.seed();
        // A resolver per worker (a container's lookups come from the one worker that owns it,
        // and the answers go back to it), all on the agent's one runtime connection.
        let (req_tx, req_rx) = mpsc::channel::<String>(4096);
        let (res_tx, res_rx) = mpsc::channel(4096);
        resolver.push(tokio::spawn(enrich::resolver(
            c.runtime.cri_socket.clone(),
            runtime.clone(),
            req_rx,
            res_tx,
        )));
        let mut attributor = Attributor::new(attribution.clone(), req_tx, metrics.clone());
        // After the probes are attached: a container created from now on is seen by
        // cgroup_mkdir, one that existed before by this scan.
        let containers = attributor.scan_cgroups();
        if worker == 0 {
            info!(processes = seeded, node = %node.node, containers,
                "process table seeded from /proc; container cgroups found at start-up");
        }
        let this_sink = match (worker + 1 == workers, &sink) {
            (true, _) => sink.take(),
            (false, Some(s)) => Some(s.worker()),
            (false, None) => None,
        };
        let Some(this_sink) = this_sink else { break };
        let p = Pipeline {
            table,
            attributor,
            node: node.clone(),
            filter: filter.clone(),
            held: HoldQueue::new(c.runtime.metadata_hold.0),
            sink: this_sink,
            health: health.clone(),
            worker,
            workers,
        };
        let stop = crate::pipeline::Stop {
            signal: stop_rx.clone(),
            drain: !keep_pins,
        };
        pipeline.push(tokio::spawn(p.run(ring, res_rx, stop)));
    }
    // Loading parsed the kernel's BTF and the object files: tens of MiB the heap keeps unless
    // told to give them back.
    crate::pipeline::trim_heap();
    Ok(Running {
        loaded,
        keep_pins,
        counters,
        stop_reader,
        pipeline,
        resolver,
    })
}

/// Runs until `shutdown` resolves, writing events (trace) or alerts (run); returns the final
/// counters.
pub(crate) async fn run<W: Write + Send + 'static>(
    opts: Options,
    out: W,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, AgentError> {
    let metrics = Metrics::with_options(opts.config.metrics.high_cardinality);
    metrics.set_build_info(&procfs::kernel_release());
    metrics.init_series();
    metrics.register_process_metrics();
    let health = Arc::new(Health::default());
    let drop_window = match &opts.mode {
        Mode::Run(r) => r.drop_window,
        Mode::Trace { .. } => Duration::from_secs(60),
    };
    let drops = Arc::new(DropTracker::new(drop_window));
    let cell = InterestCell::default();
    let (sink, rules_watch, interest) = start_sink(&opts, out, &metrics, &drops, &cell)?;
    let metrics_server = start_metrics_server(&opts, &metrics, &health).await?;
    let mut running = start(&opts, (sink, interest, &cell), &metrics, &health)?;
    if let Some(path) = &opts.ready_file {
        std::fs::write(path, b"ready\n").map_err(|source| AgentError::Write {
            what: "ready file",
            path: path.clone(),
            source,
        })?;
    }
    crate::pipeline::steady_heap();
    info!("capturing");
    health.set_ready(true, "");
    let mut watch = kernel::KernelWatch::new();
    // Kernel counters feed the metrics and the drop tracker every second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                watch.tick(&running.counters, &metrics, &drops);
                repair_pins(&mut running.loaded, &metrics);
            }
        }
    }
    health.set_ready(false, "stopping");
    let summary = stop(running, &mut watch, &metrics).await?;
    for task in [metrics_server, rules_watch].into_iter().flatten() {
        task.abort();
    }
    if let Some(path) = &opts.stats_json {
        let text = serde_json::to_vec_pretty(&summary)
            .map_err(std::io::Error::other)
            .map_err(AgentError::Output)?;
        std::fs::write(path, text).map_err(|source| AgentError::Write {
            what: "stats",
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

/// Pins again what another process removed (while the agent runs, its own fds keep the
/// programs attached; without the pins the next agent could not adopt them).
fn repair_pins(loaded: &mut load::Loaded, metrics: &Metrics) {
    match loaded.repair_pins() {
        Ok(restored) if !restored.is_empty() => {
            metrics.pins_restored.inc_by(restored.len() as u64);
            tracing::warn!(pins = %restored.join(","), "pins removed by another process: pinned again");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "restoring removed pins"),
    }
}

/// Stops reading, runs what was read through the pipeline, flushes the sinks and collects the
/// final counters. Programs that stay pinned keep capturing into the ring for the next agent;
/// otherwise capture is paused first and the ring read to its end, so nothing is lost, and the
/// programs are detached last.
async fn stop<W: Write + Send + 'static>(
    running: Running<W>,
    watch: &mut kernel::KernelWatch,
    metrics: &Metrics,
) -> Result<Summary, AgentError> {
    let Running {
        mut loaded,
        keep_pins,
        counters,
        stop_reader,
        pipeline,
        resolver,
    } = running;
    if keep_pins {
        info!("stopping: the pinned programs go on capturing for the next agent");
    } else {
        info!("stopping: pausing capture and draining the ring buffer");
        // Nothing new enters the ring after this: the drain below reads all there will be.
        loaded.pause(true)?;
        loaded.unpin()?;
    }
    let _ = stop_reader.send(true);
    // Every worker ends, and lets go of the shared alert sink, before the sink shuts down.
    let mut alerts = None;
    for worker in pipeline {
        if let Sink::Alerts(detector, deadline) = worker.await?.map_err(AgentError::Output)? {
            alerts = Some((detector.into_sinks(), deadline));
        }
    }
    if let Some((sinks, deadline)) = alerts
        && let Some(sinks) = sinks.into_inner()
    {
        info!(?deadline, "flushing alert sinks");
        sinks.shutdown(deadline).await;
    }
    for r in resolver {
        r.abort();
    }
    let kernel = watch.last(&counters, metrics)?;
    // Detaching is slow (the kernel waits for a grace period per tracepoint), so it comes after
    // everything the agent owes its sinks; pinned programs stay attached.
    drop(loaded);
    let summary = Summary::collect(metrics, kernel);
    info!(
        received = summary.received.values().sum::<u64>(),
        kernel_dropped = summary.kernel.total_dropped(),
        decode_errors = summary.decode_errors,
        "stopped"
    );
    Ok(summary)
}
