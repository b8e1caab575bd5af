//! Reading the ring buffer (woken by epoll through `AsyncFd`, never by sleeping) and the kernel
//! counters.
pub(crate) mod decode;
pub(crate) mod drops;
pub(crate) mod route;

use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use monitor_common::{KIND_SLOTS, KindStats, MISC_SLOTS};
use thiserror::Error;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};
use tracing::warn;

use self::decode::{RawEvent, decode};
pub(crate) use self::route::{RawBatch, Recycle};
use crate::telemetry::metrics::{KernelCounts, Metrics};

#[derive(Debug, Error)]
pub(crate) enum CaptureError {
    #[error("map `{name}` missing from the loaded object")]
    MissingMap { name: &'static str },
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("waiting on the ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// The maps the capture stage owns once loading is done.
pub(crate) struct CaptureMaps {
    /// The ring buffer, which the reader task takes.
    pub(crate) ring: RingBuf<MapData>,
    /// The counters, read every second.
    pub(crate) counters: CounterMaps,
}

/// The kernel's counter maps.
pub(crate) struct CounterMaps {
    pub(crate) stats: PerCpuArray<MapData, KindStats>,
    pub(crate) misc: PerCpuArray<MapData, u64>,
    /// Ring-buffer drops per cgroup (LRU).
    pub(crate) drops_by_cgroup: BpfHashMap<MapData, u64, u64>,
}

impl CaptureMaps {
    /// Takes the ring buffer and counter maps out of the loaded (or adopted) set, so that
    /// dropping the object (which detaches the programs) leaves them readable for a final drain.
    pub(crate) fn take(loaded: &mut crate::load::Loaded) -> Result<CaptureMaps, CaptureError> {
        let mut take = |name: &'static str| {
            loaded
                .take_map(name)
                .ok_or(CaptureError::MissingMap { name })
        };
        let ring = RingBuf::try_from(take(monitor_common::EVENTS_MAP)?).map_err(|source| {
            CaptureError::Map {
                name: monitor_common::EVENTS_MAP,
                source,
            }
        })?;
        let stats = PerCpuArray::try_from(take(monitor_common::STATS_MAP)?).map_err(|source| {
            CaptureError::Map {
                name: monitor_common::STATS_MAP,
                source,
            }
        })?;
        let misc = PerCpuArray::try_from(take(monitor_common::MISC_MAP)?).map_err(|source| {
            CaptureError::Map {
                name: monitor_common::MISC_MAP,
                source,
            }
        })?;
        let drops_by_cgroup = BpfHashMap::try_from(take(monitor_common::DROPS_BY_CGROUP_MAP)?)
            .map_err(|source| CaptureError::Map {
                name: monitor_common::DROPS_BY_CGROUP_MAP,
                source,
            })?;
        Ok(CaptureMaps {
            ring,
            counters: CounterMaps {
                stats,
                misc,
                drops_by_cgroup,
            },
        })
    }
}

/// Sums the per-CPU kernel counters.
pub(crate) fn kernel_counts(
    stats: &PerCpuArray<MapData, KindStats>,
    misc: &PerCpuArray<MapData, u64>,
) -> Result<KernelCounts, CaptureError> {
    let map_err = |name| move |source| CaptureError::Map { name, source };
    let mut slots = vec![KindStats::default(); KIND_SLOTS as usize];
    for (i, slot) in slots.iter_mut().enumerate() {
        let per_cpu = stats
            .get(&(i as u32), 0)
            .map_err(map_err(monitor_common::STATS_MAP))?;
        for v in per_cpu.iter() {
            slot.submitted += v.submitted;
            slot.dropped += v.dropped;
            slot.filtered += v.filtered;
            slot.folded += v.folded;
        }
    }
    let mut m = vec![0u64; MISC_SLOTS as usize];
    for (i, slot) in m.iter_mut().enumerate() {
        let per_cpu = misc
            .get(&(i as u32), 0)
            .map_err(map_err(monitor_common::MISC_MAP))?;
        *slot = per_cpu.iter().sum();
    }
    Ok(KernelCounts::from_slots(&slots, &m))
}

/// Cumulative ring-buffer drops per cgroup (entries unreadable mid-iteration are skipped).
pub(crate) fn drops_by_cgroup(
    map: &BpfHashMap<MapData, u64, u64>,
) -> std::collections::HashMap<u64, u64> {
    map.iter().filter_map(Result::ok).collect()
}

/// Publishes kernel counter increases into the metrics (counters only ever go up).
#[derive(Default)]
pub(crate) struct KernelCountsExporter {
    last: KernelCounts,
}

impl KernelCountsExporter {
    pub(crate) fn update(&mut self, m: &Metrics, now: &KernelCounts) {
        for (kind, c) in &now.kinds {
            let before = self.last.kinds.get(kind).copied().unwrap_or_default();
            let d = c.dropped.saturating_sub(before.dropped);
            if d > 0 {
                m.dropped
                    .with_label_values(&[kind, "kernel_ring"])
                    .inc_by(d);
            }
            let f = c.filtered.saturating_sub(before.filtered);
            if f > 0 {
                m.filtered.with_label_values(&[kind]).inc_by(f);
            }
            let f = c.folded.saturating_sub(before.folded);
            if f > 0 {
                m.folded.with_label_values(&[kind]).inc_by(f);
            }
        }
        for (name, now_v, before) in [
            ("stash_miss", now.stash_miss, self.last.stash_miss),
            ("stash_full", now.stash_full, self.last.stash_full),
            ("scratch_miss", now.scratch_miss, self.last.scratch_miss),
        ] {
            if now_v > before {
                m.kernel_misc
                    .with_label_values(&[name])
                    .inc_by(now_v - before);
            }
        }
        self.last = now.clone();
    }
}

/// Number of decode errors logged in full; later ones are only counted.
const LOGGED_DECODE_ERRORS: u64 = 20;

/// Longest time a record may wait in the ring when the kernel did not wake the reader (it only
/// does once `Config::wakeup_bytes` are pending).
pub(crate) const MAX_LATENCY: std::time::Duration = std::time::Duration::from_millis(50);

/// Records handed to the pipeline at once: the queue, the wake-up and the counters are paid
/// per batch, not per record.
pub(crate) const BATCH: usize = 256;

/// What the reader collects before handing it on: records per pipeline worker and how many of
/// each kind.
struct Batch {
    /// One batch per worker (see [`route`]).
    events: Vec<RawBatch>,
    /// Records received per kind slot since the counters were last published.
    received: Vec<u64>,
    /// Where emptied batches come back from the workers.
    recycle: Recycle,
}

impl Batch {
    fn new(workers: usize, recycle: Recycle) -> Batch {
        Batch {
            events: (0..workers.max(1)).map(|_| recycle.take()).collect(),
            received: vec![0; KIND_SLOTS as usize],
            recycle,
        }
    }

    /// Routes one record.
    fn push(&mut self, rec: &[u8]) {
        if let Some(kind) = route::push(&mut self.events, rec).kind
            && let Some(n) = self.received.get_mut(kind.slot() as usize)
        {
            *n += 1;
        }
    }

    /// Whether some worker's batch is full.
    fn full(&self) -> bool {
        self.events.iter().any(|b| b.len() >= BATCH)
    }

    /// Publishes the received counts and hands each worker its records; when a worker's queue
    /// is full its records are dropped and counted (once: a replica of another worker's record
    /// is not an event lost), the reader never blocks, and the other workers go on.
    fn send(
        &mut self,
        tx: &[mpsc::Sender<RawBatch>],
        metrics: &Metrics,
        drops: &drops::DropTracker,
    ) {
        for k in monitor_common::EventKind::ALL {
            if let Some(n) = self.received.get_mut(k.slot() as usize)
                && *n > 0
            {
                metrics.received.with_label_values(&[k.name()]).inc_by(*n);
                *n = 0;
            }
        }
        let workers = self.events.len();
        for (w, (batch, tx)) in self.events.iter_mut().zip(tx).enumerate() {
            if batch.is_empty() {
                continue;
            }
            let events = std::mem::replace(batch, self.recycle.take());
            if let Err(
                mpsc::error::TrySendError::Full(lost) | mpsc::error::TrySendError::Closed(lost),
            ) = tx.try_send(events)
            {
                for rec in lost.iter() {
                    let p = route::peek(rec);
                    if let Some(kind) = p.kind.filter(|_| p.owner(workers) == w) {
                        let kind = kind.name();
                        metrics
                            .dropped
                            .with_label_values(&[kind, "user_queue"])
                            .inc();
                        drops.user_drop(kind, p.cgroup);
                    }
                }
                self.recycle.give(lost);
            }
        }
    }
}

/// Decodes a record worker `worker` (of `workers`) took from its queue; one that does not
/// decode is never passed on, and is counted by reason (and the first few logged) by the
/// record's owner only: a replicated record (see [`route`]) reaches every worker.
pub(crate) fn decode_counted(
    rec: &[u8],
    metrics: &Metrics,
    worker: usize,
    workers: usize,
) -> Option<RawEvent> {
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    match decode(rec) {
        Ok(ev) => Some(ev),
        Err(_) if route::peek(rec).owner(workers) != worker => None,
        Err(e) => {
            metrics.decode_errors.with_label_values(&[e.reason()]).inc();
            if LOGGED.fetch_add(1, Ordering::Relaxed) < LOGGED_DECODE_ERRORS {
                warn!(error = %e, len = rec.len(), "dropping undecodable kernel record");
            }
            None
        }
    }
}

/// Reads records until `stop` flips, then (with `drain`) reads what is left and returns. The reader waits for
/// the ring's epoll readiness (the kernel wakes it once enough bytes are pending) and drains on a
/// short timer for the records below that threshold. Records go, copied and undecoded, to the
/// pipeline workers' queues `tx` (sharded by [`route`]) in batches of up to [`BATCH`]; when a
/// queue is full the batch is dropped and counted, the reader never blocks.
pub(crate) async fn read_ring(
    ring: RingBuf<MapData>,
    tx: Vec<mpsc::Sender<RawBatch>>,
    recycle: Recycle,
    metrics: Metrics,
    drops: std::sync::Arc<drops::DropTracker>,
    mut stop: watch::Receiver<bool>,
    drain: bool,
) -> Result<(), CaptureError> {
    // SAFETY: the RingBuf owns its fd for as long as the AsyncFd lives (it is moved in), so
    // the registered fd cannot be closed or reused behind the reactor's back.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| CaptureError::Io(e.into()))?;
    let mut batch = Batch::new(tx.len(), recycle);
    let read = |ring: &mut RingBuf<MapData>, batch: &mut Batch| {
        while let Some(item) = ring.next() {
            batch.push(&item);
            if batch.full() {
                batch.send(&tx, &metrics, &drops);
            }
        }
        // The ring is empty: what was read goes on now, not when a batch fills.
        batch.send(&tx, &metrics, &drops);
    };
    let mut tick = tokio::time::interval(MAX_LATENCY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => read(fd.get_mut(), &mut batch),
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                read(guard.get_inner_mut(), &mut batch);
                guard.clear_ready();
            }
            _ = stop.changed() => break,
        }
    }
    // Producers are paused by now: whatever is in the ring is all there will be. Without
    // `drain`, the programs stay pinned and the next agent reads on from here.
    if drain {
        read(fd.get_mut(), &mut batch);
    }
    Ok(())
}
