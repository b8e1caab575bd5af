//! The judge is serde_json itself: every event here must come out of `write` exactly as
//! `serde_json::to_vec` writes it from the derived `Serialize`.
use std::{collections::BTreeMap, sync::Arc};

use super::*;
use crate::event::{
    ContainerMeta, ExitDetail, ForkDetail, MetadataStatus, NetDetail, PrivDetail, SignalDetail,
    TcpDetail, Workload,
    fixtures::{event, in_container, process},
};

fn same_as_serde(e: &Event) {
    let mut ours = Vec::new();
    write(&mut ours, e).expect("write");
    let theirs = serde_json::to_vec(e).expect("serde");
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&theirs)
    );
}

fn call(
    syscall: &'static str,
    error: Option<&'static str>,
    via: Option<&'static str>,
) -> CallResult {
    CallResult {
        syscall,
        result: if error.is_some() { -13 } else { 3 },
        error,
        via,
    }
}

fn file(path: Option<&str>, all: bool) -> FileDetail {
    FileDetail {
        call: call("openat", all.then_some("EACCES"), all.then_some("io_uring")),
        path: path.map(str::to_string),
        raw_path: all.then(|| "../x".into()),
        target: all.then(|| "/tmp/new name".into()),
        flags: Some(524_288),
        flag_names: if all {
            vec!["O_RDONLY", "O_CLOEXEC"]
        } else {
            vec![]
        },
        mode: all.then(|| "0644".into()),
        owner_uid: all.then_some(-1),
        owner_gid: all.then_some(1000),
        truncated: all,
    }
}

fn details() -> Vec<Detail> {
    vec![
        Detail::Exec(ExecDetail {
            filename: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "echo \"hi\"\t> /dev/null".into()],
            args_truncated: true,
            filename_truncated: false,
        }),
        Detail::Exec(ExecDetail {
            filename: String::new(),
            args: vec![],
            args_truncated: false,
            filename_truncated: true,
        }),
        Detail::File(file(Some("/etc/shadow"), false)),
        Detail::File(file(None, true)),
        Detail::Fork(ForkDetail {
            child_pid: 7,
            child_id: "abc".into(),
        }),
        Detail::Exit(ExitDetail {
            code: Some(1),
            signal: None,
            status: Some(256),
        }),
        Detail::Network(NetDetail {
            call: call("connect", Some("ECONNREFUSED"), None),
            fd: 4,
            family: Some("inet".into()),
            address: Some("127.0.0.1".into()),
            port: Some(4444),
            unix_path: None,
            backlog: None,
            socket_type: Some("SOCK_STREAM"),
            protocol: Some(6),
        }),
        Detail::Tcp(TcpDetail {
            old_state: "SYN_SENT",
            new_state: "ESTABLISHED",
            family: "inet".into(),
            protocol: 6,
            saddr: "10.0.0.1".into(),
            sport: 40000,
            daddr: "10.0.0.2".into(),
            dport: 443,
            socket: "ffff8880".into(),
        }),
        Detail::Privilege(Box::new(PrivDetail {
            call: Some(call("setuid", None, None)),
            old_uid: Some(1000),
            ids: vec![0, -1],
            ..PrivDetail::default()
        })),
        Detail::Signal(SignalDetail {
            number: 9,
            name: "SIGKILL".into(),
            origin: "kill",
            target_pid: 1,
            group: true,
            result: "delivered",
        }),
    ]
}

#[test]
fn every_detail_on_the_host_and_in_a_container_is_written_as_serde_writes_it() {
    for d in details() {
        let host = event("x", process(42, "sh", "/bin/sh"), d);
        same_as_serde(&host);
        same_as_serde(&in_container(host, &"c".repeat(64)));
    }
}

#[test]
fn every_optional_part_is_written_as_serde_writes_it() {
    let mut p = process(42, "we\"ird\\comm", "/usr/bin/python3");
    p.cwd = None;
    p.source = Source::Procfs;
    p.ancestors = vec![
        crate::process::Ancestor {
            pid: 1,
            id: "i1".into(),
            exe: "/sbin/init".into(),
            start_ticks: 0,
        },
        crate::process::Ancestor {
            pid: 9,
            id: "i9".into(),
            exe: String::new().into(),
            start_ticks: 0,
        },
    ];
    let mut e = in_container(
        event("open", p, Detail::File(file(Some("/a"), true))),
        "cid",
    );
    e.folded = 12;
    let labels: BTreeMap<String, String> = [
        ("app".into(), "web".into()),
        ("tier".into(), "front \"end\"".into()),
    ]
    .into();
    if let Some(c) = &mut e.attribution.container {
        c.pod_uid_from_cgroup = Some("pod-uid".into());
        c.meta = Some(Arc::new(ContainerMeta {
            id: "cid".into(),
            name: "web".into(),
            image: "nginx:1".into(),
            image_digest: "sha256:00".into(),
            sandbox: true,
            runtime: "containerd".into(),
            labels: labels.clone(),
            pod: None,
        }));
    }
    e.attribution.pod = Some(Arc::new(PodMeta {
        name: "web-0".into(),
        namespace: "shop".into(),
        uid: "u".into(),
        labels,
        workload: Some(Workload {
            kind: "StatefulSet",
            name: "web".into(),
        }),
    }));
    e.attribution.metadata = MetadataStatus {
        status: Status::Pending,
        scope: "container",
        reason: Some("runtime busy\n".into()),
    };
    same_as_serde(&e);
    e.attribution = Attribution::vanished();
    same_as_serde(&e);
}

/// Strings built from characters that need escaping (and multi-byte ones) at every offset of
/// an eight-byte word, so that both the word scan and the byte loop are exercised.
#[test]
fn strings_are_escaped_as_serde_escapes_them() {
    let alphabet = [
        "a", "/", "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{1}", "\u{1f}", "\u{7f}", " ",
        "é", "日", "😀", "~",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for len in 0..40 {
        for _ in 0..25 {
            let mut s = String::new();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly plain bytes, so that clean words occur between the special ones.
                let pick = (seed % 64) as usize;
                s.push_str(alphabet.get(pick).copied().unwrap_or("x"));
            }
            let mut ours = Vec::new();
            string(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).expect("serde");
            assert_eq!(ours, theirs, "{s:?}");
        }
    }
}

/// One writer over events whose parts change under the same process and container: an exec
/// (new program, same process id), another thread, a new working directory, the pod's
/// metadata arriving, a host process. Each line must still be what serde writes.
#[test]
fn kept_parts_are_written_again_when_they_change() {
    let mut lines = Lines::default();
    let mut check = |e: &Event| {
        let mut ours = Vec::new();
        lines.write(&mut ours, e).expect("write");
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&serde_json::to_vec(e).expect("serde"))
        );
    };
    let open = || Detail::File(file(Some("/etc/passwd"), false));
    let mut e = in_container(event("open", process(7, "sh", "/bin/sh"), open()), "c1");
    e.attribution.metadata.status = Status::Pending;
    check(&e);
    check(&e);
    e.process.tid = 8;
    check(&e);
    e.process.exe = "/usr/bin/curl".into();
    e.process.args = vec!["curl".to_string(), "http://x".into()].into();
    e.process.comm = "curl".into();
    check(&e);
    e.process.cwd = Some("/tmp".into());
    check(&e);
    e.process.euid = 1000;
    check(&e);
    e.attribution.metadata.status = Status::Complete;
    check(&e);
    e.attribution.pod = Some(Arc::new(PodMeta {
        name: "other".into(),
        ..PodMeta::default()
    }));
    check(&e);
    let host = Event {
        attribution: Attribution::host(),
        ..e.clone()
    };
    check(&host);
    check(&e);
}
