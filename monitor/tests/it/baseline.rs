//! Root integration test of learned baselines: a workload in a container cgroup the test
//! creates learns a fixed set of execs, writes and loopback connections; afterwards one new exec,
//! one write to a new directory and one connection to a new port are exactly the anomalies; the
//! profile survives an agent restart.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// The workload's routine: the same three things every time.
fn routine(fc: &FakeContainer, dir: &std::path::Path, port: &str) {
    fc.run("/bin/true", &[]);
    fc.run(
        "/bin/sh",
        &[
            "-c",
            &format!("echo data > {}/learned-dir/out", dir.display()),
        ],
    );
    // Inside a network namespace of its own: loopback only, nothing leaves.
    fc.run(
        "unshare",
        &["--net", trigger(), "connect", "127.0.0.1", port],
    );
}

fn anomalies(events: &[Value], id: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = events
        .iter()
        .filter(|a| a["source"] == "anomaly" && a["container"]["id"] == id)
        .map(|a| {
            (
                a["anomaly"]["kind"].as_str().unwrap_or("").to_string(),
                a["anomaly"]["item"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn learns_a_workload_then_flags_exactly_what_is_new_and_survives_restart() {
    if !require_root("baseline") {
        return;
    }
    // The agent learns every workload on the node: other tests' containers would get profiles
    // of their own.
    alone();
    let state = scratch("baseline-state");
    let work = scratch("baseline-work");
    std::fs::create_dir_all(work.join("learned-dir")).expect("dir");
    std::fs::create_dir_all(work.join("new-dir")).expect("dir");
    let fc = FakeContainer::new("baseline");
    let args = [
        "--no-default-rules",
        "--rules",
        "/dev/null",
        "--cri-socket",
        "/nonexistent/cri.sock",
        "--baseline-dir",
        &state.to_string_lossy(),
        "--baseline-learn",
        "4s",
    ];
    let agent = Agent::start_with("run", &args);
    routine(&fc, &work, "47311");
    routine(&fc, &work, "47311");
    // Past the learning period (counted from the workload's first event): the duration
    // itself is what is tested, so this waits on the clock.
    std::thread::sleep(Duration::from_secs(5));
    routine(&fc, &work, "47311");
    fc.run("/usr/bin/env", &[]);
    fc.run(
        "/bin/sh",
        &["-c", &format!("echo data > {}/new-dir/out", work.display())],
    );
    fc.run(
        "unshare",
        &["--net", trigger(), "connect", "127.0.0.1", "47312"],
    );
    routine(&fc, &work, "47311");
    agent.wait_output("three anomalies", Duration::from_secs(10), |ev| {
        anomalies(ev, &fc.id).len() >= 3
    });
    let out = agent.stop();
    let got = anomalies(&out.events, &fc.id);
    assert_eq!(got.len(), 3, "exactly three anomalies, got {got:#?}");
    assert_eq!(
        got[0],
        ("connect".to_string(), "127.0.0.0/8:47312".to_string())
    );
    assert!(
        got[1].0 == "exec" && got[1].1.starts_with("/usr/bin/env <- "),
        "{got:?}"
    );
    assert_eq!(got[2].0, "write");
    assert!(got[2].1.ends_with("/new-dir"), "{got:?}");
    let one = out
        .events
        .iter()
        .find(|a| a["source"] == "anomaly")
        .expect("anomaly");
    assert_eq!(
        one["rule"].as_str().map(|r| r.starts_with("anomaly.")),
        Some(true)
    );
    assert_eq!(one["anomaly"]["profile"], format!("container/{}", fc.id));
    assert!(
        one["anomaly"]["stable_since"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );

    // The profile was saved (0600) and is in force after a restart: the routine is still known,
    // something new is still flagged, without a new learning period.
    let files: Vec<_> = std::fs::read_dir(&state)
        .expect("state")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert_eq!(files.len(), 1);
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "baseline",
            "--dir",
            &state.to_string_lossy(),
            "export",
            &format!("container/{}", fc.id),
        ])
        .output()
        .expect("export");
    let yaml = String::from_utf8_lossy(&show.stdout);
    assert!(
        yaml.contains("state: enforcing") && yaml.contains("127.0.0.0/8:47311"),
        "{yaml}"
    );
    let agent = Agent::start_with("run", &args);
    routine(&fc, &work, "47311");
    fc.run("/bin/false", &[]);
    agent.wait_output("the anomaly", Duration::from_secs(10), |ev| {
        !anomalies(ev, &fc.id).is_empty()
    });
    let out = agent.stop();
    let got = anomalies(&out.events, &fc.id);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].0 == "exec" && got[0].1.starts_with("/bin/false <- "),
        "{got:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&work);
}
