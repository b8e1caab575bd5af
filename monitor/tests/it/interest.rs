//! Root integration tests of kernel-side interest filtering: the same real workload seen at the
//! same time by an agent that filters (the default) and one that captures everything
//! (`capture.interest_filter: false`) raises identical alerts, rules and baselines alike; the
//! filtered agent receives less and counts what it left out; a rule reload that needs more
//! widens the capture before the new rules run.

use std::{path::Path, time::Duration};

use serde_json::Value;

use crate::common::*;

/// Default rules whose behaviour the equivalence workload does not perform, with why.
const NOT_PERFORMED: &[(&str, &str)] = &[
    (
        "kernel_module_load",
        "this kernel has no module support (no init_module tracepoint)",
    ),
    (
        "monitor_files_tampered",
        "each agent protects its own files: the two agents' lists differ by design",
    ),
    (
        "monitor_binary_executed",
        "each agent protects its own files: the two agents' lists differ by design",
    ),
    (
        "monitor_agent_signalled",
        "signals target one agent; rules::monitor_agent_signalled covers it",
    ),
];

/// What the workload does while the baselines learn.
fn routine(fc: &FakeContainer, work: &Path) {
    fc.run("/bin/true", &[]);
    fc.run(
        "/bin/sh",
        &["-c", &format!("echo x > {}/learned/out", work.display())],
    );
    fc.run(
        "unshare",
        &["--net", trigger(), "connect", "127.0.0.1", "47411"],
    );
    fc.run("cat", &["/etc/hostname"]);
}

/// The behaviour of every default rule but [`NOT_PERFORMED`], new to the learned profile, among
/// reads and connections no rule or baseline needs.
fn every_rule(fc: &FakeContainer, work: &Path) {
    let w = work.display();
    // Noise the kernel may leave out: read-only opens of libraries and ordinary files.
    fc.run(
        "/bin/sh",
        &[
            "-c",
            "for f in /etc/hostname /etc/os-release /usr/lib/os-release; do cat $f; done; ls -la /usr/lib > /dev/null",
        ],
    );
    fc.run("/bin/sh", &["-c", "true"]);
    fc.run("dpkg", &["--version"]);
    let nc = work.join("nc");
    std::os::unix::fs::symlink("/bin/busybox", &nc).expect("symlink");
    fc.run(&nc.to_string_lossy(), &["-h"]);
    fc.run("cat", &["/etc/shadow"]);
    fc.run(
        "cat",
        &["/var/run/secrets/kubernetes.io/serviceaccount/token"],
    );
    write_below(fc, binary_dir(), "monitor-test-evil");
    write_below(fc, etc_dir(), "monitor-test-evil");
    fc.run(
        "/bin/sh",
        &["-c", &format!("cp /bin/true {w}/dropped && {w}/dropped")],
    );
    let shm = format!("/dev/shm/monitor-test-interest-{}", std::process::id());
    fc.run(
        "/bin/sh",
        &["-c", &format!("cp /bin/true {shm} && {shm}; rm -f {shm}")],
    );
    fc.run(trigger(), &["memfd-exec"]);
    fc.run(
        "/bin/sh",
        &["-c", &format!("touch {w}/suid && chmod u+s {w}/suid")],
    );
    fc.run(trigger(), &["regain-root"]);
    fc.run(trigger(), &["ptrace"]);
    fc.run(trigger(), &["init-module"]);
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mnt");
    in_private_mounts(
        fc,
        &format!("mount -t tmpfs monitor-test-mnt {}", mnt.display()),
    );
    fc.run("unshare", &["--uts", "true"]);
    fc.run(
        "unshare",
        &["--net", trigger(), "connect", "169.254.169.254", "80"],
    );
    fc.run("unshare", &["--net", trigger(), "reverse-shell", "47412"]);
    fc.run(
        "unshare",
        &["--net", trigger(), "reverse-shell-fork", "47413"],
    );
    fc.run(
        "unshare",
        &["--net", trigger(), "net", "47414", &w.to_string()],
    );
    fc.run("/bin/sh", &["-c", &format!("echo y > {w}/new-dir/out")]);
    // Last: once both agents have reported this, they have read everything before it.
    fc.run(
        "/bin/sh",
        &[
            "-c",
            &format!("cp /bin/true {w}/marker-end && {w}/marker-end"),
        ],
    );
}

/// Removes the timestamps from `v`: each agent's programs read the clock themselves, so the
/// same event carries times a few microseconds apart.
pub(crate) fn without_times(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        for k in ["time", "first_seen", "last_seen", "stable_since"] {
            o.remove(k);
        }
        o.values_mut().for_each(without_times);
    }
}

/// An alert without what differs between two agents by construction: its id, the clock
/// readings (also inside an anomaly's text), and the process's working directory, which each
/// agent reads from /proc when it handles the exec, a race with the process's exit that each
/// agent runs on its own. Alerts about the agents themselves (the harness stopping each) are
/// left out.
pub(crate) fn comparable(a: &Value) -> Option<String> {
    if a["rule"] == "monitor_agent_signalled" {
        return None;
    }
    let mut a = a.clone();
    if let Some(o) = a.as_object_mut() {
        o.remove("id");
    }
    if let Some(p) = a["process"].as_object_mut() {
        p.remove("cwd");
    }
    if let Some(text) = a["output"].as_str()
        && let Some(at) = text.find(" (profile stable since ")
    {
        a["output"] = Value::String(text[..at].to_string());
    }
    without_times(&mut a);
    Some(a.to_string())
}

/// Fails naming what tells two agents' sorted, comparable alerts apart (the whole alerts are
/// compared; the message shows the fields that usually differ). `MONITOR_TEST_DUMP=DIR` also
/// writes both sides there.
pub(crate) fn assert_same_alerts(a: &[String], b: &[String]) {
    if a == b {
        return;
    }
    if let Ok(d) = std::env::var("MONITOR_TEST_DUMP") {
        let _ = std::fs::write(format!("{d}/on.jsonl"), a.join("\n"));
        let _ = std::fs::write(format!("{d}/off.jsonl"), b.join("\n"));
    }
    let brief = |l: &String| -> String {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        format!(
            "{} {} pid={} count={} {} {} {}",
            v["rule"],
            v["kind"],
            v["process"]["pid"],
            v["dedup"]["count"],
            v["anomaly"]["item"],
            v["process"]["command_line"],
            v["file"]["path"]
        )
    };
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|l| !y.contains(l)).map(brief).collect()
    };
    panic!(
        "alerts differ\nonly with filtering:\n{}\nonly without:\n{}",
        only(a, b).join("\n"),
        only(b, a).join("\n")
    );
}

/// Waits until both agents (filtering and not) have written what `marker` looks for, then
/// stops them: everything before the marker has been judged by both.
pub(crate) fn stop_after(
    on: Agent,
    off: Agent,
    marker: impl Fn(&[Value]) -> bool,
) -> (Output, Output) {
    on.wait_output(
        "the end marker (filtering)",
        Duration::from_secs(30),
        &marker,
    );
    off.wait_output(
        "the end marker (everything)",
        Duration::from_secs(30),
        &marker,
    );
    (on.stop(), off.stop())
}

fn received(stats: &Value, kind: &str) -> u64 {
    stats["received"][kind].as_u64().unwrap_or(0)
}

fn filtered(stats: &Value, kind: &str) -> u64 {
    stats["kernel"]["kinds"][kind]["filtered"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn filtering_on_and_off_raise_identical_alerts_for_every_default_rule_and_the_baselines() {
    if !require_root("interest_equivalence") {
        return;
    }
    let work = scratch("interest");
    std::fs::create_dir_all(work.join("learned")).expect("dir");
    std::fs::create_dir_all(work.join("new-dir")).expect("dir");
    let fc = FakeContainer::new("interest");
    let cg = fc.path.to_string_lossy().into_owned();
    let start = |filter: bool, state: &Path| {
        let state = state.to_string_lossy().into_owned();
        let set = format!("capture.interest_filter={filter}");
        Agent::start_with(
            "run",
            &[
                "--cri-socket",
                "/nonexistent/monitor-test-cri.sock",
                "--cgroup",
                &cg,
                "--baseline-dir",
                &state,
                "--baseline-learn",
                "3s",
                "--set",
                &set,
            ],
        )
    };
    let (s1, s2) = (scratch("interest-on"), scratch("interest-off"));
    let on = start(true, &s1);
    let off = start(false, &s2);
    routine(&fc, &work);
    routine(&fc, &work);
    // Past the learning period, which is what makes the rest anomalies: this waits on the clock.
    std::thread::sleep(Duration::from_secs(4));
    every_rule(&fc, &work);
    let marker = |ev: &[Value]| {
        ev.iter().any(|a| {
            a["exec"]["filename"]
                .as_str()
                .is_some_and(|f| f.ends_with("/marker-end"))
        })
    };
    let (on, off) = stop_after(on, off, marker);

    let mut a: Vec<String> = on.events.iter().filter_map(comparable).collect();
    let mut b: Vec<String> = off.events.iter().filter_map(comparable).collect();
    a.sort();
    b.sort();
    assert_same_alerts(&a, &b);
    // Every default rule performed fired, and the baselines flagged every kind of item.
    let rules: std::collections::BTreeSet<&str> = on
        .events
        .iter()
        .filter_map(|a| a["rule"].as_str())
        .collect();
    let ids = crate::coverage::default_rule_ids();
    assert!(ids.len() >= 20, "{ids:?}");
    // The rules of the coverage table are performed in a real container by
    // coverage::filtering_on_and_off_raise_identical_alerts_in_a_real_container.
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| {
            !NOT_PERFORMED.iter().any(|(r, _)| r == id)
                && !rules.contains(id.as_str())
                && !crate::coverage::performs(id)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "default rules that did not fire: {missing:?}"
    );
    for kind in [
        "exec",
        "write",
        "sensitive_read",
        "connect",
        "listen",
        "privilege",
    ] {
        let rule = format!("anomaly.{kind}");
        assert!(rules.contains(rule.as_str()), "no {rule} among {rules:?}");
    }
    for (r, why) in NOT_PERFORMED {
        eprintln!("NOTE interest equivalence: `{r}` not performed: {why}");
    }
    // The filtering agent received less, and counted what it left out, apart from drops.
    let (st_on, st_off) = (&on.stats, &off.stats);
    eprintln!(
        "interest equivalence: {} identical alerts; open events received {} (filtering) vs {} (everything), {} opens filtered in the kernel; accept {} vs {}",
        a.len(),
        received(st_on, "open"),
        received(st_off, "open"),
        filtered(st_on, "open"),
        received(st_on, "accept"),
        received(st_off, "accept"),
    );
    assert!(filtered(st_on, "open") > 0 && received(st_on, "open") < received(st_off, "open"));
    assert_eq!(received(st_on, "accept"), 0);
    assert!(received(st_off, "accept") > 0 && filtered(st_on, "accept") > 0);
    assert_eq!(
        filtered(st_off, "open"),
        0,
        "capturing everything filters nothing"
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_rule_reload_that_needs_more_widens_the_capture_before_it_runs() {
    if !require_root("interest_reload") {
        return;
    }
    let dir = scratch("interest-reload");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    let rule = |path: &str| {
        format!(
            "- rule: test_read_marker\n  desc: a read of a marker file\n  condition: kind = open and not file.write and file.path = {path}\n  severity: notice\n  output: \"read {{file.path}}\"\n"
        )
    };
    let first = dir.join("first");
    let second = dir.join("second");
    std::fs::write(&first, "1").expect("marker");
    std::fs::write(&second, "2").expect("marker");
    let file = rules.join("r.yaml");
    std::fs::write(&file, rule(&first.to_string_lossy())).expect("rule");
    let cg = TestCgroup::new("interest-reload");
    let config = dir.join("config.yaml");
    std::fs::write(&config, "{}\n").expect("config");
    let port = free_port();
    let agent = start_run(
        &config,
        &rules,
        false,
        Some(&cg),
        &["--metrics-addr", &format!("127.0.0.1:{port}")],
    );
    let read = |p: &Path| {
        let st = cg
            .command("cat")
            .arg(p)
            .stdout(std::process::Stdio::null())
            .status();
        assert!(st.expect("cat").success());
    };
    let hits = |ev: &[Value], p: &Path| {
        ev.iter()
            .filter(|a| a["file"]["path"] == p.to_string_lossy().as_ref())
            .count()
    };
    read(&second);
    read(&first);
    agent.wait_output("the first marker's alert", Duration::from_secs(10), |ev| {
        hits(ev, &first) == 1
    });
    // The second marker is no rule's business yet: left out in the kernel and counted.
    let m = http_get(port, "/metrics");
    let filtered_before = metric(&m, "monitor_events_filtered_total{kind=\"open\"}").unwrap_or(0);
    assert!(filtered_before > 0, "{m}");
    // Now a rule on the second marker only.
    std::fs::write(&file, rule(&second.to_string_lossy())).expect("rule");
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    agent.wait_log("rules reloaded", 1, Duration::from_secs(10));
    read(&first);
    read(&second);
    agent.wait_output("the second marker's alert", Duration::from_secs(10), |ev| {
        hits(ev, &second) == 1
    });
    let out = agent.stop();
    assert_eq!(hits(&out.events, &first), 1, "{:#?}", out.events);
    assert_eq!(hits(&out.events, &second), 1, "{:#?}", out.events);
    let _ = std::fs::remove_dir_all(&dir);
}
