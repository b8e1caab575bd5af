//! Rule evaluation: for each event, the rules of its kind; sequence rules remember their first
//! events per key; alerts are folded per dedup window. State survives rule reloads by rule id.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use super::{
    Rule, RuleSet, SeqBy, Sequence, fields,
    index::{Bits, Steps},
};
use crate::{
    detect::{Alert, DedupInfo, SeqFirst},
    event::{Detail, Event},
};

struct DedupState {
    first_seen: String,
    last_seen: String,
    window_end: Instant,
    suppressed: u64,
    /// The first folded alert, delivered with the count when the window ends.
    last: Option<Alert>,
}

struct SeqEntry {
    at: Instant,
    /// When the first event happened, in /proc clock ticks since boot.
    ticks: u64,
    same: Vec<Option<String>>,
    /// Hash of `same`: a `then` event compares it first, the strings only when it agrees.
    same_hash: u64,
    first: SeqFirst,
}

/// The remembered first events of one (rule, key), oldest first, with a count of each `same`
/// hash so that a `then` event with no counterpart, and a repeated first event, cost a lookup
/// instead of a walk over up to [`SEQ_PER_KEY`] entries.
#[derive(Default)]
struct SeqQueue {
    q: VecDeque<SeqEntry>,
    hashes: rustc_hash::FxHashMap<u64, u32>,
}

impl SeqQueue {
    fn pop_front(&mut self) -> Option<SeqEntry> {
        let x = self.q.pop_front()?;
        self.forget(x.same_hash);
        Some(x)
    }

    fn remove(&mut self, pos: usize) -> Option<SeqEntry> {
        let x = self.q.remove(pos)?;
        self.forget(x.same_hash);
        Some(x)
    }

    fn forget(&mut self, h: u64) {
        if let Some(n) = self.hashes.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                self.hashes.remove(&h);
            }
        }
    }

    fn push_back(&mut self, x: SeqEntry) {
        *self.hashes.entry(x.same_hash).or_default() += 1;
        self.q.push_back(x);
    }

    fn has(&self, h: u64) -> bool {
        self.hashes.contains_key(&h)
    }
}

/// The hash a sequence entry's `same` values are looked up by (collisions only cost a full
/// comparison, so a fast fixed hasher will do).
fn same_hash(same: &[Option<String>]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    same.hash(&mut h);
    h.finish()
}

/// Remembered first events per (rule, key) at most.
const SEQ_PER_KEY: usize = 1024;
/// Dedup keys and sequence keys held at most; beyond, the oldest are dropped (and counted).
const MAX_KEYS: usize = 65_536;

/// Rule evaluation state: dedup windows and sequence firsts, kept across rule reloads by rule id.
///
/// With several pipeline workers (see [`Engine::worker`]) each has an engine. A process's and
/// a container's events are all on one worker (sharded by cgroup), so their sequence state is
/// the worker's own; what spans workers is shared and locked only when used: dedup windows
/// (keyed by workload, whose pods may be on several workers; taken when a rule fires) and
/// host sequences kept `by: container` (taken at such a rule's step).
#[derive(Default)]
pub(crate) struct Engine {
    /// Sequence state of the processes and containers of this worker.
    local: State,
    /// Dedup windows and host sequence state, shared by every worker.
    state: Arc<Mutex<State>>,
    /// The rules an event is judged by (reused between events).
    scratch: Bits,
}

/// The state behind [`Engine`].
#[derive(Default)]
struct State {
    /// Keyed by rule and by what the event says (paths, names): a hasher no one can make
    /// collide on purpose. Looked up only when a rule fires.
    dedup: HashMap<(String, String), DedupState>,
    /// Per rule id (the rules' own, FxHash: looked up at every sequence step), per key: the
    /// remembered first events.
    seq: rustc_hash::FxHashMap<String, rustc_hash::FxHashMap<SeqKey, SeqQueue>>,
    /// Keys in `seq`, over all rules.
    seq_keys: usize,
    /// State entries dropped because a bound was reached.
    evicted: u64,
}

/// What a sequence's state is kept by: a process (its identity), a container, or the host. The
/// identities are shared strings: making a key copies none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SeqKey {
    Process(std::sync::Arc<str>),
    Container(std::sync::Arc<str>),
    Host,
}

/// The key of `e`'s sequence state.
fn seq_key(s: &Sequence, e: &Event) -> SeqKey {
    match s.by {
        SeqBy::Process => SeqKey::Process(e.process.id.clone()),
        SeqBy::Container => match &e.attribution.container {
            Some(c) => SeqKey::Container(c.id.clone()),
            None => SeqKey::Host,
        },
    }
}

/// Sequence state keys a `then` event may continue, in order: its own key; for `by: process`
/// also each ancestor's, with the start time (ticks) of the ancestor's child on the event's line
/// of descent. Descriptors and state survive fork and exec, so a connection made by a parent
/// and put on stdio by a child it forked afterwards (`nc -e`, `bash -i >& /dev/tcp/...` run
/// from a wrapper) is still one reverse shell.
fn seq_candidates(by: SeqBy, own: SeqKey, e: &Event) -> Vec<(SeqKey, Option<u64>)> {
    let mut out = vec![(own, None)];
    if by == SeqBy::Process {
        let mut child_start = e.process.start_ticks;
        for a in &e.process.ancestors {
            out.push((SeqKey::Process(a.id.clone()), Some(child_start)));
            child_start = a.start_ticks;
        }
    }
    out
}

impl Engine {
    /// Another engine on the same state, for another pipeline worker.
    pub(crate) fn worker(&self) -> Engine {
        Engine {
            local: State::default(),
            state: self.state.clone(),
            scratch: Bits::default(),
        }
    }

    /// Evaluates every rule that applies to `e`; returns the alerts to deliver now.
    pub(crate) fn evaluate(&mut self, rules: &RuleSet, e: &Event, now: Instant) -> Vec<Alert> {
        let mut out = Vec::new();
        let ix = rules.index.for_kind(e.kind);
        let mut judge = std::mem::take(&mut self.scratch);
        ix.candidates(e, &mut judge);
        // Taken at the first rule that needs the shared state, held to the end of the event.
        let mut state: Option<MutexGuard<'_, State>> = None;
        let local = &mut self.local;
        for pos in judge.iter() {
            let Some(entry) = ix.entries.get(pos) else {
                continue;
            };
            let Some(rule) = rules.rules.get(entry.rule) else {
                continue;
            };
            let (fired, seq_first) = match (&entry.condition, &rule.sequence, &entry.steps) {
                (Some(c), _, _) => (c.matches(e), None),
                (None, Some(s), Some(steps)) => match seq_key(s, e) {
                    SeqKey::Host => state
                        .get_or_insert_with(|| lock(&self.state))
                        .sequence_step(&rule.id, s, steps, SeqKey::Host, e, now),
                    key => local.sequence_step(&rule.id, s, steps, key, e, now),
                },
                _ => (false, None),
            };
            if !fired || rule.exceptions.iter().any(|(_, m)| m.matches(e)) {
                continue;
            }
            state
                .get_or_insert_with(|| lock(&self.state))
                .fold(rule, e, seq_first, now, &mut out);
        }
        drop(state);
        self.scratch = judge;
        out
    }

    /// Ends dedup windows that are over (all of them with `all`): a window that folded identical
    /// alerts yields one alert with their count and first/last time.
    pub(crate) fn flush(&mut self, now: Instant, all: bool) -> Vec<Alert> {
        lock(&self.state).flush(now, all)
    }

    /// Drops state of rules that no longer exist (after a reload).
    pub(crate) fn retain_rules(&mut self, rules: &RuleSet) {
        self.local.retain_rules(rules);
        lock(&self.state).retain_rules(rules);
    }
}

/// The state, also when a worker panicked while holding it (it stays consistent: every change
/// is a single map operation).
fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// A sequence rule's step: a `then` event that continues a remembered first event fires
    /// (with that first event's context); otherwise a `first` event is remembered. `steps` are
    /// the rule's `first` and `then` specialised to the event's kind.
    fn sequence_step(
        &mut self,
        rule_id: &str,
        s: &Sequence,
        steps: &Steps,
        key: SeqKey,
        e: &Event,
        now: Instant,
    ) -> (bool, Option<SeqFirst>) {
        if let Some(then) = &steps.then
            && self.seq.contains_key(rule_id)
            && then.matches(e)
            && let Some(first) = self.continue_sequence(rule_id, s, key.clone(), e, now)
        {
            return (true, Some(first));
        }
        if steps.first.as_ref().is_some_and(|m| m.matches(e)) {
            self.remember_first(rule_id, key, s, e, now);
        }
        (false, None)
    }

    /// The remembered first event a `then` event continues, taken out of the state.
    fn continue_sequence(
        &mut self,
        rule_id: &str,
        s: &Sequence,
        own: SeqKey,
        e: &Event,
        now: Instant,
    ) -> Option<SeqFirst> {
        // Rendered only once some state is found to compare it with.
        let mut want: Option<(Vec<Option<String>>, u64)> = None;
        let by_key = self.seq.get_mut(rule_id)?;
        for (key, forked) in seq_candidates(s.by, own, e) {
            let Some(q) = by_key.get_mut(&key) else {
                continue;
            };
            // Entries are remembered in time order: the expired ones are at the front, so
            // expiry stops at the first live one instead of walking the whole queue.
            while q
                .q
                .front()
                .is_some_and(|x| now.duration_since(x.at) > s.within)
            {
                q.pop_front();
            }
            let (want, want_hash) = want.get_or_insert_with(|| {
                let v: Vec<Option<String>> = s
                    .same
                    .iter()
                    .map(|(t, _)| fields::render(&fields::get(t, e)))
                    .collect();
                let h = same_hash(&v);
                (v, h)
            });
            // An ancestor's first event counts only if the line of descent was forked after it
            // (and so inherited what it opened).
            if !q.has(*want_hash) {
                continue;
            }
            let pos = q.q.iter().position(|x| {
                x.same_hash == *want_hash
                    && x.same == *want
                    && forked.is_none_or(|t| t != 0 && t >= x.ticks)
            });
            if let Some(pos) = pos {
                return q.remove(pos).map(|x| x.first);
            }
        }
        None
    }

    fn remember_first(
        &mut self,
        rule_id: &str,
        key: SeqKey,
        s: &Sequence,
        e: &Event,
        now: Instant,
    ) {
        let known = self.seq.get(rule_id).is_some_and(|m| m.contains_key(&key));
        if self.seq_keys >= MAX_KEYS && !known {
            self.evicted += 1;
            // Some key of some rule goes: the state is bounded, not fair.
            if let Some(m) = self.seq.values_mut().find(|m| !m.is_empty())
                && let Some(victim) = m.keys().next().cloned()
            {
                m.remove(&victim);
                self.seq_keys -= 1;
            }
        }
        if !self.seq.contains_key(rule_id) {
            self.seq.insert(rule_id.to_string(), Default::default());
        }
        let Some(by_key) = self.seq.get_mut(rule_id) else {
            return;
        };
        if !known {
            self.seq_keys += 1;
        }
        let q = by_key.entry(key).or_default();
        let same: Vec<Option<String>> = s
            .same
            .iter()
            .map(|(_, f)| fields::render(&fields::get(f, e)))
            .collect();
        let hash = same_hash(&same);
        // The same first event again (a file written twice): one entry, now the newest, that
        // expires last and pairs with any line of descent the earlier one paired with.
        if q.has(hash)
            && let Some(pos) =
                q.q.iter()
                    .rposition(|x| x.same_hash == hash && x.same == same)
            && let Some(mut x) = q.remove(pos)
        {
            x.at = now;
            x.ticks = x.ticks.min(e.ticks);
            q.push_back(x);
            return;
        }
        if q.q.len() >= SEQ_PER_KEY {
            q.pop_front();
            self.evicted += 1;
        }
        q.push_back(SeqEntry {
            at: now,
            ticks: e.ticks,
            same_hash: hash,
            same,
            first: SeqFirst {
                time: e.time.clone(),
                kind: e.kind,
                pid: e.process.pid,
                summary: rule_summary(e),
            },
        });
    }

    /// Delivers the rule's alert for `e` now, or folds it into the open dedup window of its
    /// key. An alert is built (the event copied, the output rendered) only when it goes out now
    /// or is the first folded one, which the window's end delivers with the count: a flood
    /// costs a count, not a copy per event.
    fn fold(
        &mut self,
        rule: &Rule,
        e: &Event,
        seq_first: Option<SeqFirst>,
        now: Instant,
        out: &mut Vec<Alert>,
    ) {
        let Some(d) = &rule.dedup else {
            out.push(alert_of(rule, e, seq_first));
            return;
        };
        let mut key = e
            .attribution
            .workload_key()
            .unwrap_or_else(|| "host".into());
        for f in &d.by {
            key.push('|');
            key.push_str(&fields::render(&fields::get(f, e)).unwrap_or_default());
        }
        let k = (rule.id.clone(), key);
        match self.dedup.get_mut(&k) {
            Some(st) if now < st.window_end => {
                st.suppressed += 1 + e.folded;
                st.last_seen.clone_from(&e.time);
                if st.last.is_none() {
                    st.last = Some(alert_of(rule, e, seq_first));
                }
            }
            _ => {
                if self.dedup.len() >= MAX_KEYS {
                    out.extend(self.flush(now, true));
                }
                self.dedup.insert(
                    k,
                    DedupState {
                        first_seen: e.time.clone(),
                        last_seen: e.time.clone(),
                        window_end: now + d.window,
                        // Events the kernel folded into this one count as folded here too.
                        suppressed: e.folded,
                        last: None,
                    },
                );
                out.push(alert_of(rule, e, seq_first));
            }
        }
    }

    /// Ends dedup windows that are over (all of them with `all`): a window that folded identical
    /// alerts yields one alert with their count and first/last time.
    pub(crate) fn flush(&mut self, now: Instant, all: bool) -> Vec<Alert> {
        let mut out = Vec::new();
        self.dedup.retain(|_, st| {
            if !all && now < st.window_end {
                return true;
            }
            if let Some(mut a) = st.last.take() {
                a.dedup = DedupInfo {
                    count: st.suppressed + 1,
                    first_seen: st.first_seen.clone(),
                    last_seen: st.last_seen.clone(),
                };
                out.push(a);
            }
            false
        });
        crate::process::shrink_map(&mut self.dedup);
        out
    }

    /// Drops state of rules that no longer exist (after a reload).
    pub(crate) fn retain_rules(&mut self, rules: &RuleSet) {
        let ids: HashSet<&str> = rules.rules.iter().map(|r| r.id.as_str()).collect();
        self.seq.retain(|r, _| ids.contains(r.as_str()));
        self.seq_keys = self.seq.values().map(|m| m.len()).sum();
    }
}

/// The alert a rule raises for `e`.
fn alert_of(rule: &Rule, e: &Event, sequence: Option<SeqFirst>) -> Alert {
    Alert {
        id: String::new(),
        drops: None,
        source: "rule",
        rule: rule.id.clone(),
        severity: rule.severity.name(),
        tags: rule.tags.clone(),
        output: rule.output.render(e),
        description: rule.desc.clone(),
        dedup: DedupInfo {
            count: 1 + e.folded,
            first_seen: e.time.clone(),
            last_seen: e.time.clone(),
        },
        sequence,
        anomaly: None,
        event: e.clone(),
    }
}

/// A short description of an event for sequence context.
fn rule_summary(e: &Event) -> String {
    match &e.detail {
        // Concatenated rather than formatted: every remembered first event makes one.
        Detail::Exec(d) => ["exec ", &d.filename].concat(),
        Detail::File(d) => [d.call.syscall, " ", d.path.as_deref().unwrap_or("")].concat(),
        Detail::Network(d) => format!(
            "{} {}{}",
            d.call.syscall,
            d.address
                .as_deref()
                .or(d.unix_path.as_deref())
                .unwrap_or(""),
            d.port.map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Detail::Privilege(d) => d
            .call
            .as_ref()
            .map(|c| c.syscall.to_string())
            .unwrap_or_default(),
        _ => e.kind.to_string(),
    }
}
