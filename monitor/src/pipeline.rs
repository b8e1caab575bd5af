//! The enrichment stage: process table, container/pod attribution, output.
//!
//! Events of a container whose metadata is still being fetched are held (in arrival order, per
//! container) until the answer arrives or the hold deadline passes; everything else goes straight
//! out. The stage never waits on the runtime itself.
use std::{
    collections::{HashMap, VecDeque},
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_common::EventKind;
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::{
    baseline::BaselineStage,
    capture::decode::{Payload, RawEvent},
    drops::DropTracker,
    enrich::{Attributor, ContainerMeta, Lookup, cri::CriError},
    event::{Event, NodeContext, enrich},
    http::Health,
    metrics::Metrics,
    process::{ProcSource, ProcessTable},
    rules::{Engine, RuleSet},
    sink::Dispatcher,
    trace::Filter,
};

/// What the stage writes: every event (`monitor trace`) or the alerts rules raise (`monitor run`).
#[expect(
    clippy::large_enum_variant,
    reason = "one Mode per agent, built once and never moved on a hot path"
)]
pub enum Mode {
    Events,
    Alerts {
        /// The current rules; a reload publishes a new set here and the stage swaps to it between
        /// two events, so none is lost or evaluated twice.
        rules: watch::Receiver<Arc<RuleSet>>,
        engine: Engine,
        /// Learned per-workload baselines (anomaly alerts), when enabled.
        baselines: Option<Box<BaselineStage>>,
        metrics: Metrics,
        /// Where alerts go.
        sinks: Dispatcher,
        /// Recent event loss, noted on alerts.
        drops: Arc<DropTracker>,
    },
}

/// One event in this many has its rule evaluation timed (the histogram is a sample).
const TIME_ONE_IN: u64 = 16;

/// Events held at most, over all containers; beyond it they go out as `pending` at once.
pub const MAX_HELD: usize = 100_000;
/// How often the attribution cache is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub struct EnrichStage<S: ProcSource, W: Write> {
    pub table: ProcessTable<S>,
    pub attributor: Attributor,
    pub node: NodeContext,
    pub filter: Filter,
    pub out: W,
    /// How long an event may wait for its container's metadata.
    pub hold: Duration,
    pub mode: Mode,
    /// Liveness: beaten every loop turn and at least once a second.
    pub health: Arc<Health>,
    /// Events seen, for sampling.
    pub seen: u64,
}

struct Held {
    deadline: Instant,
    events: VecDeque<Event>,
}

impl<S: ProcSource, W: Write> EnrichStage<S, W> {
    /// Delivers one fully enriched event: printed, or judged by the rules.
    fn write(&mut self, e: &Event) -> std::io::Result<()> {
        match &mut self.mode {
            Mode::Events => {
                serde_json::to_writer(&mut self.out, e).map_err(std::io::Error::other)?;
                self.out.write_all(b"\n")
            }
            Mode::Alerts {
                rules,
                engine,
                baselines,
                metrics,
                sinks,
                drops,
            } => {
                if rules.has_changed().unwrap_or(false) {
                    let new = rules.borrow_and_update().clone();
                    engine.retain_rules(&new);
                    info!(rules = new.len(), "new rules in force");
                }
                let current = rules.borrow().clone();
                let now = Instant::now();
                self.seen += 1;
                let mut alerts = if self.seen.is_multiple_of(TIME_ONE_IN) {
                    let t = Instant::now();
                    let a = engine.evaluate(&current, e, now);
                    metrics
                        .rule_eval
                        .with_label_values(&[e.kind])
                        .observe(t.elapsed().as_secs_f64());
                    a
                } else {
                    engine.evaluate(&current, e, now)
                };
                if let Some(b) = baselines {
                    alerts.extend(b.baselines.observe(e, now));
                }
                for mut a in alerts {
                    a.drops = drops.notice(now, e.cgroup_id);
                    sinks.deliver(a);
                }
                Ok(())
            }
        }
    }

    /// Delivers folded alerts whose dedup window is over (all of them at the end).
    fn flush_alerts(&mut self, all: bool) {
        if let Mode::Alerts {
            engine,
            baselines,
            metrics,
            sinks,
            drops,
            ..
        } = &mut self.mode
        {
            let now = Instant::now();
            for mut a in engine.flush(now, all) {
                a.drops = drops.notice(now, a.event.cgroup_id);
                sinks.deliver(a);
            }
            if let Some(b) = baselines {
                b.apply_incoming();
                b.save(all);
                b.export_metrics(metrics);
            }
        }
    }

    fn release(&mut self, held: &mut HashMap<String, Held>, id: &str) -> std::io::Result<usize> {
        let Some(h) = held.remove(id) else {
            return Ok(0);
        };
        let attr = self.attributor.current(id);
        let n = h.events.len();
        for mut e in h.events {
            e.attribution = attr.clone();
            self.write(&e)?;
        }
        Ok(n)
    }

    /// Runs until `events` closes and every held event is out; returns the mode, whose sinks
    /// still have to be shut down.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<RawEvent>,
        mut results: mpsc::Receiver<(String, Result<ContainerMeta, CriError>)>,
    ) -> std::io::Result<Mode> {
        let mut held: HashMap<String, Held> = HashMap::new();
        let mut held_count = 0usize;
        let mut open = true;
        let mut last_sweep = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while open || !held.is_empty() {
            let next_deadline = held.values().map(|h| h.deadline).min();
            tokio::select! {
                biased;
                r = results.recv() => {
                    if let Some((id, result)) = r {
                        self.attributor.resolved(&id, result, Instant::now());
                        held_count -= self.release(&mut held, &id)?;
                    }
                }
                ev = events.recv(), if open => match ev {
                    Some(ev) => {
                        let now = Instant::now();
                        if let Payload::Cgroup { body, path } = &ev.payload {
                            if ev.kind == EventKind::CgroupRmdir {
                                self.attributor.cgroup_removed(body.id, now);
                            } else {
                                self.attributor.cgroup_created(body.id, path);
                            }
                            continue;
                        }
                        let Some(e) = enrich(&ev, &mut self.table, &self.node) else {
                            continue;
                        };
                        if !self.filter.matches(&e) {
                            continue;
                        }
                        let lookup = self.attributor.lookup(e.cgroup_id, e.process.pid, now);
                        if let Payload::Exit(_) = ev.payload {
                            self.attributor.forget_pid(e.process.pid);
                        }
                        match lookup {
                            Lookup::Ready(a) => {
                                let mut e = e;
                                e.attribution = a;
                                self.write(&e)?;
                            }
                            Lookup::Pending(_) if held_count >= MAX_HELD => self.write(&e)?,
                            Lookup::Pending(id) => {
                                let deadline = now + self.hold;
                                held.entry(id).or_insert_with(|| Held { deadline, events: VecDeque::new() }).events.push_back(e);
                                held_count += 1;
                            }
                        }
                    }
                    None => open = false,
                },
                _ = tick.tick() => self.flush_alerts(false),
                _ = sleep_until(next_deadline), if next_deadline.is_some() => {
                    let now = Instant::now();
                    let due: Vec<String> = held.iter().filter(|(_, h)| h.deadline <= now).map(|(k, _)| k.clone()).collect();
                    for id in due {
                        held_count -= self.release(&mut held, &id)?;
                    }
                }
            }
            if events.is_empty() {
                self.out.flush()?;
            }
            self.health.beat();
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.attributor.sweep(last_sweep);
            }
        }
        self.flush_alerts(true);
        self.out.flush()?;
        Ok(self.mode)
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
