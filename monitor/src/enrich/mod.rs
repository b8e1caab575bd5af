//! Container and pod attribution: cgroup -> container id (from the cgroup path) -> container,
//! image and pod metadata (from the runtime over CRI), cached, never blocking the pipeline.
//!
//! The [`Attributor`] answers synchronously from its cache; a miss sends the container id to the
//! [`resolver`] task and the event is held by the caller until the answer comes back (or a hold
//! deadline passes, when it goes out marked `pending`).
pub mod cgroup;
pub mod cri;

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::{
    cgroup::{ContainerRef, Runtime},
    cri::{CriClient, CriError},
};
use crate::metrics::Metrics;

/// Container facts from the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerMeta {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    /// True for a pod's sandbox (pause) container.
    pub sandbox: bool,
    /// Runtime name reported over CRI.
    #[serde(skip)]
    pub runtime: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub pod: Option<Arc<PodMeta>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<Workload>,
}

/// The controller that owns a pod, inferred from the labels the controllers set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: &'static str,
    pub name: String,
}

/// Infers the owning workload of a pod from its name and labels (no API server needed).
pub fn workload_of(
    pod: &str,
    labels: &BTreeMap<String, String>,
    _annotations: &BTreeMap<String, String>,
) -> Option<Workload> {
    let label = |k: &str| labels.get(k).map(String::as_str);
    let strip_last = |s: &str| s.rsplit_once('-').map(|(a, _)| a.to_string());
    if let Some(job) = label("batch.kubernetes.io/job-name").or(label("job-name")) {
        return Some(Workload {
            kind: "Job",
            name: job.to_string(),
        });
    }
    if label("statefulset.kubernetes.io/pod-name").is_some() {
        return strip_last(pod).map(|name| Workload {
            kind: "StatefulSet",
            name,
        });
    }
    if let Some(hash) = label("pod-template-hash") {
        let suffix = format!("-{hash}-");
        return pod.rfind(&suffix).map(|i| Workload {
            kind: "Deployment",
            name: pod[..i].to_string(),
        });
    }
    if label("controller-revision-hash").is_some() && label("pod-template-generation").is_some() {
        return strip_last(pod).map(|name| Workload {
            kind: "DaemonSet",
            name,
        });
    }
    None
}

/// How complete an event's container/pod metadata is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Complete,
    Pending,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataStatus {
    pub status: Status,
    /// `host`, `container`, or `unknown` (process and cgroup gone before they were read).
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The container part of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerView {
    pub id: String,
    pub runtime: String,
    #[serde(flatten)]
    pub meta: Option<Arc<ContainerMeta>>,
}

/// What an event says about where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<PodMeta>>,
    pub metadata: MetadataStatus,
}

impl Attribution {
    /// The process and its cgroup were gone before they could be read: host or container is
    /// unknown, and the event says so instead of guessing.
    pub fn vanished() -> Attribution {
        Attribution {
            container: None,
            pod: None,
            metadata: MetadataStatus {
                status: Status::Missing,
                scope: "unknown",
                reason: Some(
                    "the process exited and its cgroup was removed before they could be read"
                        .into(),
                ),
            },
        }
    }

    pub fn host() -> Attribution {
        Attribution {
            container: None,
            pod: None,
            metadata: MetadataStatus {
                status: Status::Complete,
                scope: "host",
                reason: None,
            },
        }
    }
}

/// Result of a cache lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Final for now: host, complete, or missing.
    Ready(Attribution),
    /// Being resolved: hold the event until [`Attributor::resolved`] names this id.
    Pending(String),
}

enum Entry {
    Pending {
        runtime: Runtime,
        since: Instant,
    },
    Ready {
        runtime: Runtime,
        meta: Arc<ContainerMeta>,
        last_seen: Instant,
    },
    Failed {
        runtime: Runtime,
        reason: String,
        last_seen: Instant,
    },
}

/// How the containers of a cgroup2 id are found.
#[derive(Debug, Clone)]
enum CgroupInfo {
    Known(Option<ContainerRef>),
    /// The runtime uses cgroup v1 only: the cgroup2 id is shared, ask per process.
    PerProcess,
    /// The process had exited and its cgroup was removed before either could be read: whether
    /// it ran in a container cannot be told (never guessed as `host`).
    Vanished,
}

/// cgroup2 id of the root cgroup: host processes outside any slice.
const ROOT_CGROUP_ID: u64 = 1;

/// Directories a walk of the cgroup2 tree visits at most, and how deep it goes.
const MAX_WALK: usize = 100_000;
const MAX_WALK_DEPTH: u32 = 10;

/// Visits the cgroup2 directories below `root` (bounded), calling `visit(inode, path below the
/// root)` until it returns false. Returns false if the bound stopped the walk.
fn walk_cgroups(root: &Path, mut visit: impl FnMut(u64, &str) -> bool) -> bool {
    let mut stack = vec![(root.to_path_buf(), 0u32)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        seen += 1;
        if seen > MAX_WALK {
            return false;
        }
        if let (Ok(meta), Ok(rel)) = (std::fs::metadata(&dir), dir.strip_prefix(root))
            && !visit(meta.ino(), &format!("/{}", rel.display()))
        {
            return true;
        }
        if depth < MAX_WALK_DEPTH
            && let Ok(rd) = std::fs::read_dir(&dir)
        {
            stack.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| (e.path(), depth + 1)),
            );
        }
    }
    true
}

/// Container cgroups remembered from their creation (or the start-up scan), at most this many.
const MAX_CREATED: usize = 65_536;

/// A created container cgroup stays known this long after its removal, so that events still
/// queued when it was removed are attributed.
const GONE_GRACE: Duration = Duration::from_secs(30);

/// A container cgroup2 directory, known from `cgroup_mkdir` or the start-up scan: what the
/// agent needs to attribute the tasks of a container that is gone before it looks.
#[derive(Debug, Clone)]
struct Created {
    container: ContainerRef,
    /// When it was removed (`cgroup_rmdir`).
    gone_since: Option<Instant>,
}

/// How a cgroup id resolves.
enum Resolved {
    Ref(Option<ContainerRef>),
    Vanished,
}

/// Settings of attribution.
#[derive(Debug, Clone)]
pub struct AttributorConfig {
    /// Where /proc is (the host's).
    pub proc_root: PathBuf,
    /// Where cgroup2 is mounted (searched by inode when a process is already gone).
    pub cgroup2_root: PathBuf,
    /// Entries not seen for this long are forgotten (their containers have ended).
    pub ttl: Duration,
    /// A failed lookup is retried after this long.
    pub retry_after: Duration,
}

impl Default for AttributorConfig {
    fn default() -> Self {
        let cgroup2_root = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/unified")
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        AttributorConfig {
            proc_root: PathBuf::from("/proc"),
            cgroup2_root,
            ttl: Duration::from_secs(600),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// The attribution cache, owned by the enrichment stage.
pub struct Attributor {
    cfg: AttributorConfig,
    cgroups: HashMap<u64, CgroupInfo>,
    created: HashMap<u64, Created>,
    per_pid: HashMap<u32, Option<ContainerRef>>,
    containers: HashMap<String, Entry>,
    requests: mpsc::Sender<String>,
    metrics: Metrics,
}

impl Attributor {
    pub fn new(
        cfg: AttributorConfig,
        requests: mpsc::Sender<String>,
        metrics: Metrics,
    ) -> Attributor {
        Attributor {
            cfg,
            cgroups: HashMap::new(),
            created: HashMap::new(),
            per_pid: HashMap::new(),
            containers: HashMap::new(),
            requests,
            metrics,
        }
    }

    fn read_proc_cgroup(&self, pid: u32) -> Option<Vec<cgroup::ProcCgroup>> {
        std::fs::read_to_string(self.cfg.proc_root.join(pid.to_string()).join("cgroup"))
            .ok()
            .map(|t| cgroup::parse_proc_cgroup(&t))
    }

    /// Finds the cgroup2 directory whose inode is `id` (bounded walk), as a path below the root.
    fn path_of_cgroup_id(&self, id: u64) -> Option<String> {
        let mut found = None;
        walk_cgroups(&self.cfg.cgroup2_root, |ino, path| {
            if ino == id {
                found = Some(path.to_string());
                return false;
            }
            true
        });
        found
    }

    /// A cgroup2 directory was created (`path` below the cgroup2 root). Container cgroups are
    /// remembered until a while after their removal; host ones are not kept.
    pub fn cgroup_created(&mut self, id: u64, path: &str) {
        if let Some(container) = cgroup::parse(path) {
            self.remember_created(id, container);
        }
    }

    fn remember_created(&mut self, id: u64, container: ContainerRef) {
        if self.created.len() >= MAX_CREATED && !self.created.contains_key(&id) {
            self.metrics
                .enrich_failures
                .with_label_values(&["created_cgroups_full"])
                .inc();
            return;
        }
        self.created.insert(
            id,
            Created {
                container,
                gone_since: None,
            },
        );
    }

    /// Records every container cgroup that exists now (bounded walk of the cgroup2 tree), so
    /// that containers started before the agent are covered like the ones it sees created.
    /// Returns how many were found.
    pub fn scan_cgroups(&mut self) -> usize {
        let mut found = Vec::new();
        let complete = walk_cgroups(&self.cfg.cgroup2_root, |ino, path| {
            if let Some(container) = cgroup::parse(path) {
                found.push((ino, container));
            }
            true
        });
        if !complete {
            warn!(root = %self.cfg.cgroup2_root.display(), "cgroup scan stopped after {MAX_WALK} directories");
        }
        let n = found.len();
        for (ino, container) in found {
            self.remember_created(ino, container);
        }
        n
    }

    /// A cgroup2 directory was removed: forget it after [`GONE_GRACE`] (events of its tasks may
    /// still be queued behind this record).
    pub fn cgroup_removed(&mut self, id: u64, now: Instant) {
        if let Some(c) = self.created.get_mut(&id) {
            c.gone_since.get_or_insert(now);
        }
    }

    /// Container cgroups currently remembered from creation or the scan.
    pub fn created_cgroups(&self) -> usize {
        self.created.len()
    }

    /// The container (if any) of a task, from its cgroup id and pid.
    pub fn container_ref(&mut self, cgroup_id: u64, pid: u32) -> Option<ContainerRef> {
        match self.resolve(cgroup_id, pid) {
            Resolved::Ref(r) => r,
            Resolved::Vanished => None,
        }
    }

    fn resolve(&mut self, cgroup_id: u64, pid: u32) -> Resolved {
        match self.cgroups.get(&cgroup_id) {
            Some(CgroupInfo::Known(r)) => return Resolved::Ref(r.clone()),
            Some(CgroupInfo::Vanished) => return Resolved::Vanished,
            Some(CgroupInfo::PerProcess) => {
                if let Some(r) = self.per_pid.get(&pid) {
                    return Resolved::Ref(r.clone());
                }
                let r = self
                    .read_proc_cgroup(pid)
                    .and_then(|l| cgroup::container_of_process(&l));
                self.per_pid.insert(pid, r.clone());
                return Resolved::Ref(r);
            }
            None => {}
        }
        // A container cgroup seen at creation: the answer, whether or not the task and the
        // directory still exist.
        if let Some(c) = self.created.get(&cgroup_id) {
            let info = CgroupInfo::Known(Some(c.container.clone()));
            self.cgroups.insert(cgroup_id, info);
            return self.resolve(cgroup_id, pid);
        }
        let info = match self.read_proc_cgroup(pid) {
            Some(lines) => {
                let v2 = lines
                    .iter()
                    .find(|l| l.hierarchy == 0)
                    .and_then(|l| cgroup::parse(&l.path));
                match v2 {
                    Some(r) => CgroupInfo::Known(Some(r)),
                    None if cgroup::container_of_process(&lines).is_some() => {
                        CgroupInfo::PerProcess
                    }
                    None => CgroupInfo::Known(None),
                }
            }
            // The process is gone already: find its cgroup by id instead.
            None => match self.path_of_cgroup_id(cgroup_id) {
                Some(p) => CgroupInfo::Known(cgroup::parse(&p)),
                None if cgroup_id == ROOT_CGROUP_ID => CgroupInfo::Known(None),
                None => {
                    self.metrics
                        .enrich_failures
                        .with_label_values(&["cgroup_vanished"])
                        .inc();
                    CgroupInfo::Vanished
                }
            },
        };
        self.cgroups.insert(cgroup_id, info);
        self.resolve(cgroup_id, pid)
    }

    /// A process exited: forget its per-process entry.
    pub fn forget_pid(&mut self, pid: u32) {
        self.per_pid.remove(&pid);
    }

    /// Attribution of an event, from the cache; a miss starts a lookup.
    pub fn lookup(&mut self, cgroup_id: u64, pid: u32, now: Instant) -> Lookup {
        let r = match self.resolve(cgroup_id, pid) {
            Resolved::Ref(Some(r)) => r,
            Resolved::Ref(None) => return Lookup::Ready(Attribution::host()),
            Resolved::Vanished => return Lookup::Ready(Attribution::vanished()),
        };
        let retry_after = self.cfg.retry_after;
        let stale_failure = matches!(self.containers.get(&r.id), Some(Entry::Failed { last_seen, .. }) if now.duration_since(*last_seen) >= retry_after);
        match self.containers.get_mut(&r.id) {
            Some(Entry::Ready {
                meta,
                last_seen,
                runtime,
            }) => {
                *last_seen = now;
                self.metrics.enrich.with_label_values(&["hit"]).inc();
                return Lookup::Ready(ready(&r.id, *runtime, meta));
            }
            Some(Entry::Pending { .. }) => return Lookup::Pending(r.id),
            Some(Entry::Failed {
                reason, runtime, ..
            }) if !stale_failure => {
                return Lookup::Ready(missing(&r.id, *runtime, reason.clone()));
            }
            _ => {}
        }
        self.metrics.enrich.with_label_values(&["miss"]).inc();
        if r.runtime == Runtime::Podman || r.runtime == Runtime::Docker && r.pod_uid.is_none() {
            // Not CRI-managed: there is no CRI metadata to ask for.
            let reason = format!(
                "{} container outside Kubernetes: no CRI metadata",
                r.runtime.name()
            );
            self.containers.insert(
                r.id.clone(),
                Entry::Failed {
                    runtime: r.runtime,
                    reason: reason.clone(),
                    last_seen: now,
                },
            );
            return Lookup::Ready(missing(&r.id, r.runtime, reason));
        }
        match self.requests.try_send(r.id.clone()) {
            Ok(()) => {
                self.containers.insert(
                    r.id.clone(),
                    Entry::Pending {
                        runtime: r.runtime,
                        since: now,
                    },
                );
                Lookup::Pending(r.id)
            }
            Err(_) => {
                self.metrics
                    .enrich_failures
                    .with_label_values(&["queue_full"])
                    .inc();
                Lookup::Ready(missing(
                    &r.id,
                    r.runtime,
                    "metadata lookup queue full".into(),
                ))
            }
        }
    }

    /// Records the answer for a container id.
    pub fn resolved(&mut self, id: &str, result: Result<ContainerMeta, CriError>, now: Instant) {
        let runtime = match self.containers.get(id) {
            Some(
                Entry::Pending { runtime, .. }
                | Entry::Ready { runtime, .. }
                | Entry::Failed { runtime, .. },
            ) => *runtime,
            None => Runtime::Unknown,
        };
        let entry = match result {
            Ok(meta) => Entry::Ready {
                runtime,
                meta: Arc::new(meta),
                last_seen: now,
            },
            Err(e) => {
                self.metrics
                    .enrich_failures
                    .with_label_values(&[e.reason()])
                    .inc();
                Entry::Failed {
                    runtime,
                    reason: e.to_string(),
                    last_seen: now,
                }
            }
        };
        self.containers.insert(id.to_string(), entry);
    }

    /// Current attribution of a container id (after [`Attributor::resolved`], or at a hold
    /// deadline, when it is still pending).
    pub fn current(&self, id: &str) -> Attribution {
        match self.containers.get(id) {
            Some(Entry::Ready { runtime, meta, .. }) => ready(id, *runtime, meta),
            Some(Entry::Failed {
                runtime, reason, ..
            }) => missing(id, *runtime, reason.clone()),
            Some(Entry::Pending { runtime, since }) => unresolved(
                id,
                *runtime,
                Status::Pending,
                format!(
                    "runtime lookup in progress for {} ms",
                    since.elapsed().as_millis()
                ),
            ),
            None => missing(id, Runtime::Unknown, "unknown container".into()),
        }
    }

    /// Forgets containers not seen for the TTL, and per-cgroup answers with them.
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.cfg.ttl;
        self.containers.retain(|_, e| match e {
            Entry::Ready { last_seen, .. } | Entry::Failed { last_seen, .. } => {
                now.duration_since(*last_seen) < ttl
            }
            Entry::Pending { since, .. } => now.duration_since(*since) < ttl,
        });
        let live: std::collections::HashSet<&String> = self.containers.keys().collect();
        self.cgroups.retain(|_, c| match c {
            CgroupInfo::Known(Some(r)) => live.contains(&r.id),
            _ => true,
        });
        self.created.retain(|_, c| {
            c.gone_since
                .is_none_or(|since| now.duration_since(since) < GONE_GRACE)
        });
    }

    pub fn cached_containers(&self) -> usize {
        self.containers.len()
    }
}

fn ready(id: &str, runtime: Runtime, meta: &Arc<ContainerMeta>) -> Attribution {
    let pod = meta.pod.clone();
    let (status, reason) = if pod.is_some() || meta.sandbox {
        (Status::Complete, None)
    } else {
        (
            Status::Missing,
            Some("the runtime knows the container but not its pod sandbox".to_string()),
        )
    };
    Attribution {
        container: Some(ContainerView {
            id: id.to_string(),
            runtime: if meta.runtime.is_empty() {
                runtime.name().into()
            } else {
                meta.runtime.clone()
            },
            meta: Some(meta.clone()),
        }),
        pod,
        metadata: MetadataStatus {
            status,
            scope: "container",
            reason,
        },
    }
}

fn missing(id: &str, runtime: Runtime, reason: String) -> Attribution {
    unresolved(id, runtime, Status::Missing, reason)
}

/// A container whose metadata is not (yet) known: its id and runtime, and why.
fn unresolved(id: &str, runtime: Runtime, status: Status, reason: String) -> Attribution {
    Attribution {
        container: Some(ContainerView {
            id: id.to_string(),
            runtime: runtime.name().into(),
            meta: None,
        }),
        pod: None,
        metadata: MetadataStatus {
            status,
            scope: "container",
            reason: Some(reason),
        },
    }
}

/// Retries of a lookup while the runtime does not know the container yet (it is being created).
const NOT_FOUND_RETRIES: u32 = 20;
const NOT_FOUND_DELAY: Duration = Duration::from_millis(100);
/// Minimum time between two connection attempts to a socket that is down. Short next to the
/// metadata hold (1 s by default), so a lookup that waits for it still answers in time.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Shared connection state of the resolver.
struct Conn {
    client: Option<CriClient>,
    last_attempt: Option<Instant>,
    /// Why the last connection attempt failed: shared with the lookups that waited out the
    /// backoff behind it.
    last_error: Option<CriError>,
    /// A warning was logged for the current outage.
    warned: bool,
}

/// Answers container ids sent on `requests` with CRI metadata on `results`. Each lookup runs
/// concurrently; the connection is made on demand and re-made after failures, at most once per
/// [`RECONNECT_BACKOFF`], so a runtime socket that goes away and comes back is picked up again.
pub async fn resolver(
    socket: Option<PathBuf>,
    mut requests: mpsc::Receiver<String>,
    results: mpsc::Sender<(String, Result<ContainerMeta, CriError>)>,
) {
    let conn = Arc::new(tokio::sync::Mutex::new(Conn {
        client: None,
        last_attempt: None,
        last_error: None,
        warned: false,
    }));
    while let Some(id) = requests.recv().await {
        let conn = conn.clone();
        let results = results.clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut attempt = 0;
            let result = loop {
                let r = lookup_once(&conn, socket.as_deref(), &id).await;
                match r {
                    Err(CriError::NotFound(_)) if attempt < NOT_FOUND_RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(NOT_FOUND_DELAY).await;
                    }
                    other => break other,
                }
            };
            let _ = results.send((id, result)).await;
        });
    }
}

async fn lookup_once(
    conn: &tokio::sync::Mutex<Conn>,
    socket: Option<&Path>,
    id: &str,
) -> Result<ContainerMeta, CriError> {
    let mut c = conn.lock().await;
    if c.client.is_none()
        && let Some(at) = c.last_attempt
    {
        // Within the backoff after a failed attempt: wait it out (the event is held meanwhile,
        // so a runtime that just came back is used at once), and if another lookup tried in
        // the meantime and failed, share its answer. So no lookup waits more than one backoff
        // and one attempt, well inside the hold, and a burst of lookups during an outage makes
        // one connection attempt per backoff period.
        let wait = RECONNECT_BACKOFF.saturating_sub(at.elapsed());
        if !wait.is_zero() {
            drop(c);
            tokio::time::sleep(wait).await;
            c = conn.lock().await;
            if c.client.is_none()
                && c.last_attempt != Some(at)
                && let Some(e) = &c.last_error
            {
                return Err(e.clone());
            }
        }
    }
    if c.client.is_none() {
        c.last_attempt = Some(Instant::now());
        let connected = match cri::pick_socket(socket) {
            Ok(path) => CriClient::connect(&path).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok(client) => {
                if c.warned {
                    info!(socket = %client.path().display(), "CRI socket reachable again; container metadata resumes");
                } else {
                    info!(socket = %client.path().display(), "connected to the container runtime (CRI)");
                }
                c.warned = false;
                c.last_error = None;
                c.client = Some(client);
            }
            Err(e) => {
                if !c.warned {
                    warn!(error = %e, "container runtime unreachable: container events will carry `missing` metadata until it returns");
                    c.warned = true;
                }
                c.last_error = Some(e.clone());
                return Err(e);
            }
        }
    }
    let Some(client) = c.client.as_mut() else {
        return Err(CriError::NoSocket("not connected".into()));
    };
    let path = client.path().display().to_string();
    // Clone the client (cheap: a channel handle) so that lookups run concurrently.
    let mut client = CriClient::clone_handle(client);
    drop(c);
    let r = client.lookup(id).await;
    if let Err(CriError::Unavailable { reason, .. }) = &r {
        // The socket went away mid-call: reconnect next time.
        let mut c = conn.lock().await;
        if !c.warned {
            warn!(socket = %path, error = %reason, "CRI call failed; reconnecting");
            c.warned = true;
        }
        c.client = None;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn workloads_from_controller_labels() {
        let none = BTreeMap::new();
        // (pod name, labels, expected (kind, name))
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(&'a str, &'a str)>,
        );
        let cases: &[Case<'_>] = &[
            (
                "web-7d4b9c8f5d-x2x9q",
                &[("pod-template-hash", "7d4b9c8f5d")],
                Some(("Deployment", "web")),
            ),
            (
                "db-2",
                &[("statefulset.kubernetes.io/pod-name", "db-2")],
                Some(("StatefulSet", "db")),
            ),
            (
                "agent-abcde",
                &[
                    ("controller-revision-hash", "5f"),
                    ("pod-template-generation", "1"),
                ],
                Some(("DaemonSet", "agent")),
            ),
            (
                "backup-28345-q",
                &[("batch.kubernetes.io/job-name", "backup-28345")],
                Some(("Job", "backup-28345")),
            ),
            ("bare", &[], None),
        ];
        for (pod, kv, want) in cases {
            let got = workload_of(pod, &labels(kv), &none);
            assert_eq!(
                got,
                want.map(|(kind, name)| Workload {
                    kind,
                    name: name.into()
                }),
                "{pod}"
            );
        }
    }

    /// A /proc and cgroup2 tree of our own, so the cache logic runs without a runtime.
    fn fixture() -> (tempdir::Dir, AttributorConfig) {
        let d = tempdir::Dir::new();
        let write = |pid: u32, text: &str| {
            let p = d.0.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(p.join("cgroup"), text).expect("write");
        };
        write(1, "0::/init.scope\n");
        write(
            10,
            &format!("0::/kubepods/besteffort/pod5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a/{ID}\n"),
        );
        write(11, &format!("0::/libpod_parent/libpod-{ID}\n"));
        let cg = d.0.join("cg");
        std::fs::create_dir_all(cg.join("kubepods/besteffort/podX").join(ID)).expect("mkdir cg");
        let cfg = AttributorConfig {
            proc_root: d.0.join("proc"),
            cgroup2_root: cg,
            ttl: Duration::from_secs(60),
            retry_after: Duration::from_secs(5),
        };
        (d, cfg)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("monitor-attr-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).expect("tempdir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn host_miss_pending_resolved_and_expiry() {
        let (_d, cfg) = fixture();
        let (tx, mut rx) = mpsc::channel(8);
        let metrics = Metrics::new();
        let mut a = Attributor::new(cfg, tx, metrics.clone());
        let t0 = Instant::now();
        assert_eq!(a.lookup(1, 1, t0), Lookup::Ready(Attribution::host()));
        // First event of the container: a miss, one request, pending.
        assert_eq!(a.lookup(500, 10, t0), Lookup::Pending(ID.into()));
        assert_eq!(rx.try_recv().expect("request"), ID);
        assert_eq!(
            a.lookup(500, 10, t0),
            Lookup::Pending(ID.into()),
            "no second request while pending"
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(a.current(ID).metadata.status, Status::Pending);
        let meta = ContainerMeta {
            id: ID.into(),
            name: "app".into(),
            image: "busybox:latest".into(),
            pod: Some(Arc::new(PodMeta {
                name: "p".into(),
                namespace: "ns".into(),
                uid: "u".into(),
                ..PodMeta::default()
            })),
            ..ContainerMeta::default()
        };
        a.resolved(ID, Ok(meta), t0);
        let Lookup::Ready(attr) = a.lookup(500, 10, t0) else {
            panic!("resolved must be ready")
        };
        assert_eq!(attr.metadata.status, Status::Complete);
        assert_eq!(attr.pod.as_ref().map(|p| p.name.as_str()), Some("p"));
        assert_eq!(
            attr.container.as_ref().map(|c| c.runtime.as_str()),
            Some("cri")
        );
        assert_eq!(metrics.enrich.with_label_values(&["miss"]).get(), 1);
        assert_eq!(metrics.enrich.with_label_values(&["hit"]).get(), 1);
        // Not seen for the TTL: forgotten, the next event asks again.
        a.sweep(t0 + Duration::from_secs(61));
        assert_eq!(a.cached_containers(), 0);
        assert_eq!(
            a.lookup(500, 10, t0 + Duration::from_secs(61)),
            Lookup::Pending(ID.into())
        );
    }

    /// A process and its cgroup both gone before the first lookup: the event says it cannot
    /// be attributed, it is never reported as a host process.
    #[test]
    fn vanished_process_and_cgroup_are_unknown_not_host() {
        let (_d, cfg) = fixture();
        let (tx, _rx) = mpsc::channel(8);
        let metrics = Metrics::new();
        let mut a = Attributor::new(cfg, tx, metrics.clone());
        let t0 = Instant::now();
        // pid 99 has no /proc entry and cgroup id 4242 is no directory of the tree.
        let Lookup::Ready(attr) = a.lookup(4242, 99, t0) else {
            panic!("vanished is final")
        };
        assert_eq!(attr, Attribution::vanished());
        assert_eq!(attr.metadata.scope, "unknown");
        assert_eq!(
            metrics
                .enrich_failures
                .with_label_values(&["cgroup_vanished"])
                .get(),
            1
        );
        // Cached: the tree is not walked again for the same cgroup.
        assert_eq!(
            a.lookup(4242, 98, t0),
            Lookup::Ready(Attribution::vanished())
        );
        assert_eq!(
            metrics
                .enrich_failures
                .with_label_values(&["cgroup_vanished"])
                .get(),
            1
        );
        // The root cgroup with no /proc entry is still the host.
        assert_eq!(a.lookup(1, 97, t0), Lookup::Ready(Attribution::host()));
    }

    #[test]
    fn cgroups_seen_created_attribute_vanished_tasks_until_after_removal() {
        let (d, cfg) = fixture();
        let (tx, mut rx) = mpsc::channel(8);
        let metrics = Metrics::new();
        let mut a = Attributor::new(cfg, tx, metrics.clone());
        let t0 = Instant::now();
        let pod = "pod5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a";
        // Created and removed before the agent looked: no /proc entry, no directory.
        a.cgroup_created(5000, &format!("/kubepods/besteffort/{pod}/{ID}"));
        // Host cgroups are not remembered.
        a.cgroup_created(5001, "/system.slice/cron.service");
        assert_eq!(a.created_cgroups(), 1);
        a.cgroup_removed(5000, t0);
        assert_eq!(a.lookup(5000, 99, t0), Lookup::Pending(ID.into()));
        assert_eq!(rx.try_recv().ok().as_deref(), Some(ID));
        let r = a.container_ref(5000, 99).expect("container");
        assert_eq!(r.pod_uid.as_deref(), Some(&pod[3..]));
        // Forgotten only after the grace period that follows the removal.
        a.sweep(t0 + GONE_GRACE / 2);
        assert_eq!(a.created_cgroups(), 1);
        a.sweep(t0 + GONE_GRACE);
        assert_eq!(a.created_cgroups(), 0);

        // The start-up scan finds the container directories that exist.
        let found = a.scan_cgroups();
        assert_eq!(found, 1);
        let ino = std::fs::metadata(d.0.join("cg/kubepods/besteffort/podX").join(ID))
            .expect("meta")
            .ino();
        assert_eq!(a.container_ref(ino, 98).map(|r| r.id), Some(ID.to_string()));
        assert_eq!(
            metrics
                .enrich_failures
                .with_label_values(&["cgroup_vanished"])
                .get(),
            0
        );
    }

    #[test]
    fn failures_are_missing_with_reason_then_retried() {
        let (_d, cfg) = fixture();
        let (tx, mut rx) = mpsc::channel(8);
        let metrics = Metrics::new();
        let mut a = Attributor::new(cfg, tx, metrics.clone());
        let t0 = Instant::now();
        assert!(matches!(a.lookup(500, 10, t0), Lookup::Pending(_)));
        a.resolved(
            ID,
            Err(CriError::Unavailable {
                path: "/x.sock".into(),
                reason: "gone".into(),
            }),
            t0,
        );
        let Lookup::Ready(attr) = a.lookup(500, 10, t0) else {
            panic!("failed must be ready")
        };
        assert_eq!(attr.metadata.status, Status::Missing);
        assert!(
            attr.metadata
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("/x.sock"))
        );
        assert_eq!(
            metrics
                .enrich_failures
                .with_label_values(&["socket_unavailable"])
                .get(),
            1
        );
        // After the retry interval the next event asks again.
        let _ = rx.try_recv();
        assert!(matches!(
            a.lookup(500, 10, t0 + Duration::from_secs(6)),
            Lookup::Pending(_)
        ));
        assert_eq!(rx.try_recv().expect("retry request"), ID);
    }

    #[test]
    fn podman_is_missing_without_asking_and_gone_process_found_by_inode() {
        let (d, cfg) = fixture();
        let (tx, mut rx) = mpsc::channel(8);
        let mut a = Attributor::new(cfg, tx, Metrics::new());
        let Lookup::Ready(attr) = a.lookup(600, 11, Instant::now()) else {
            panic!("podman is final")
        };
        assert_eq!(attr.metadata.status, Status::Missing);
        assert!(rx.try_recv().is_err());
        // pid 99 has no /proc entry: the cgroup is found by its inode.
        let ino = std::fs::metadata(d.0.join("cg/kubepods/besteffort/podX").join(ID))
            .expect("stat")
            .ino();
        let r = a.container_ref(ino, 99).expect("found by inode");
        assert_eq!(r.id, ID);
    }

    #[test]
    fn full_request_queue_is_counted_not_blocking() {
        let (_d, cfg) = fixture();
        let (tx, _rx) = mpsc::channel(1);
        let metrics = Metrics::new();
        let mut a = Attributor::new(cfg, tx.clone(), metrics.clone());
        tx.try_send("filler".into()).expect("fill");
        let Lookup::Ready(attr) = a.lookup(500, 10, Instant::now()) else {
            panic!("must not wait")
        };
        assert_eq!(attr.metadata.status, Status::Missing);
        assert_eq!(
            metrics
                .enrich_failures
                .with_label_values(&["queue_full"])
                .get(),
            1
        );
    }
}
