//! Alert delivery: any number of sinks at once, each with its own bounded queue and task, so a
//! slow or dead receiver never delays the others or the capture.
//!
//! The pipeline hands every alert to the [`Dispatcher`] without waiting. Each sink task encodes
//! it (native, OCSF or ECS), queues it ([`buffer::Buffer`]: memory, then an optional disk spool),
//! and delivers batches oldest first, retrying failures with exponential backoff. What a sink
//! finally gives up on is counted in `monitor_sink_dropped_total{sink,reason}` and logged. On
//! shutdown the dispatcher closes the queues and every task keeps delivering until the deadline.
pub(crate) mod buffer;
pub(crate) mod file;
pub(crate) mod syslog;
pub(crate) mod webhook;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    io::AsyncWriteExt,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use self::buffer::Buffer;
use crate::{
    config::{SinkConfig, SinkKind},
    detect::{Alert, AlertSink},
    telemetry::Metrics,
};

#[derive(Debug, Error)]
pub(crate) enum SinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("receiver answered HTTP {0}")]
    Status(u16),
    /// The receiver refused the batch for good (HTTP 4xx other than 408/429): retrying the
    /// same bytes cannot succeed.
    #[error("receiver rejected the batch with HTTP {0}")]
    Rejected(u16),
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("sink {name}: {message}")]
    Setup { name: String, message: String },
}

impl SinkError {
    /// Label for `monitor_sink_failures_total{reason}`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SinkError::Io { .. } => "io",
            SinkError::Status(_) => "http_status",
            SinkError::Rejected(_) => "rejected",
            SinkError::Request(_) => "connect",
            SinkError::Timeout(_) => "timeout",
            SinkError::Setup { .. } => "setup",
        }
    }
}

/// How a sink moves a batch of encoded alerts to its receiver.
pub(crate) trait Transport: Send + 'static {
    /// Delivers the whole batch, or fails (the same batch is retried later).
    fn send(
        &mut self,
        batch: &[Arc<[u8]>],
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;
    /// How long a partial batch may wait for more alerts before it is sent.
    fn linger(&self) -> Duration {
        Duration::ZERO
    }
}

/// A batch as newline-terminated records (JSON lines).
pub(crate) fn lines(batch: &[Arc<[u8]>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|b| b.len() + 1).sum());
    for b in batch {
        buf.extend_from_slice(b);
        buf.push(b'\n');
    }
    buf
}

/// JSON lines on standard output.
pub(crate) struct Stdout(tokio::io::Stdout);

impl Transport for Stdout {
    async fn send(&mut self, batch: &[Arc<[u8]>]) -> Result<(), SinkError> {
        let buf = lines(batch);
        let io = |source| SinkError::Io {
            what: "stdout".into(),
            source,
        };
        self.0.write_all(&buf).await.map_err(io)?;
        self.0.flush().await.map_err(io)
    }
}

struct Handle {
    name: String,
    tx: Option<mpsc::Sender<Arc<Alert>>>,
    task: JoinHandle<()>,
}

/// Hands alerts to every sink; owned by the pipeline stage.
pub(crate) struct Dispatcher {
    sinks: Vec<Handle>,
    metrics: Metrics,
    run_id: String,
    seq: u64,
    deadline: watch::Sender<Option<Instant>>,
    redact: crate::output::redact::Redactor,
}

/// Alerts in flight between the dispatcher and one sink task; the task drains it eagerly into
/// the sink's own bounded buffer, so it only fills if that task is starved of CPU.
const HANDOFF: usize = 4096;

impl Dispatcher {
    /// Opens every sink (a file sink's path, a webhook's TLS settings are checked here, so bad
    /// settings stop the agent at start) and starts their tasks.
    pub(crate) fn start(
        configs: &[SinkConfig],
        metrics: &Metrics,
    ) -> Result<Dispatcher, SinkError> {
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let mut sinks = Vec::new();
        for c in configs {
            let name = c.display_name();
            let setup = |message: String| SinkError::Setup {
                name: name.clone(),
                message,
            };
            let buf = match &c.spool_dir {
                Some(dir) => Buffer::new(c.queue, Some((dir, &name, c.spool_max_bytes)))
                    .map_err(|e| setup(format!("spool {}: {e}", dir.display())))?,
                None => Buffer::new(c.queue, None).map_err(|e| setup(e.to_string()))?,
            };
            let (tx, rx) = mpsc::channel(HANDOFF);
            let encoding = c.encoding();
            let encode: Encoder = match &c.kind {
                SinkKind::Syslog {
                    facility, app_name, ..
                } => Box::new(syslog::Syslog::encoder(facility, app_name, encoding)),
                _ => Box::new(move |a: &Alert| crate::output::format::encode(a, encoding)),
            };
            let driver = Driver {
                name: name.clone(),
                encode,
                batch: c.batch,
                retry_initial: c.retry_initial.0,
                retry_max: c.retry_max.0,
                metrics: metrics.clone(),
                buf,
                rx,
                deadline: deadline_rx.clone(),
                deadline_alive: true,
            };
            metrics.sink_delivered.with_label_values(&[&name]);
            let task = match &c.kind {
                SinkKind::Stdout => tokio::spawn(driver.run(Stdout(tokio::io::stdout()))),
                SinkKind::File {
                    path,
                    max_bytes,
                    max_files,
                } => {
                    let t = file::FileSink::open(path, *max_bytes, *max_files)
                        .map_err(|e| setup(e.to_string()))?;
                    tokio::spawn(driver.run(t))
                }
                SinkKind::Syslog {
                    address,
                    facility,
                    tls,
                    ..
                } => {
                    let t = syslog::Syslog::new(address, facility, tls).map_err(setup)?;
                    tokio::spawn(driver.run(t))
                }
                SinkKind::Webhook { .. } => {
                    let t = webhook::Webhook::new(&c.kind).map_err(setup)?;
                    tokio::spawn(driver.run(t))
                }
            };
            info!(sink = %name, kind = c.kind.type_name(), format = ?c.format, queue = c.queue,
                spool = ?c.spool_dir, "alert sink ready");
            sinks.push(Handle {
                name,
                tx: Some(tx),
                task,
            });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Dispatcher {
            sinks,
            metrics: metrics.clone(),
            run_id: format!("{:x}{:x}", now, std::process::id()),
            seq: 0,
            deadline: deadline_tx,
            redact: crate::output::redact::Redactor::default(),
        })
    }

    /// Masks secrets in every alert before it is queued (see [`crate::redact`]).
    pub(crate) fn with_redactor(mut self, r: crate::output::redact::Redactor) -> Dispatcher {
        self.redact = r;
        self
    }
}

impl AlertSink for Dispatcher {
    /// Stamps the alert with its id, counts it and queues it on every sink. Never waits.
    fn deliver(&mut self, mut alert: Alert) {
        self.seq += 1;
        alert.id = format!("{}-{}", self.run_id, self.seq);
        self.redact.alert(&mut alert);
        self.metrics
            .alerts
            .with_label_values(&[&alert.rule, alert.severity, alert.source])
            .inc();
        if let Some(c) = &self.metrics.alerts_by_pod {
            let (ns, pod) = alert
                .event
                .attribution
                .pod
                .as_ref()
                .map_or(("", ""), |p| (p.namespace.as_str(), p.name.as_str()));
            c.with_label_values(&[ns, pod, &alert.event.process.exe, &alert.rule])
                .inc();
        }
        let alert = Arc::new(alert);
        for s in &self.sinks {
            let Some(tx) = &s.tx else { continue };
            if let Err(e) = tx.try_send(alert.clone()) {
                let reason = match e {
                    mpsc::error::TrySendError::Full(_) => "handoff_full",
                    mpsc::error::TrySendError::Closed(_) => "sink_stopped",
                };
                self.metrics
                    .sink_dropped
                    .with_label_values(&[&s.name, reason])
                    .inc();
            }
        }
    }
}

impl Dispatcher {
    /// Closes every queue and waits until each sink has delivered what it holds, or `within`
    /// has passed (what is left then is spooled to disk or counted as dropped).
    pub(crate) async fn shutdown(mut self, within: Duration) {
        let _ = self.deadline.send(Some(Instant::now() + within));
        for s in &mut self.sinks {
            s.tx = None;
        }
        for s in self.sinks {
            if let Err(e) = s.task.await {
                warn!(sink = %s.name, error = %e, "sink task failed");
            }
        }
    }
}

/// Turns an alert into the bytes a sink queues and sends.
type Encoder = Box<dyn Fn(&Alert) -> Vec<u8> + Send>;

struct Driver {
    name: String,
    encode: Encoder,
    batch: usize,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: Metrics,
    buf: Buffer,
    rx: mpsc::Receiver<Arc<Alert>>,
    deadline: watch::Receiver<Option<Instant>>,
    /// False once the dispatcher is gone (nothing can change the deadline any more).
    deadline_alive: bool,
}

/// Failures are logged once when they start and then at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

impl Driver {
    fn absorb(&mut self, alert: Arc<Alert>) {
        let bytes: Arc<[u8]> = (self.encode)(&alert).into();
        if let Err(full) = self.buf.push(bytes) {
            let c = self
                .metrics
                .sink_dropped
                .with_label_values(&[&self.name, full.reason()]);
            if c.get() == 0 || c.get().is_power_of_two() {
                warn!(sink = %self.name, reason = full.reason(), dropped_total = c.get() + 1,
                    rule = %alert.rule, "sink queue full: alert dropped");
            }
            c.inc();
        }
    }

    fn gauges(&self) {
        self.metrics
            .sink_queued
            .with_label_values(&[&self.name])
            .set(self.buf.len() as i64);
        self.metrics
            .sink_spool_bytes
            .with_label_values(&[&self.name])
            .set(self.buf.spool_bytes() as i64);
    }

    fn past_deadline(&self) -> bool {
        self.deadline.borrow().is_some_and(|d| Instant::now() >= d)
    }

    /// Waits for `d`, taking in new alerts meanwhile; returns early at the shutdown deadline.
    async fn wait_absorbing(&mut self, d: Duration, open: &mut bool) {
        let until = tokio::time::Instant::now() + d;
        loop {
            let deadline = *self.deadline.borrow();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                _ = sleep_until_opt(deadline) => return,
                r = self.deadline.changed(), if self.deadline_alive => self.deadline_alive = r.is_ok(),
                a = self.rx.recv(), if *open => match a {
                    Some(a) => self.absorb(a),
                    None => *open = false,
                },
            }
        }
    }

    async fn run<T: Transport>(mut self, mut t: T) {
        let mut open = true;
        let mut backoff = self.retry_initial;
        let mut failing_since: Option<(Instant, u64)> = None;
        let mut last_log: Option<Instant> = None;
        loop {
            while let Ok(a) = self.rx.try_recv() {
                self.absorb(a);
            }
            self.gauges();
            if self.buf.is_empty() {
                if !open {
                    break;
                }
                match self.rx.recv().await {
                    Some(a) => self.absorb(a),
                    None => open = false,
                }
                continue;
            }
            if self.past_deadline() {
                break;
            }
            // Let a partial batch fill up a little (webhooks), unless shutting down.
            if open && self.buf.len() < self.batch && !t.linger().is_zero() {
                let linger = t.linger();
                self.wait_absorbing(linger, &mut open).await;
            }
            let batch = self.buf.peek(self.batch);
            let result = {
                let send = t.send(&batch);
                tokio::pin!(send);
                loop {
                    let deadline = *self.deadline.borrow();
                    tokio::select! {
                        biased;
                        r = &mut send => break r,
                        _ = sleep_until_opt(deadline) => break Err(SinkError::Timeout(Duration::ZERO)),
                        r = self.deadline.changed(), if self.deadline_alive => self.deadline_alive = r.is_ok(),
                        a = self.rx.recv(), if open => match a {
                            Some(a) => self.absorb(a),
                            None => open = false,
                        },
                    }
                }
            };
            match result {
                Ok(()) => {
                    self.buf.commit(batch.len());
                    self.metrics
                        .sink_delivered
                        .with_label_values(&[&self.name])
                        .inc_by(batch.len() as u64);
                    if let Some((since, n)) = failing_since.take() {
                        info!(sink = %self.name, failed_attempts = n, down_for = ?since.elapsed(),
                            "sink recovered; delivery resumed");
                    }
                    backoff = self.retry_initial;
                }
                Err(e) if self.past_deadline() => {
                    warn!(sink = %self.name, error = %e, "shutdown deadline reached while delivering");
                    break;
                }
                Err(SinkError::Rejected(code)) => {
                    self.buf.commit(batch.len());
                    self.metrics
                        .sink_dropped
                        .with_label_values(&[&self.name, "rejected"])
                        .inc_by(batch.len() as u64);
                    warn!(sink = %self.name, status = code, alerts = batch.len(),
                        "receiver rejected a batch; it is dropped (retrying cannot succeed)");
                }
                Err(e) => {
                    self.metrics
                        .sink_failures
                        .with_label_values(&[&self.name, e.reason()])
                        .inc();
                    let (_, n) = failing_since.get_or_insert((Instant::now(), 0));
                    *n += 1;
                    if last_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
                        last_log = Some(Instant::now());
                        warn!(sink = %self.name, error = %e, queued = self.buf.len(),
                            spooled_bytes = self.buf.spool_bytes(), retry_in = ?backoff,
                            "alert delivery failed; will retry");
                    }
                    self.gauges();
                    self.wait_absorbing(backoff, &mut open).await;
                    backoff = (backoff * 2).min(self.retry_max);
                }
            }
        }
        // Out of time (or done). Anything still queued goes to the spool or is counted lost.
        while let Ok(a) = self.rx.try_recv() {
            self.absorb(a);
        }
        let left = self.buf.len();
        if left > 0 || self.buf.spool_bytes() > 0 {
            if self.buf.has_spool() {
                match self.buf.persist() {
                    Ok(n) => {
                        info!(sink = %self.name, alerts = n, spooled_bytes = self.buf.spool_bytes(),
                        "undelivered alerts kept in the spool for the next start")
                    }
                    Err(e) => {
                        self.lost(left, "shutdown");
                        warn!(sink = %self.name, error = %e, lost = left, "could not save the spool");
                    }
                }
            } else if left > 0 {
                self.lost(left, "shutdown");
                warn!(sink = %self.name, lost = left,
                    "shutdown deadline passed with alerts undelivered; they are dropped");
            }
        }
        self.gauges();
    }

    fn lost(&mut self, n: usize, reason: &str) {
        self.buf.commit(n);
        self.metrics
            .sink_dropped
            .with_label_values(&[&self.name, reason])
            .inc_by(n as u64);
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
