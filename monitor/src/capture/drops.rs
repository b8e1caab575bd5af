//! Recent event loss, so that an alert raised while events were being dropped says so.
//!
//! Records are lost in one place only: a ring buffer that is full when a program writes to it
//! (the workers read their rings directly, with no queue of their own). The agent's counter
//! tick reports those drops (by kind, and by cgroup from the kernel's LRU map) about once a
//! second. Samples older than the window are forgotten.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

/// Distinct cgroups remembered per sample; the rest are summed under cgroup 0 (unknown).
const MAX_CGROUPS: usize = 4096;

#[derive(Debug, Default, Clone)]
struct Sample {
    at: Option<Instant>,
    kernel: BTreeMap<&'static str, u64>,
    by_cgroup: HashMap<u64, u64>,
}

impl Sample {
    fn add_cgroup(&mut self, cgroup: u64, n: u64) {
        let key = if self.by_cgroup.len() >= MAX_CGROUPS && !self.by_cgroup.contains_key(&cgroup) {
            0
        } else {
            cgroup
        };
        *self.by_cgroup.entry(key).or_default() += n;
    }
    fn is_empty(&self) -> bool {
        self.kernel.is_empty()
    }
}

/// What an alert says about loss around it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct DropNotice {
    /// The window the counts cover, ending at the alert.
    pub(crate) window_seconds: u64,
    /// Events lost in the window, all kinds.
    pub(crate) total: u64,
    /// Lost because the kernel ring buffer was full, by event kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) kernel_ring: BTreeMap<&'static str, u64>,
    /// Of those, events of the alert's own cgroup (its container, when it has one).
    pub(crate) same_cgroup: u64,
}

pub(crate) struct DropTracker {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples: VecDeque<Sample>,
}

impl DropTracker {
    pub(crate) fn new(window: Duration) -> DropTracker {
        DropTracker {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes a sample: kernel drops since the previous tick (by kind and by cgroup).
    pub(crate) fn tick(
        &self,
        now: Instant,
        kernel: &BTreeMap<&'static str, u64>,
        kernel_by_cgroup: &HashMap<u64, u64>,
    ) {
        let mut g = self.lock();
        let mut s = Sample {
            at: Some(now),
            ..Sample::default()
        };
        for (k, n) in kernel {
            if *n > 0 {
                *s.kernel.entry(k).or_default() += n;
            }
        }
        for (cg, n) in kernel_by_cgroup {
            s.add_cgroup(*cg, *n);
        }
        if !s.is_empty() {
            g.samples.push_back(s);
        }
        while g
            .samples
            .front()
            .and_then(|s| s.at)
            .is_some_and(|at| now.saturating_duration_since(at) > self.window)
        {
            g.samples.pop_front();
        }
    }

    /// Loss within the window before `now`, if any; `cgroup` is the alert's.
    pub(crate) fn notice(&self, now: Instant, cgroup: u64) -> Option<DropNotice> {
        let g = self.lock();
        let mut n = DropNotice {
            window_seconds: self.window.as_secs(),
            total: 0,
            kernel_ring: BTreeMap::new(),
            same_cgroup: 0,
        };
        let recent = g.samples.iter().filter(|s| {
            s.at.is_some_and(|at| now.saturating_duration_since(at) <= self.window)
        });
        for s in recent {
            for (k, c) in &s.kernel {
                *n.kernel_ring.entry(k).or_default() += c;
                n.total += c;
            }
            n.same_cgroup += s.by_cgroup.get(&cgroup).copied().unwrap_or(0);
        }
        (n.total > 0).then_some(n)
    }
}

/// Turns cumulative per-cgroup kernel counters (an LRU map: entries may vanish) into deltas.
#[derive(Default)]
pub(crate) struct CgroupDeltas {
    last: HashMap<u64, u64>,
}

impl CgroupDeltas {
    pub(crate) fn update(&mut self, now: HashMap<u64, u64>) -> HashMap<u64, u64> {
        let mut out = HashMap::new();
        for (cg, v) in &now {
            let before = self.last.get(cg).copied().unwrap_or(0);
            // A smaller value means the entry was evicted and re-created: all of it is new.
            let d = if *v >= before { v - before } else { *v };
            if d > 0 {
                out.insert(*cg, d);
            }
        }
        self.last = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_see_recent_drops_only() {
        let t = DropTracker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.notice(t0, 5), None);
        t.tick(
            t0,
            &BTreeMap::from([("exec", 1u64)]),
            &HashMap::from([(5, 1)]),
        );
        let n = t.notice(t0, 5).expect("drops count");
        assert_eq!((n.total, n.same_cgroup), (1, 1));
        let kernel = BTreeMap::from([("open", 3u64)]);
        t.tick(t0, &kernel, &HashMap::from([(7, 3)]));
        let n = t.notice(t0 + Duration::from_secs(1), 7).expect("drops");
        assert_eq!(n.total, 4);
        assert_eq!(n.kernel_ring.get("open"), Some(&3));
        assert_eq!(n.kernel_ring.get("exec"), Some(&1));
        assert_eq!(n.same_cgroup, 3);
        // Past the window, and after the next tick prunes, nothing is left.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.notice(later, 7), None);
        t.tick(later, &BTreeMap::new(), &HashMap::new());
        assert!(t.lock().samples.is_empty());
    }

    #[test]
    fn cgroup_deltas_survive_eviction() {
        let mut d = CgroupDeltas::default();
        assert_eq!(d.update(HashMap::from([(1, 5)])), HashMap::from([(1, 5)]));
        assert_eq!(
            d.update(HashMap::from([(1, 8), (2, 1)])),
            HashMap::from([(1, 3), (2, 1)])
        );
        // Entry 1 evicted and re-created with 2.
        assert_eq!(d.update(HashMap::from([(1, 2)])), HashMap::from([(1, 2)]));
    }
}
