//! The user-space pipeline alone, fed from records in memory: decode -> process table ->
//! enrichment -> default rules -> JSON. Used by `cargo xtask bench` (`monitor bench-pipeline`).
use std::{io::Write, sync::Arc, time::Instant};

use monitor_common::{EventKind, ExecBody, ExitBody, ForkBody, Header, Syscall, SyscallBody};

use crate::{
    capture::decode::{decode, encode::record},
    detect::rules::{self, Engine, RuleSource},
    event::{Attribution, ContainerView, MetadataStatus, NodeContext, PodMeta, Status, build},
    process::{ProcInfo, ProcSource, ProcessTable},
};

/// No /proc: the table learns only from the records.
struct NoProc;
impl ProcSource for NoProc {
    fn read(&self, _: u32) -> Option<ProcInfo> {
        None
    }
    fn fd_path(&self, _: u32, _: i64) -> Option<String> {
        None
    }

    fn cwd(&self, _: u32) -> Option<String> {
        None
    }
    fn all_pids(&self) -> Vec<u32> {
        Vec::new()
    }
}

fn header(kind: EventKind, pid: u32, t: u64) -> Header {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    Header {
        kind: kind as u32,
        pid,
        tid: pid,
        ktime_ns: t,
        start_ns: 1_000_000_000 + u64::from(pid),
        cgroup_id: 42,
        comm,
        ..Header::default()
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a record builder for bench fixtures: one argument per record field"
)]
fn syscall(
    kind: EventKind,
    call: Syscall,
    pid: u32,
    t: u64,
    ret: i64,
    args: [u64; 6],
    s1: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let body = SyscallBody {
        ret,
        args,
        call: call as u16,
        str1_len: s1.len() as u16,
        data_len: data.len() as u16,
        ..SyscallBody::default()
    };
    record(header(kind, pid, t), &body, &[s1, &[], data])
}

/// An exec record of `pid` (parent 999) running `filename` with the NUL-separated `argv`.
fn exec(pid: u32, t: u64, filename: &[u8], argv: &[u8]) -> Vec<u8> {
    let body = ExecBody {
        ppid: 999,
        filename_len: filename.len() as u16,
        args_len: argv.len() as u16,
        flags: 0,
        old_pid: pid,
    };
    record(header(EventKind::Exec, pid, t), &body, &[filename, argv])
}

/// A mix shaped like a busy node: mostly opens, some connects and unlinks, process churn, and
/// events the default rules alert on: one in 40 reads `/etc/shadow` (`sensitive_file_read`)
/// and one in 160 runs a shell (`shell_in_container`), folded by their dedup windows as a
/// flood of them would be.
pub(crate) fn records(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let addr = [2u8, 0, 1, 187, 10, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut i = 0u64;
    while out.len() < n {
        let pid = 1000 + (i % 64) as u32;
        let t = i * 1000;
        match i % 20 {
            0 => out.push(record(
                header(EventKind::Fork, 999, t),
                &ForkBody {
                    child_pid: pid,
                    _pad: 0,
                    child_start_ns: 1_000_000_000 + u64::from(pid),
                },
                &[],
            )),
            1 if i % 160 == 1 => out.push(exec(pid, t, b"/bin/sh", b"/bin/sh\0-c\0id\0")),
            1 => out.push(exec(
                pid,
                t,
                b"/usr/bin/python3",
                b"/usr/bin/python3\0-m\0app.worker\0--queue\0jobs\0",
            )),
            2..=12 => out.push(syscall(
                EventKind::Open,
                Syscall::Openat,
                pid,
                t,
                3,
                [u64::MAX - 99, 0, 0x80000, 0, 0, 0],
                b"/usr/lib/python3.11/json/decoder.py",
                &[],
            )),
            13..=15 => out.push(syscall(
                EventKind::Connect,
                Syscall::Connect,
                pid,
                t,
                0,
                [5, 0, 16, 0, 0, 0],
                &[],
                &addr,
            )),
            16 | 17 => out.push(syscall(
                EventKind::Unlink,
                Syscall::Unlinkat,
                pid,
                t,
                -2,
                [u64::MAX - 99, 0, 0, 0, 0, 0],
                b"/tmp/app-cache/item",
                &[],
            )),
            18 if i % 40 == 18 => out.push(syscall(
                EventKind::Open,
                Syscall::Openat,
                pid,
                t,
                5,
                [u64::MAX - 99, 0, 0, 0, 0, 0],
                b"/etc/shadow",
                &[],
            )),
            18 => out.push(syscall(
                EventKind::Open,
                Syscall::Openat,
                pid,
                t,
                4,
                [u64::MAX - 99, 0, 0x241, 0o644, 0, 0],
                b"/var/lib/app/out.json",
                &[],
            )),
            _ => out.push(record(
                header(EventKind::Exit, pid, t),
                &ExitBody {
                    exit_code: 0,
                    code_known: 1,
                },
                &[],
            )),
        }
        i += 1;
    }
    out
}

/// Result of one run.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PipelineResult {
    pub(crate) events: usize,
    pub(crate) secs: f64,
    pub(crate) events_per_sec: f64,
    /// Alerts delivered (dedup windows fold repeated ones).
    pub(crate) alerts: usize,
    /// Events that matched a rule (delivered or folded).
    pub(crate) matched: usize,
}

/// Runs `n` records through the whole user-space pipeline on this thread; with `every_event`
/// each event is also written as JSON (what `monitor trace` does), else only alerts are (what
/// `monitor run` does).
pub(crate) fn run(n: usize, every_event: bool) -> PipelineResult {
    let recs = records(n);
    let rules = rules::load(&[RuleSource::Builtin]).unwrap_or_default();
    let mut engine = Engine::default();
    let mut table = ProcessTable::new(NoProc, "bench".into(), 100);
    let node = NodeContext {
        node: "bench".into(),
        boot_to_wall_ns: 1_700_000_000_000_000_000,
    };
    let container = Attribution {
        container: Some(ContainerView {
            pod_uid_from_cgroup: None,
            id: "c".repeat(64).into(),
            runtime: "containerd".into(),
            meta: None,
        }),
        pod: Some(Arc::new(PodMeta {
            name: "web-1".into(),
            namespace: "shop".into(),
            ..Default::default()
        })),
        metadata: MetadataStatus {
            status: Status::Complete,
            scope: "container",
            reason: None,
        },
    };
    let mut sink = std::io::sink();
    let (mut alerts, mut matched) = (0, 0);
    let start = Instant::now();
    for r in &recs {
        let Ok(ev) = decode(r) else { continue };
        let Some(mut e) = build(&ev, &mut table, &node) else {
            continue;
        };
        e.attribution = container.clone();
        for a in engine.evaluate(&rules, &e, start) {
            alerts += 1;
            matched += 1;
            let _ = serde_json::to_writer(&mut sink, &a);
        }
        if every_event {
            let _ = serde_json::to_writer(&mut sink, &e);
            let _ = sink.write_all(b"\n");
        }
    }
    // The windows' folded alerts, each with the count of the events it stands for (the first
    // of which went out at once).
    for a in engine.flush(Instant::now(), true) {
        alerts += 1;
        matched += a.dedup.count.saturating_sub(1) as usize;
        let _ = serde_json::to_writer(&mut sink, &a);
    }
    let secs = start.elapsed().as_secs_f64();
    PipelineResult {
        events: recs.len(),
        secs,
        events_per_sec: recs.len() as f64 / secs,
        alerts,
        matched,
    }
}
