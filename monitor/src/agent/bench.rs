//! The user-space pipeline alone, fed from records in memory: decode -> process table ->
//! enrichment -> default rules -> JSON. Used by `cargo xtask bench` (`monitor bench-pipeline`).
use std::{io::Write, sync::Arc, time::Instant};

use monitor_common::{EventKind, ExecBody, ExitBody, ForkBody, Header, Syscall, SyscallBody};

use crate::{
    capture::{
        decode::{RawEvent, decode, encode::record},
        route,
    },
    detect::rules::{self, Engine, RuleSet, RuleSource},
    event::{
        Attribution, ContainerView, MetadataStatus, NodeContext, PodMeta, Status, build, learn,
    },
    output::events::line,
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

/// The bench's containers: the processes of the mix run in this many cgroups.
const CONTAINERS: u64 = 8;

/// The cgroup (and so the container) of `pid`. Each container has an init (pids 900..908)
/// that forks the short-lived workers (pids from 1000, one per 20 records); the workers are dealt
/// to the containers so that each gets the same mix, alerting events included.
fn cgroup_of(pid: u32) -> u64 {
    let slot = match pid.checked_sub(1000) {
        Some(b) => u64::from(b + b / 8),
        None => u64::from(pid.saturating_sub(900)),
    };
    100 + slot % CONTAINERS
}

/// The container init that forks `pid`.
fn parent_of(pid: u32) -> u32 {
    900 + (cgroup_of(pid) - 100) as u32
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
        cgroup_id: cgroup_of(pid),
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
        ppid: parent_of(pid),
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
        // A process per 20 records: forked, exec'd, busy, gone.
        let pid = 1000 + ((i / 20) % 4096) as u32;
        let t = i * 1000;
        match i % 20 {
            0 => out.push(record(
                header(EventKind::Fork, parent_of(pid), t),
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

/// The records each worker's ring holds, in order, as the kernel programs write them (see
/// [`route`]).
fn kernel_rings(recs: &[Vec<u8>], workers: usize) -> Vec<Vec<&[u8]>> {
    let mut rings = vec![Vec::new(); workers];
    if workers > 1 {
        for r in recs {
            let p = route::peek(r);
            let own = p.owner(workers);
            for (i, ring) in rings.iter_mut().enumerate() {
                if i == own || p.replicated() {
                    ring.push(r.as_slice());
                }
            }
        }
    }
    rings
}

/// Result of one run.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PipelineResult {
    /// Records timed.
    pub(crate) events: usize,
    /// Records taken before the clock started ([`WARM_UP`] in `monitor bench-pipeline`).
    pub(crate) warm_up: usize,
    /// Pipeline workers (threads), each owning the events of some cgroups.
    pub(crate) workers: usize,
    pub(crate) secs: f64,
    pub(crate) events_per_sec: f64,
    /// Alerts delivered (dedup windows fold repeated ones), warm-up included.
    pub(crate) alerts: usize,
    /// Events that matched a rule (delivered or folded), warm-up included.
    pub(crate) matched: usize,
}

/// A pipeline worker: its own process table, an engine on the shared rule state, the
/// containers' attribution, and a sink.
struct Worker {
    worker: usize,
    workers: usize,
    table: ProcessTable<NoProc>,
    engine: Engine,
    every_event: bool,
    lines: line::Lines,
    out: Vec<u8>,
    alerts: usize,
    matched: usize,
}

impl Worker {
    fn new(worker: usize, workers: usize, engine: Engine, every_event: bool) -> Worker {
        Worker {
            worker,
            workers,
            table: ProcessTable::new(NoProc, "bench".into(), 100),
            engine,
            every_event,
            lines: line::Lines::default(),
            out: Vec::with_capacity(1 << 16),
            alerts: 0,
            matched: 0,
        }
    }

    /// One record's bytes, decoded and judged: the whole per-record work of a worker. Never
    /// inlined, so that an instruction counter can be told to count inside it alone
    /// (`cargo xtask bench` runs callgrind with `--toggle-collect` on this function).
    #[inline(never)]
    fn take(&mut self, rec: &[u8], rules: &RuleSet, ctx: &Context, now: Instant) {
        if let Ok(ev) = decode(rec) {
            self.record(&ev, rules, ctx, now);
        }
    }

    /// One record, as a pipeline worker takes it.
    fn record(&mut self, ev: &RawEvent, rules: &RuleSet, ctx: &Context, now: Instant) {
        if route::Peek::of(ev).owner(self.workers) != self.worker {
            learn(ev, &mut self.table, &ctx.node);
            return;
        }
        let Some(mut e) = build(ev, &mut self.table, &ctx.node) else {
            return;
        };
        let slot = (e.cgroup_id % CONTAINERS) as usize;
        if let Some(a) = ctx.containers.get(slot) {
            e.attribution = a.clone();
        }
        for a in self.engine.evaluate(rules, &e, now) {
            self.alerts += 1;
            self.matched += 1;
            let _ = serde_json::to_writer(&mut self.out, &a);
        }
        if self.every_event {
            let _ = self.lines.write(&mut self.out, &e);
            self.out.push(b'\n');
        }
        // What a sink would write out.
        if self.out.len() >= 1 << 16 {
            std::io::sink().write_all(&self.out).ok();
            self.out.clear();
        }
    }
}

/// What a worker reads: the node and the containers' attribution (the CRI's answers). Each
/// worker has its own, as each of the agent's workers has its own attributor and cache.
struct Context {
    node: NodeContext,
    containers: Vec<Attribution>,
}

fn context() -> Context {
    let containers = (0..CONTAINERS)
        .map(|i| Attribution {
            container: Some(ContainerView {
                pod_uid_from_cgroup: None,
                id: format!("{i:x}").repeat(64).into(),
                runtime: "containerd".into(),
                meta: None,
            }),
            pod: Some(Arc::new(PodMeta {
                name: format!("web-{i}"),
                namespace: "shop".into(),
                ..Default::default()
            })),
            metadata: MetadataStatus {
                status: Status::Complete,
                scope: "container",
                reason: None,
            },
        })
        .collect();
    Context {
        node: NodeContext {
            node: "bench".into(),
            boot_to_wall_ns: 1_700_000_000_000_000_000,
        },
        containers,
    }
}

/// Records each worker takes before the clock starts: enough for the process table to have
/// seen every pid of the mix (a cycle is 4,096 processes of 20 records) and for the heaps to
/// hold what a running agent's hold, so that what is timed is the steady state of a running
/// agent and not its first page faults and table growth (which, in runs of a fraction of a
/// second, moved the two-worker figure by a third from one run to the next).
const WARM_UP: usize = 200_000;

/// Runs `n` records through the whole user-space pipeline; with `every_event` each event is
/// also written as JSON (what `monitor trace` does), else only alerts are (what `monitor run`
/// does). With one worker everything runs on this thread. With more, each worker is a thread
/// that decodes and judges the records of its own ring, as in the agent: the rings are filled
/// before the clock starts, as the kernel programs fill them (a record to the ring of its
/// cgroup's worker, lifecycle records to every ring), on the CPUs of the tasks that make them.
/// Before the clock starts, every worker takes the [`WARM_UP`] records that precede the `n`
/// timed ones in the same stream; alerts and matches are counted over both.
pub(crate) fn run(n: usize, every_event: bool, workers: usize) -> PipelineResult {
    run_after(WARM_UP, n, every_event, workers)
}

/// [`run`] with `warm_up` records before the clock starts.
fn run_after(warm_up: usize, n: usize, every_event: bool, workers: usize) -> PipelineResult {
    let workers = workers.max(1);
    let all = records(warm_up + n);
    let (warm, recs) = all.split_at(warm_up.min(all.len()));
    let rules = rules::load(&[RuleSource::Builtin]).unwrap_or_default();
    let ctx = context();
    let shared = Engine::default();
    let now = Instant::now();
    let (secs, done): (f64, Vec<Worker>) = if workers == 1 {
        let mut w = Worker::new(0, 1, shared.worker(), every_event);
        for r in warm {
            w.take(r, &rules, &ctx, now);
        }
        let start = Instant::now();
        for r in recs {
            w.take(r, &rules, &ctx, now);
        }
        (start.elapsed().as_secs_f64(), vec![w])
    } else {
        let rings = kernel_rings(warm, workers)
            .into_iter()
            .zip(kernel_rings(recs, workers));
        // The workers and this thread: the clock starts when every worker is warm.
        let warmed = std::sync::Barrier::new(workers + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = rings
                .enumerate()
                .map(|(i, (warm, ring))| {
                    let mut w = Worker::new(i, workers, shared.worker(), every_event);
                    let (rules, warmed) = (&rules, &warmed);
                    s.spawn(move || {
                        let ctx = &context();
                        for r in warm {
                            w.take(r, rules, ctx, now);
                        }
                        warmed.wait();
                        for r in ring {
                            w.take(r, rules, ctx, now);
                        }
                        w
                    })
                })
                .collect();
            warmed.wait();
            let start = Instant::now();
            let done = handles.into_iter().filter_map(|h| h.join().ok()).collect();
            (start.elapsed().as_secs_f64(), done)
        })
    };
    // The windows' folded alerts, each with the count of the events it stands for (the first
    // of which went out at once).
    let mut sink = std::io::sink();
    let (mut alerts, mut matched) = (0, 0);
    for a in shared.worker().flush(Instant::now(), true) {
        alerts += 1;
        matched += a.dedup.count.saturating_sub(1) as usize;
        let _ = serde_json::to_writer(&mut sink, &a);
    }
    for w in &done {
        alerts += w.alerts;
        matched += w.matched;
    }
    PipelineResult {
        events: recs.len(),
        warm_up: warm.len(),
        workers,
        secs,
        events_per_sec: recs.len() as f64 / secs,
        alerts,
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The warm-up is taken but not timed, by every worker: the counts are those of the whole
    /// stream, the same with one worker as with a pool, and the rate is of the timed records.
    #[test]
    fn the_warm_up_is_taken_untimed_by_every_worker() {
        let one = run_after(3000, 5000, false, 1);
        let pool = run_after(3000, 5000, false, 3);
        for r in [&one, &pool] {
            assert_eq!((r.events, r.warm_up), (5000, 3000));
            assert!((r.events_per_sec * r.secs - 5000.0).abs() < 1.0, "{r:?}");
        }
        // 1 in 40 records reads /etc/shadow, 1 in 160 runs a shell: 200 + 50 over 8,000.
        assert_eq!(one.matched, 250, "{one:?}");
        assert_eq!((pool.matched, pool.alerts), (one.matched, one.alerts));
    }

    /// The trace lines the bench measures are the ones serde_json would write for the same
    /// decoded events (exec, fork, exit, files, network, in eight containers).
    #[test]
    fn trace_lines_of_the_bench_events_are_serdes() {
        let ctx = context();
        let mut table = ProcessTable::new(NoProc, "bench".into(), 100);
        let mut kinds = std::collections::BTreeSet::new();
        let mut lines = line::Lines::default();
        for r in records(4000) {
            let ev = decode(&r).expect("the bench's records decode");
            let Some(mut e) = build(&ev, &mut table, &ctx.node) else {
                continue;
            };
            if let Some(a) = ctx.containers.get((e.cgroup_id % CONTAINERS) as usize) {
                e.attribution = a.clone();
            }
            let mut ours = Vec::new();
            lines.write(&mut ours, &e).expect("write");
            assert_eq!(ours, serde_json::to_vec(&e).expect("serde"));
            kinds.insert(e.kind);
        }
        assert!(kinds.len() >= 5, "{kinds:?}");
    }
}
