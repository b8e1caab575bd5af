//! Pipeline counters, kept as Prometheus metrics (the endpoint that serves them is configured by
//! the delivery work; `monitor trace --stats-json` and the periodic log line read them too).
use std::collections::BTreeMap;

use monitor_common::{EventKind, KindStats, Misc};
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    core::Collector,
};
use serde::Serialize;

/// Every counter of the capture pipeline.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    /// Records decoded from the ring buffer, by kind.
    pub(crate) received: IntCounterVec,
    /// Events lost, by kind and stage (`kernel_ring`: a full ring buffer, the one place the
    /// agent loses events).
    pub(crate) dropped: IntCounterVec,
    /// Records that failed to decode, by reason.
    pub(crate) decode_errors: IntCounterVec,
    /// Kernel-side conditions that are not drops (stash misses...).
    pub(crate) kernel_misc: IntCounterVec,
    /// Calls the kernel left out on purpose: nothing loaded can use them (not drops).
    pub(crate) filtered: IntCounterVec,
    /// Identical records the kernel folded into one it sent (not drops: that one counts them).
    pub(crate) folded: IntCounterVec,
    /// Container metadata cache lookups, by result (`hit`, `miss`).
    pub(crate) enrich: IntCounterVec,
    /// Container metadata lookups that failed, by reason.
    pub(crate) enrich_failures: IntCounterVec,
    /// Workloads with a profile, by state (`learning`, `enforcing`).
    pub(crate) baseline_workloads: IntGaugeVec,
    /// Items in all profiles, by kind.
    pub(crate) baseline_items: IntGaugeVec,
    /// Anomaly alerts raised, by kind.
    pub(crate) baseline_anomalies: IntCounterVec,
    /// Alerts raised, by rule, severity and source (`rule`, `anomaly`).
    pub(crate) alerts: IntCounterVec,
    /// Alerts by namespace, pod and binary: only with `metrics.high_cardinality`.
    pub(crate) alerts_by_pod: Option<IntCounterVec>,
    /// Time to evaluate the rules against one event (sampled: 1 event in 16).
    pub(crate) rule_eval: HistogramVec,
    /// Rules in force.
    pub(crate) rules_loaded: IntGauge,
    /// Pipeline workers running (`capture.workers`).
    pub(crate) pipeline_workers: IntGauge,
    /// 0: programs not pinned; 1: loaded and pinned by this agent; 2: adopted from a pin.
    pub(crate) programs_pinned: IntGauge,
    /// Pins another process removed and the agent pinned again.
    pub(crate) pins_restored: prometheus::IntCounter,
    /// Reloads by result (`success`, `failure`).
    pub(crate) rules_reloads: IntCounterVec,
    /// 1 if the last reload attempt succeeded, 0 if it was rejected.
    pub(crate) rules_last_reload_success: IntGauge,
    pub(crate) rules_last_reload_time: Gauge,
    /// Alerts a sink delivered, by sink.
    pub(crate) sink_delivered: IntCounterVec,
    /// Failed delivery attempts (retried), by sink and reason.
    pub(crate) sink_failures: IntCounterVec,
    /// Alerts a sink gave up on, by sink and reason.
    pub(crate) sink_dropped: IntCounterVec,
    /// Alerts waiting in a sink's memory queue.
    pub(crate) sink_queued: IntGaugeVec,
    /// Bytes waiting in a sink's disk spool.
    pub(crate) sink_spool_bytes: IntGaugeVec,
    /// 1 per kernel program: attached or not (with the reason), per probe.
    pub(crate) probe_attached: IntGaugeVec,
    /// Constant 1 with the version and kernel as labels.
    pub(crate) build_info: IntGaugeVec,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics::with_options(false)
    }

    /// `high_cardinality` adds per-pod and per-binary alert series.
    pub(crate) fn with_options(high_cardinality: bool) -> Metrics {
        let registry = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> IntGaugeVec {
            let g =
                IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let mk = |name: &str, help: &str, labels: &[&str]| -> IntCounterVec {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let int_gauge = |name: &str, help: &str| -> IntGauge {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
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
            filtered: mk(
                "monitor_events_filtered_total",
                "Calls the kernel left out because no loaded rule, baseline or trace filter can use them (by design, not a loss).",
                &["kind"],
            ),
            folded: mk(
                "monitor_events_folded_total",
                "Identical events of one process the kernel folded within capture.fold_window: counted, and carried as `folded` by the next one sent (not a loss).",
                &["kind"],
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
            alerts: mk(
                "monitor_alerts_total",
                "Alerts raised, by rule, severity and source (rule or anomaly).",
                &["rule", "severity", "source"],
            ),
            alerts_by_pod: high_cardinality.then(|| {
                mk(
                    "monitor_alerts_by_pod_total",
                    "Alerts raised, by namespace, pod, binary and rule (high cardinality).",
                    &["namespace", "pod", "binary", "rule"],
                )
            }),
            rule_eval: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "monitor_rule_evaluation_seconds",
                        "Time to evaluate the rules against one event (1 event in 16 is timed).",
                    )
                    .buckets(
                        prometheus::exponential_buckets(2e-7, 4.0, 10).expect("static buckets"),
                    ),
                    &["kind"],
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(h.clone()))
                    .expect("metric registered once");
                h
            },
            pins_restored: {
                let c = prometheus::IntCounter::new(
                    "monitor_pins_restored_total",
                    "Pins of the running programs that another process removed and the agent pinned again.",
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(c.clone()))
                    .expect("metric registered once");
                c
            },
            programs_pinned: int_gauge(
                "monitor_programs_pinned",
                "Kernel programs pinned in bpffs: 0 no, 1 loaded and pinned by this agent, 2 adopted from an earlier agent.",
            ),
            pipeline_workers: int_gauge(
                "monitor_pipeline_workers",
                "Pipeline workers (process table, attribution, rules), each owning the events of some cgroups.",
            ),
            rules_loaded: int_gauge("monitor_rules_loaded", "Rules in force."),
            rules_reloads: mk(
                "monitor_rules_reloads_total",
                "Rule reload attempts, by result (success, failure).",
                &["result"],
            ),
            rules_last_reload_success: int_gauge(
                "monitor_rules_last_reload_success",
                "1 if the last rule load or reload succeeded, 0 if it was rejected.",
            ),
            rules_last_reload_time: {
                let g = Gauge::new(
                    "monitor_rules_last_reload_timestamp_seconds",
                    "Unix time of the last rule load or reload attempt.",
                )
                .expect("static metric definition");
                registry
                    .register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            },
            sink_delivered: mk(
                "monitor_sink_delivered_total",
                "Alerts a sink delivered.",
                &["sink"],
            ),
            sink_failures: mk(
                "monitor_sink_failures_total",
                "Failed delivery attempts, by sink and reason (each is retried).",
                &["sink", "reason"],
            ),
            sink_dropped: mk(
                "monitor_sink_dropped_total",
                "Alerts a sink gave up on, by sink and reason.",
                &["sink", "reason"],
            ),
            sink_queued: gauge_vec(
                "monitor_sink_queue_length",
                "Alerts waiting in a sink's memory queue.",
                &["sink"],
            ),
            sink_spool_bytes: gauge_vec(
                "monitor_sink_spool_bytes",
                "Bytes waiting in a sink's disk spool.",
                &["sink"],
            ),
            probe_attached: gauge_vec(
                "monitor_probe_attached",
                "1 if the kernel program is attached, 0 if it was skipped (reason says why).",
                &["probe", "reason"],
            ),
            build_info: gauge_vec(
                "monitor_build_info",
                "Always 1; the labels say which agent runs on which kernel.",
                &["version", "kernel"],
            ),
            registry,
        }
    }

    /// Creates the per-kind series at zero, so rates and alert rules see them before the first
    /// event or drop.
    pub(crate) fn init_series(&self) {
        for k in EventKind::ALL {
            self.received.with_label_values(&[k.name()]);
            self.filtered.with_label_values(&[k.name()]);
            self.folded.with_label_values(&[k.name()]);
            self.dropped.with_label_values(&[k.name(), "kernel_ring"]);
        }
        self.rules_reloads.with_label_values(&["success"]);
        self.rules_reloads.with_label_values(&["failure"]);
    }

    /// Adds the agent's own CPU, memory and file descriptor series (`process_*`), so dashboards
    /// show the agent's cost per node.
    pub(crate) fn register_process_metrics(&self) {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = self.registry.register(Box::new(pc)) {
            tracing::debug!(error = %e, "process metrics not registered");
        }
    }

    /// Publishes the build info series.
    pub(crate) fn set_build_info(&self, kernel: &str) {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), kernel])
            .set(1);
    }

    /// Unix time now, for timestamp gauges.
    pub(crate) fn now_seconds() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Kernel counters summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct KernelCounts {
    /// By kind name: records submitted and dropped.
    pub(crate) kinds: BTreeMap<&'static str, KindCount>,
    pub(crate) stash_miss: u64,
    pub(crate) stash_full: u64,
    pub(crate) scratch_miss: u64,
    /// Copies of lifecycle records that did not fit in another worker's ring.
    pub(crate) replica_drop: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct KindCount {
    pub(crate) submitted: u64,
    pub(crate) dropped: u64,
    pub(crate) filtered: u64,
    pub(crate) folded: u64,
}

impl KernelCounts {
    /// Builds counts from per-slot values (already summed over CPUs) and MISC values.
    pub(crate) fn from_slots(slots: &[KindStats], misc: &[u64]) -> KernelCounts {
        let mut kinds = BTreeMap::new();
        for k in EventKind::ALL {
            if let Some(s) = slots.get(k.slot() as usize) {
                kinds.insert(
                    k.name(),
                    KindCount {
                        submitted: s.submitted,
                        dropped: s.dropped,
                        filtered: s.filtered,
                        folded: s.folded,
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
            replica_drop: m(Misc::ReplicaDrop),
        }
    }

    pub(crate) fn total_dropped(&self) -> u64 {
        self.kinds.values().map(|k| k.dropped).sum()
    }
}

/// What `--stats-json` writes at exit.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) kernel: KernelCounts,
    pub(crate) received: BTreeMap<&'static str, u64>,
    pub(crate) decode_errors: u64,
    /// Container metadata lookups that failed (all reasons).
    pub(crate) enrich_failures: u64,
}

impl Summary {
    pub(crate) fn collect(m: &Metrics, kernel: KernelCounts) -> Summary {
        let mut received = BTreeMap::new();
        for k in EventKind::ALL {
            received.insert(k.name(), m.received.with_label_values(&[k.name()]).get());
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
            decode_errors: total(&m.decode_errors),
            enrich_failures: total(&m.enrich_failures),
        }
    }
}
