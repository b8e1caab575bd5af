//! Learned per-workload baselines: what a workload does during its learning period becomes its
//! profile; afterwards anything outside the profile is an anomaly alert.
pub(crate) mod generalize;
pub(crate) mod store;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use self::generalize::{listen_port, location_covers, network, write_location};
use crate::{
    detect::{Alert, AnomalyInfo, DedupInfo},
    event::{Detail, Event},
};

/// What a profile records, one set per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemKind {
    /// `exe <- parent exe`
    Exec,
    /// Generalised directory written to.
    Write,
    /// Sensitive file read.
    SensitiveRead,
    /// `network:port` (or unix socket path) connected to.
    Connect,
    /// Port listened on.
    Listen,
    /// Privilege-relevant call (`setresuid`, `capset`, `mount`, ...).
    Privilege,
}

impl ItemKind {
    pub(crate) const ALL: [ItemKind; 6] = [
        ItemKind::Exec,
        ItemKind::Write,
        ItemKind::SensitiveRead,
        ItemKind::Connect,
        ItemKind::Listen,
        ItemKind::Privilege,
    ];
    pub(crate) fn name(self) -> &'static str {
        match self {
            ItemKind::Exec => "exec",
            ItemKind::Write => "write",
            ItemKind::SensitiveRead => "sensitive_read",
            ItemKind::Connect => "connect",
            ItemKind::Listen => "listen",
            ItemKind::Privilege => "privilege",
        }
    }
    fn severity(self) -> &'static str {
        match self {
            ItemKind::Exec | ItemKind::Privilege | ItemKind::SensitiveRead => "warning",
            ItemKind::Write | ItemKind::Connect | ItemKind::Listen => "notice",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Learning,
    Enforcing,
}

/// One workload's profile: readable YAML, meant to be reviewed, edited and shipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// The workload: `namespace/Kind/name`, `namespace/container@image`, or `container/<id>`.
    pub(crate) workload: String,
    pub(crate) state: State,
    /// When learning started (first event), RFC 3339.
    pub(crate) learning_started: String,
    /// When the profile switched to enforcing, RFC 3339 (empty while learning).
    #[serde(default)]
    pub(crate) stable_since: String,
    /// Events observed while learning.
    #[serde(default)]
    pub(crate) events_learned: u64,
    /// Learned items per kind.
    #[serde(default)]
    pub(crate) items: BTreeMap<ItemKind, BTreeSet<String>>,
    /// Kinds whose set hit the size bound while learning: they raise no anomalies.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) saturated: BTreeSet<ItemKind>,
    /// New items seen after learning and how often (for promotion after N occurrences).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) candidates: BTreeMap<String, u32>,
}

impl Profile {
    pub(crate) fn size(&self) -> usize {
        self.items.values().map(BTreeSet::len).sum()
    }

    fn knows(&self, kind: ItemKind, item: &str) -> bool {
        let Some(set) = self.items.get(&kind) else {
            return false;
        };
        match kind {
            ItemKind::Write => set.iter().any(|l| location_covers(l, item)),
            _ => set.contains(item),
        }
    }
}

/// Settings of learning and enforcement.
#[derive(Debug, Clone)]
pub(crate) struct BaselineConfig {
    /// Learning lasts this long from a workload's first event...
    pub(crate) learn_for: Duration,
    /// ...or until this many events were seen, if set (whichever comes first).
    pub(crate) learn_events: Option<u64>,
    /// Items per kind at most; beyond, the kind is marked saturated.
    pub(crate) max_items: usize,
    /// After learning, a new item seen this many times joins the profile (0: never).
    pub(crate) promote_after: u32,
    /// Anomaly alerts per workload and kind per minute at most; the rest are counted.
    pub(crate) rate_per_minute: u32,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            learn_for: Duration::from_secs(3600),
            learn_events: None,
            max_items: 512,
            promote_after: 0,
            rate_per_minute: 10,
        }
    }
}

impl Profile {
    /// Adds what a learning workload did; true when the profile changed. A set at its bound
    /// is marked saturated instead (it is not enforced).
    fn learn(&mut self, items: Vec<(ItemKind, String)>, max_items: usize) -> bool {
        self.events_learned += 1;
        let mut changed = false;
        for (kind, item) in items {
            let set = self.items.entry(kind).or_default();
            if set.len() >= max_items && !set.contains(&item) {
                self.saturated.insert(kind);
            } else if set.insert(item) {
                changed = true;
            }
        }
        changed
    }

    /// The items an enforced profile does not know, each seen for the first time (repeats
    /// only count towards promotion after `promote_after` sightings); and whether the profile
    /// changed.
    fn unknown(
        &mut self,
        items: Vec<(ItemKind, String)>,
        promote_after: u32,
    ) -> (Vec<(ItemKind, String)>, bool) {
        let mut new = Vec::new();
        let mut changed = false;
        for (kind, item) in items {
            if self.saturated.contains(&kind) || self.knows(kind, &item) {
                continue;
            }
            let seen = self.candidates.entry(item.clone()).or_insert(0);
            *seen += 1;
            let first = *seen == 1;
            if promote_after > 0 && *seen >= promote_after {
                self.candidates.remove(&item);
                self.items.entry(kind).or_default().insert(item.clone());
            }
            changed = true;
            if first {
                new.push((kind, item));
            }
        }
        (new, changed)
    }
}

/// The alert for an item outside `key`'s profile.
fn anomaly_alert(e: &Event, kind: ItemKind, item: String, key: &str, stable_since: &str) -> Alert {
    Alert {
        id: String::new(),
        drops: None,
        source: "anomaly",
        rule: format!("anomaly.{}", kind.name()),
        severity: kind.severity(),
        tags: vec!["anomaly".into(), kind.name().into()],
        output: format!(
            "New {} for workload {key}: {item} (profile stable since {stable_since})",
            kind.name().replace('_', " "),
        ),
        description: "Behaviour outside the workload's learned profile.".into(),
        dedup: DedupInfo {
            count: 1,
            first_seen: e.time.clone(),
            last_seen: e.time.clone(),
        },
        sequence: None,
        anomaly: Some(AnomalyInfo {
            kind: kind.name(),
            item,
            profile: key.to_string(),
            stable_since: stable_since.to_string(),
        }),
        event: e.clone(),
    }
}

/// Sensitive files whose reads a profile records (reads elsewhere are too many to profile).
pub(crate) const SENSITIVE_PREFIXES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/root/.ssh/",
    "/var/run/secrets/",
    "/run/secrets/",
    "/etc/kubernetes/",
    "/var/lib/kubelet/",
];

/// Container runtime programs that start a container's processes: a command run in a container
/// (`kubectl exec`, CRI ExecSync) has one of them as its parent, which one depending on a race
/// between runc and the shim, so they are one parent to a profile.
const RUNTIME_PARENTS: [&str; 6] = [
    "runc",
    "crun",
    "conmon",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "containerd-shim-runc-v1",
];

/// `program <- parent` of an exec. A re-execution through /proc/self/exe (busybox's standalone
/// shell running an applet) is the binary and the applet, `/bin/busybox[wget]`.
fn exec_item(filename: &str, args: &[String], exe: &str, parent: &str) -> String {
    let program = if filename == crate::process::SELF_EXE {
        let applet = crate::event::program_name(filename, args);
        format!("{exe}[{applet}]")
    } else {
        filename.to_string()
    };
    let base = parent.rsplit('/').next().unwrap_or(parent);
    let parent = if RUNTIME_PARENTS.contains(&base) {
        "<container runtime>"
    } else {
        parent
    };
    format!("{program} <- {parent}")
}

/// The profile items an event represents.
pub(crate) fn items_of(e: &Event) -> Vec<(ItemKind, String)> {
    let mut out = Vec::new();
    match &e.detail {
        Detail::Exec(d) => {
            let parent = e.process.ancestors.first().map(|a| &*a.exe).unwrap_or("?");
            out.push((
                ItemKind::Exec,
                exec_item(&d.filename, &d.args, &e.process.exe, parent),
            ));
        }
        Detail::File(d) => {
            let Some(path) = d.path.as_deref() else {
                return out;
            };
            let writes = e.kind == "open"
                && d.flag_names.iter().any(|f| {
                    matches!(
                        *f,
                        "O_WRONLY" | "O_RDWR" | "O_CREAT" | "O_TRUNC" | "O_APPEND"
                    )
                });
            if d.call.result < 0 {
                return out;
            }
            if writes
                || matches!(
                    e.kind,
                    "unlink" | "rename" | "mkdir" | "chmod" | "chown" | "link" | "symlink"
                )
            {
                out.push((
                    ItemKind::Write,
                    write_location(
                        d.target
                            .as_deref()
                            .filter(|_| e.kind != "symlink")
                            .unwrap_or(path),
                    ),
                ));
            } else if e.kind == "open" && SENSITIVE_PREFIXES.iter().any(|p| path.starts_with(p)) {
                out.push((ItemKind::SensitiveRead, path.to_string()));
            }
        }
        Detail::Network(d) if e.kind == "connect" => {
            let item = match (&d.address, d.port, &d.unix_path) {
                (Some(a), Some(p), _) => format!("{}:{p}", network(a)),
                (_, _, Some(u)) => format!("unix:{}", generalize::generalize_dir(u)),
                _ => return out,
            };
            out.push((ItemKind::Connect, item));
        }
        Detail::Tcp(t) if t.new_state == "LISTEN" => {
            out.push((ItemKind::Listen, listen_port(t.sport)))
        }
        Detail::Privilege(d) if !NOT_LEARNED.contains(&e.kind) => {
            if let Some(c) = &d.call {
                let target = match e.kind {
                    "setid" if e.process.uid == 0 || e.process.euid == 0 => " to root",
                    _ => "",
                };
                out.push((ItemKind::Privilege, format!("{}{target}", c.syscall)));
            }
        }
        _ => {}
    }
    out
}

/// Privilege-family kinds the baselines leave to the rules: signals and prctl are part of
/// ordinary process management (shells, supervisors, thread naming), too common to be news.
pub(crate) const NOT_LEARNED: [&str; 2] = ["kill", "prctl"];

struct Limiter {
    window_start: Instant,
    sent: u32,
}

/// All profiles of the node and the enforcement state.
pub(crate) struct Baselines {
    pub(crate) cfg: BaselineConfig,
    pub(crate) profiles: HashMap<String, Profile>,
    /// When each profile started learning, for the duration check (monotonic).
    started: HashMap<String, Instant>,
    /// Profiles changed since the last save.
    pub(crate) dirty: BTreeSet<String>,
    limits: HashMap<(String, ItemKind), Limiter>,
    /// Anomalies not alerted because of the rate limit.
    pub(crate) suppressed: u64,
    /// Anomalies raised, by kind.
    pub(crate) anomalies: BTreeMap<&'static str, u64>,
}

impl Baselines {
    pub(crate) fn new(cfg: BaselineConfig, profiles: Vec<Profile>) -> Baselines {
        let now = Instant::now();
        Baselines {
            cfg,
            started: profiles.iter().map(|p| (p.workload.clone(), now)).collect(),
            profiles: profiles
                .into_iter()
                .map(|p| (p.workload.clone(), p))
                .collect(),
            dirty: BTreeSet::new(),
            limits: HashMap::new(),
            suppressed: 0,
            anomalies: BTreeMap::new(),
        }
    }

    /// Replaces (or adds) a profile, e.g. after an import.
    pub(crate) fn put(&mut self, p: Profile) {
        self.started.insert(p.workload.clone(), Instant::now());
        self.profiles.insert(p.workload.clone(), p);
    }

    /// Learns from or checks one event; returns the anomaly alerts to deliver. Only events a
    /// profile can record count (learning starts and `learn_events` counts from them), so what
    /// a baseline learns does not depend on which other events the kernel was asked to send.
    pub(crate) fn observe(&mut self, e: &Event, now: Instant) -> Vec<Alert> {
        let Some(key) = e.attribution.workload_key() else {
            return Vec::new();
        };
        let items = items_of(e);
        if items.is_empty() {
            return Vec::new();
        }
        let started = *self.started.entry(key.clone()).or_insert(now);
        let profile = self.profiles.entry(key.clone()).or_insert_with(|| Profile {
            workload: key.clone(),
            state: State::Learning,
            learning_started: e.time.clone(),
            stable_since: String::new(),
            events_learned: 0,
            items: BTreeMap::new(),
            saturated: BTreeSet::new(),
            candidates: BTreeMap::new(),
        });
        if profile.state == State::Learning {
            let done = now.duration_since(started) >= self.cfg.learn_for
                || self
                    .cfg
                    .learn_events
                    .is_some_and(|n| profile.events_learned >= n);
            if !done {
                if profile.learn(items, self.cfg.max_items) {
                    self.dirty.insert(key);
                }
                return Vec::new();
            }
            profile.state = State::Enforcing;
            profile.stable_since = e.time.clone();
            self.dirty.insert(key.clone());
        }
        let (new, changed) = profile.unknown(items, self.cfg.promote_after);
        if changed {
            self.dirty.insert(key.clone());
        }
        let stable_since = profile.stable_since.clone();
        new.into_iter()
            .filter(|(kind, _)| self.allow(&key, *kind, now))
            .map(|(kind, item)| anomaly_alert(e, kind, item, &key, &stable_since))
            .collect()
    }

    /// Whether another alert of `kind` for `key` fits this minute's rate (counted if so).
    fn allow(&mut self, key: &str, kind: ItemKind, now: Instant) -> bool {
        let lim = self
            .limits
            .entry((key.to_string(), kind))
            .or_insert(Limiter {
                window_start: now,
                sent: 0,
            });
        if now.duration_since(lim.window_start) >= Duration::from_secs(60) {
            *lim = Limiter {
                window_start: now,
                sent: 0,
            };
        }
        if lim.sent >= self.cfg.rate_per_minute {
            self.suppressed += 1;
            return false;
        }
        lim.sent += 1;
        *self.anomalies.entry(kind.name()).or_default() += 1;
        true
    }

    /// Forgets a profile: the workload learns anew from its next event.
    pub(crate) fn reset(&mut self, workload: &str) {
        self.profiles.remove(workload);
        self.started.remove(workload);
        self.dirty.remove(workload);
    }

    /// (learning, enforcing) workload counts.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let learning = self
            .profiles
            .values()
            .filter(|p| p.state == State::Learning)
            .count();
        (learning, self.profiles.len() - learning)
    }
}

#[cfg(test)]
mod tests;

/// Baselines with their store, as the agent runs them.
pub(crate) struct BaselineStage {
    pub(crate) baselines: Baselines,
    pub(crate) store: store::Store,
    last_save: Instant,
}

/// How often changed profiles are written.
const SAVE_EVERY: Duration = Duration::from_secs(5);

impl BaselineStage {
    /// Opens the store, loads its profiles (reporting, not failing on, unreadable ones) and
    /// applies queued imports and resets.
    pub(crate) fn open(
        dir: &std::path::Path,
        cfg: BaselineConfig,
    ) -> Result<BaselineStage, store::StoreError> {
        let store = store::Store::open(dir)?;
        let (profiles, errors) = store.load_all();
        for e in &errors {
            tracing::warn!(error = %e, "baseline profile set aside");
        }
        tracing::info!(dir = %dir.display(), profiles = profiles.len(), "baselines loaded");
        let mut stage = BaselineStage {
            baselines: Baselines::new(cfg, profiles),
            store,
            last_save: Instant::now(),
        };
        stage.apply_incoming();
        Ok(stage)
    }

    /// Applies imports and resets queued by `monitor baseline import|reset`.
    pub(crate) fn apply_incoming(&mut self) {
        let (changes, errors) = self.store.take_incoming();
        for e in &errors {
            tracing::warn!(error = %e, "queued baseline import rejected");
        }
        for c in changes {
            match c {
                store::Incoming::Import(p) => {
                    tracing::info!(workload = %p.workload, items = p.size(), "baseline imported");
                    self.baselines.dirty.insert(p.workload.clone());
                    self.baselines.put(p);
                }
                store::Incoming::Reset(w) => {
                    tracing::info!(workload = %w, "baseline reset");
                    self.baselines.reset(&w);
                    if let Err(e) = self.store.remove(&w) {
                        tracing::debug!(error = %e, "reset of a profile never saved");
                    }
                }
            }
        }
    }

    /// Writes changed profiles (every few seconds, or now with `force`).
    pub(crate) fn save(&mut self, force: bool) {
        if !force && self.last_save.elapsed() < SAVE_EVERY {
            return;
        }
        self.last_save = Instant::now();
        for w in std::mem::take(&mut self.baselines.dirty) {
            if let Some(p) = self.baselines.profiles.get(&w)
                && let Err(e) = self.store.save(p)
            {
                tracing::warn!(error = %e, "saving baseline profile");
                self.baselines.dirty.insert(w);
            }
        }
    }

    /// Publishes profile gauges and anomaly counters.
    pub(crate) fn export_metrics(&self, m: &crate::telemetry::metrics::Metrics) {
        let (learning, enforcing) = self.baselines.counts();
        m.baseline_workloads
            .with_label_values(&["learning"])
            .set(learning as i64);
        m.baseline_workloads
            .with_label_values(&["enforcing"])
            .set(enforcing as i64);
        for k in ItemKind::ALL {
            let n: usize = self
                .baselines
                .profiles
                .values()
                .map(|p| p.items.get(&k).map_or(0, BTreeSet::len))
                .sum();
            m.baseline_items
                .with_label_values(&[k.name()])
                .set(n as i64);
            let a = self.baselines.anomalies.get(k.name()).copied().unwrap_or(0);
            let c = m.baseline_anomalies.with_label_values(&[k.name()]);
            if a > c.get() {
                c.inc_by(a - c.get());
            }
        }
    }
}
