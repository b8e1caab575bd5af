//! Unit tests of learning, enforcement, bounds, dedup, rate limits and persistence.
use std::sync::Arc;

use super::{store::Store, *};
use crate::{
    event::{
        Attribution, CallResult, ContainerView, ExecDetail, FileDetail, MetadataStatus, NetDetail,
        PodMeta, ProcessView, Status, Workload,
    },
    process::{Ancestor, Source},
};

fn base(kind: &'static str, detail: Detail) -> Event {
    Event {
        time: "2026-11-22T00:00:00.000000000Z".into(),
        kind,
        node: "n".into(),
        process: ProcessView {
            pid: 7,
            tid: 7,
            id: "p7".into(),
            ppid: 1,
            comm: "app".into(),
            exe: "/app".into(),
            args: Arc::new([]),
            command_line: "".into(),
            cwd: None,
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            source: Source::Exec,
            ancestors: vec![Ancestor {
                pid: 1,
                id: "p1".into(),
                exe: "/init".into(),
                start_ticks: 0,
            }],
            start_ticks: 0,
        },
        cgroup_id: 9,
        ticks: 0,
        folded: 0,
        attribution: Attribution {
            container: Some(ContainerView {
                pod_uid_from_cgroup: None,
                id: "c1".into(),
                runtime: "containerd".into(),
                meta: None,
            }),
            pod: None,
            metadata: MetadataStatus {
                status: Status::Missing,
                scope: "container",
                reason: None,
            },
        },
        detail,
    }
}

fn exec(path: &str) -> Event {
    base(
        "exec",
        Detail::Exec(ExecDetail {
            filename: path.into(),
            args: vec![],
            args_truncated: false,
            filename_truncated: false,
        }),
    )
}

fn write(path: &str) -> Event {
    base(
        "open",
        Detail::File(FileDetail {
            call: CallResult {
                syscall: "openat",
                result: 3,
                error: None,
                via: None,
            },
            path: Some(path.into()),
            raw_path: None,
            target: None,
            flags: Some(0),
            flag_names: vec!["O_WRONLY", "O_CREAT"],
            mode: None,
            owner_uid: None,
            owner_gid: None,
            truncated: false,
        }),
    )
}

fn connect(addr: &str, p: u16) -> Event {
    base(
        "connect",
        Detail::Network(NetDetail {
            call: CallResult {
                syscall: "connect",
                result: 0,
                error: None,
                via: None,
            },
            fd: 3,
            family: Some("inet".into()),
            address: Some(addr.into()),
            port: Some(p),
            unix_path: None,
            backlog: None,
            socket_type: None,
            protocol: None,
        }),
    )
}

fn cfg() -> BaselineConfig {
    BaselineConfig {
        learn_for: Duration::from_secs(60),
        learn_events: None,
        max_items: 4,
        promote_after: 0,
        rate_per_minute: 10,
    }
}

#[test]
fn learns_then_flags_only_new_behaviour() {
    let mut b = Baselines::new(cfg(), vec![]);
    let t0 = Instant::now();
    for e in [
        exec("/bin/app"),
        write("/data/uploads/123/f"),
        connect("10.1.2.3", 5432),
        connect("10.9.0.1", 40000),
    ] {
        assert!(b.observe(&e, t0).is_empty(), "learning raises nothing");
    }
    assert_eq!(b.counts(), (1, 0));
    let later = t0 + Duration::from_secs(61);
    // Known, or equal after generalisation: a new upload id, another pod in the same /24.
    for e in [
        exec("/bin/app"),
        write("/data/uploads/456/g"),
        connect("10.1.2.99", 5432),
        connect("10.9.0.7", 40000),
    ] {
        assert!(b.observe(&e, later).is_empty(), "{:?} is known", e.detail);
    }
    assert_eq!(b.counts(), (0, 1));
    let a = b.observe(&exec("/bin/nc"), later);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].source, a[0].rule.as_str()),
        ("anomaly", "anomaly.exec")
    );
    let info = a[0].anomaly.as_ref().expect("anomaly info");
    assert_eq!(
        (info.item.as_str(), info.profile.as_str()),
        ("/bin/nc <- /init", "container/c1")
    );
    assert!(!info.stable_since.is_empty());
    let a = b.observe(&write("/etc/cron.d/x"), later);
    assert_eq!(
        a[0].anomaly.as_ref().map(|i| i.item.as_str()),
        Some("/etc/cron.d")
    );
    let a = b.observe(&connect("10.1.2.3", 22), later);
    assert_eq!(
        a[0].anomaly.as_ref().map(|i| i.item.as_str()),
        Some("10.1.2.0/24:22")
    );
    // The same new item again: no second alert.
    assert!(b.observe(&exec("/bin/nc"), later).is_empty());
    assert_eq!(b.anomalies.get("exec"), Some(&1));
    // Host events have no workload and no profile.
    let mut host = exec("/bin/x");
    host.attribution = Attribution::host();
    assert!(b.observe(&host, later).is_empty());
    assert_eq!(b.profiles.len(), 1);
}

#[test]
fn learning_by_event_count() {
    let mut b = Baselines::new(
        BaselineConfig {
            learn_events: Some(2),
            ..cfg()
        },
        vec![],
    );
    let t = Instant::now();
    assert!(b.observe(&exec("/a"), t).is_empty());
    assert!(b.observe(&exec("/b"), t).is_empty());
    assert_eq!(b.observe(&exec("/c"), t).len(), 1, "third event is checked");
}

#[test]
fn sets_are_bounded_and_saturated_kinds_stay_quiet() {
    let mut b = Baselines::new(cfg(), vec![]);
    let t0 = Instant::now();
    for i in 0..10 {
        b.observe(&exec(&format!("/bin/tool{i}")), t0);
    }
    let p = &b.profiles["container/c1"];
    assert_eq!(p.items[&ItemKind::Exec].len(), 4);
    assert!(p.saturated.contains(&ItemKind::Exec));
    assert!(
        b.observe(&exec("/bin/other"), t0 + Duration::from_secs(61))
            .is_empty()
    );
}

#[test]
fn rate_limit_and_promotion() {
    let mut b = Baselines::new(
        BaselineConfig {
            rate_per_minute: 2,
            promote_after: 3,
            ..cfg()
        },
        vec![],
    );
    let t0 = Instant::now();
    b.observe(&exec("/bin/app"), t0);
    let later = t0 + Duration::from_secs(61);
    let n: usize = (0..5)
        .map(|i| b.observe(&exec(&format!("/new{i}")), later).len())
        .sum();
    assert_eq!((n, b.suppressed), (2, 3));
    // A new minute: alerts again.
    assert_eq!(
        b.observe(&exec("/next"), later + Duration::from_secs(60))
            .len(),
        1
    );
    // Seen three times: joins the profile.
    for _ in 0..2 {
        b.observe(&exec("/next"), later + Duration::from_secs(61));
    }
    assert!(b.profiles["container/c1"].items[&ItemKind::Exec].contains("/next <- /init"));
}

/// A store directory that does not exist yet (inside a temporary one removed on drop).
struct StoreDir(
    #[allow(dead_code, reason = "held for its Drop: removes the directory")] tempfile::TempDir,
    std::path::PathBuf,
);

impl std::ops::Deref for StoreDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.1
    }
}

fn dir(tag: &str) -> StoreDir {
    let t = tempfile::Builder::new()
        .prefix(&format!("monitor-baseline-{tag}-"))
        .tempdir()
        .expect("temp dir");
    let p = t.path().join("store");
    StoreDir(t, p)
}

#[test]
fn persistence_round_trip_and_yaml_export_import() {
    let d = dir("rt");
    let store = Store::open(&d).expect("open");
    let mut b = Baselines::new(cfg(), vec![]);
    b.observe(&exec("/bin/app"), Instant::now());
    b.observe(&write("/data/x/f"), Instant::now());
    let p = b.profiles["container/c1"].clone();
    store.save(&p).expect("save");
    let mode = std::fs::metadata(store.path_of("container/c1"))
        .expect("stat")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let (loaded, errs) = store.load_all();
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(loaded, vec![p.clone()]);
    // Export is the YAML file itself; import parses it back to the same profile.
    let yaml = serde_norway::to_string(&p).expect("yaml");
    assert!(
        yaml.contains("workload: container/c1") && yaml.contains("/bin/app <- /init"),
        "{yaml}"
    );
    assert_eq!(serde_norway::from_str::<Profile>(&yaml).expect("parse"), p);
}

#[test]
fn torn_and_corrupt_files_never_lose_the_good_profile() {
    let d = dir("torn");
    let store = Store::open(&d).expect("open");
    let mut b = Baselines::new(cfg(), vec![]);
    b.observe(&exec("/bin/app"), Instant::now());
    let p = b.profiles["container/c1"].clone();
    store.save(&p).expect("save");
    // A crash during the next save leaves a half-written temporary file behind.
    let full = serde_norway::to_string(&p).expect("yaml");
    let tmp = store.path_of("container/c1").with_extension("yaml.tmp");
    std::fs::write(&tmp, &full[..full.len() / 2]).expect("torn");
    let (loaded, errs) = store.load_all();
    assert_eq!(
        loaded,
        vec![p.clone()],
        "the last complete version is what loads"
    );
    assert!(errs.is_empty());
    assert!(!tmp.exists(), "leftover removed");
    // A profile corrupted on disk is reported, set aside, and does not stop the others.
    let other = Profile {
        workload: "ns/Deployment/web".into(),
        ..p.clone()
    };
    store.save(&other).expect("save");
    std::fs::write(store.path_of("ns/Deployment/web"), "workload: [broken").expect("corrupt");
    let (loaded, errs) = store.load_all();
    assert_eq!(loaded, vec![p]);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().contains("ns%2fDeployment%2fweb.yaml"),
        "{}",
        errs[0]
    );
    assert!(
        store
            .path_of("ns/Deployment/web")
            .with_extension("yaml.corrupt")
            .exists()
    );
}

#[test]
fn workload_keys() {
    let mut e = exec("/x");
    assert_eq!(
        e.attribution.workload_key().as_deref(),
        Some("container/c1")
    );
    e.attribution.pod = Some(Arc::new(PodMeta {
        name: "web-1".into(),
        namespace: "shop".into(),
        workload: Some(Workload {
            kind: "Deployment",
            name: "web".into(),
        }),
        ..Default::default()
    }));
    assert_eq!(
        e.attribution.workload_key().as_deref(),
        Some("shop/Deployment/web")
    );
}

#[test]
fn exec_items_name_the_runtime_once_and_busybox_applets_by_name() {
    let args = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    // runc or the shim, whichever won the race, is the same parent.
    assert_eq!(
        super::exec_item("/bin/env", &args(&["env"]), "/bin/env", "/usr/sbin/runc"),
        super::exec_item(
            "/bin/env",
            &args(&["env"]),
            "/bin/env",
            "/usr/bin/containerd-shim-runc-v2"
        )
    );
    assert_eq!(
        super::exec_item("/bin/env", &args(&["env"]), "/bin/env", "/bin/sh"),
        "/bin/env <- /bin/sh"
    );
    assert_eq!(
        super::exec_item(
            "/proc/self/exe",
            &args(&["wget", "-q"]),
            "/bin/busybox",
            "/bin/sh"
        ),
        "/bin/busybox[wget] <- /bin/sh"
    );
}
