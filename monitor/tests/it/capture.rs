//! Root integration tests: the real agent, the real kernel, real actions in a cgroup and
//! namespaces the test creates.

use serde_json::Value;

use crate::common::*;

fn one<'a>(v: Vec<&'a Value>, what: &str, all: &[Value]) -> &'a Value {
    match v.as_slice() {
        [x] => x,
        _ => panic!(
            "expected one {what}, got {}: {:#?}\nall events: {}",
            v.len(),
            v,
            all.len()
        ),
    }
}

#[test]
fn process_lifecycle_in_new_namespaces() {
    if !require_root("process_lifecycle_in_new_namespaces") {
        return;
    }
    let cg = TestCgroup::new("proc");
    let agent = Agent::start(&[]);
    let agent_pid = agent.pid();
    let mut cmd = in_namespaces(
        &cg,
        "/bin/sh",
        &["-c", "/bin/true marker-arg 'two words'; exit 7"],
    );
    let mut child = cmd.spawn().expect("spawn unshare");
    let unshare_pid = child.id();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(7));
    let out = agent.stop();
    let ev = &out.events;

    // unshare forks the namespaced child, which execs /bin/sh.
    let sh_exec = one(
        of_kind(ev, "exec", cg.id)
            .into_iter()
            .filter(|e| e["exec"]["filename"] == "/bin/sh")
            .collect(),
        "exec of /bin/sh",
        ev,
    );
    let sh_pid = sh_exec["process"]["pid"].as_u64().expect("pid");
    assert_eq!(sh_exec["process"]["ppid"], unshare_pid);
    assert_eq!(
        sh_exec["exec"]["args"],
        serde_json::json!(["/bin/sh", "-c", "/bin/true marker-arg 'two words'; exit 7"])
    );
    assert_eq!(sh_exec["process"]["ancestors"][0]["pid"], unshare_pid);
    assert_eq!(
        sh_exec["process"]["ancestors"][0]["exe"],
        "/usr/bin/unshare"
    );

    let fork = one(
        of_kind(ev, "fork", cg.id)
            .into_iter()
            .filter(|e| e["fork"]["child_pid"] == sh_pid)
            .collect(),
        "fork of sh",
        ev,
    );
    assert_eq!(fork["process"]["pid"], unshare_pid);
    assert_eq!(
        fork["fork"]["child_id"], sh_exec["process"]["id"],
        "fork and exec agree on identity"
    );

    // sh forks /bin/true with the exact argv.
    let t = one(
        of_kind(ev, "exec", cg.id)
            .into_iter()
            .filter(|e| e["exec"]["filename"] == "/bin/true")
            .collect(),
        "exec of /bin/true",
        ev,
    );
    assert_eq!(
        t["exec"]["args"],
        serde_json::json!(["/bin/true", "marker-arg", "two words"])
    );
    assert_eq!(t["process"]["ppid"], sh_pid);
    assert_eq!(t["process"]["ancestors"][0]["exe"], "/bin/sh");
    assert_ne!(t["process"]["id"], sh_exec["process"]["id"]);

    let exit = one(
        of_kind(ev, "exit", cg.id)
            .into_iter()
            .filter(|e| e["process"]["pid"] == sh_pid)
            .collect(),
        "exit of sh",
        ev,
    );
    assert_eq!(exit["exit"]["code"], 7);
    assert_eq!(exit["process"]["uid"], 0);
    // The agent's own activity is dropped in the kernel.
    assert!(
        ev.iter().all(|e| e["process"]["pid"] != agent_pid),
        "agent saw itself"
    );
}

#[test]
fn file_events_with_paths_flags_and_results() {
    if !require_root("file_events_with_paths_flags_and_results") {
        return;
    }
    let cg = TestCgroup::new("file");
    let dir = TempDir::new("file");
    let d = dir.path().to_string_lossy().into_owned();
    let agent = Agent::start(&[]);
    let log = run(in_namespaces(&cg, trigger(), &["file", &d]));
    assert!(
        log.contains("\"call\":\"openat\",\"result\":3") || log.contains("\"call\":\"openat\""),
        "{log}"
    );
    let out = agent.stop();
    let ev = &out.events;
    let p = |n: &str| format!("{d}/{n}");

    let open = one(
        by_syscall(ev, "file", "openat", cg.id)
            .into_iter()
            .filter(|e| e["file"]["path"] == p("f"))
            .collect(),
        "openat of f",
        ev,
    );
    assert_eq!(open["kind"], "open");
    assert!(open["file"]["result"].as_i64().expect("result") >= 0);
    assert_eq!(
        open["file"]["flag_names"],
        serde_json::json!(["O_WRONLY", "O_CREAT", "O_CLOEXEC"])
    );
    assert_eq!(open["file"]["mode"], "0640");

    let missing = one(
        by_syscall(ev, "file", "openat", cg.id)
            .into_iter()
            .filter(|e| e["file"]["path"] == p("missing"))
            .collect(),
        "openat of missing",
        ev,
    );
    assert_eq!(missing["file"]["result"], -2);
    assert_eq!(missing["file"]["error"], "ENOENT");

    let mk = one(by_syscall(ev, "file", "mkdirat", cg.id), "mkdirat", ev);
    assert_eq!(
        (
            mk["kind"].as_str(),
            mk["file"]["path"].as_str(),
            mk["file"]["mode"].as_str()
        ),
        (Some("mkdir"), Some(p("d").as_str()), Some("0750"))
    );
    let ch = one(by_syscall(ev, "file", "fchmodat", cg.id), "fchmodat", ev);
    assert_eq!(
        (
            ch["kind"].as_str(),
            ch["file"]["mode"].as_str(),
            ch["file"]["result"].as_i64()
        ),
        (Some("chmod"), Some("0600"), Some(0))
    );
    let co = one(by_syscall(ev, "file", "fchownat", cg.id), "fchownat", ev);
    assert_eq!(
        (
            co["kind"].as_str(),
            co["file"]["owner_uid"].as_i64(),
            co["file"]["owner_gid"].as_i64()
        ),
        (Some("chown"), Some(1234), Some(5678))
    );
    let rn = one(by_syscall(ev, "file", "renameat", cg.id), "renameat", ev);
    assert_eq!(
        (
            rn["kind"].as_str(),
            rn["file"]["path"].as_str(),
            rn["file"]["target"].as_str()
        ),
        (Some("rename"), Some(p("f").as_str()), Some(p("g").as_str()))
    );
    let sl = one(by_syscall(ev, "file", "symlinkat", cg.id), "symlinkat", ev);
    assert_eq!(
        (
            sl["kind"].as_str(),
            sl["file"]["path"].as_str(),
            sl["file"]["target"].as_str()
        ),
        (Some("symlink"), Some("g"), Some(p("s").as_str()))
    );
    let ln = one(by_syscall(ev, "file", "linkat", cg.id), "linkat", ev);
    assert_eq!(
        (
            ln["kind"].as_str(),
            ln["file"]["target"].as_str(),
            ln["file"]["result"].as_i64()
        ),
        (Some("link"), Some(p("h").as_str()), Some(0))
    );
    let un: Vec<_> = by_syscall(ev, "file", "unlinkat", cg.id)
        .into_iter()
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|s| s.starts_with(&d))
        })
        .collect();
    assert_eq!(un.len(), 2, "{un:#?}");
    assert!(
        un.iter()
            .all(|e| e["kind"] == "unlink" && e["file"]["result"] == 0)
    );
    assert!(
        un.iter().any(|e| e["file"]["path"] == p("d"))
            && un.iter().any(|e| e["file"]["path"] == p("h"))
    );
}

#[test]
fn network_events_and_tcp_states() {
    if !require_root("network_events_and_tcp_states") {
        return;
    }
    let cg = TestCgroup::new("net");
    let dir = TempDir::new("net");
    let d = dir.path().to_string_lossy().into_owned();
    let agent = Agent::start(&[]);
    let log = run(in_namespaces(&cg, trigger(), &["net", "47011", &d]));
    let out = agent.stop();
    let ev = &out.events;

    let binds = by_syscall(ev, "network", "bind", cg.id);
    let b4 = one(
        binds
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "inet")
            .collect(),
        "inet bind",
        ev,
    );
    assert_eq!(
        (
            b4["network"]["address"].as_str(),
            b4["network"]["port"].as_u64(),
            b4["network"]["result"].as_i64()
        ),
        (Some("127.0.0.1"), Some(47011), Some(0)),
        "{log}"
    );
    let b6 = one(
        binds
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "inet6")
            .collect(),
        "inet6 bind",
        ev,
    );
    assert_eq!(
        (
            b6["network"]["address"].as_str(),
            b6["network"]["port"].as_u64()
        ),
        (Some("::1"), Some(47012))
    );
    let bu = one(
        binds
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "unix")
            .collect(),
        "unix bind",
        ev,
    );
    assert_eq!(bu["network"]["unix_path"], format!("{d}/sock"));

    let listens = by_syscall(ev, "network", "listen", cg.id);
    assert_eq!(listens.len(), 2);
    assert!(
        listens
            .iter()
            .all(|e| e["network"]["backlog"] == 16 && e["network"]["result"] == 0)
    );

    let connects = by_syscall(ev, "network", "connect", cg.id);
    let c4 = one(
        connects
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "inet")
            .collect(),
        "inet connect",
        ev,
    );
    assert_eq!(
        (
            c4["network"]["address"].as_str(),
            c4["network"]["port"].as_u64(),
            c4["network"]["result"].as_i64()
        ),
        (Some("127.0.0.1"), Some(47011), Some(0))
    );
    one(
        connects
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "inet6" && e["network"]["port"] == 47012)
            .collect(),
        "inet6 connect",
        ev,
    );

    let accepts = by_syscall(ev, "network", "accept4", cg.id);
    let a4 = one(
        accepts
            .iter()
            .copied()
            .filter(|e| e["network"]["family"] == "inet")
            .collect(),
        "inet accept",
        ev,
    );
    assert_eq!(a4["network"]["address"], "127.0.0.1");
    assert!(a4["network"]["fd"].as_i64().expect("fd") >= 0);
    assert_eq!(a4["kind"], "accept");

    let tcp = of_kind(ev, "tcp_state", cg.id);
    assert!(
        tcp.iter()
            .any(|e| e["tcp"]["new_state"] == "LISTEN" && e["tcp"]["sport"] == 47011),
        "{tcp:#?}"
    );
    assert!(tcp.iter().any(|e| e["tcp"]["new_state"] == "SYN_SENT"
        && e["tcp"]["dport"] == 47011
        && e["tcp"]["daddr"] == "127.0.0.1"));
    assert!(tcp.iter().any(|e| e["tcp"]["new_state"] == "LISTEN"
        && e["tcp"]["sport"] == 47012
        && e["tcp"]["family"] == "inet6"));
}

#[test]
fn privilege_and_escape_relevant_calls() {
    if !require_root("privilege_and_escape_relevant_calls") {
        return;
    }
    let cg = TestCgroup::new("priv");
    let dir = TempDir::new("priv");
    let d = dir.path().to_string_lossy().into_owned();
    let agent = Agent::start(&[]);
    let log = run(in_namespaces(&cg, trigger(), &["priv", &d]));
    let out = agent.stop();
    let ev = &out.events;
    let get = |s: &str| one(by_syscall(ev, "privilege", s, cg.id), s, ev);

    let cap = get("capset");
    assert_eq!(
        (
            cap["kind"].as_str(),
            cap["privilege"]["result"].as_i64(),
            cap["privilege"]["old_uid"].as_u64()
        ),
        (Some("capset"), Some(0), Some(0)),
        "{log}"
    );
    assert!(
        cap["privilege"]["cap_effective"]
            .as_str()
            .is_some_and(|s| s.starts_with("0x"))
    );
    let pt = one(
        by_syscall(ev, "privilege", "ptrace", cg.id)
            .into_iter()
            .filter(|e| e["privilege"]["request"] == "PTRACE_ATTACH")
            .collect(),
        "ptrace attach",
        ev,
    );
    // The target is the pid as passed, i.e. in the caller's pid namespace.
    assert_eq!(
        (
            pt["privilege"]["request"].as_str(),
            pt["privilege"]["result"].as_i64()
        ),
        (Some("PTRACE_ATTACH"), Some(0))
    );
    assert!(pt["privilege"]["target_pid"].as_i64().expect("target") > 0);
    // `unshare --mount-proc` mounts too; ours is the tmpfs named trigger-tmpfs.
    let m = one(
        by_syscall(ev, "privilege", "mount", cg.id)
            .into_iter()
            .filter(|e| e["privilege"]["source"] == "trigger-tmpfs")
            .collect(),
        "mount of trigger-tmpfs",
        ev,
    );
    assert_eq!(
        (
            m["privilege"]["source"].as_str(),
            m["privilege"]["fstype"].as_str(),
            m["privilege"]["result"].as_i64()
        ),
        (Some("trigger-tmpfs"), Some("tmpfs"), Some(0))
    );
    assert_eq!(m["privilege"]["target"], format!("{d}/mnt"));
    assert_eq!(
        m["privilege"]["flag_names"],
        serde_json::json!(["MS_NOSUID", "MS_NODEV"])
    );
    let um = get("umount2");
    assert_eq!(
        (um["kind"].as_str(), um["privilege"]["target"].as_str()),
        (Some("umount"), Some(format!("{d}/mnt").as_str()))
    );
    let un: Vec<_> = by_syscall(ev, "privilege", "unshare", cg.id);
    // `unshare` the tool calls unshare(2) too; ours asks for a new UTS namespace only.
    one(
        un.into_iter()
            .filter(|e| e["privilege"]["flag_names"] == serde_json::json!(["CLONE_NEWUTS"]))
            .collect(),
        "unshare(CLONE_NEWUTS)",
        ev,
    );
    let sn = get("setns");
    assert_eq!(
        (
            sn["privilege"]["flag_names"][0].as_str(),
            sn["privilege"]["result"].as_i64()
        ),
        (Some("CLONE_NEWUTS"), Some(0))
    );
    let mf = get("memfd_create");
    assert_eq!(mf["privilege"]["name"], "trigger-memfd");
    assert!(mf["privilege"]["fd"].as_i64().expect("fd") >= 0);
    let bpf = get("bpf");
    assert_eq!(bpf["privilege"]["command"], "BPF_PROG_LOAD");
    assert!(bpf["privilege"]["result"].as_i64().expect("result") < 0);
    let dup = get("dup3");
    assert_eq!(
        (dup["kind"].as_str(), dup["privilege"]["new_fd"].as_i64()),
        (Some("dup"), Some(2))
    );
    let sg = get("setgid");
    assert_eq!(
        (
            sg["privilege"]["ids"][0].as_i64(),
            sg["privilege"]["result"].as_i64()
        ),
        (Some(4321), Some(0))
    );
    let su = get("setresuid");
    assert_eq!(
        su["privilege"]["ids"],
        serde_json::json!([4321, 4321, 4321])
    );
    assert_eq!(
        (
            su["privilege"]["old_uid"].as_u64(),
            su["process"]["uid"].as_u64(),
            su["process"]["euid"].as_u64()
        ),
        (Some(0), Some(4321), Some(4321))
    );

    // Module loading: captured where the kernel has the syscall, reported as skipped where not.
    let modules = by_syscall(ev, "privilege", "init_module", cg.id);
    if std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_init_module").exists() {
        assert_eq!(modules.len(), 1);
    } else {
        assert!(modules.is_empty());
        assert!(
            out.stderr.contains("init_module") && out.stderr.contains("probe skipped"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn ring_buffer_flood_accounting_is_exact() {
    if !require_root("ring_buffer_flood_accounting_is_exact") {
        return;
    }
    // Floods the node: other tests' agents would see (and lose) its events.
    alone();
    const PER_PROC: u64 = 200_000;
    let cg = TestCgroup::new("flood");
    let cgroup = cg.path.to_string_lossy().into_owned();
    // A one-page ring buffer, filtered in the kernel to the test's cgroup: it must overflow.
    let agent = Agent::start(&[
        "--cgroup",
        &cgroup,
        "--ring-buffer-bytes",
        "4096",
        "--kind",
        "unlink",
        // The flood repeats one call: folded in the kernel, it would not overflow the ring.
        "--set",
        "capture.fold_window=0s",
    ]);
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            cg.command(trigger())
                .args([
                    "unlink-flood",
                    &PER_PROC.to_string(),
                    "/nonexistent/monitor-flood",
                ])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for k in &mut kids {
        assert!(k.wait().expect("wait").success());
    }
    let out = agent.stop();
    let generated = 2 * PER_PROC;
    let kernel = &out.stats["kernel"]["kinds"]["unlink"];
    let submitted = kernel["submitted"].as_u64().expect("submitted");
    let kdropped = kernel["dropped"].as_u64().expect("dropped");
    let received = out.stats["received"]["unlink"].as_u64().expect("received");
    let printed = out
        .events
        .iter()
        .filter(|e| e["kind"] == "unlink" && e["cgroup_id"] == cg.id)
        .count() as u64;
    eprintln!(
        "generated={generated} submitted={submitted} kernel_dropped={kdropped} received={received} printed={printed}"
    );
    assert!(kdropped > 0, "the flood should overflow a one-page ring");
    assert_eq!(
        submitted + kdropped,
        generated,
        "every attempt is either submitted or counted as dropped"
    );
    assert_eq!(received, submitted, "everything submitted is read");
    // The ring is the one place records wait: nothing read is lost after it.
    assert_eq!(printed, received, "everything read is printed");
    assert_eq!(out.stats["decode_errors"], 0);
}

/// The probes line of an agent's log: what it attached.
fn attached_probes(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .find(|l| l.contains("kernel probes attached"))
        .and_then(|l| l.split("probes=").nth(1))
        .map(|p| p.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn the_bench_floor_attaches_exactly_the_agents_tracepoints() {
    if !require_root("the_bench_floor_attaches_exactly_the_agents_tracepoints") {
        return;
    }
    let agent = Agent::start(&["--kind", "exec"]);
    let agent_probes = attached_probes(&agent.stop().stderr);
    assert!(agent_probes.len() > 40, "{agent_probes:?}");
    let dir = TempDir::new("floor");
    let ready = dir.path().join("ready");
    let mut floor = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["bench-floor", "--ready-file"])
        .arg(&ready)
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr"))
        .spawn()
        .expect("bench-floor");
    wait_for(
        "the floor's programs",
        std::time::Duration::from_secs(30),
        || ready.exists() || floor.try_wait().ok().flatten().is_some(),
    );
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(floor.id() as i32, libc::SIGTERM) };
    let st = floor.wait().expect("wait bench-floor");
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(st.success(), "{log}");
    assert_eq!(
        attached_probes(&log),
        agent_probes,
        "the floor must hook what the agent hooks, no more, no less"
    );
}

/// Operations submitted through io_uring make no syscall: they must still be reported, as the
/// events their syscalls would produce, with every field, marked `via: io_uring`.
#[test]
fn io_uring_operations_are_reported_as_their_syscalls() {
    if !require_root("io_uring_operations_are_reported_as_their_syscalls") {
        return;
    }
    let cg = TestCgroup::new("uring");
    let dir = TempDir::new("uring");
    let d = dir.path().to_string_lossy().into_owned();
    let agent = Agent::start(&[]);
    let log = run(in_namespaces(&cg, trigger(), &["uring-files", &d]));
    assert!(
        log.contains("\"call\":\"io_uring:unlinkat\",\"result\":0"),
        "{log}"
    );
    // The listener and the connect in one new network namespace: loopback only.
    let script = format!(
        "ip link set lo up && {t} uring-open /etc/hostname && (busybox nc -l -p 47390 >/dev/null & sleep 0.3; {t} uring-connect 47390)",
        t = trigger()
    );
    let log = run(in_namespaces(&cg, "/bin/sh", &["-c", &script]));
    assert!(
        log.contains("\"call\":\"io_uring:connect\",\"result\":0"),
        "{log}"
    );
    let out = agent.stop();
    let ev = &out.events;
    let p = |n: &str| format!("{d}/{n}");
    let via: Vec<&Value> = ev
        .iter()
        .filter(|e| {
            e["cgroup_id"] == cg.id
                && (e["file"]["via"] == "io_uring" || e["network"]["via"] == "io_uring")
        })
        .collect();
    let find = |kind: &str, f: &dyn Fn(&Value) -> bool| -> &Value {
        via.iter()
            .copied()
            .find(|e| e["kind"] == kind && f(e))
            .unwrap_or_else(|| panic!("no io_uring {kind}: {via:#?}"))
    };
    let open = find("open", &|e| e["file"]["path"] == p("uf"));
    assert_eq!(open["file"]["syscall"], "openat");
    assert_eq!(
        open["file"]["flag_names"],
        serde_json::json!(["O_WRONLY", "O_CREAT", "O_CLOEXEC"])
    );
    assert_eq!(open["file"]["mode"], "0640");
    assert_eq!(open["file"]["result"], 0, "written at submission");
    let read = find("open", &|e| e["file"]["path"] == "/etc/hostname");
    assert_eq!(read["file"]["flag_names"], serde_json::json!(["O_RDONLY"]));
    assert_eq!(
        find("mkdir", &|e| e["file"]["path"] == p("ud"))["file"]["mode"],
        "0750"
    );
    let rn = find("rename", &|e| e["file"]["path"] == p("uf"));
    assert_eq!(rn["file"]["target"], p("ug"));
    let ln = find("link", &|e| e["file"]["path"] == p("ug"));
    assert_eq!(ln["file"]["target"], p("uh"));
    let sl = find("symlink", &|e| e["file"]["path"] == "ug");
    assert_eq!(sl["file"]["target"], p("us"));
    for n in ["uh", "us", "ug", "ud"] {
        find("unlink", &|e| e["file"]["path"] == p(n));
    }
    let sock = find("socket", &|_| true);
    assert_eq!(
        (
            sock["network"]["family"].as_str(),
            sock["network"]["socket_type"].as_str()
        ),
        (Some("inet"), Some("SOCK_STREAM"))
    );
    let conn = find("connect", &|_| true);
    assert_eq!(
        (
            conn["network"]["address"].as_str(),
            conn["network"]["port"].as_i64()
        ),
        (Some("127.0.0.1"), Some(47390))
    );
    // The ring's set-up is a syscall of its own.
    assert!(ev.iter().any(|e| e["cgroup_id"] == cg.id
        && e["kind"] == "io_uring"
        && e["privilege"]["syscall"] == "io_uring_setup"));
}

/// Several containers' processes working at once through a pool of four pipeline workers
/// (sharded by cgroup): every process's events come out complete and in the order it made
/// them, each attributed to the program that made them (the exec was learned on the worker
/// that owns the cgroup, the fork and exit on all).
#[test]
fn per_process_order_is_kept_under_the_worker_pool() {
    if !require_root("per_process_order_is_kept_under_the_worker_pool") {
        return;
    }
    const CALLS: u64 = 3000;
    let dir = TempDir::new("pool");
    let config = dir.path().join("pool.yaml");
    std::fs::write(&config, "capture:\n  workers: 4\n").expect("config");
    let cgroups: Vec<TestCgroup> = (0..6)
        .map(|i| TestCgroup::new(&format!("pool{i}")))
        .collect();
    let agent = Agent::start(&["--config", &config.to_string_lossy()]);
    let base = dir.path().to_string_lossy().into_owned();
    let children: Vec<_> = cgroups
        .iter()
        .enumerate()
        .map(|(i, cg)| {
            cg.command(trigger())
                .args(["unlink-flood", &CALLS.to_string(), &format!("{base}/p{i}")])
                .spawn()
                .expect("trigger")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("trigger").success());
    }
    let out = agent.stop();
    assert!(
        out.stderr.contains("workers=4"),
        "the agent did not run four workers: {}",
        out.stderr
    );
    for (i, cg) in cgroups.iter().enumerate() {
        let prefix = format!("{base}/p{i}-");
        let calls: Vec<&Value> = by_syscall(&out.events, "file", "unlinkat", cg.id)
            .into_iter()
            .filter(|e| {
                e["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&prefix))
            })
            .collect();
        let numbers: Vec<u64> = calls
            .iter()
            .filter_map(|e| {
                e["file"]["path"]
                    .as_str()?
                    .strip_prefix(&prefix)?
                    .parse()
                    .ok()
            })
            .collect();
        assert_eq!(
            numbers,
            (0..CALLS).collect::<Vec<_>>(),
            "container {i}: every call, in order"
        );
        for e in &calls {
            assert!(
                e["process"]["exe"]
                    .as_str()
                    .is_some_and(|x| x.ends_with("monitor-trigger")),
                "container {i}: the exec reached the owning worker: {e}"
            );
        }
    }
}
