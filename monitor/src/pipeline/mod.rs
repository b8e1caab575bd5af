//! The pipeline: decoded records in, fully enriched events out to an [`EventSink`].
//!
//! Per record: the process table learns from it and builds the event, the attributor says
//! where it ran (holding the events of a container whose metadata is on its way), the filter
//! decides whether it is wanted, and the sink gets it. The stage never waits on the runtime:
//! answers arrive on their own channel.
mod filter;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

pub(crate) use filter::{Filter, FilterError};
use monitor_common::EventKind;
use tokio::sync::mpsc;

use crate::{
    capture::decode::{Payload, RawEvent},
    enrich::{Attributor, Lookup, cri::CriError, hold::HoldQueue},
    event::{ContainerMeta, Event, NodeContext, build},
    process::{ProcSource, ProcessTable},
    telemetry::Health,
};

/// Where enriched events go: printed (`monitor trace`) or judged (`monitor run`).
pub(crate) trait EventSink {
    /// One fully enriched event.
    fn event(&mut self, e: &Event) -> std::io::Result<()>;
    /// About once a second, and once more with `all` when the pipeline ends: time to deliver
    /// what waits for a window to close.
    fn tick(&mut self, all: bool);
    /// The queue ran empty: write out what is buffered.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// How often the attribution cache is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The pipeline's state, from process table to sink.
pub(crate) struct Pipeline<S: ProcSource, K: EventSink> {
    pub(crate) table: ProcessTable<S>,
    pub(crate) attributor: Attributor,
    pub(crate) node: NodeContext,
    pub(crate) filter: Filter,
    pub(crate) held: HoldQueue,
    pub(crate) sink: K,
    /// Liveness: beaten every loop turn and at least once a second.
    pub(crate) health: Arc<Health>,
}

impl<S: ProcSource, K: EventSink> Pipeline<S, K> {
    /// Hands out the held events of container `id`, now attributed as well as is known.
    fn release(&mut self, id: &str) -> std::io::Result<()> {
        let events = self.held.take(id);
        if events.is_empty() {
            return Ok(());
        }
        let attr = self.attributor.current(id);
        for mut e in events {
            e.attribution = attr.clone();
            self.sink.event(&e)?;
        }
        Ok(())
    }

    /// One record from the ring buffer.
    fn record(&mut self, ev: &RawEvent) -> std::io::Result<()> {
        let now = Instant::now();
        if let Payload::Cgroup { body, path } = &ev.payload {
            if ev.kind == EventKind::CgroupRmdir {
                self.attributor.cgroup_removed(body.id, now);
            } else {
                self.attributor.cgroup_created(body.id, path);
            }
            return Ok(());
        }
        let Some(mut e) = build(ev, &mut self.table, &self.node) else {
            return Ok(());
        };
        if !self.filter.matches(&e) {
            return Ok(());
        }
        let lookup = self.attributor.lookup(e.cgroup_id, e.process.pid, now);
        if let Payload::Exit(_) = ev.payload {
            self.attributor.forget_pid(e.process.pid);
        }
        match lookup {
            Lookup::Ready(a) => {
                e.attribution = a;
                self.sink.event(&e)
            }
            Lookup::Pending(id) if self.held.is_full() => {
                e.attribution = self.attributor.current(&id);
                self.sink.event(&e)
            }
            Lookup::Pending(id) => {
                self.held.push(id, e, now);
                Ok(())
            }
        }
    }

    /// Runs until `events` closes and every held event is out; returns the sink, which may
    /// still have to be shut down.
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<Vec<RawEvent>>,
        mut results: mpsc::Receiver<(String, Result<ContainerMeta, CriError>)>,
    ) -> std::io::Result<K> {
        let mut open = true;
        let mut last_sweep = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while open || !self.held.is_empty() {
            let next_deadline = self.held.next_deadline();
            tokio::select! {
                biased;
                r = results.recv() => {
                    if let Some((id, result)) = r {
                        self.attributor.resolved(&id, result, Instant::now());
                        self.release(&id)?;
                    }
                }
                batch = events.recv(), if open => match batch {
                    Some(batch) => {
                        for ev in &batch {
                            self.record(ev)?;
                        }
                    }
                    None => open = false,
                },
                _ = tick.tick() => {
                    self.sink.tick(false);
                    // Exits sweep the table too; this is for a node gone quiet after a storm.
                    self.table.sweep(Instant::now());
                }
                () = sleep_until(next_deadline), if next_deadline.is_some() => {
                    for id in self.held.due(Instant::now()) {
                        self.release(&id)?;
                    }
                }
            }
            if events.is_empty() {
                self.sink.flush()?;
            }
            self.health.beat();
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.attributor.sweep(last_sweep);
                trim_heap();
            }
        }
        self.sink.tick(true);
        self.sink.flush()?;
        Ok(self.sink)
    }
}

/// Gives the heap's free memory back to the system: glibc keeps freed memory in its arenas
/// (after a storm of short-lived processes, tens of MiB), musl returns it by itself.
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
