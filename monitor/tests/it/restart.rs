//! Root integration tests of restarts and upgrades: with `capture.pin_dir`, the programs stay
//! attached while no agent runs, the next agent adopts them and reports what happened meanwhile,
//! and the accounting stays exact across agents. Also: who stops the agent is reported, and how
//! long a stop takes is measured and printed.
use std::{collections::HashMap, process::Command, time::Duration};

use serde_json::Value;

use crate::common::{
    containerd::{Containerd, SERIAL},
    *,
};

const POD: (&str, &str, &str) = (
    "shop-7d4b9c8f6e-q2w3e",
    "restart",
    "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
);

fn run_pinned(sock: &str, pins: &BpfFs, extra: &[&str]) -> Agent {
    let pin_dir = format!("capture.pin_dir={}/monitor", pins.path().display());
    let mut args = vec!["--no-baselines", "--cri-socket", sock, "--set", &pin_dir];
    args.extend_from_slice(extra);
    Agent::start_with("run", &args)
}

/// Sends `signal` to `pid` from a shell: a process other than the agent's runtime.
fn kill_from_shell(signal: &str, pid: &str) {
    let st = Command::new("/bin/sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .expect("sh");
    assert!(st.success(), "kill -{signal} {pid}");
}

fn sum(v: &Value) -> u64 {
    v.as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

fn submitted(stats: &Value) -> u64 {
    stats["kernel"]["kinds"]
        .as_object()
        .map(|m| m.values().filter_map(|k| k["submitted"].as_u64()).sum())
        .unwrap_or(0)
}

fn alerts_for<'a>(alerts: &'a [Value], rule: &str, cid: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["rule"] == rule && a["container"]["id"] == cid)
        .collect()
}

/// Stops with SIGTERM and says how long the agent took to exit.
fn timed_stop(agent: Agent, what: &str) -> Output {
    let out = agent.stop();
    eprintln!(
        "MEASURED agent exit after SIGTERM ({what}): {} ms",
        out.exit_after.as_millis()
    );
    out
}

#[test]
fn pinned_programs_capture_while_no_agent_runs_and_the_next_agent_reports_it() {
    if !require_root("pinned_programs_capture_while_no_agent_runs_and_the_next_agent_reports_it")
        || !containerd::available("pinned_programs_capture_while_no_agent_runs")
    {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctd = Containerd::start();
    let sock = ctd.socket.display().to_string();
    let pins = BpfFs::mount("pins");
    let (name, ns, uid) = POD;
    let labels = HashMap::new();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    let cid = ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        "app",
        &["/bin/sleep", "3600"],
    );

    let first = run_pinned(&sock, &pins, &[]);
    first.wait_log("programs pinned", 1, Duration::from_secs(10));
    let sets = pins.list("monitor");
    assert_eq!(sets.len(), 1, "one pinned set: {sets:?}");
    let set = sets[0].clone();
    let pinned = pins.list(&format!("monitor/{set}"));
    assert!(pinned.iter().any(|p| p == "map-EVENTS"), "{pinned:?}");
    assert!(
        pinned.iter().any(|p| p == "link-syscalls-sys_enter_openat"),
        "{pinned:?}"
    );
    let out1 = timed_stop(first, "pinned programs stay");
    assert!(
        out1.stderr
            .contains("the pinned programs go on capturing for the next agent"),
        "{}",
        out1.stderr
    );
    assert_eq!(
        pins.list("monitor"),
        std::slice::from_ref(&set),
        "the pins outlive the agent"
    );

    // No agent runs now. A shell in the container is what `shell_in_container` is about.
    let marker = ctd.exec(&cid, &["/bin/sh", "-c", "echo while-no-agent-ran"]);
    assert_eq!(marker.trim(), "while-no-agent-ran");

    // The next agent, same build and configuration, adopts the set and reads on; this one
    // removes the pins when it stops (a deliberate uninstall).
    let second = run_pinned(&sock, &pins, &["--set", "capture.unpin_on_exit=true"]);
    second.wait_log("adopted the pinned programs", 1, Duration::from_secs(10));
    second.wait_output(
        "the alert for the shell that ran while no agent did",
        Duration::from_secs(15),
        |a| !alerts_for(a, "shell_in_container", &cid).is_empty(),
    );
    let out2 = timed_stop(second, "uninstall: pins removed");
    assert!(
        pins.list("monitor").is_empty(),
        "unpin_on_exit removes the set"
    );
    let shell = alerts_for(&out2.events, "shell_in_container", &cid);
    let shell = shell
        .iter()
        .find(|a| {
            a["process"]["args"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == "echo while-no-agent-ran"))
        })
        .unwrap_or_else(|| panic!("the shell's alert: {:#?}", out2.events));
    assert_eq!(shell["pod"]["name"], name, "{shell:#}");
    assert_eq!(shell["pod"]["namespace"], ns);
    assert_eq!(shell["pod"]["uid"], uid);

    // Exact accounting across the two agents: every record the pinned programs wrote was
    // read by one agent or the other (nothing was dropped or undecodable here).
    let written = submitted(&out2.stats);
    let read = sum(&out1.stats["received"]) + sum(&out2.stats["received"]);
    let errors = out1.stats["decode_errors"].as_u64().unwrap_or(0)
        + out2.stats["decode_errors"].as_u64().unwrap_or(0);
    let dropped: u64 = out2.stats["kernel"]["kinds"]
        .as_object()
        .map(|m| m.values().filter_map(|k| k["dropped"].as_u64()).sum())
        .unwrap_or(0);
    eprintln!(
        "MEASURED across the restart: kernel wrote {written}, first agent read {}, second {}, kernel dropped {dropped}",
        sum(&out1.stats["received"]),
        sum(&out2.stats["received"])
    );
    assert_eq!(written, read + errors, "generated = received across agents");
    drop(ctd);
}

#[test]
fn a_pinned_set_of_another_layout_is_replaced_without_a_gap() {
    if !require_root("a_pinned_set_of_another_layout_is_replaced_without_a_gap") {
        return;
    }
    let pins = BpfFs::mount("pins");
    let nosock = "/nonexistent/monitor-test-cri.sock";
    let old = run_pinned(nosock, &pins, &["--ring-buffer-bytes", "8388608"]);
    old.wait_log("programs pinned", 1, Duration::from_secs(10));
    drop(timed_stop(old, "pinned programs stay"));
    let before = pins.list("monitor");
    assert_eq!(before.len(), 1);
    // Another ring size is another layout: the new agent attaches and pins its own set, then
    // removes the old one (whose programs ran until then).
    let new = run_pinned(nosock, &pins, &["--ring-buffer-bytes", "16777216"]);
    new.wait_log("were replaced", 1, Duration::from_secs(10));
    let after = pins.list("monitor");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the old set is gone, the new one pinned");
    // The new set captures: a sensitive read is judged.
    let cg = TestCgroup::new("replaced");
    let st = cg
        .command("/bin/cat")
        .arg("/etc/shadow")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cat");
    assert!(st.success());
    new.wait_output("the sensitive read", Duration::from_secs(10), |a| {
        a.iter()
            .any(|x| x["rule"] == "sensitive_file_read" && x["cgroup_id"].as_u64() == Some(cg.id))
    });
    drop(new.stop());
    // The uninstall step: `monitor unpin` removes what the last agent left.
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("unpin")
        .arg("--pin-dir")
        .arg(pins.path().join("monitor"))
        .output()
        .expect("monitor unpin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !pins.path().join("monitor").exists(),
        "unpin removes the set and its directory"
    );
}

#[test]
fn signals_to_the_agent_from_another_process_are_alerts_even_a_sigkill() {
    if !require_root("signals_to_the_agent_from_another_process_are_alerts_even_a_sigkill") {
        return;
    }
    let pins = BpfFs::mount("pins");
    let nosock = "/nonexistent/monitor-test-cri.sock";
    // Unpinned: a SIGTERM from a shell is read before the agent exits.
    let agent = Agent::start_with("run", &["--no-baselines", "--cri-socket", nosock]);
    let pid = agent.pid().to_string();
    let sent = std::time::Instant::now();
    kill_from_shell("TERM", &pid);
    let (status, alerts, stderr) = agent.wait_exit();
    eprintln!(
        "MEASURED agent exit after SIGTERM (unpinned: programs detached at exit): {} ms",
        sent.elapsed().as_millis()
    );
    assert!(status.success(), "a SIGTERM is a clean stop: {stderr}");
    let sig = alerts
        .iter()
        .find(|a| a["rule"] == "monitor_agent_signalled")
        .unwrap_or_else(|| panic!("the SIGTERM alert: {alerts:#?}"));
    assert_eq!(sig["signal"]["name"], "SIGTERM", "{sig:#}");
    assert_eq!(sig["signal"]["target_pid"].to_string(), pid);
    assert_eq!(sig["signal"]["origin"], "kill");
    assert_eq!(sig["process"]["comm"], "sh", "{sig:#}");

    // Pinned: a SIGKILL cannot be caught, so the next agent reports it from the ring.
    let agent = run_pinned(nosock, &pins, &[]);
    let pid = agent.pid().to_string();
    kill_from_shell("KILL", &pid);
    let (status, _, _) = agent.wait_exit();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let next = run_pinned(nosock, &pins, &["--set", "capture.unpin_on_exit=true"]);
    next.wait_output("the SIGKILL alert", Duration::from_secs(10), |a| {
        a.iter().any(|x| {
            x["rule"] == "monitor_agent_signalled"
                && x["signal"]["name"] == "SIGKILL"
                && x["signal"]["target_pid"].as_u64() == pid.parse().ok()
        })
    });
    drop(next.stop());
}

#[test]
fn pins_removed_by_another_process_are_an_alert_and_pinned_again() {
    if !require_root("pins_removed_by_another_process_are_an_alert_and_pinned_again") {
        return;
    }
    let pins = BpfFs::mount("pins");
    let nosock = "/nonexistent/monitor-test-cri.sock";
    let agent = run_pinned(nosock, &pins, &[]);
    agent.wait_log("programs pinned", 1, Duration::from_secs(10));
    let set = pins.list("monitor");
    assert_eq!(set.len(), 1);
    let before = pins.list(&format!("monitor/{}", set[0]));
    // Removing the pins while no agent runs would detach the programs: it is what an intruder
    // does after stopping the agent, so it is judged like tampering with its files.
    let dir = pins.path().join("monitor").join(&set[0]);
    let st = Command::new("/bin/sh")
        .args(["-c", &format!("rm -rf {}", dir.display())])
        .status()
        .expect("rm");
    assert!(st.success());
    agent.wait_output("the tampering alert", Duration::from_secs(10), |a| {
        a.iter().any(|x| {
            x["rule"] == "monitor_files_tampered"
                && x["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&dir.display().to_string()))
        })
    });
    agent.wait_log("pinned again", 1, Duration::from_secs(10));
    assert_eq!(
        pins.list(&format!("monitor/{}", set[0])),
        before,
        "every pin restored"
    );
    drop(agent.stop());
}
