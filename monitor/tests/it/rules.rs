//! Root integration tests of the rules: every default rule fires on the real behaviour, performed
//! in a container cgroup (kubelet/containerd layout) and namespaces the test creates; benign work
//! raises nothing; reloads take effect without losing events; `rules check` reports errors.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::*;

/// One `monitor run` for all rule tests. It is started from a thread that lives as long as the
/// test process and asked (PR_SET_PDEATHSIG) to get SIGTERM when that process ends, so it is
/// stopped whichever subset of tests runs.
struct Shared {
    out: PathBuf,
    /// Where the agent's files (and conformance sinks) are.
    dir: PathBuf,
    /// Holds the agent's files for the whole test run.
    _dir: Scratch,
}

fn agent() -> &'static Shared {
    static AGENT: OnceLock<Shared> = OnceLock::new();
    AGENT.get_or_init(|| {
        let dir = scratch("agent");
        let out = dir.join("alerts.jsonl");
        let ready = dir.join("ready");
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (out2, ready2, err) = (out.clone(), ready.clone(), dir.join("stderr"));
        // Every alert also goes through the conformance sinks (checked per alert by `expect`).
        // Four pipeline workers: the fake containers' cgroups are spread over them, so every
        // rule here, sequences included, is judged under the worker pool.
        let base = dir.join("pool.yaml");
        std::fs::write(&base, "capture:\n  workers: 4\n").expect("config");
        let config = conformance::config(Some(&base), &dir);
        std::thread::spawn(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
            cmd.args([
                "run",
                "--no-baselines",
                "--cri-socket",
                "/nonexistent/monitor-test-cri.sock",
                "--ready-file",
            ])
            .arg(&ready2)
            .arg("--config")
            .arg(&config)
            .stdout(std::fs::File::create(&out2).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"));
            // SAFETY: prctl in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child: Child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while !ready2.exists() {
                if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                    let _ = tx.send(Err(std::fs::read_to_string(&err).unwrap_or_default()));
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = tx.send(Ok(()));
            // Keep this thread (the child's parent thread) alive until the process exits.
            let _ = child.wait();
        });
        match rx.recv() {
            Ok(Ok(())) => Shared {
                out,
                dir: dir.to_path_buf(),
                _dir: dir,
            },
            Ok(Err(e)) => panic!("monitor run did not start: {e}"),
            Err(e) => panic!("agent thread: {e}"),
        }
    })
}

/// Alerts of `rule` about container `id`, waiting up to 20 s for at least one.
fn alerts(rule: &str, id: &str) -> Vec<Value> {
    alerts_until(rule, id, |_| true)
}

/// The `rule` alerts of container `id` once one of them satisfies `want` (or after 20 s): a
/// container may raise the rule more than once (`unshare` mounts before the test's own mount),
/// and the first alert can be in the file before the one the test is about.
fn alerts_until(rule: &str, id: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&agent().out).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|a| a["rule"] == rule && a["container"]["id"] == id)
            .collect();
        if found.iter().any(&want) || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn expect(rule: &str, fc: &FakeContainer) -> Value {
    let a = alerts(rule, &fc.id);
    let Some(first) = a.first() else {
        let text = std::fs::read_to_string(&agent().out).unwrap_or_default();
        let mine: Vec<&str> = text.lines().filter(|l| l.contains(&fc.id)).collect();
        panic!(
            "no `{rule}` alert for container {}; its alerts:\n{}",
            fc.id,
            mine.join("\n")
        );
    };
    assert_eq!(first["source"], "rule");
    assert_eq!(first["metadata"]["scope"], "container");
    assert!(
        first["severity"].is_string() && first["tags"].is_array() && first["output"].is_string()
    );
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')) && first["node"].is_string());
    // The same alert in OCSF, pinned OCSF, ECS and native, against the published schemas.
    let id = first["id"].as_str().expect("alert id");
    conformance::check_alert(&agent().dir, id);
    // And every alert the shared agent has raised so far, whoever's it is.
    conformance::check_so_far(&agent().dir);
    first.clone()
}

fn start(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    agent();
    true
}

/// The rules here are judged by a pool of four pipeline workers, as configured.
#[test]
fn rules_are_judged_by_the_worker_pool() {
    if !start("rules_are_judged_by_the_worker_pool") {
        return;
    }
    let log = std::fs::read_to_string(agent().dir.join("stderr")).unwrap_or_default();
    assert!(log.contains("workers=4"), "{log}");
}

#[test]
fn rule_shell_in_container() {
    if !start("rule_shell_in_container") {
        return;
    }
    let fc = FakeContainer::new("shell");
    fc.run("/bin/sh", &["-c", "true"]);
    let a = expect("shell_in_container", &fc);
    assert_eq!(a["exec"]["filename"], "/bin/sh");
    assert_eq!(a["severity"], "warning");
    assert!(
        a["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "T1059.004"))
    );
}

#[test]
fn rule_package_manager_in_container() {
    if !start("rule_package_manager_in_container") {
        return;
    }
    let fc = FakeContainer::new("pkg");
    fc.run("dpkg", &["--version"]);
    let a = expect("package_manager_in_container", &fc);
    assert!(
        a["exec"]["filename"]
            .as_str()
            .is_some_and(|f| f.ends_with("/dpkg"))
    );
}

#[test]
fn rule_network_tool_in_container() {
    if !start("rule_network_tool_in_container") {
        return;
    }
    let dir = scratch("nettool");
    let nc = dir.join("nc");
    std::os::unix::fs::symlink("/bin/busybox", &nc).expect("symlink");
    let fc = FakeContainer::new("nettool");
    fc.run(&nc.to_string_lossy(), &["-h"]);
    let a = expect("network_tool_in_container", &fc);
    assert_eq!(a["exec"]["filename"], nc.to_string_lossy().as_ref());
}

#[test]
fn rule_sensitive_file_read() {
    if !start("rule_sensitive_file_read") {
        return;
    }
    let fc = FakeContainer::new("shadow");
    fc.run("cat", &["/etc/shadow"]);
    let a = expect("sensitive_file_read", &fc);
    assert_eq!(a["file"]["path"], "/etc/shadow");
    assert_eq!(a["process"]["comm"], "cat");
}

#[test]
fn rule_service_account_token_read() {
    if !start("rule_service_account_token_read") {
        return;
    }
    let fc = FakeContainer::new("satoken");
    fc.run(
        "cat",
        &["/var/run/secrets/kubernetes.io/serviceaccount/token"],
    );
    let a = expect("service_account_token_read", &fc);
    assert_eq!(
        a["file"]["path"],
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
}

#[test]
fn rule_write_below_binary_dir() {
    if !start("rule_write_below_binary_dir") {
        return;
    }
    let dir = binary_dir();
    let fc = FakeContainer::new("bindir");
    write_below(&fc, dir, "monitor-test-evil");
    let a = expect("write_below_binary_dir", &fc);
    assert_eq!(a["file"]["path"], format!("{dir}/monitor-test-evil"));
    assert_eq!(a["process"]["comm"], "touch");
}

#[test]
fn rule_write_below_etc() {
    if !start("rule_write_below_etc") {
        return;
    }
    let dir = etc_dir();
    let fc = FakeContainer::new("etc");
    write_below(&fc, dir, "monitor-test-evil");
    let a = expect("write_below_etc", &fc);
    assert_eq!(a["file"]["path"], format!("{dir}/monitor-test-evil"));
}

#[test]
fn rule_container_drift_exec() {
    if !start("rule_container_drift_exec") {
        return;
    }
    let dir = scratch("drift");
    let f = dir.join("dropped");
    let fc = FakeContainer::new("drift");
    fc.run(
        "/bin/sh",
        &["-c", &format!("cp /bin/true {0} && {0}", f.display())],
    );
    let a = expect("container_drift_exec", &fc);
    assert_eq!(a["exec"]["filename"], f.to_string_lossy().as_ref());
    assert_eq!(a["sequence"]["kind"], "open");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rule_exec_from_temp_dir() {
    if !start("rule_exec_from_temp_dir") {
        return;
    }
    let f = format!("/dev/shm/monitor-test-{}", std::process::id());
    let fc = FakeContainer::new("shm");
    fc.run(
        "/bin/sh",
        &["-c", &format!("cp /bin/true {f} && {f}; rm -f {f}")],
    );
    let a = expect("exec_from_temp_dir", &fc);
    assert_eq!(a["exec"]["filename"], f);
}

#[test]
fn rule_fileless_execution() {
    if !start("rule_fileless_execution") {
        return;
    }
    let fc = FakeContainer::new("memfd");
    fc.run(trigger(), &["memfd-exec"]);
    let a = expect("fileless_execution", &fc);
    assert!(
        a["exec"]["filename"]
            .as_str()
            .is_some_and(|f| f.starts_with("/dev/fd/")),
        "{a:#}"
    );
}

#[test]
fn rule_setuid_setgid_bit_set() {
    if !start("rule_setuid_setgid_bit_set") {
        return;
    }
    let dir = scratch("suid");
    let f = dir.join("shell");
    let fc = FakeContainer::new("suid");
    fc.run(
        "/bin/sh",
        &["-c", &format!("touch {0} && chmod u+s {0}", f.display())],
    );
    let a = expect("setuid_setgid_bit_set", &fc);
    assert_eq!(a["file"]["path"], f.to_string_lossy().as_ref());
    assert!(
        a["file"]["mode"]
            .as_str()
            .is_some_and(|m| m.starts_with('4')),
        "{a:#}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rule_privilege_change_to_root_in_container() {
    if !start("rule_privilege_change_to_root_in_container") {
        return;
    }
    let fc = FakeContainer::new("root");
    fc.run(trigger(), &["regain-root"]);
    let a = expect("privilege_change_to_root_in_container", &fc);
    assert_eq!(
        (
            a["privilege"]["old_uid"].as_i64(),
            a["process"]["uid"].as_i64()
        ),
        (Some(1000), Some(0))
    );
}

#[test]
fn rule_ptrace_attach() {
    if !start("rule_ptrace_attach") {
        return;
    }
    let fc = FakeContainer::new("ptrace");
    fc.run(trigger(), &["ptrace"]);
    let a = expect("ptrace_attach", &fc);
    assert_eq!(a["privilege"]["request"], "PTRACE_ATTACH");
}

#[test]
fn rule_kernel_module_load() {
    if !start("rule_kernel_module_load") {
        return;
    }
    let fc = FakeContainer::new("module");
    fc.run(trigger(), &["init-module"]);
    if Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_init_module").exists() {
        let a = expect("kernel_module_load", &fc);
        assert_eq!(a["privilege"]["syscall"], "init_module");
    } else {
        // This kernel has no module support: the syscall does not exist, so there is nothing
        // to see. The rule is loaded and the probe is reported skipped at start-up instead.
        assert!(alerts("kernel_module_load", &fc.id).is_empty());
        eprintln!(
            "NOTE rule_kernel_module_load: kernel without module support; init_module cannot happen here"
        );
    }
}

#[test]
fn rule_mount_in_container() {
    if !start("rule_mount_in_container") {
        return;
    }
    let dir = scratch("mount");
    let fc = FakeContainer::new("mount");
    in_private_mounts(
        &fc,
        &format!("mount -t tmpfs monitor-test-mnt {}", dir.display()),
    );
    let ours_only = |a: &Value| a["privilege"]["source"] == "monitor-test-mnt";
    let found = alerts_until("mount_in_container", &fc.id, ours_only);
    let ours = found
        .iter()
        .find(|a| ours_only(a))
        .unwrap_or_else(|| panic!("no alert for our mount: {found:#?}"));
    assert_eq!(ours["privilege"]["fstype"], "tmpfs");
    assert_eq!(ours["privilege"]["target"], dir.to_string_lossy().as_ref());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rule_namespace_change_in_container() {
    if !start("rule_namespace_change_in_container") {
        return;
    }
    let fc = FakeContainer::new("ns");
    fc.run("unshare", &["--uts", "true"]);
    let a = expect("namespace_change_in_container", &fc);
    assert_eq!(
        a["privilege"]["flag_names"],
        serde_json::json!(["CLONE_NEWUTS"])
    );
}

#[test]
fn rule_cloud_metadata_access() {
    if !start("rule_cloud_metadata_access") {
        return;
    }
    let fc = FakeContainer::new("imds");
    // In a network namespace of our own with no route: the attempt fails, nothing leaves.
    fc.run(
        "unshare",
        &["--net", trigger(), "connect", "169.254.169.254", "80"],
    );
    let a = expect("cloud_metadata_access", &fc);
    assert_eq!(
        (
            a["network"]["address"].as_str(),
            a["network"]["port"].as_i64()
        ),
        (Some("169.254.169.254"), Some(80))
    );
}

#[test]
fn rule_reverse_shell() {
    if !start("rule_reverse_shell") {
        return;
    }
    let fc = FakeContainer::new("revshell");
    fc.run("unshare", &["--net", trigger(), "reverse-shell", "47100"]);
    let a = expect("reverse_shell", &fc);
    assert_eq!(a["privilege"]["new_fd"], 0);
    assert_eq!(a["sequence"]["kind"], "connect");
}

#[test]
fn rule_reverse_shell_across_fork() {
    if !start("rule_reverse_shell_across_fork") {
        return;
    }
    // The connecting process forks; its child puts the inherited socket on stdio (nc -e).
    let fc = FakeContainer::new("revshellfork");
    fc.run(
        "unshare",
        &["--net", trigger(), "reverse-shell-fork", "47101"],
    );
    let a = expect("reverse_shell", &fc);
    assert_eq!(a["privilege"]["new_fd"], 0);
    assert_eq!(a["sequence"]["kind"], "connect");
    assert_ne!(
        a["sequence"]["pid"], a["process"]["pid"],
        "the redirect was made by the child, not the connecting process: {a}"
    );
    assert_eq!(a["process"]["ancestors"][0]["pid"], a["sequence"]["pid"]);
}

#[test]
fn rule_listen_in_container() {
    if !start("rule_listen_in_container") {
        return;
    }
    let dir = scratch("listen");
    let fc = FakeContainer::new("listen");
    fc.run(
        "unshare",
        &["--net", trigger(), "net", "47200", &dir.to_string_lossy()],
    );
    let found = alerts_until("listen_in_container", &fc.id, |a| {
        a["tcp"]["sport"] == 47200
    });
    assert!(
        found.iter().any(|a| a["tcp"]["sport"] == 47200),
        "{found:#?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn benign_workloads_raise_no_alert() {
    if !start("benign_workloads_raise_no_alert") {
        return;
    }
    // A build and ordinary reads on the host, in a cgroup of our own.
    let host = TestCgroup::new("benign");
    let dir = work_dir("build");
    let script = "printf 'int main(void){return 0;}\\n' > a.c && cc -o prog a.c && ./prog && cat /etc/os-release > /dev/null \
                  && ls -la /usr/bin > /dev/null && tar cf a.tar a.c && gzip a.tar && rm -f a.tar.gz prog a.c";
    let status = host
        .command("/bin/sh")
        .args(["-c", script])
        .current_dir(&dir)
        .status()
        .expect("build");
    assert!(status.success(), "the benign build must work");
    // A non-shell program in a container.
    let fc = FakeContainer::new("benign");
    fc.run("/bin/sleep", &["0.2"]);
    fc.run("/usr/bin/env", &[]);
    // Let the agent see everything, then look.
    let marker = FakeContainer::new("marker");
    marker.run("/bin/sh", &["-c", "true"]);
    expect("shell_in_container", &marker);
    let text = std::fs::read_to_string(&agent().out).unwrap_or_default();
    // The host build is a child of this test binary, whose other tests connect to loopback
    // servers: a sequence whose first event is such a connection by the test binary itself is
    // about the harness, not the build (the fd-number match behind it is noted as a known
    // false positive of `reverse_shell`).
    let harness = std::process::id();
    let noisy: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).is_ok_and(|a| {
                (a["cgroup_id"] == host.id || a["container"]["id"] == fc.id.as_str())
                    && a["sequence"]["pid"] != harness
            })
        })
        .collect();
    assert!(
        noisy.is_empty(),
        "benign work raised alerts:\n{}",
        noisy.join("\n")
    );
    let _ = std::fs::remove_dir_all(dir);
}
