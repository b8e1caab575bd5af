//! Detection: behaviour rules and learned baselines judge each event; what they raise is an
//! [`Alert`], handed to an [`AlertSink`] (the outputs implement it).
//!
//! The [`Detector`] is the pipeline's sink in `monitor run`.
mod alert;
pub(crate) mod baseline;
pub(crate) mod interest;
pub(crate) mod rules;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

pub(crate) use alert::{Alert, AnomalyInfo, DedupInfo, SeqFirst};
use tokio::sync::watch;
use tracing::info;

use self::{
    baseline::BaselineStage,
    rules::{Engine, RuleSet},
};
use crate::{capture::drops::DropTracker, event::Event, pipeline::EventSink, telemetry::Metrics};

/// Where alerts go.
pub(crate) trait AlertSink {
    /// Takes one alert; never blocks (a full queue drops and counts).
    fn deliver(&mut self, a: Alert);
}

/// An alert sink shared by the pipeline's workers: each delivers under its lock (alerts are
/// rare next to events, so the lock is seldom contended).
pub(crate) struct SharedSink<A>(Arc<Mutex<A>>);

impl<A> SharedSink<A> {
    pub(crate) fn new(a: A) -> SharedSink<A> {
        SharedSink(Arc::new(Mutex::new(a)))
    }

    /// The sink, once no other worker holds it.
    pub(crate) fn into_inner(self) -> Option<A> {
        Arc::try_unwrap(self.0)
            .ok()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<A> Clone for SharedSink<A> {
    fn clone(&self) -> Self {
        SharedSink(self.0.clone())
    }
}

impl<A: AlertSink> AlertSink for SharedSink<A> {
    fn deliver(&mut self, a: Alert) {
        locked(&self.0).deliver(a);
    }
}

/// A lock whose holder may have panicked: the alert sinks and baselines stay usable (each
/// change they make is complete or not made).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One event in this many has its rule evaluation timed (the histogram is a sample).
const TIME_ONE_IN: u64 = 16;

/// Rules and baselines over the event stream, delivering to `A`.
pub(crate) struct Detector<A: AlertSink> {
    /// The current rules; a reload publishes a new set here and the detector swaps to it
    /// between two events, so none is lost or evaluated twice.
    rules: watch::Receiver<Arc<RuleSet>>,
    /// The set in force, taken from `rules` when it changes (not locked per event).
    current: Arc<RuleSet>,
    engine: Engine,
    /// Learned per-workload baselines (anomaly alerts), when enabled; shared by the workers,
    /// so that a workload's pods learn one profile whichever worker sees them.
    baselines: Option<Arc<Mutex<BaselineStage>>>,
    metrics: Metrics,
    sinks: A,
    /// Recent event loss, noted on alerts.
    drops: Arc<DropTracker>,
    /// Events seen, for sampling.
    seen: u64,
}

impl<A: AlertSink> Detector<A> {
    /// A detector judging with the rules published on `rules`.
    pub(crate) fn new(
        rules: watch::Receiver<Arc<RuleSet>>,
        baselines: Option<BaselineStage>,
        metrics: Metrics,
        sinks: A,
        drops: Arc<DropTracker>,
    ) -> Detector<A> {
        let current = rules.borrow().clone();
        Detector {
            rules,
            current,
            engine: Engine::default(),
            baselines: baselines.map(|b| Arc::new(Mutex::new(b))),
            metrics,
            sinks,
            drops,
            seen: 0,
        }
    }

    /// A detector for another pipeline worker: the same rules, and the same rule state,
    /// baselines and alert sink.
    pub(crate) fn worker(&self) -> Detector<A>
    where
        A: Clone,
    {
        Detector {
            rules: self.rules.clone(),
            current: self.current.clone(),
            engine: self.engine.worker(),
            baselines: self.baselines.clone(),
            metrics: self.metrics.clone(),
            sinks: self.sinks.clone(),
            drops: self.drops.clone(),
            seen: 0,
        }
    }

    /// The alert sink, to be shut down once the pipeline is over.
    pub(crate) fn into_sinks(self) -> A {
        self.sinks
    }
}

impl<A: AlertSink> EventSink for Detector<A> {
    fn event(&mut self, e: &Event) -> std::io::Result<()> {
        if self.rules.has_changed().unwrap_or(false) {
            let new = self.rules.borrow_and_update().clone();
            self.engine.retain_rules(&new);
            info!(rules = new.len(), "new rules in force");
            self.current = new;
        }
        let current = &self.current;
        let now = Instant::now();
        self.seen += 1;
        let mut alerts = if self.seen.is_multiple_of(TIME_ONE_IN) {
            let t = Instant::now();
            let a = self.engine.evaluate(current, e, now);
            self.metrics
                .rule_eval
                .with_label_values(&[e.kind])
                .observe(t.elapsed().as_secs_f64());
            a
        } else {
            self.engine.evaluate(current, e, now)
        };
        if let Some(b) = &self.baselines {
            alerts.extend(locked(b).baselines.observe(e, now));
        }
        for mut a in alerts {
            a.drops = self.drops.notice(now, e.cgroup_id);
            self.sinks.deliver(a);
        }
        Ok(())
    }

    /// Delivers folded alerts whose dedup window is over (all of them at the end), applies
    /// queued baseline imports and saves changed profiles.
    fn tick(&mut self, all: bool) {
        let now = Instant::now();
        for mut a in self.engine.flush(now, all) {
            a.drops = self.drops.notice(now, a.event.cgroup_id);
            self.sinks.deliver(a);
        }
        if let Some(b) = &self.baselines {
            let mut b = locked(b);
            b.apply_incoming();
            b.save(all);
            b.export_metrics(&self.metrics);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
