//! The process table: seeded from /proc at start-up, kept current by fork, exec and exit
//! events, and asked for each event's process details and ancestry.
//!
//! Identity: a process is (pid, start time). Start times are compared in clock ticks, the unit of
//! /proc/<pid>/stat, so that processes seeded from /proc and processes learned from kernel events
//! (start_boottime in ns) get the same identity.
pub(crate) mod procfs;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;

/// How long an exited process stays resolvable (for its children's ancestry and late events).
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(30);
/// Upper bound of entries; beyond it exited entries are evicted early.
pub(crate) const MAX_ENTRIES: usize = 262_144;
/// Ancestors listed on each event.
pub(crate) const ANCESTRY_DEPTH: usize = 8;

/// Everything known about one process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcInfo {
    pub(crate) pid: u32,
    pub(crate) ppid: u32,
    /// Parent's start time in ticks (0 if unknown), to stop ancestry walks at pid reuse.
    pub(crate) parent_start: u64,
    pub(crate) start_ticks: u64,
    // The strings are shared (reference-counted) with every event of the process and with
    // forked children: an event costs a count, not a copy.
    pub(crate) exe: Arc<str>,
    pub(crate) args: Arc<[String]>,
    /// `args` joined by spaces, computed once per exec rather than per event.
    pub(crate) command_line: Arc<str>,
    /// [`process_id`] of this process, computed once when the entry is made.
    pub(crate) id: Arc<str>,
    pub(crate) cwd: Option<Arc<str>>,
    pub(crate) exited: Option<Instant>,
    /// Where the details came from.
    pub(crate) source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// Seen exec'ing (or forked from such a process) since the agent started.
    Exec,
    /// Read from /proc.
    Procfs,
    /// Known only from an event header: the details were not available.
    Unknown,
}

/// One entry of an event's ancestry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Ancestor {
    pub(crate) pid: u32,
    pub(crate) id: Arc<str>,
    pub(crate) exe: Arc<str>,
    /// Start time in /proc clock ticks (0 if unknown); not output.
    #[serde(skip)]
    pub(crate) start_ticks: u64,
}

/// Shrinks a map that is less than a quarter full to twice its length (never below 1024
/// entries' room, so a steady state does not grow and shrink it again and again).
pub(crate) fn shrink_map<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    m: &mut HashMap<K, V, S>,
) {
    if m.capacity() > 1024 && m.len() * 4 < m.capacity() {
        m.shrink_to((m.len() * 2).max(1024));
    }
}

/// Converts CLOCK_BOOTTIME ns (task start_boottime) to /proc clock ticks.
pub(crate) fn ns_to_ticks(ns: u64, clk_tck: u64) -> u64 {
    ns / (1_000_000_000 / clk_tck.max(1))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, going on from `h`.
fn fnv(mut h: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The identity hash after the boot id: the same for every process of the node, so a table
/// hashes it once.
fn boot_hash(boot_id: &str) -> u64 {
    fnv(FNV_OFFSET, boot_id.bytes())
}

/// The identity of (`pid`, `start_ticks`) after the boot id's hash `boot`: 16 lower-case hex
/// digits, as `{h:016x}` writes them, without the formatting machinery (every fork and exec
/// makes one).
fn id_digits(boot: u64, pid: u32, start_ticks: u64) -> [u8; 16] {
    let h = fnv(
        boot,
        pid.to_le_bytes()
            .into_iter()
            .chain(start_ticks.to_le_bytes()),
    );
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, d) in out.iter_mut().enumerate() {
        *d = HEX[((h >> ((15 - i) * 4)) & 0xf) as usize];
    }
    out
}

/// Stable identity of a process across pid reuse (and across nodes, through the boot id), as
/// [`ProcessTable::id_of`] makes it. FNV-1a 64: fast, stable across releases, and good enough to tell processes apart.
#[cfg(test)]
pub(crate) fn process_id(boot_id: &str, pid: u32, start_ticks: u64) -> String {
    let d = id_digits(boot_hash(boot_id), pid, start_ticks);
    d.iter().map(|&b| char::from(b)).collect()
}

/// Joins a relative path to a base directory, folding `.` and `..`.
pub(crate) fn join_path(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The program an exec ran, as an absolute path when the filename was relative (`./x`,
/// `bin/x`) and the working directory is known, and as the process's own binary when it
/// re-executed itself through `/proc/self/exe` (multi-call binaries such as busybox's
/// standalone shell run their applets that way).
pub(crate) fn resolve_exe(filename: &str, cwd: Option<&str>, previous: Option<&str>) -> String {
    match (cwd, previous) {
        (_, Some(prev)) if filename == SELF_EXE && prev.starts_with('/') && prev != SELF_EXE => {
            prev.to_string()
        }
        (Some(dir), _) if !filename.starts_with('/') && !filename.is_empty() => {
            join_path(dir, filename)
        }
        _ => filename.to_string(),
    }
}

/// The path a process re-executes itself through.
pub(crate) const SELF_EXE: &str = "/proc/self/exe";

/// Reads process details; the real implementation is /proc, tests may supply their own.
pub(crate) trait ProcSource {
    /// Everything about one process, or `None` when it is gone.
    fn read(&self, pid: u32) -> Option<ProcInfo>;
    /// The process's working directory.
    fn cwd(&self, pid: u32) -> Option<String>;
    /// What an open descriptor of the process refers to (a directory fd of the *at calls).
    fn fd_path(&self, pid: u32, fd: i64) -> Option<String>;
    /// Every process id there is.
    fn all_pids(&self) -> Vec<u32>;
}

pub(crate) struct ProcessTable<S: ProcSource> {
    /// By pid (FxHash: pids are small integers the kernel hands out, looked up on every event).
    procs: rustc_hash::FxHashMap<u32, ProcInfo>,
    exited: VecDeque<(u32, u64, Instant)>,
    source: S,
    /// The boot id's part of every identity ([`process_id`]), hashed once.
    boot: u64,
    clk_tck: u64,
    /// Entries evicted before their grace period ended (table full).
    pub(crate) evicted_early: u64,
}

impl<S: ProcSource> ProcessTable<S> {
    pub(crate) fn new(source: S, boot_id: String, clk_tck: u64) -> Self {
        ProcessTable {
            procs: rustc_hash::FxHashMap::default(),
            exited: VecDeque::new(),
            source,
            boot: boot_hash(&boot_id),
            clk_tck,
            evicted_early: 0,
        }
    }

    /// Stores an entry, filling its identity and, when it has new arguments (`join`), its
    /// joined command line.
    fn insert(&mut self, mut p: ProcInfo, join: bool) {
        p.id = self.shared_id_of(p.pid, p.start_ticks);
        if join {
            p.command_line = p.args.join(" ").into();
        }
        self.procs.insert(p.pid, p);
    }

    /// Loads every process currently in /proc. Call after the probes are attached, so that a
    /// process born in between is seen either here or through its fork event.
    /// Where details of processes come from.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    pub(crate) fn seed(&mut self) -> usize {
        let mut n = 0;
        for pid in self.source.all_pids() {
            if self.procs.contains_key(&pid) {
                continue;
            }
            if let Some(p) = self.source.read(pid) {
                self.insert(p, true);
                n += 1;
            }
        }
        n
    }

    pub(crate) fn ticks(&self, ns: u64) -> u64 {
        ns_to_ticks(ns, self.clk_tck)
    }

    pub(crate) fn id_of(&self, pid: u32, start_ticks: u64) -> String {
        let d = id_digits(self.boot, pid, start_ticks);
        d.iter().map(|&b| char::from(b)).collect()
    }

    /// [`ProcessTable::id_of`], made straight into the shared string the table keeps.
    fn shared_id_of(&self, pid: u32, start_ticks: u64) -> Arc<str> {
        let d = id_digits(self.boot, pid, start_ticks);
        // The digits are ASCII; the fallback never runs.
        Arc::from(std::str::from_utf8(&d).unwrap_or_default())
    }

    /// The entry for (pid, start), creating it from /proc (or as unknown) when the table has no
    /// matching entry: a stale entry of a previous process with the same pid is replaced.
    pub(crate) fn get_or_load(&mut self, pid: u32, start_ns: u64) -> &ProcInfo {
        let start = if start_ns == 0 {
            None
        } else {
            Some(self.ticks(start_ns))
        };
        let stale = match (self.procs.get(&pid), start) {
            (None, _) => true,
            (Some(p), Some(s)) => p.start_ticks != s,
            (Some(_), None) => false,
        };
        if stale {
            let loaded = self
                .source
                .read(pid)
                .filter(|p| start.is_none_or(|s| p.start_ticks == s))
                .unwrap_or_else(|| ProcInfo {
                    pid,
                    ppid: 0,
                    parent_start: 0,
                    start_ticks: start.unwrap_or(0),
                    exe: "".into(),
                    args: Arc::new([]),
                    command_line: "".into(),
                    id: "".into(),
                    cwd: None,
                    exited: None,
                    source: Source::Unknown,
                });
            self.insert(loaded, true);
        }
        &self.procs[&pid]
    }

    /// A process forked: the child starts as a copy of its parent.
    pub(crate) fn on_fork(
        &mut self,
        parent_pid: u32,
        parent_start_ns: u64,
        child_pid: u32,
        child_start_ns: u64,
    ) {
        let parent = self.get_or_load(parent_pid, parent_start_ns).clone();
        let child = ProcInfo {
            pid: child_pid,
            ppid: parent_pid,
            parent_start: parent.start_ticks,
            start_ticks: self.ticks(child_start_ns),
            exited: None,
            ..parent
        };
        self.insert(child, false);
    }

    /// A process replaced its image.
    pub(crate) fn on_exec(
        &mut self,
        pid: u32,
        start_ns: u64,
        ppid: u32,
        filename: &str,
        args: Vec<String>,
    ) {
        let start_ticks = self.ticks(start_ns);
        let parent_start = self.procs.get(&ppid).map(|p| p.start_ticks).unwrap_or(0);
        let entry = self.get_or_load(pid, start_ns);
        // The same process (pid and start) keeps its identity: no new id to make.
        let id = (entry.start_ticks == start_ticks).then(|| entry.id.clone());
        let parent_start = if entry.ppid == ppid && entry.parent_start != 0 {
            entry.parent_start
        } else {
            parent_start
        };
        let previous = entry.exe.clone();
        // The working directory followed through fork and chdir; /proc only when it is not
        // known (it races the process's exit).
        let cwd = entry
            .cwd
            .clone()
            .or_else(|| self.source.cwd(pid).map(Into::into));
        let previous = (!previous.is_empty()).then_some(&*previous);
        let exe = resolve_exe(filename, cwd.as_deref(), previous).into();
        let id = id.unwrap_or_else(|| self.shared_id_of(pid, start_ticks));
        let args: Arc<[String]> = args.into();
        self.procs.insert(
            pid,
            ProcInfo {
                pid,
                ppid,
                parent_start,
                start_ticks,
                exe,
                command_line: args.join(" ").into(),
                args,
                id,
                cwd,
                exited: None,
                source: Source::Exec,
            },
        );
    }

    /// A process changed its working directory to `dir` (absolute, already resolved).
    pub(crate) fn on_chdir(&mut self, pid: u32, start_ns: u64, dir: &str) {
        let start = self.ticks(start_ns);
        if let Some(p) = self.procs.get_mut(&pid)
            && (start_ns == 0 || p.start_ticks == start)
            && dir.starts_with('/')
        {
            p.cwd = Some(dir.into());
        }
    }

    /// The last thread of a process exited.
    pub(crate) fn on_exit(&mut self, pid: u32, start_ns: u64, now: Instant) {
        let start = self.ticks(start_ns);
        if let Some(p) = self.procs.get_mut(&pid)
            && (start_ns == 0 || p.start_ticks == start)
        {
            p.exited = Some(now);
            self.exited.push_back((pid, p.start_ticks, now));
        }
        self.sweep(now);
    }

    /// Forgets exited processes whose grace period is over (or early, when the table is full).
    pub(crate) fn sweep(&mut self, now: Instant) {
        while let Some(&(pid, start, at)) = self.exited.front() {
            let full = self.procs.len() > MAX_ENTRIES;
            if now.duration_since(at) < EXIT_GRACE && !full {
                break;
            }
            self.exited.pop_front();
            if let Some(p) = self.procs.get(&pid)
                && p.start_ticks == start
                && p.exited.is_some()
            {
                self.procs.remove(&pid);
                if full {
                    self.evicted_early += 1;
                }
            }
        }
        // A map keeps its largest size: after a storm of short-lived processes, give the room
        // back once most of it is empty.
        shrink_map(&mut self.procs);
        if self.exited.capacity() > 4096 && self.exited.len() * 4 < self.exited.capacity() {
            self.exited.shrink_to(self.exited.len() * 2);
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, pid: u32) -> Option<&ProcInfo> {
        self.procs.get(&pid)
    }

    /// Up to `depth` ancestors, nearest first; stops where a parent is unknown or its pid was
    /// reused.
    pub(crate) fn ancestry(&self, pid: u32, depth: usize) -> Vec<Ancestor> {
        let mut out = Vec::new();
        let Some(mut cur) = self.procs.get(&pid) else {
            return out;
        };
        while out.len() < depth && cur.ppid != 0 {
            let Some(parent) = self.procs.get(&cur.ppid) else {
                break;
            };
            if cur.parent_start != 0 && parent.start_ticks != cur.parent_start {
                break;
            }
            out.push(Ancestor {
                pid: parent.pid,
                id: parent.id.clone(),
                exe: parent.exe.clone(),
                start_ticks: parent.start_ticks,
            });
            if parent.pid == cur.pid {
                break;
            }
            cur = parent;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[derive(Default)]
    struct FakeProc {
        procs: RefCell<HashMap<u32, ProcInfo>>,
    }

    impl ProcSource for FakeProc {
        fn read(&self, pid: u32) -> Option<ProcInfo> {
            self.procs.borrow().get(&pid).cloned()
        }
        fn fd_path(&self, _: u32, _: i64) -> Option<String> {
            None
        }

        fn cwd(&self, pid: u32) -> Option<String> {
            self.procs
                .borrow()
                .get(&pid)
                .and_then(|p| p.cwd.as_deref().map(str::to_string))
        }
        fn all_pids(&self) -> Vec<u32> {
            self.procs.borrow().keys().copied().collect()
        }
    }

    fn p(pid: u32, ppid: u32, start: u64, exe: &str) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            parent_start: 0,
            start_ticks: start,
            exe: exe.into(),
            args: vec![exe.to_string()].into(),
            command_line: "".into(),
            id: "".into(),
            cwd: Some("/".into()),
            exited: None,
            source: Source::Procfs,
        }
    }

    // 100 ticks per second: 1 tick = 10 ms.
    const TICK: u64 = 10_000_000;

    fn table() -> ProcessTable<FakeProc> {
        let src = FakeProc::default();
        src.procs.borrow_mut().insert(1, p(1, 0, 1, "/sbin/init"));
        src.procs
            .borrow_mut()
            .insert(10, p(10, 1, 5, "/usr/sbin/sshd"));
        let mut t = ProcessTable::new(src, "boot".into(), 100);
        assert_eq!(t.seed(), 2);
        t
    }

    #[test]
    fn fork_exec_builds_ancestry() {
        let mut t = table();
        t.on_fork(10, 5 * TICK, 20, 7 * TICK);
        assert_eq!(&*t.get(20).expect("child").exe, "/usr/sbin/sshd");
        t.on_exec(20, 7 * TICK, 10, "/bin/bash", vec!["bash".into()]);
        t.on_fork(20, 7 * TICK, 30, 8 * TICK);
        t.on_exec(
            30,
            8 * TICK,
            20,
            "/usr/bin/curl",
            vec!["curl".into(), "x".into()],
        );
        let a = t.ancestry(30, 8);
        let exes: Vec<_> = a.iter().map(|a| &*a.exe).collect();
        assert_eq!(exes, ["/bin/bash", "/usr/sbin/sshd", "/sbin/init"]);
        assert_eq!(&*a[0].id, t.id_of(20, 7));
        assert_eq!(t.ancestry(30, 1).len(), 1);
    }

    #[test]
    fn working_directory_follows_chdir_and_resolves_relative_execs() {
        let mut t = table();
        t.on_fork(10, 5 * TICK, 20, 7 * TICK);
        t.on_chdir(20, 7 * TICK, "/srv/app");
        // The fork's child inherits the directory; /proc is not asked.
        t.on_fork(20, 7 * TICK, 30, 8 * TICK);
        assert_eq!(t.get(30).and_then(|p| p.cwd.as_deref()), Some("/srv/app"));
        t.on_exec(30, 8 * TICK, 20, "./bin/run", vec!["./bin/run".into()]);
        assert_eq!(&*t.get(30).expect("exec'd").exe, "/srv/app/bin/run");
        t.on_exec(30, 8 * TICK, 20, "../tool", vec!["../tool".into()]);
        assert_eq!(&*t.get(30).expect("exec'd").exe, "/srv/tool");
        // A relative chdir target is never stored (the builder resolves it first).
        t.on_chdir(30, 8 * TICK, "relative");
        assert_eq!(t.get(30).and_then(|p| p.cwd.as_deref()), Some("/srv/app"));
    }

    #[test]
    fn a_re_execution_through_proc_self_exe_keeps_the_binary() {
        let mut t = table();
        t.on_fork(10, 5 * TICK, 20, 7 * TICK);
        t.on_exec(20, 7 * TICK, 10, "/bin/busybox", vec!["sh".into()]);
        t.on_fork(20, 7 * TICK, 30, 8 * TICK);
        t.on_exec(30, 8 * TICK, 20, SELF_EXE, vec!["wget".into()]);
        assert_eq!(&*t.get(30).expect("exec'd").exe, "/bin/busybox");
        assert_eq!(resolve_exe(SELF_EXE, None, None), SELF_EXE);
    }

    #[test]
    fn identity_distinguishes_pid_reuse() {
        assert_ne!(process_id("b", 20, 7), process_id("b", 20, 8));
        assert_ne!(process_id("b", 20, 7), process_id("c", 20, 7));
        assert_eq!(process_id("b", 20, 7), process_id("b", 20, 7));
        assert_eq!(ns_to_ticks(1_234_567_890, 100), 123);
    }

    /// Identities are stable across releases: these are FNV-1a 64 over the boot id, pid and
    /// start time computed outside the project (Python), and the leading zero is kept.
    #[test]
    fn identity_is_fnv1a_in_sixteen_hex_digits() {
        assert_eq!(process_id("b", 20, 7), "b4b42a8f01514606");
        assert_eq!(process_id("0f3c", 1, 0), "03362b70368926f0");
        // The table hashes its boot id once and goes on from there: the same identities, as
        // the strings it keeps and as the ones it hands out.
        let t = ProcessTable::new(FakeProc::default(), "b".into(), 100);
        assert_eq!(t.id_of(20, 7), "b4b42a8f01514606");
        assert_eq!(&*t.shared_id_of(20, 7), "b4b42a8f01514606");
        let t = ProcessTable::new(FakeProc::default(), "0f3c".into(), 100);
        assert_eq!(&*t.shared_id_of(1, 0), "03362b70368926f0");
    }

    #[test]
    fn pid_reuse_replaces_stale_entry_and_breaks_ancestry() {
        let mut t = table();
        t.on_fork(10, 5 * TICK, 20, 7 * TICK);
        t.on_fork(20, 7 * TICK, 30, 8 * TICK);
        let now = Instant::now();
        t.on_exit(20, 7 * TICK, now);
        // pid 20 reused by an unrelated process: a fork from init.
        t.on_fork(1, TICK, 20, 50 * TICK);
        assert_eq!(t.get(20).expect("new").start_ticks, 50);
        // 30's recorded parent started at tick 7: the chain must not continue into the new 20.
        assert!(t.ancestry(30, 8).is_empty());
        // An event whose header start differs from the table replaces the entry.
        let e = t.get_or_load(20, 60 * TICK).clone();
        assert_eq!((e.start_ticks, e.source), (60, Source::Unknown));
    }

    #[test]
    fn exited_entries_live_for_the_grace_period() {
        let mut t = table();
        t.on_fork(10, 5 * TICK, 20, 7 * TICK);
        let now = Instant::now();
        t.on_exit(20, 7 * TICK, now);
        assert!(t.get(20).is_some(), "kept for late events and ancestry");
        t.sweep(now + EXIT_GRACE + Duration::from_secs(1));
        assert!(t.get(20).is_none());
        // An exit for an older incarnation does not mark the current one.
        t.on_fork(10, 5 * TICK, 21, 9 * TICK);
        t.on_exit(21, 3 * TICK, now);
        assert!(t.get(21).expect("21").exited.is_none());
    }

    #[test]
    fn unknown_process_gets_a_placeholder() {
        let mut t = table();
        let e = t.get_or_load(999, 42 * TICK).clone();
        assert_eq!(e.source, Source::Unknown);
        assert_eq!(e.start_ticks, 42);
    }
}
