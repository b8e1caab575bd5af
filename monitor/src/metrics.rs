//! Pipeline counters, kept as Prometheus metrics (the endpoint that serves them is configured by
//! the delivery work; `monitor trace --stats-json` and the periodic log line read them too).
use std::collections::BTreeMap;

use monitor_common::{EventKind, KindStats, Misc};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, core::Collector};
use serde::Serialize;

/// Every counter of the capture pipeline.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Records decoded from the ring buffer, by kind.
    pub received: IntCounterVec,
    /// Events lost, by kind and stage (`kernel_ring`, `user_queue`).
    pub dropped: IntCounterVec,
    /// Records that failed to decode, by reason.
    pub decode_errors: IntCounterVec,
    /// Kernel-side conditions that are not drops (stash misses...).
    pub kernel_misc: IntCounterVec,
    /// Container metadata cache lookups, by result (`hit`, `miss`).
    pub enrich: IntCounterVec,
    /// Container metadata lookups that failed, by reason.
    pub enrich_failures: IntCounterVec,
    /// Workloads with a profile, by state (`learning`, `enforcing`).
    pub baseline_workloads: IntGaugeVec,
    /// Items in all profiles, by kind.
    pub baseline_items: IntGaugeVec,
    /// Anomaly alerts raised, by kind.
    pub baseline_anomalies: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let mk = |name: &str, help: &str, labels: &[&str]| -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        Metrics {
            received: mk(
                "monitor_events_received_total",
                "Events received from the kernel.",
                &["kind"],
            ),
            dropped: mk(
                "monitor_events_dropped_total",
                "Events lost, by pipeline stage.",
                &["kind", "stage"],
            ),
            decode_errors: mk(
                "monitor_decode_errors_total",
                "Kernel records that failed to decode.",
                &["reason"],
            ),
            kernel_misc: mk(
                "monitor_kernel_conditions_total",
                "Kernel-side conditions that are not drops.",
                &["condition"],
            ),
            enrich: mk(
                "monitor_enrich_lookups_total",
                "Container metadata cache lookups.",
                &["result"],
            ),
            enrich_failures: mk(
                "monitor_enrich_failures_total",
                "Container metadata lookups that failed.",
                &["reason"],
            ),
            baseline_workloads: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "monitor_baseline_workloads",
                        "Workloads with a learned profile, by state.",
                    ),
                    &["state"],
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            },
            baseline_items: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "monitor_baseline_profile_items",
                        "Items in all learned profiles, by kind.",
                    ),
                    &["kind"],
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            },
            baseline_anomalies: mk(
                "monitor_baseline_anomalies_total",
                "Anomaly alerts raised by learned baselines.",
                &["kind"],
            ),
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Kernel counters summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KernelCounts {
    /// By kind name: records submitted and dropped.
    pub kinds: BTreeMap<&'static str, KindCount>,
    pub stash_miss: u64,
    pub stash_full: u64,
    pub scratch_miss: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KindCount {
    pub submitted: u64,
    pub dropped: u64,
}

impl KernelCounts {
    /// Builds counts from per-slot values (already summed over CPUs) and MISC values.
    pub fn from_slots(slots: &[KindStats], misc: &[u64]) -> KernelCounts {
        let mut kinds = BTreeMap::new();
        for k in EventKind::ALL {
            if let Some(s) = slots.get(k.slot() as usize) {
                kinds.insert(
                    k.name(),
                    KindCount {
                        submitted: s.submitted,
                        dropped: s.dropped,
                    },
                );
            }
        }
        let m = |i: Misc| misc.get(i as usize).copied().unwrap_or(0);
        KernelCounts {
            kinds,
            stash_miss: m(Misc::StashMiss),
            stash_full: m(Misc::StashFull),
            scratch_miss: m(Misc::ScratchMiss),
        }
    }

    pub fn total_dropped(&self) -> u64 {
        self.kinds.values().map(|k| k.dropped).sum()
    }
}

/// What `--stats-json` writes at exit.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub kernel: KernelCounts,
    pub received: BTreeMap<&'static str, u64>,
    pub queue_dropped: BTreeMap<&'static str, u64>,
    pub decode_errors: u64,
    /// Container metadata lookups that failed (all reasons).
    pub enrich_failures: u64,
}

impl Summary {
    pub fn collect(m: &Metrics, kernel: KernelCounts) -> Summary {
        let mut received = BTreeMap::new();
        let mut queue_dropped = BTreeMap::new();
        for k in EventKind::ALL {
            received.insert(k.name(), m.received.with_label_values(&[k.name()]).get());
            queue_dropped.insert(
                k.name(),
                m.dropped.with_label_values(&[k.name(), "user_queue"]).get(),
            );
        }
        let total = |c: &IntCounterVec| -> u64 {
            c.collect()
                .iter()
                .flat_map(|f| {
                    f.get_metric()
                        .iter()
                        .map(|x| x.get_counter().get_value() as u64)
                })
                .sum()
        };
        Summary {
            kernel,
            received,
            queue_dropped,
            decode_errors: total(&m.decode_errors),
            enrich_failures: total(&m.enrich_failures),
        }
    }
}
