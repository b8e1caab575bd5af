//! Unit tests of attribution: the cache, workload inference and the resolver.
use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{attributor::GONE_GRACE, cri::CriError, *};
use crate::{
    event::{Attribution, ContainerMeta, PodMeta, Status, Workload},
    telemetry::Metrics,
};

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
fn fixture() -> (tempfile::TempDir, AttributorConfig) {
    let d = tempfile::Builder::new()
        .prefix("monitor-attr-")
        .tempdir()
        .expect("tempdir");
    let write = |pid: u32, text: &str| {
        let p = d.path().join("proc").join(pid.to_string());
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("cgroup"), text).expect("write");
    };
    write(1, "0::/init.scope\n");
    write(
        10,
        &format!("0::/kubepods/besteffort/pod5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a/{ID}\n"),
    );
    write(11, &format!("0::/libpod_parent/libpod-{ID}\n"));
    let cg = d.path().join("cg");
    std::fs::create_dir_all(cg.join("kubepods/besteffort/podX").join(ID)).expect("mkdir cg");
    let cfg = AttributorConfig {
        proc_root: d.path().join("proc"),
        cgroup2_root: cg,
        ttl: Duration::from_secs(60),
        retry_after: Duration::from_secs(5),
    };
    (d, cfg)
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
    assert_eq!(attr.container.as_ref().map(|c| &*c.runtime), Some("cri"));
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
    let ino = std::fs::metadata(d.path().join("cg/kubepods/besteffort/podX").join(ID))
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
    let ino = std::fs::metadata(d.path().join("cg/kubepods/besteffort/podX").join(ID))
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

#[test]
fn pod_uid_comes_from_the_cgroup_path_when_the_runtime_cannot_answer() {
    let (_d, cfg) = fixture();
    let (tx, _rx) = mpsc::channel(8);
    let mut a = Attributor::new(cfg, tx, Metrics::new());
    let t0 = Instant::now();
    let uid = "5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a";
    // A systemd-driver kubelet path: dashes of the uid written as underscores.
    a.cgroup_created(
        6000,
        &format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        ),
    );
    let pending = a.current(ID);
    assert_eq!(pending.container.and_then(|c| c.pod_uid_from_cgroup), None);
    assert!(matches!(a.lookup(6000, 77, t0), Lookup::Pending(_)));
    let while_pending = a.current(ID);
    assert_eq!(while_pending.metadata.status, Status::Pending);
    assert_eq!(
        while_pending
            .container
            .and_then(|c| c.pod_uid_from_cgroup)
            .as_deref(),
        Some(uid)
    );
    a.resolved(
        ID,
        Err(CriError::Unavailable {
            path: "/run/containerd/containerd.sock".into(),
            reason: "connection refused".into(),
        }),
        t0,
    );
    let Lookup::Ready(attr) = a.lookup(6000, 77, t0) else {
        panic!("a failed lookup is ready")
    };
    assert_eq!(attr.metadata.status, Status::Missing);
    assert!(attr.pod.is_none());
    let c = attr.container.expect("container");
    assert_eq!(&*c.id, ID);
    assert_eq!(c.pod_uid_from_cgroup.as_deref(), Some(uid));
}
