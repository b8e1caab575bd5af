//! The attribution cache, owned by the pipeline: cgroup id -> container -> metadata, answered
//! synchronously; a miss asks the resolver and tells the caller to hold the event.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::warn;

use super::{
    cgroup::{self, ContainerRef, Runtime},
    cgroupfs::{MAX_WALK, ROOT_CGROUP_ID, walk_cgroups},
    cri::CriError,
};
use crate::{
    event::{Attribution, ContainerMeta, ContainerView, MetadataStatus, Status},
    telemetry::Metrics,
};

/// Result of a cache lookup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
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

/// Container cgroups remembered from their creation (or the start-up scan), at most this many.
const MAX_CREATED: usize = 65_536;

/// A created container cgroup stays known this long after its removal, so that events still
/// queued when it was removed are attributed.
pub(super) const GONE_GRACE: Duration = Duration::from_secs(30);

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
pub(crate) struct AttributorConfig {
    /// Where /proc is (the host's).
    pub(crate) proc_root: PathBuf,
    /// Where cgroup2 is mounted (searched by inode when a process is already gone).
    pub(crate) cgroup2_root: PathBuf,
    /// Entries not seen for this long are forgotten (their containers have ended).
    pub(crate) ttl: Duration,
    /// A failed lookup is retried after this long.
    pub(crate) retry_after: Duration,
}

impl AttributorConfig {
    /// The defaults, with the cgroup tree at `cgroup_root` (a cgroup2 mount, or a hybrid
    /// host's cgroup directory with cgroup2 at `unified/`).
    pub(crate) fn with_cgroup_root(cgroup_root: &Path) -> AttributorConfig {
        let unified = cgroup_root.join("unified");
        AttributorConfig {
            cgroup2_root: if unified.join("cgroup.procs").exists() {
                unified
            } else {
                cgroup_root.to_path_buf()
            },
            ..AttributorConfig::default()
        }
    }
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
pub(crate) struct Attributor {
    cfg: AttributorConfig,
    cgroups: HashMap<u64, CgroupInfo>,
    created: HashMap<u64, Created>,
    per_pid: HashMap<u32, Option<ContainerRef>>,
    containers: HashMap<String, Entry>,
    /// Pod uid of a container id, from its kubelet cgroup path.
    pod_uids: HashMap<String, String>,
    requests: mpsc::Sender<String>,
    metrics: Metrics,
}

impl Attributor {
    pub(crate) fn new(
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
            pod_uids: HashMap::new(),
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
    pub(crate) fn cgroup_created(&mut self, id: u64, path: &str) {
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
    pub(crate) fn scan_cgroups(&mut self) -> usize {
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
    pub(crate) fn cgroup_removed(&mut self, id: u64, now: Instant) {
        if let Some(c) = self.created.get_mut(&id) {
            c.gone_since.get_or_insert(now);
        }
    }

    /// Container cgroups currently remembered from creation or the scan.
    #[cfg(test)]
    pub(crate) fn created_cgroups(&self) -> usize {
        self.created.len()
    }

    /// The container (if any) of a task, from its cgroup id and pid.
    #[cfg(test)]
    pub(crate) fn container_ref(&mut self, cgroup_id: u64, pid: u32) -> Option<ContainerRef> {
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
    pub(crate) fn forget_pid(&mut self, pid: u32) {
        self.per_pid.remove(&pid);
    }

    /// Attribution of an event, from the cache; a miss starts a lookup.
    pub(crate) fn lookup(&mut self, cgroup_id: u64, pid: u32, now: Instant) -> Lookup {
        let r = match self.resolve(cgroup_id, pid) {
            Resolved::Ref(Some(r)) => r,
            Resolved::Ref(None) => return Lookup::Ready(Attribution::host()),
            Resolved::Vanished => return Lookup::Ready(Attribution::vanished()),
        };
        let uid = r.pod_uid.as_ref();
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
                return Lookup::Ready(ready(&r.id, *runtime, meta, uid));
            }
            Some(Entry::Pending { .. }) => return Lookup::Pending(r.id),
            Some(Entry::Failed {
                reason, runtime, ..
            }) if !stale_failure => {
                return Lookup::Ready(missing(&r.id, *runtime, reason.clone(), uid));
            }
            _ => {}
        }
        self.metrics.enrich.with_label_values(&["miss"]).inc();
        // Remembered once, on the miss that creates the container's entry (not per event), for
        // `current` to name the pod when the runtime cannot.
        if let Some(uid) = &r.pod_uid {
            self.pod_uids.insert(r.id.clone(), uid.clone());
        }
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
            return Lookup::Ready(missing(&r.id, r.runtime, reason, uid));
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
                    uid,
                ))
            }
        }
    }

    /// Records the answer for a container id.
    pub(crate) fn resolved(
        &mut self,
        id: &str,
        result: Result<ContainerMeta, CriError>,
        now: Instant,
    ) {
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
    pub(crate) fn current(&self, id: &str) -> Attribution {
        let uid = self.pod_uids.get(id);
        match self.containers.get(id) {
            Some(Entry::Ready { runtime, meta, .. }) => ready(id, *runtime, meta, uid),
            Some(Entry::Failed {
                runtime, reason, ..
            }) => missing(id, *runtime, reason.clone(), uid),
            Some(Entry::Pending { runtime, since }) => unresolved(
                id,
                *runtime,
                Status::Pending,
                format!(
                    "runtime lookup in progress for {} ms",
                    since.elapsed().as_millis()
                ),
                uid,
            ),
            None => missing(id, Runtime::Unknown, "unknown container".into(), uid),
        }
    }

    /// Forgets containers not seen for the TTL, and per-cgroup answers with them.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let ttl = self.cfg.ttl;
        self.containers.retain(|_, e| match e {
            Entry::Ready { last_seen, .. } | Entry::Failed { last_seen, .. } => {
                now.duration_since(*last_seen) < ttl
            }
            Entry::Pending { since, .. } => now.duration_since(*since) < ttl,
        });
        let containers = &self.containers;
        self.pod_uids.retain(|id, _| containers.contains_key(id));
        let live: std::collections::HashSet<&String> = self.containers.keys().collect();
        self.cgroups.retain(|_, c| match c {
            CgroupInfo::Known(Some(r)) => live.contains(&r.id),
            _ => true,
        });
        self.created.retain(|_, c| {
            c.gone_since
                .is_none_or(|since| now.duration_since(since) < GONE_GRACE)
        });
        crate::process::shrink_map(&mut self.per_pid);
        crate::process::shrink_map(&mut self.cgroups);
        crate::process::shrink_map(&mut self.created);
        crate::process::shrink_map(&mut self.containers);
    }

    /// Containers whose metadata is cached.
    #[cfg(test)]
    pub(crate) fn cached_containers(&self) -> usize {
        self.containers.len()
    }
}

fn ready(
    id: &str,
    runtime: Runtime,
    meta: &Arc<ContainerMeta>,
    pod_uid: Option<&String>,
) -> Attribution {
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
            id: id.into(),
            runtime: if meta.runtime.is_empty() {
                runtime.name().into()
            } else {
                meta.runtime.as_str().into()
            },
            pod_uid_from_cgroup: if pod.is_none() && !meta.sandbox {
                pod_uid.cloned()
            } else {
                None
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

fn missing(id: &str, runtime: Runtime, reason: String, pod_uid: Option<&String>) -> Attribution {
    unresolved(id, runtime, Status::Missing, reason, pod_uid)
}

/// A container whose metadata is not (yet) known: its id and runtime, the pod uid its cgroup
/// path gives, and why.
fn unresolved(
    id: &str,
    runtime: Runtime,
    status: Status,
    reason: String,
    pod_uid: Option<&String>,
) -> Attribution {
    Attribution {
        container: Some(ContainerView {
            id: id.into(),
            runtime: runtime.name().into(),
            pod_uid_from_cgroup: pod_uid.cloned(),
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
