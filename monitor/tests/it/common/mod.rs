//! Shared harness of the root integration tests: starts the real agent, creates and removes
//! cgroups, runs commands inside them.

pub(crate) mod conformance;
pub(crate) mod containerd;
pub(crate) mod pod;
pub(crate) mod promserver;
pub(crate) mod receivers;
pub(crate) mod rsyslog;

use std::{
    cell::RefCell,
    ffi::CString,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

/// The node, shared by the root tests that run at once, or held by one that loads it all.
static NODE: RwLock<()> = RwLock::new(());

/// This thread's hold on [`NODE`]; dropped when the test's thread ends.
enum NodeHold {
    Shared(#[allow(dead_code, reason = "held for its Drop")] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code, reason = "held for its Drop")] RwLockWriteGuard<'static, ()>),
}

thread_local! {
    static HOLD: RefCell<Option<NodeHold>> = const { RefCell::new(None) };
}

/// This test loads the whole node (a process storm, a ring-buffer flood, host-wide state): it
/// runs while no other root test does. Call it right after [`require_root`].
pub(crate) fn alone() {
    HOLD.with(|h| {
        if matches!(*h.borrow(), Some(NodeHold::Alone(_))) {
            return;
        }
        h.borrow_mut().take();
        let g = NODE.write().unwrap_or_else(|e| e.into_inner());
        *h.borrow_mut() = Some(NodeHold::Alone(g));
    });
}

/// True when the test can run. Without root it fails in CI (or when MONITOR_REQUIRE_ROOT is
/// set) and is reported as skipped elsewhere. A root test shares the node with the other
/// root tests until it ends, unless it asks to be [`alone`].
pub(crate) fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } == 0 {
        HOLD.with(|h| {
            if h.borrow().is_none() {
                let g = NODE.read().unwrap_or_else(|e| e.into_inner());
                *h.borrow_mut() = Some(NodeHold::Shared(g));
            }
        });
        return true;
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("MONITOR_REQUIRE_ROOT").is_some() {
        panic!("{test}: integration tests need root (CI runs them as root)");
    }
    eprintln!("SKIPPED {test}: needs root (run `cargo xtask test` as root)");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "monitor-test-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory (under the system's temp dir) removed on drop.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("monitor-test-{tag}-"))
                .tempdir()
                .expect("create temp dir"),
        )
    }
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A cgroup2 directory of our own, removed on drop (after its processes are gone).
pub(crate) struct TestCgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl TestCgroup {
    pub(crate) fn new(tag: &str) -> TestCgroup {
        // Hybrid hosts mount cgroup2 at /sys/fs/cgroup/unified; pure v2 hosts at /sys/fs/cgroup.
        let root = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/unified")
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let path = root.join(unique(tag));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = std::fs::metadata(&path).expect("stat cgroup").ino();
        TestCgroup { path, id }
    }

    /// A command that moves itself into this cgroup before exec.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in_cgroup(&self.path, program)
    }
}

/// A command that writes itself into the cgroup directory `dir` between fork and exec, so that
/// its very first event is already attributed to that cgroup.
pub(crate) fn command_in_cgroup(dir: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let procs = CString::new(dir.join("cgroup.procs").to_string_lossy().as_bytes()).expect("path");
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The real agent (`monitor trace`) running as a child process.
pub(crate) struct Agent {
    child: Option<Child>,
    dir: TempDir,
    /// `monitor run`: the conformance sinks are on, and checked at stop.
    conformance: bool,
}

pub(crate) struct Output {
    pub events: Vec<Value>,
    pub stats: Value,
    pub stderr: String,
    /// From SIGTERM to the agent's exit.
    pub exit_after: Duration,
}

impl Agent {
    pub(crate) fn start(args: &[&str]) -> Agent {
        Agent::start_with("trace", args)
    }

    /// Starts `monitor <subcommand>` (`trace` or `run`) with extra arguments.
    /// `monitor run` also writes every alert through the conformance sinks, validated at stop.
    pub(crate) fn start_with(subcommand: &str, args: &[&str]) -> Agent {
        let dir = TempDir::new("agent");
        let ready = dir.path().join("ready");
        let conformance = subcommand == "run";
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        if conformance {
            let at = args.iter().position(|a| a == "--config");
            let original = at.and_then(|i| args.get(i + 1)).map(PathBuf::from);
            let merged = conformance::config(original.as_deref(), dir.path());
            let merged = merged.display().to_string();
            match at {
                Some(i) if i + 1 < args.len() => args[i + 1] = merged,
                _ => args.extend(["--config".to_string(), merged]),
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg(subcommand)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--stats-json")
            .arg(dir.path().join("stats.json"))
            .args(&args)
            .stdout(std::fs::File::create(dir.path().join("events.jsonl")).expect("events file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start monitor");
        let mut agent = Agent {
            child: Some(child),
            dir,
            conformance,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(c) = agent.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("monitor exited early ({status}): {}", agent.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "monitor not ready in 60 s: {}",
                agent.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// What the agent has written to stdout so far (events or alerts), complete lines only.
    pub(crate) fn output_so_far(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the agent's output so far satisfies `ok`.
    pub(crate) fn wait_output(&self, what: &str, timeout: Duration, ok: impl Fn(&[Value]) -> bool) {
        wait_for(what, timeout, || ok(&self.output_so_far()));
    }

    /// Waits until the agent's log (stderr) has said `needle` at least `times` times.
    pub(crate) fn wait_log(&self, needle: &str, times: usize, timeout: Duration) {
        wait_for(&format!("log line `{needle}` x{times}"), timeout, || {
            self.stderr().matches(needle).count() >= times
        });
    }

    /// SIGTERM, wait, and read everything the agent wrote.
    pub(crate) fn stop(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        let sent = Instant::now();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait monitor");
        let exit_after = sent.elapsed();
        let stderr = self.stderr();
        assert!(status.success(), "monitor failed ({status}): {stderr}");
        let text = std::fs::read_to_string(self.dir.path().join("events.jsonl")).expect("events");
        let events = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
            .collect();
        let stats =
            std::fs::read_to_string(self.dir.path().join("stats.json")).expect("stats.json");
        if self.conformance {
            let n = conformance::check(self.dir.path());
            eprintln!(
                "conformance: {n} alerts valid in OCSF {}, OCSF {}, ECS {} and native",
                conformance::DEFAULT_OCSF,
                conformance::PINNED_OCSF,
                conformance::ECS
            );
        }
        Output {
            events,
            stats: serde_json::from_str(&stats).expect("stats JSON"),
            stderr,
            exit_after,
        }
    }
}

impl Agent {
    /// Waits for an agent that something else stopped (a signal sent by another process) and
    /// returns its exit status and what it wrote.
    pub(crate) fn wait_exit(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait monitor");
        let events = self.output_so_far();
        (status, events, self.stderr())
    }
}

/// A private instance of the BPF file system, mounted on a temporary directory for one test
/// and unmounted on drop: whatever is still pinned in it is released (and detached) with it.
pub(crate) struct BpfFs {
    dir: TempDir,
}

impl BpfFs {
    pub(crate) fn mount(tag: &str) -> BpfFs {
        let dir = TempDir::new(tag);
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t bpf on {}", dir.path().display());
        BpfFs { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The entries of a directory inside it, sorted.
    pub(crate) fn list(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join(sub))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command to completion, returning its stdout.
pub(crate) fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success() || out.status.code().is_some(),
        "command killed: {cmd:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wraps a command in new pid, mount and network namespaces (util-linux `unshare`), with a
/// private /proc.
pub(crate) fn in_namespaces(cg: &TestCgroup, program: &str, args: &[&str]) -> Command {
    let mut cmd = cg.command("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount",
        "--net",
        "--mount-proc",
        "--propagation",
        "private",
        program,
    ]);
    cmd.args(args);
    cmd
}

/// The trigger helper (crate `monitor-trigger`), built next to the agent by `cargo xtask test`.
pub(crate) fn trigger() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = Path::new(env!("CARGO_BIN_EXE_monitor")).with_file_name("monitor-trigger");
        assert!(
            p.exists(),
            "{} is missing: build it with `cargo build -p monitor-trigger` (cargo xtask test does)",
            p.display()
        );
        p.display().to_string()
    })
}

/// Events of `kind` from cgroup `cg`.
pub(crate) fn of_kind<'a>(events: &'a [Value], kind: &str, cg: u64) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == kind && e["cgroup_id"] == cg)
        .collect()
}

/// The single file/network/privilege event of `syscall` from `cg`, by its detail section.
pub(crate) fn by_syscall<'a>(
    events: &'a [Value],
    section: &str,
    syscall: &str,
    cg: u64,
) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["cgroup_id"] == cg && e[section]["syscall"] == syscall)
        .collect()
}

/// A directory for a test's files inside the build directory, not /tmp (which a rule
/// watches); removed on drop, so keep it bound while the files are used.
pub(crate) struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A directory for work that runs its own outputs (a build and its test binary), outside any
/// temporary directory whatever the checkout's path: `exec_from_temp_dir` rightly flags
/// programs run from /tmp, and a clone below /tmp puts the build directory there. Removed on
/// drop like [`scratch`].
pub(crate) fn work_dir(tag: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("monitor-test-{tag}-"))
            .tempdir_in("/var/lib")
            .expect("work dir below /var/lib"),
    )
}

pub(crate) fn scratch(tag: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("rules-{tag}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("scratch dir"),
    )
}

/// A cgroup laid out as kubelet + containerd (systemd driver) would: the agent sees a container.
pub(crate) struct FakeContainer {
    top: PathBuf,
    pub path: PathBuf,
    pub id: String,
}

impl FakeContainer {
    pub(crate) fn new(tag: &str) -> FakeContainer {
        let cg = TestCgroup::new(tag);
        let top = cg.path.clone();
        std::mem::forget(cg); // removed by our Drop, children first
        let n = top.metadata().expect("stat").ino();
        let id = format!(
            "{:064x}",
            u128::from(n) << 64 | u128::from(std::process::id())
        );
        let pod = top.join("kubepods-besteffort-pod0f6c2b1e_3a4d_4e5f_8a9b_1c2d3e4f5a6b.slice");
        std::fs::create_dir(&pod).expect("pod cgroup");
        let path = pod.join(format!("cri-containerd-{id}.scope"));
        std::fs::create_dir(&path).expect("container cgroup");
        FakeContainer { top, path, id }
    }

    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = command_in_cgroup(&self.path, program);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Runs to completion (status ignored: some behaviours are refused by the kernel, which is
    /// still an attempt worth an alert).
    pub(crate) fn run(&self, program: &str, args: &[&str]) {
        let _ = self
            .command(program)
            .args(args)
            .status()
            .expect("run in container cgroup");
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in [
            self.path.clone(),
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            self.top.clone(),
        ] {
            while std::fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Runs `script` in `fc` inside a private mount namespace: its mounts never reach the machine.
pub(crate) fn in_private_mounts(fc: &FakeContainer, script: &str) {
    fc.run(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            script,
        ],
    );
}

/// A system binary directory this machine has (a tmpfs goes over it in [`write_below`]).
pub(crate) fn binary_dir() -> &'static str {
    ["/usr/local/sbin", "/usr/local/bin"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .expect("a binary dir")
}

/// A directory below /etc this machine has (a tmpfs goes over it in [`write_below`]).
pub(crate) fn etc_dir() -> &'static str {
    ["/etc/cron.d", "/etc/opt", "/etc/default", "/etc/apt"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .expect("a dir below /etc")
}

/// Writes below `dir` from inside a private mount namespace with a tmpfs over `dir`: the
/// machine's own directory is never touched.
pub(crate) fn write_below(fc: &FakeContainer, dir: &str, file: &str) {
    in_private_mounts(
        fc,
        &format!("mount -t tmpfs monitor-test {dir} && touch {dir}/{file}"),
    );
}

/// One HTTP/1.1 GET on loopback; the whole response (status line, headers, body).
pub(crate) fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// The value of the first sample line starting with `line_start` (name and labels).
pub(crate) fn metric(text: &str, line_start: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `ok` every 100 ms until it holds; fails naming `what` after `timeout`.
pub(crate) fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The JSON lines of a file (a sink's output); a torn or invalid line fails the test.
pub(crate) fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn or bad line {l}: {e}")))
        .collect()
}

/// Sequence number of a native alert id (`<run>-<seq>`).
pub(crate) fn alert_seq(alert: &Value) -> u64 {
    alert["id"]
        .as_str()
        .and_then(|s| s.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("alert without id: {alert}"))
}

/// `n` unlinks of the absent file `<prefix>-<test pid>-absent` from inside `cg`.
pub(crate) fn unlink_markers(cg: &TestCgroup, prefix: &str, n: u64) {
    let path = format!("{prefix}-{}-absent", std::process::id());
    let st = cg
        .command(trigger())
        .args(["unlink-flood", &n.to_string(), &path])
        .status()
        .expect("trigger");
    assert!(st.success());
}

/// `monitor run` with a configuration file and one rules path, no built-in rules unless the
/// caller's extra flags ask, no baselines, no runtime, optionally watching only `cg`.
pub(crate) fn start_run(
    config: &Path,
    rules: &Path,
    builtin: bool,
    cg: Option<&TestCgroup>,
    extra: &[&str],
) -> Agent {
    let mut args = vec![
        "--config".to_string(),
        config.to_string_lossy().into_owned(),
        "--rules".into(),
        rules.to_string_lossy().into_owned(),
        "--no-baselines".into(),
        "--cri-socket".into(),
        "/nonexistent/monitor-test-cri.sock".into(),
    ];
    if !builtin {
        args.push("--no-default-rules".into());
    }
    if let Some(cg) = cg {
        args.push("--cgroup".into());
        args.push(cg.path.to_string_lossy().into_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start_with("run", &refs)
}
