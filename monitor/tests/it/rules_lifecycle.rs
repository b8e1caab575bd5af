//! Root integration tests of the rules' life cycle: `monitor rules check` reports every error
//! with file, line and rule; a running agent swaps valid edits in and rejects invalid ones
//! without losing or double-judging an event.
use std::{process::Command, time::Duration};

use crate::common::*;

#[test]
fn rules_check_reports_errors_with_file_line_and_rule() {
    let dir = scratch("check");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "- rule: ok\n  condition: kind = exec\n  severity: notice\n  output: x\n- rule: broken\n  condition: kind = exec and proc.name = sh\n  severity: loud\n  output: x\n")
        .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{}:5: rule `broken`: unknown severity `loud`",
            bad.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("column 17: unknown field `proc.name` (did you mean `process.name`?)"),
        "{text}"
    );
    // The agent refuses to start on them, with the same messages (before touching the kernel).
    let run = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["run", "--rules"])
        .arg(&bad)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run");
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains(&format!(
        "{}:5: rule `broken`: unknown severity `loud`",
        bad.display()
    )));
    // The built-in rules are valid.
    let ok = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["rules", "check"])
        .output()
        .expect("run");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reload_swaps_rules_without_losing_events() {
    if !require_root("reload_swaps_rules_without_losing_events") {
        return;
    }
    const N: u64 = 2000;
    let dir = scratch("reload");
    let rules = dir.join("rules.yaml");
    let marker = |name: &str, path: &str| {
        format!(
            "- rule: {name}\n  condition: kind = unlink and file.path startswith {path}-\n  severity: notice\n  output: 'unlink {{file.path}}'\n  dedup: false\n"
        )
    };
    let (a, b) = (
        "/nonexistent/monitor-reload/a",
        "/nonexistent/monitor-reload/b",
    );
    std::fs::write(&rules, marker("marker_a", a)).expect("v1");
    let cg = TestCgroup::new("reload");
    let cgroup = cg.path.to_string_lossy().into_owned();
    let agent = Agent::start_with(
        "run",
        &[
            "--no-default-rules",
            "--no-baselines",
            "--rules",
            &rules.to_string_lossy(),
            "--cgroup",
            &cgroup,
        ],
    );
    // A steady stream of matching events across both reloads.
    let mut load = cg
        .command(trigger())
        .args(["unlink-slow", &N.to_string(), a, "1000"])
        .spawn()
        .expect("load");
    let timeout = Duration::from_secs(10);
    agent.wait_output("the load under way", timeout, |ev| {
        ev.iter().any(|e| e["rule"] == "marker_a")
    });
    // Valid change: adds marker_b (SIGHUP).
    std::fs::write(&rules, marker("marker_a", a) + &marker("marker_b", b)).expect("v2");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    agent.wait_log("rules reloaded", 1, timeout);
    // Invalid change: rejected, marker_a and marker_b stay (noticed by the file watch).
    std::fs::write(&rules, "- rule: marker_a\n  condition: kind = unlink and nope.field = 1\n  severity: notice\n  output: x\n").expect("v3");
    agent.wait_log("rule reload rejected", 1, timeout);
    assert!(load.wait().expect("wait").success());
    let ok = cg
        .command(trigger())
        .args(["unlink-slow", "1", b, "0"])
        .status()
        .expect("b");
    assert!(ok.success());
    agent.wait_output("the marker_b alert", timeout, |ev| {
        ev.iter().any(|e| e["rule"] == "marker_b")
    });
    let out = agent.stop();
    let count = |rule: &str| out.events.iter().filter(|e| e["rule"] == rule).count() as u64;
    let dropped = out.stats["kernel"]["kinds"]["unlink"]["dropped"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(dropped, 0);
    assert_eq!(
        count("marker_a"),
        N,
        "every event across the swaps judged exactly once"
    );
    assert_eq!(
        count("marker_b"),
        1,
        "the valid change took effect and survived the invalid one"
    );
    assert!(out.stderr.contains("rules reloaded"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("rule reload rejected; keeping the previous rules"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "rules.yaml:1: rule `marker_a`: condition: column 19: unknown field `nope.field`"
        ),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}
