//! Unit tests of the encoders: helpers, and every encoding of a set of alerts that covers each
//! kind of detail, host and container, rules and anomalies, drops and sequences, validated by
//! `monitor/tests/schemas/validate.py` against the published schema data.
#![allow(
    clippy::print_stderr,
    reason = "the test reports what the validator said, and why it cannot run here"
)]
use std::{collections::BTreeMap, path::Path, process::Command, sync::Arc};

use super::*;
use crate::{
    capture::drops::DropNotice,
    config::OcsfVersion,
    detect::{AnomalyInfo, DedupInfo, SeqFirst},
    event::{
        Attribution, CallResult, ContainerMeta, ContainerView, Detail, Event, ExecDetail,
        FileDetail, MetadataStatus, NetDetail, PodMeta, PrivDetail, ProcessView, Status, TcpDetail,
        Workload,
    },
    process::{Ancestor, Source},
};

#[test]
fn rfc3339_round_trips_to_ms() {
    for ns in [
        0i128,
        1_700_000_000_123_456_789,
        951_782_400_000_000_000,
        4_102_444_799_999_000_000,
    ] {
        let s = crate::event::rfc3339(ns);
        assert_eq!(rfc3339_to_ms(&s), Some((ns / 1_000_000) as i64), "{s}");
    }
    assert_eq!(
        rfc3339_to_ms("2026-11-22T10:00:00Z"),
        Some(1_795_341_600_000)
    );
    assert_eq!(rfc3339_to_ms("2026-11-22 10:00:00Z"), None);
    assert_eq!(rfc3339_to_ms("2026-11-22T10:00:00.Z"), None);
    assert_eq!(rfc3339_to_ms("garbage"), None);
}

#[test]
fn severities_map_in_order() {
    assert_eq!(syslog_severity("critical"), 2);
    assert_eq!(syslog_severity("warning"), 4);
    assert_eq!(ocsf_severity("critical").0, 5);
    assert_eq!(ocsf_severity("notice").0, 2);
}

#[test]
fn technique_tags() {
    assert!(is_technique("T1059") && is_technique("T1059.004"));
    assert!(!is_technique("T10") && !is_technique("mitre_execution") && !is_technique("T1059-004"));
}

fn process() -> ProcessView {
    ProcessView {
        pid: 4242,
        tid: 4243,
        id: "0a1b2c3d4e5f6071".into(),
        ppid: 4000,
        comm: "sh".into(),
        exe: "/bin/busybox".into(),
        args: vec!["sh".to_string(), "-c".into(), "id".into()].into(),
        command_line: "sh -c id".into(),
        cwd: Some("/srv".into()),
        uid: 1000,
        gid: 1000,
        euid: 0,
        egid: 0,
        source: Source::Exec,
        ancestors: vec![Ancestor {
            pid: 4000,
            id: "1111222233334444".into(),
            exe: "/usr/bin/containerd-shim-runc-v2".into(),
            start_ticks: 1,
        }],
        start_ticks: 2,
    }
}

fn in_pod(workload: bool) -> Attribution {
    let pod = Arc::new(PodMeta {
        name: "web-5d8f7b9c6d-abcde".into(),
        namespace: "shop".into(),
        uid: "0f6c2b1e-3a4d-4e5f-8a9b-1c2d3e4f5a6b".into(),
        labels: BTreeMap::from([("app".into(), "web".into())]),
        workload: workload.then(|| Workload {
            kind: "Deployment",
            name: "web".into(),
        }),
    });
    Attribution {
        container: Some(ContainerView {
            pod_uid_from_cgroup: None,
            id: "ab".repeat(32).into(),
            runtime: "containerd".into(),
            meta: Some(Arc::new(ContainerMeta {
                id: "ab".repeat(32),
                name: "app".into(),
                image: "registry.local/web:1.2".into(),
                image_digest: format!("sha256:{}", "cd".repeat(32)),
                sandbox: false,
                runtime: "containerd".into(),
                labels: BTreeMap::from([("io.kubernetes.container.name".into(), "app".into())]),
                pod: Some(pod.clone()),
            })),
        }),
        pod: Some(pod),
        metadata: MetadataStatus {
            status: Status::Complete,
            scope: "container",
            reason: None,
        },
    }
}

/// A container whose runtime did not answer: its id, no metadata, no pod.
fn unresolved() -> Attribution {
    Attribution {
        container: Some(ContainerView {
            pod_uid_from_cgroup: None,
            id: "ef".repeat(32).into(),
            runtime: "containerd".into(),
            meta: None,
        }),
        pod: None,
        metadata: MetadataStatus {
            status: Status::Missing,
            scope: "container",
            reason: Some("container runtime unreachable".into()),
        },
    }
}

fn call(syscall: &'static str, result: i64) -> CallResult {
    CallResult {
        syscall,
        result,
        error: (result < 0).then_some("EACCES"),
        via: None,
    }
}

fn event(kind: &'static str, attribution: Attribution, detail: Detail) -> Event {
    Event {
        time: "2026-11-22T10:00:00.123456789Z".into(),
        kind,
        node: "node-1".into(),
        process: process(),
        cgroup_id: 7,
        ticks: 3,
        folded: 0,
        attribution,
        detail,
    }
}

fn alert(rule: &str, source: &'static str, e: Event) -> Alert {
    Alert {
        id: format!("run1-{rule}"),
        source,
        rule: rule.into(),
        severity: "critical",
        tags: vec![
            "container".into(),
            "mitre_execution".into(),
            "T1059.004".into(),
        ],
        output: format!("{rule} fired"),
        description: "what the rule is about".into(),
        dedup: DedupInfo {
            count: 3,
            first_seen: "2026-11-22T09:59:00Z".into(),
            last_seen: e.time.clone(),
        },
        sequence: None,
        anomaly: None,
        drops: None,
        event: e,
    }
}

/// Alerts covering every detail, host and container (with and without pod metadata), rules
/// and anomalies, drop notices and sequences.
fn alerts() -> Vec<Alert> {
    let exec = Detail::Exec(ExecDetail {
        filename: "/bin/sh".into(),
        args: vec!["sh".into()],
        args_truncated: false,
        filename_truncated: false,
    });
    let file = Detail::File(FileDetail {
        call: call("openat", 3),
        path: Some("/etc/shadow".into()),
        raw_path: None,
        target: Some("/etc/shadow.new".into()),
        flags: Some(0),
        flag_names: vec!["O_RDONLY"],
        mode: Some("0644".into()),
        owner_uid: None,
        owner_gid: None,
        truncated: false,
    });
    let net = |syscall, address: &str| {
        Detail::Network(NetDetail {
            call: call(syscall, 0),
            fd: 3,
            family: Some("inet".into()),
            address: Some(address.into()),
            port: Some(80),
            unix_path: None,
            backlog: None,
            socket_type: None,
            protocol: None,
        })
    };
    let tcp = Detail::Tcp(TcpDetail {
        old_state: "SYN_SENT",
        new_state: "ESTABLISHED",
        family: "inet6".into(),
        protocol: 6,
        saddr: "::1".into(),
        sport: 40000,
        daddr: "::1".into(),
        dport: 4444,
        socket: "0xffff".into(),
    });
    let setuid = Detail::Privilege(Box::new(PrivDetail {
        call: Some(call("setuid", -1)),
        ids: vec![0],
        ..PrivDetail::default()
    }));
    let mut anomaly = alert(
        "anomaly.exec",
        "anomaly",
        event("exec", in_pod(true), exec.clone()),
    );
    anomaly.anomaly = Some(AnomalyInfo {
        kind: "exec",
        item: "/bin/sh <- /usr/bin/containerd-shim-runc-v2".into(),
        profile: "shop/Deployment/web".into(),
        stable_since: "2026-11-22T09:00:00Z".into(),
    });
    let mut lossy = alert(
        "sensitive_file_read",
        "rule",
        event("open", Attribution::host(), file.clone()),
    );
    lossy.drops = Some(DropNotice {
        window_seconds: 60,
        total: 12,
        kernel_ring: BTreeMap::from([("open", 10), ("exec", 2)]),
        same_cgroup: 1,
    });
    let mut shell = alert(
        "reverse_shell",
        "rule",
        event("dup", in_pod(false), setuid.clone()),
    );
    shell.sequence = Some(SeqFirst {
        time: "2026-11-22T09:59:59Z".into(),
        kind: "connect",
        pid: 4242,
        summary: "connect 127.0.0.1:4444".into(),
    });
    vec![
        alert(
            "shell_in_container",
            "rule",
            event("exec", in_pod(true), exec),
        ),
        alert("write_below_etc", "rule", event("open", unresolved(), file)),
        alert(
            "cloud_metadata_access",
            "rule",
            event("connect", in_pod(true), net("connect", "169.254.169.254")),
        ),
        alert(
            "listen_in_container",
            "rule",
            event("accept", in_pod(true), net("accept4", "10.0.0.7")),
        ),
        alert(
            "tcp_state",
            "rule",
            event("tcp_state", Attribution::host(), tcp),
        ),
        alert(
            "privilege_change_to_root",
            "rule",
            event("setid", in_pod(true), setuid),
        ),
        anomaly,
        lossy,
        shell,
    ]
}

/// Runs the schema validator over `docs`; `None` when the schema data is not installed here.
fn validate(kind: &str, version: &str, docs: &[Vec<u8>]) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("alerts.jsonl");
    let mut text = Vec::new();
    for d in docs {
        text.extend_from_slice(d);
        text.push(b'\n');
    }
    std::fs::write(&file, text).expect("write");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/validate.py");
    let out = Command::new("python3")
        .arg(script)
        .args([kind, version])
        .arg(&file)
        .output()
        .expect("python3");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {
            eprintln!("{report}");
            Some(report)
        }
        Some(3) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED {kind} {version}: {report} (run `cargo xtask setup`)");
            None
        }
        _ => panic!("{kind} {version}:\n{report}"),
    }
}

#[test]
fn every_ocsf_version_and_ecs_validate_against_the_published_schemas() {
    let alerts = alerts();
    for v in OcsfVersion::ALL {
        let enc = Encoding {
            format: Format::Ocsf,
            ocsf: v,
        };
        let docs: Vec<Vec<u8>> = alerts.iter().map(|a| encode(a, enc)).collect();
        if let Some(r) = validate("ocsf", v.as_str(), &docs) {
            assert!(
                r.contains(&format!("{} of {} documents valid", docs.len(), docs.len())),
                "{r}"
            );
        }
    }
    let enc = Encoding {
        format: Format::Ecs,
        ..Encoding::default()
    };
    let docs: Vec<Vec<u8>> = alerts.iter().map(|a| encode(a, enc)).collect();
    if let Some(r) = validate("ecs", ECS_VERSION, &docs) {
        assert!(
            r.contains(&format!("{} of {} documents valid", docs.len(), docs.len())),
            "{r}"
        );
    }
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/alert.schema.json");
    let docs: Vec<Vec<u8>> = alerts
        .iter()
        .map(|a| encode(a, Encoding::default()))
        .collect();
    if let Some(r) = validate("native", &schema.display().to_string(), &docs) {
        assert!(
            r.contains(&format!("{} of {} documents valid", docs.len(), docs.len())),
            "{r}"
        );
    }
}
