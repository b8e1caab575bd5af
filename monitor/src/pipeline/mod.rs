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
use tokio::sync::{mpsc, watch};

use crate::{
    capture::{
        BATCH, MAX_LATENCY, Ring,
        decode::{Payload, RawEvent},
        route,
    },
    enrich::{Attributor, Lookup, cri::CriError, hold::HoldQueue},
    event::{ContainerMeta, Event, NodeContext, build, learn},
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
    /// This worker's number, of `workers` (see [`crate::capture::route`]).
    pub(crate) worker: usize,
    pub(crate) workers: usize,
}

/// How a worker's ring reading ends.
pub(crate) struct Stop {
    /// Flips to true when the agent stops.
    pub(crate) signal: watch::Receiver<bool>,
    /// Read what is left in the ring first (the programs are paused by then); without it the
    /// programs stay pinned and the next agent reads on from here.
    pub(crate) drain: bool,
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
        if route::Peek::of(ev).owner(self.workers) != self.worker {
            // Another worker's process: only the table learns from it.
            learn(ev, &mut self.table, &self.node);
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

    /// Decodes and handles up to [`BATCH`] records of the ring; returns whether it ran empty,
    /// after which what the sink buffered is written out.
    fn read(&mut self, ring: &mut Ring) -> std::io::Result<bool> {
        let emptied = ring.take(BATCH, |ev| self.record(ev))?;
        if emptied {
            self.sink.flush()?;
        }
        Ok(emptied)
    }

    /// Reads this worker's ring until `stop` says so, then until every held event is out;
    /// returns the sink, which may still have to be shut down.
    pub(crate) async fn run(
        mut self,
        mut ring: Ring,
        mut results: mpsc::Receiver<(String, Result<ContainerMeta, CriError>)>,
        mut stop: Stop,
    ) -> std::io::Result<K> {
        let mut open = true;
        // Records were left in the ring by the last read: read on before waiting.
        let mut more = true;
        let mut last_sweep = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Records below the wake-up threshold wait at most this long.
        let mut poll = tokio::time::interval(MAX_LATENCY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = stop.signal.changed(), if open => {
                    // Producers are paused by now (with `drain`): whatever is in the ring is
                    // all there will be.
                    while stop.drain && !self.read(&mut ring)? {}
                    open = false;
                }
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
                // Last: a ring that never runs empty does not hold up the timers above.
                () = std::future::ready(()), if open && more => {
                    more = !self.read(&mut ring)?;
                    // Lets the runtime's other tasks run now and then while the ring stays busy.
                    tokio::task::consume_budget().await;
                }
                r = ring.readable(), if open && !more => {
                    r?;
                    more = !self.read(&mut ring)?;
                }
                _ = poll.tick(), if open && !more => more = !self.read(&mut ring)?,
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

/// mimalloc's `mi_option_purge_delay`, which the bindings do not name: in mimalloc v3's option
/// list (the one the crate builds), the option before `mi_option_use_numa_nodes` (checked by a
/// unit test against the documented defaults).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// How long mimalloc keeps freed pages before giving them back once the agent runs (its
/// default is a second).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Makes mimalloc give freed pages back at once while the agent starts: loading (BTF, the
/// object files, the rules) frees tens of MiB on threads that then go quiet, which would keep
/// them otherwise. `MIMALLOC_PURGE_DELAY` in the environment wins over this and [`steady_heap`].
pub(crate) fn tune_heap() {
    set_purge_delay(0);
}

/// Once the agent runs: freed pages go back after [`PURGE_DELAY_MS`], so that a storm's memory
/// is back soon after it. Not 0: measured, a delay of 0 cost `monitor trace` ~30% (pages emptied
/// by one event's frees were returned and faulted in again by the next).
pub(crate) fn steady_heap() {
    set_purge_delay(PURGE_DELAY_MS);
}

fn set_purge_delay(ms: std::ffi::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option, a machine word that mimalloc reads when it purges: a thread
        // that purges meanwhile uses the old or the new delay, either of which is valid.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) }
    }
}

/// Gives the heaps' free memory back to the system: mimalloc's (the agent's allocator, which
/// also purges on its own after a short delay) and glibc's (what C code allocates, kept in its
/// arenas otherwise).
pub(crate) fn trim_heap() {
    // SAFETY: mi_collect only frees the calling thread's abandoned and free pages.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads option values; mimalloc is linked (its options work without being the
        // test binary's allocator).
        let (delay, arena_mult) = unsafe {
            (
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(libmimalloc_sys::mi_option_max_warnings + 4),
            )
        };
        // mimalloc v3's defaults (src/options.c): purge_delay 1000 ms; arena_purge_mult (4
        // options after max_warnings) 1. A shifted option list would read other values.
        assert_eq!((delay, arena_mult), (1000, 1));
        let get = || {
            // SAFETY: as above.
            unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }
        };
        super::tune_heap();
        assert_eq!(get(), 0);
        super::steady_heap();
        assert_eq!(get(), super::PURGE_DELAY_MS);
    }
}
