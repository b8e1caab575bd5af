//! Reading the ring buffer (woken by epoll through `AsyncFd`, never by sleeping) and the kernel
//! counters.
pub(crate) mod decode;
pub(crate) mod drops;
pub(crate) mod route;

use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use monitor_common::{KIND_SLOTS, KindStats, MISC_SLOTS};
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use self::decode::{RawEvent, decode};
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
    /// The ring buffers, one per pipeline worker (see [`route`]): worker `i` reads `rings[i]`.
    pub(crate) rings: Vec<RingBuf<MapData>>,
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
    pub(crate) fn take(
        loaded: &mut crate::load::Loaded,
        workers: usize,
    ) -> Result<CaptureMaps, CaptureError> {
        let mut take = |name: &'static str| {
            loaded
                .take_map(name)
                .ok_or(CaptureError::MissingMap { name })
        };
        let mut rings = Vec::with_capacity(workers);
        for &name in monitor_common::RING_MAPS.iter().take(workers.max(1)) {
            rings.push(
                RingBuf::try_from(take(name)?)
                    .map_err(|source| CaptureError::Map { name, source })?,
            );
        }
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
            rings,
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
            ("replica_drop", now.replica_drop, self.last.replica_drop),
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

/// Records a worker takes from its ring before it looks at its other work (container metadata
/// answers, timers): a busy ring never starves them.
pub(crate) const BATCH: usize = 256;

/// A pipeline worker's ring buffer, which that worker alone reads: woken by epoll through
/// `AsyncFd` once the kernel says enough bytes are pending (`Config::wakeup_bytes`), and polled
/// every [`MAX_LATENCY`] for records below that threshold. Records are decoded straight from
/// the ring's memory; no copy, no queue and no other thread stands between the kernel and the
/// worker, so the ring is the only place records wait, and the kernel counts what did not fit.
pub(crate) struct Ring {
    fd: AsyncFd<RingBuf<MapData>>,
    metrics: Metrics,
    worker: usize,
    workers: usize,
    /// Records received per kind slot, not yet published.
    received: Vec<u64>,
}

impl Ring {
    pub(crate) fn new(
        ring: RingBuf<MapData>,
        metrics: Metrics,
        worker: usize,
        workers: usize,
    ) -> Result<Ring, CaptureError> {
        // SAFETY: the RingBuf owns its fd for as long as the AsyncFd lives (it is moved in), so
        // the registered fd cannot be closed or reused behind the reactor's back.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| CaptureError::Io(e.into()))?;
        Ok(Ring {
            fd,
            metrics,
            worker,
            workers,
            received: vec![0; KIND_SLOTS as usize],
        })
    }

    /// Waits until the kernel says records are pending.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        let mut guard = self.fd.readable().await?;
        // Readiness is re-armed here and read below: a record that arrives in between wakes
        // the next wait.
        guard.clear_ready();
        Ok(())
    }

    /// Decodes up to `max` records and hands each that decodes to `each`, in ring order; returns
    /// whether the ring ran empty. A record that does not decode is counted (by its owner) and
    /// skipped.
    pub(crate) fn take(
        &mut self,
        max: usize,
        mut each: impl FnMut(&RawEvent) -> std::io::Result<()>,
    ) -> std::io::Result<bool> {
        let (worker, workers) = (self.worker, self.workers);
        let mut emptied = false;
        for _ in 0..max {
            let Some(item) = self.fd.get_mut().next() else {
                emptied = true;
                break;
            };
            let p = route::peek(&item);
            if let Some(kind) = p.kind.filter(|_| p.owner(workers) == worker)
                && let Some(n) = self.received.get_mut(kind.slot() as usize)
            {
                *n += 1;
            }
            let ev = decode_counted(&item, &self.metrics, worker, workers);
            // The record's room in the ring goes back to the kernel before the event is judged.
            drop(item);
            if let Some(ev) = ev {
                each(&ev)?;
            }
        }
        self.publish();
        Ok(emptied)
    }

    fn publish(&mut self) {
        for k in monitor_common::EventKind::ALL {
            if let Some(n) = self.received.get_mut(k.slot() as usize)
                && *n > 0
            {
                self.metrics
                    .received
                    .with_label_values(&[k.name()])
                    .inc_by(*n);
                *n = 0;
            }
        }
    }
}
