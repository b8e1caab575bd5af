//! Root fault tests: the agent keeps running, counts what it loses and says what went wrong when
//! its disk fills up, a receiver hangs, processes churn at thousands a second, pids are reused,
//! processes and containers vanish before their metadata is read; and it does not become a blind
//! spot (its binary and files are watched, secrets are redacted from alerts).
//!
//! Faults covered elsewhere: ring-buffer overflow (capture.rs), CRI socket gone and back
//! (attribution.rs), SIGHUP with a broken rule file (rules.rs), SIGTERM during a burst and a
//! receiver down past its queue (delivery.rs).

use std::{
    io::Read,
    net::TcpListener,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::*;

const RULES: &str = r#"
- rule: fault_unlink_marker
  desc: The fault tests' marker file was removed.
  condition: kind = unlink and file.path startswith /tmp/monitor-faults-
  severity: warning
  tags: [test]
  output: "marker removed (file={file.path})"
  dedup: false

- rule: fault_echo
  desc: echo ran in the test cgroup (carries its arguments).
  condition: kind = exec and exec.name = echo
  severity: notice
  tags: [test]
  output: "echo ran: {process.command_line}"
  dedup: false
"#;

struct Files {
    dir: Scratch,
    config: PathBuf,
    rules: PathBuf,
}

fn files(tag: &str, config: &str) -> Files {
    let dir = scratch(tag);
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("test.yaml"), RULES).expect("rules");
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).expect("config");
    Files {
        dir,
        config: config_path,
        rules,
    }
}

/// The agent with only the test rules: built-in rules would add alerts of their own (a test
/// binary run from a checkout under /tmp trips `exec_from_temp_dir`) and skew the counts.
fn start(f: &Files, cg: Option<&TestCgroup>, extra: &[&str]) -> Agent {
    start_run(&f.config, &f.rules, false, cg, extra)
}

fn unlinks(cg: &TestCgroup, n: u64) {
    unlink_markers(cg, "/tmp/monitor-faults", n);
}

fn seq(alert: &Value) -> u64 {
    alert_seq(alert)
}

/// The tests of this file run alone: the process storm would starve the others and turn their
/// timing into noise, and the others change host-wide state (ns_last_pid, a full disk).
fn serial() {
    alone();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A small tmpfs of our own, unmounted on drop (then its mount point is removed).
struct Tmpfs(
    PathBuf,
    #[allow(dead_code, reason = "kept for its Drop: the mount point's directory")] Scratch,
);

impl Tmpfs {
    fn new(tag: &str, size: &str) -> Tmpfs {
        let scratch = scratch(tag);
        let dir = scratch.join("mnt");
        std::fs::create_dir_all(&dir).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir, scratch)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn file_sink_on_a_full_disk_retries_and_delivers_once_space_returns() {
    if !require_root("file_sink_on_a_full_disk_retries_and_delivers_once_space_returns") {
        return;
    }
    serial();
    const N: u64 = 30;
    let fs = Tmpfs::new("diskfull", "512k");
    let out = fs.0.join("alerts.json");
    let metrics = free_port();
    let f = files(
        "diskfull",
        &format!(
            "metrics: {{addr: '127.0.0.1:{metrics}'}}\nsinks:\n  - {{type: file, path: '{}', retry_initial: 100ms, retry_max: 500ms}}\n",
            out.display()
        ),
    );
    let cg = TestCgroup::new("diskfull");
    let agent = start(&f, Some(&cg), &[]);
    // Fill the disk to the last byte.
    let filler = fs.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    unlinks(&cg, N);
    wait_for("write failures", Duration::from_secs(20), || {
        metric(
            &http_get(metrics, "/metrics"),
            "monitor_sink_failures_total{reason=\"io\",sink=\"file\"}",
        )
        .is_some_and(|n| n >= 2)
    });
    let text = http_get(metrics, "/metrics");
    assert_eq!(
        metric(&text, "monitor_sink_queue_length{sink=\"file\"}"),
        Some(N),
        "all alerts wait in the queue: {text}"
    );
    assert!(
        http_get(metrics, "/healthz").starts_with("HTTP/1.1 200"),
        "agent healthy"
    );
    std::fs::remove_file(&filler).expect("free the disk");
    wait_for(
        "delivery after space returns",
        Duration::from_secs(20),
        || json_lines(&out).len() as u64 == N,
    );
    let got = json_lines(&out);
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    let o = agent.stop();
    assert!(
        o.stderr.contains("alert delivery failed; will retry")
            && o.stderr.contains("No space left on device"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("sink recovered"), "{}", o.stderr);
}

#[test]
fn a_hanging_receiver_times_out_without_holding_up_the_others() {
    if !require_root("a_hanging_receiver_times_out_without_holding_up_the_others") {
        return;
    }
    serial();
    const N: u64 = 25;
    // Accepts connections and reads, never answers.
    let hang = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = hang.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in hang.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while c.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    let out_dir = scratch("hang-out");
    let out = out_dir.join("alerts.json");
    let metrics = free_port();
    let f = files(
        "hang",
        &format!(
            "metrics: {{addr: '127.0.0.1:{metrics}'}}\nalerts: {{shutdown_deadline: 2s}}\nsinks:\n  - {{type: file, path: '{}'}}\n  - {{type: webhook, name: hang, url: 'http://127.0.0.1:{port}/x', timeout: 1s, linger: 50ms, retry_initial: 100ms, retry_max: 200ms}}\n",
            out.display()
        ),
    );
    let cg = TestCgroup::new("hang");
    let agent = start(&f, Some(&cg), &[]);
    let t = Instant::now();
    unlinks(&cg, N);
    let deadline = Instant::now() + Duration::from_secs(10);
    while json_lines(&out).len() as u64 != N {
        assert!(
            Instant::now() < deadline,
            "file sink has {} of {N}: {}",
            json_lines(&out).len(),
            http_get(metrics, "/metrics")
                .lines()
                .filter(|l| l.starts_with("monitor_sink") || l.starts_with("monitor_alerts"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    wait_for("timeouts counted", Duration::from_secs(10), || {
        metric(
            &http_get(metrics, "/metrics"),
            "monitor_sink_failures_total{reason=\"timeout\",sink=\"hang\"}",
        )
        .is_some_and(|n| n >= 2)
    });
    let t = Instant::now();
    let o = agent.stop();
    // The hung sink gives up at the 2 s shutdown deadline instead of holding the agent.
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(
        took < Duration::from_secs(10),
        "file sink delayed: {took:?}"
    );
    assert!(
        o.stderr
            .lines()
            .any(|l| l.contains("shutdown deadline") && l.contains("sink=hang")),
        "{}",
        o.stderr
    );
}

#[test]
fn thousands_of_short_lived_processes_a_second_for_30_s() {
    if !require_root("thousands_of_short_lived_processes_a_second_for_30_s") {
        return;
    }
    serial();
    const SECS: u64 = 30;
    const PER_STORM: u64 = 5000;
    let metrics = free_port();
    let f = files(
        "storm",
        &format!("metrics: {{addr: '127.0.0.1:{metrics}'}}\nsinks: [{{type: stdout}}]\n"),
    );
    let cg = TestCgroup::new("storm");
    let agent = start(&f, Some(&cg), &[]);
    let rss_before = rss_kib(agent.pid());
    let storms: Vec<_> = (0..2)
        .map(|_| {
            cg.command(trigger())
                .args([
                    "fork-storm",
                    &PER_STORM.to_string(),
                    &(SECS * 1000).to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("storm")
        })
        .collect();
    let mut peak = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(SECS) {
        peak = peak.max(rss_kib(agent.pid()));
        assert!(
            http_get(metrics, "/healthz").starts_with("HTTP/1.1 200"),
            "unhealthy mid-storm"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut forked = 0u64;
    for s in storms {
        let out = s.wait_with_output().expect("storm");
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).expect("storm JSON");
        forked += v["forked"].as_u64().expect("forked");
    }
    // Let the exit grace period pass so the table can shed the dead.
    std::thread::sleep(Duration::from_secs(6));
    let rss_after = rss_kib(agent.pid());
    let o = agent.stop();
    let kernel = &o.stats["kernel"]["kinds"];
    let forks_seen = o.stats["received"]["fork"].as_u64().unwrap_or(0)
        + kernel["fork"]["dropped"].as_u64().unwrap_or(0);
    eprintln!(
        "note: {forked} processes in {SECS} s ({} per second); RSS {} -> peak {} -> {} KiB",
        forked / SECS,
        rss_before,
        peak,
        rss_after
    );
    // Every fork is accounted for: received or counted as dropped, none silently lost.
    assert!(forks_seen >= forked, "forks {forks_seen} < forked {forked}");
    assert_eq!(
        kernel["fork"]["submitted"].as_u64(),
        o.stats["received"]["fork"].as_u64()
    );
    // Memory does not grow with the number of processes that came and went.
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        forked >= SECS * 2000,
        "the storm itself was too slow: {forked}"
    );
}

#[test]
fn pid_reuse_gets_a_new_identity_and_the_right_command() {
    if !require_root("pid_reuse_gets_a_new_identity_and_the_right_command") {
        return;
    }
    serial();
    let cg = TestCgroup::new("pidreuse");
    let agent = Agent::start(&["--cgroup", &cg.path.to_string_lossy(), "--kind", "exec"]);
    let out = cg
        .command(trigger())
        .arg("pid-reuse")
        .output()
        .expect("trigger");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = serde_json::from_slice::<Value>(&out.stdout).expect("JSON")["pid"]
        .as_u64()
        .expect("pid");
    agent.wait_output(
        "both execs of the reused pid",
        Duration::from_secs(10),
        |ev| {
            ev.iter()
                .filter(|e| e["process"]["pid"] == pid)
                .filter(|e| {
                    e["exec"]["filename"] == "/bin/true" || e["exec"]["filename"] == "/bin/echo"
                })
                .count()
                >= 2
        },
    );
    let o = agent.stop();
    let same: Vec<&Value> = o
        .events
        .iter()
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    let true_ev = same
        .iter()
        .find(|e| e["exec"]["filename"] == "/bin/true")
        .expect("first exec");
    let echo_ev = same
        .iter()
        .find(|e| e["exec"]["filename"] == "/bin/echo")
        .expect("second exec with the same pid");
    assert_ne!(
        true_ev["process"]["id"], echo_ev["process"]["id"],
        "a reused pid must be a new process identity"
    );
    assert_eq!(
        echo_ev["process"]["args"],
        serde_json::json!(["/bin/echo", "reused"])
    );
}

#[test]
fn containers_and_processes_that_vanish_before_their_metadata_is_read() {
    if !require_root("containers_and_processes_that_vanish_before_their_metadata_is_read") {
        return;
    }
    serial();
    let metrics = free_port();
    // Twenty containers that live for one /bin/true each: the process has exited and the cgroup
    // is gone by the time the event is enriched. Ten exist before the agent starts (its start-up
    // scan knows them), ten are created while it runs (it sees their cgroup_mkdir).
    let before: Vec<FakeContainer> = (0..10)
        .map(|i| FakeContainer::new(&format!("blinkpre{i}")))
        .collect();
    let agent = Agent::start(&[
        "--kind",
        "exec",
        "--metrics-addr",
        &format!("127.0.0.1:{metrics}"),
        "--cri-socket",
        "/nonexistent/monitor-test-cri.sock",
    ]);
    let after: Vec<FakeContainer> = (0..10)
        .map(|i| FakeContainer::new(&format!("blinkpost{i}")))
        .collect();
    let mut expected = std::collections::HashMap::new();
    for c in before.into_iter().chain(after) {
        let cgroup_id = std::os::unix::fs::MetadataExt::ino(&c.path.metadata().expect("stat"));
        expected.insert(cgroup_id, c.id.clone());
        assert!(c.command("/bin/true").status().expect("true").success());
        drop(c);
    }
    // Events of gone containers may wait out the metadata hold before they are written.
    agent.wait_output("an exec per container", Duration::from_secs(20), |ev| {
        ev.iter()
            .filter(|e| {
                e["exec"]["filename"] == "/bin/true"
                    && e["cgroup_id"]
                        .as_u64()
                        .is_some_and(|id| expected.contains_key(&id))
            })
            .count()
            >= expected.len()
    });
    assert!(http_get(metrics, "/healthz").starts_with("HTTP/1.1 200"));
    let o = agent.stop();
    let trues: Vec<&Value> = o
        .events
        .iter()
        .filter(|e| {
            e["exec"]["filename"] == "/bin/true"
                && e["cgroup_id"]
                    .as_u64()
                    .is_some_and(|id| expected.contains_key(&id))
        })
        .collect();
    assert_eq!(trues.len(), 20, "one exec per container: {}", o.stderr);
    for e in &trues {
        // Attributed to its container by id although process and cgroup were gone; the
        // metadata is `missing` (no runtime answers for it) and says why.
        let want = &expected[&e["cgroup_id"].as_u64().expect("cgroup id")];
        assert_eq!(e["container"]["id"].as_str(), Some(want.as_str()), "{e}");
        assert_eq!(e["metadata"]["scope"], "container", "{e}");
        assert_eq!(e["metadata"]["status"], "missing", "{e}");
        assert!(e["metadata"]["reason"].is_string(), "{e}");
    }
    assert!(
        o.stderr.contains("container cgroups found at start-up"),
        "{}",
        o.stderr
    );
}

#[test]
fn the_agent_is_no_blind_spot_and_redacts_secrets() {
    if !require_root("the_agent_is_no_blind_spot_and_redacts_secrets") {
        return;
    }
    serial();
    let out_dir = scratch("self-out");
    let out = out_dir.join("alerts.json");
    let f = files(
        "self",
        &format!("sinks:\n  - {{type: file, path: '{}'}}\n", out.display()),
    );
    let cg = TestCgroup::new("self");
    // Built-in rules on: the self-protection rules are among them.
    let agent = start_run(&f.config, &f.rules, true, Some(&cg), &[]);
    // Another process runs the agent's binary...
    let st = cg
        .command(env!("CARGO_BIN_EXE_monitor"))
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("monitor --version");
    assert!(st.success());
    // ...changes one of its rule files (still valid, so the reload goes through)...
    let rule_file = f.rules.join("test.yaml");
    let st = cg
        .command("/bin/sh")
        .arg("-c")
        .arg(format!("echo '# touched' >> '{}'", rule_file.display()))
        .status()
        .expect("sh");
    assert!(st.success());
    // ...and runs a command with a password on its command line.
    let st = cg
        .command("/bin/echo")
        .args(["--password=hunter2", "--token", "s3cr3t-tok"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("echo");
    assert!(st.success());
    wait_for("self-protection alerts", Duration::from_secs(15), || {
        let a = json_lines(&out);
        [
            "monitor_binary_executed",
            "monitor_files_tampered",
            "fault_echo",
        ]
        .iter()
        .all(|r| a.iter().any(|x| x["rule"] == *r))
    });
    let o = agent.stop();
    let alerts = json_lines(&out);
    let tamper = alerts
        .iter()
        .find(|a| a["rule"] == "monitor_files_tampered")
        .expect("tamper alert");
    assert_eq!(tamper["severity"], "critical");
    assert_eq!(tamper["file"]["path"], rule_file.display().to_string());
    let text = std::fs::read_to_string(&out).expect("alerts");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
    assert!(!text.contains("s3cr3t-tok"), "token leaked: {text}");
    let echo = alerts
        .iter()
        .find(|a| a["rule"] == "fault_echo")
        .expect("echo alert");
    assert_eq!(
        echo["process"]["command_line"],
        "/bin/echo --password=*** --token ***"
    );
    // The file sink's own file is private to the agent.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(o.stderr.contains("rules reloaded"), "{}", o.stderr);
    let _ = f.dir;
}

/// One container floods rule-matching events at full speed (two processes reading
/// /etc/shadow in a loop) while another reads it once: the kernel folds the flood's repeats, so
/// nothing is dropped, the second container's alert arrives, and the flood's alert carries how
/// many reads it stands for.
#[test]
fn a_flood_from_one_container_does_not_blind_the_agent_to_another() {
    if !require_root("a_flood_from_one_container_does_not_blind_the_agent_to_another") {
        return;
    }
    serial();
    let out_dir = scratch("flood-out");
    let out = out_dir.join("alerts.json");
    let f = files(
        "flood",
        &format!("sinks:\n  - {{type: file, path: '{}'}}\n", out.display()),
    );
    let flood = FakeContainer::new("flood");
    let quiet = FakeContainer::new("quiet");
    // Built-in rules on (`sensitive_file_read`), every cgroup watched.
    let agent = start_run(&f.config, &f.rules, true, None, &[]);
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            flood
                .command(trigger())
                .args(["open-flood", "/etc/shadow", "4000"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("flooder")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    quiet.run(trigger(), &["read-file", "/etc/shadow"]);
    let mut opens = 0u64;
    for f in flooders {
        let o = f.wait_with_output().expect("flooder");
        assert!(o.status.success());
        let v: Value = serde_json::from_slice(&o.stdout).expect("flooder output");
        opens += v["opens"].as_u64().expect("opens");
    }
    let o = agent.stop();
    let alerts = json_lines(&out);
    let of = |id: &str| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["rule"] == "sensitive_file_read" && a["container"]["id"] == id)
            .collect()
    };
    assert!(
        !of(&quiet.id).is_empty(),
        "the quiet container's read was not reported during the flood"
    );
    let flood_count = of(&flood.id)
        .iter()
        .filter_map(|a| a["dedup"]["count"].as_u64())
        .max()
        .unwrap_or(0);
    let kinds = o.stats["kernel"]["kinds"].as_object().expect("kinds");
    let kernel_dropped: u64 = kinds.values().filter_map(|k| k["dropped"].as_u64()).sum();
    let folded = kinds["open"]["folded"].as_u64().expect("folded");
    eprintln!(
        "opens={opens} folded={folded} flood alert count={flood_count} kernel_dropped={kernel_dropped}"
    );
    assert!(opens > 100_000, "the flood was too slow to be one: {opens}");
    // The kernel's rings are the only place events can be lost (the workers read them
    // directly).
    assert_eq!(kernel_dropped, 0, "events were dropped in the kernel");
    assert!(folded > opens / 2, "folded {folded} of {opens}");
    // The count covers every fold window but the last, whose count no later read carries.
    assert!(
        flood_count > opens / 3 && flood_count <= opens,
        "the flood's alert stands for {flood_count} of {opens} reads"
    );
}
