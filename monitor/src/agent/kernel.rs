//! The kernel counters, read every second: into the metrics, into the drop tracker (so alerts
//! note recent loss), and into the log when drops grow.
use std::{collections::BTreeMap, sync::Arc, time::Instant};

use tracing::warn;

use crate::{
    capture::{
        self, CounterMaps, KernelCountsExporter,
        drops::{CgroupDeltas, DropTracker},
    },
    telemetry::{Metrics, metrics::KernelCounts},
};

/// What the once-a-second read remembers between reads.
pub(super) struct KernelWatch {
    exporter: KernelCountsExporter,
    cgroup_deltas: CgroupDeltas,
    last_kinds: BTreeMap<&'static str, u64>,
    last_dropped: u64,
}

impl KernelWatch {
    pub(super) fn new() -> KernelWatch {
        KernelWatch {
            exporter: KernelCountsExporter::default(),
            cgroup_deltas: CgroupDeltas::default(),
            last_kinds: BTreeMap::new(),
            last_dropped: 0,
        }
    }

    /// One read of the counters.
    pub(super) fn tick(&mut self, maps: &CounterMaps, metrics: &Metrics, drops: &Arc<DropTracker>) {
        let k = match capture::kernel_counts(&maps.stats, &maps.misc) {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, "reading kernel counters");
                return;
            }
        };
        self.exporter.update(metrics, &k);
        let mut new_by_kind = BTreeMap::new();
        for (kind, c) in &k.kinds {
            let before = self.last_kinds.insert(kind, c.dropped).unwrap_or(0);
            new_by_kind.insert(*kind, c.dropped.saturating_sub(before));
        }
        let by_cgroup = self
            .cgroup_deltas
            .update(capture::drops_by_cgroup(&maps.drops_by_cgroup));
        drops.tick(Instant::now(), &new_by_kind, &by_cgroup);
        let dropped = k.total_dropped();
        if dropped > self.last_dropped {
            warn!(
                dropped_total = dropped,
                new = dropped - self.last_dropped,
                "kernel ring buffer full: events dropped"
            );
            self.last_dropped = dropped;
        }
    }

    /// The final counters, published once more.
    pub(super) fn last(
        &mut self,
        maps: &CounterMaps,
        metrics: &Metrics,
    ) -> Result<KernelCounts, capture::CaptureError> {
        let kernel = capture::kernel_counts(&maps.stats, &maps.misc)?;
        self.exporter.update(metrics, &kernel);
        Ok(kernel)
    }
}
