//! Root integration tests of alert delivery: real receivers on loopback (an RFC 5424 syslog
//! server over UDP, TCP and a unix socket; an HTTP server that fails, is slow and recovers; a
//! receiver that stays down), file rotation, OCSF and ECS output checked against what those
//! schemas require, the Prometheus endpoint (checked by `promtool`), and SIGTERM during a burst.
//!
//! Alerts come from a test rule on `unlink` of a marker path, done by the trigger helper inside a
//! cgroup the agent is told to watch exclusively, so every count is exact.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{receivers::*, *};

pub(crate) const RULES: &str = r#"
- rule: test_unlink_marker
  desc: The delivery tests' marker file was removed.
  condition: kind = unlink and file.path startswith /tmp/monitor-delivery-
  severity: critical
  tags: [test, mitre_defense_evasion, T1070.004]
  output: "marker removed (file={file.path} pid={process.pid})"
  dedup: false

- rule: test_exec_true
  desc: /bin/true ran in the test cgroup.
  condition: kind = exec and exec.name = true
  severity: notice
  tags: [test]
  output: "true ran (pid={process.pid})"
  dedup: false

- rule: test_connect_marker
  desc: A connection to the marker port.
  condition: kind = connect and network.port = 9
  severity: warning
  tags: [test, T1071]
  output: "connect to {network.address}:{network.port}"
  dedup: false
"#;

/// Files for one agent: its rules and configuration.
pub(crate) struct Setup {
    config: PathBuf,
    rules: PathBuf,
    /// Holds the files above (removed on drop).
    _dir: Scratch,
}

pub(crate) fn setup(tag: &str, config: &str) -> Setup {
    setup_with_rules(tag, config, RULES)
}

fn setup_with_rules(tag: &str, config: &str, rules_text: &str) -> Setup {
    let dir = scratch(tag);
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, rules_text).expect("rules");
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).expect("config");
    Setup {
        config: config_path,
        rules,
        _dir: dir,
    }
}

pub(crate) fn start(s: &Setup, cg: &TestCgroup, extra: &[&str]) -> Agent {
    start_run(&s.config, &s.rules, false, Some(cg), extra)
}

/// `n` marker unlinks from inside `cg`: `n` alerts of `test_unlink_marker`.
pub(crate) fn unlinks(cg: &TestCgroup, n: u64) {
    unlink_markers(cg, "/tmp/monitor-delivery", n);
}

fn seq(alert: &Value) -> u64 {
    alert_seq(alert)
}

#[test]
fn syslog_over_udp_tcp_and_unix_is_rfc5424() {
    if !require_root("syslog_over_udp_tcp_and_unix_is_rfc5424") {
        return;
    }
    const N: u64 = 3;
    let (udp, udp_in) = udp_server();
    let (tcp, tcp_in) = tcp_server();
    let dir = scratch("syslog");
    let sock = dir.join("log.sock");
    let unix_in = unix_server(&sock);
    let s = setup(
        "syslog",
        &format!(
            "sinks:\n  - {{type: syslog, name: udp, address: 'udp://127.0.0.1:{udp}'}}\n  - {{type: syslog, name: tcp, address: 'tcp://127.0.0.1:{tcp}', format: ocsf, facility: local3}}\n  - {{type: syslog, name: unix, address: 'unix://{}', format: ecs}}\n",
            sock.display()
        ),
    );
    let cg = TestCgroup::new("syslog");
    let agent = start(&s, &cg, &["--node", "node-a"]);
    unlinks(&cg, N);
    wait_for("syslog messages", Duration::from_secs(20), || {
        [&udp_in, &tcp_in, &unix_in]
            .iter()
            .all(|i| i.lock().expect("inbox").len() as u64 >= N)
    });
    agent.stop();
    for (name, inbox, facility) in [
        ("udp", &udp_in, 10u8),
        ("tcp", &tcp_in, 19),
        ("unix", &unix_in, 10),
    ] {
        let msgs = inbox.lock().expect("inbox").clone();
        assert_eq!(msgs.len() as u64, N, "{name}: {msgs:?}");
        for m in msgs {
            let p = parse_5424(&m);
            // critical = 2.
            assert_eq!(p.pri, facility * 8 + 2, "{name}: {m}");
            assert_eq!((p.host.as_str(), p.app.as_str()), ("node-a", "monitor"));
            assert_eq!(p.msgid, "test_unlink_marker");
            let sd = &p.sd["monitor@32473"];
            assert_eq!(sd["rule"], "test_unlink_marker");
            assert_eq!(sd["severity"], "critical");
            let body: Value = serde_json::from_str(&p.msg).expect("MSG is JSON");
            match name {
                "udp" => assert_eq!(body["rule"], "test_unlink_marker"),
                "tcp" => assert_eq!(body["class_uid"], 2004),
                _ => assert_eq!(body["rule"]["name"], "test_unlink_marker"),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
#[test]
fn webhook_retries_in_order_exactly_once_and_a_dead_receiver_drops_are_counted() {
    if !require_root("webhook_retries_in_order_exactly_once_and_a_dead_receiver_drops_are_counted")
    {
        return;
    }
    const N: u64 = 40;
    const DEAD_QUEUE: u64 = 5;
    let rx = HttpReceiver::start(vec![
        Reply::Fail(503),
        Reply::Fail(500),
        Reply::Slow(2500),
        Reply::Fail(429),
    ]);
    let dead = free_port();
    let metrics = free_port();
    let s = setup(
        "webhook",
        &format!(
            "metrics: {{addr: '127.0.0.1:{metrics}'}}\nalerts: {{shutdown_deadline: 2s}}\nsinks:\n  - {{type: webhook, name: flaky, url: 'http://127.0.0.1:{}/ingest', batch: 7, linger: 100ms, retry_initial: 100ms, retry_max: 500ms, timeout: 10s}}\n  - {{type: webhook, name: dead, url: 'http://127.0.0.1:{dead}/x', queue: {DEAD_QUEUE}, retry_initial: 100ms, retry_max: 200ms}}\n",
            rx.port
        ),
    );
    let cg = TestCgroup::new("webhook");
    let agent = start(&s, &cg, &[]);
    unlinks(&cg, N);
    wait_for("webhook deliveries", Duration::from_secs(40), || {
        rx.alerts().len() as u64 >= N
    });
    let text = http_get(metrics, "/metrics");
    let got = rx.alerts();
    assert_eq!(got.len() as u64, N, "exactly once");
    let seqs: Vec<u64> = got.iter().map(seq).collect();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "in order, no gaps, no repeats"
    );
    assert!(got.iter().all(|a| a["rule"] == "test_unlink_marker"));
    assert_eq!(
        rx.requests.lock().expect("requests")[..4]
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>(),
        ["Fail(503)", "Fail(500)", "Slow(2500)", "Fail(429)"]
    );
    assert_eq!(
        metric(&text, "monitor_sink_delivered_total{sink=\"flaky\"}"),
        Some(N),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "monitor_sink_failures_total{reason=\"http_status\",sink=\"flaky\"}"
        ),
        Some(3),
        "{text}"
    );
    // The dead receiver: its queue holds DEAD_QUEUE alerts, the rest are dropped and counted,
    // and none of that slowed the other sink.
    assert_eq!(
        metric(
            &text,
            "monitor_sink_dropped_total{reason=\"queue_full\",sink=\"dead\"}"
        ),
        Some(N - DEAD_QUEUE),
        "{text}"
    );
    assert_eq!(
        metric(&text, "monitor_sink_queue_length{sink=\"dead\"}"),
        Some(DEAD_QUEUE),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "monitor_sink_failures_total{reason=\"connect\",sink=\"dead\"}"
        )
        .is_some_and(|n| n >= 1),
        "{text}"
    );
    let out = agent.stop();
    assert!(
        out.stderr.contains("sink queue full: alert dropped"),
        "{}",
        out.stderr
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("shutdown deadline passed"))
        .unwrap_or_else(|| panic!("no shutdown drop line: {}", out.stderr));
    assert!(
        line.contains("sink=dead") && line.contains(&format!("lost={DEAD_QUEUE}")),
        "{line}"
    );
}

// ------------------------------------------------------------------------------------------
// Files, formats, shutdown

#[test]
fn sigterm_during_a_burst_delivers_every_alert_to_the_file_sink() {
    if !require_root("sigterm_during_a_burst_delivers_every_alert_to_the_file_sink") {
        return;
    }
    // Floods the node: other tests' agents would see (and lose) its events.
    alone();
    const N: u64 = 3000;
    let dead = free_port();
    let dir = scratch("burst-out");
    let file = dir.join("alerts.json");
    let s = setup(
        "burst",
        &format!(
            "alerts: {{shutdown_deadline: 5s}}\nsinks:\n  - {{type: file, path: '{}', max_bytes: 1000000000}}\n  - {{type: webhook, name: dead, url: 'http://127.0.0.1:{dead}/x', queue: 10}}\n",
            file.display()
        ),
    );
    let cg = TestCgroup::new("burst");
    let agent = start(&s, &cg, &[]);
    unlinks(&cg, N);
    // The signal follows the burst at once: most alerts are still in the ring, the queue or
    // the sink when it arrives.
    let t = Instant::now();
    let out = agent.stop();
    let took = t.elapsed();
    let alerts = json_lines(&file);
    assert_eq!(alerts.len() as u64, N, "{}", out.stderr);
    let seqs: Vec<u64> = alerts.iter().map(seq).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    assert!(
        out.stderr.contains("flushing alert sinks"),
        "{}",
        out.stderr
    );
    // The dead sink gave up at its deadline instead of holding the agent.
    assert!(took < Duration::from_secs(30), "{took:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn file_sink_rotates_and_ocsf_and_ecs_validate_against_their_published_schemas() {
    if !require_root("file_sink_rotates_and_ocsf_and_ecs_validate_against_their_published_schemas")
    {
        return;
    }
    const N: u64 = 60;
    let dir = scratch("files-out");
    let (native, ocsf, ecs) = (
        dir.join("alerts.json"),
        dir.join("ocsf.json"),
        dir.join("ecs.json"),
    );
    let s = setup(
        "files",
        &format!(
            "sinks:\n  - {{type: file, name: native, path: '{}', max_bytes: 8192, max_files: 50}}\n  - {{type: file, name: ocsf, path: '{}', format: ocsf}}\n  - {{type: file, name: ecs, path: '{}', format: ecs}}\n",
            native.display(),
            ocsf.display(),
            ecs.display()
        ),
    );
    let cg = TestCgroup::new("files");
    let agent = start(&s, &cg, &[]);
    unlinks(&cg, N);
    assert!(cg.command("/bin/true").status().expect("true").success());
    let st = cg
        .command(trigger())
        .args(["connect", "127.0.0.1", "9"])
        .status()
        .expect("connect");
    let _ = st;
    wait_for(
        "all alerts in the OCSF file",
        Duration::from_secs(20),
        || json_lines(&ocsf).len() as u64 >= N + 2,
    );
    agent.stop();

    // Rotation: several files, none over the limit, together every alert once, oldest first.
    let mut files = vec![native.clone()];
    for i in 1..=50 {
        let mut p = native.clone().into_os_string();
        p.push(format!(".{i}"));
        let p = PathBuf::from(p);
        if p.exists() {
            files.push(p);
        }
    }
    assert!(files.len() >= 3, "expected rotation: {files:?}");
    let mut all = Vec::new();
    for f in files.iter().rev() {
        assert!(std::fs::metadata(f).expect("meta").len() <= 8192);
        all.extend(json_lines(f));
    }
    assert_eq!(all.len() as u64, N + 2);
    let seqs: Vec<u64> = all.iter().map(seq).collect();
    assert_eq!(seqs, (1..=N + 2).collect::<Vec<_>>());

    let o = json_lines(&ocsf);
    let e = json_lines(&ecs);
    assert_eq!((o.len() as u64, e.len() as u64), (N + 2, N + 2));
    // Against the published schema data, not a list of expectations written here.
    conformance::validate("ocsf", conformance::DEFAULT_OCSF, &ocsf);
    conformance::validate("ecs", conformance::ECS, &ecs);
    // One of each kind made it, with its details in the right place.
    let rule_of = |v: &Value| {
        v["finding_info"]["title"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let exec = o
        .iter()
        .find(|v| rule_of(v) == "test_exec_true")
        .expect("exec alert");
    assert_eq!(exec["evidences"][0]["file"]["name"], "true");
    let conn = o
        .iter()
        .find(|v| rule_of(v) == "test_connect_marker")
        .expect("connect alert");
    assert_eq!(conn["evidences"][0]["dst_endpoint"]["port"], 9);
    let unlink = o
        .iter()
        .find(|v| rule_of(v) == "test_unlink_marker")
        .expect("unlink alert");
    assert_eq!(unlink["severity_id"], 5);
    assert_eq!(
        unlink["finding_info"]["attacks"][0]["technique"]["uid"],
        "T1070.004"
    );
    let econn = e
        .iter()
        .find(|v| v["rule"]["name"] == "test_connect_marker")
        .expect("ecs connect");
    assert_eq!(econn["destination"]["ip"], "127.0.0.1");
    assert_eq!(econn["event"]["category"][0], "network");
}

#[test]
fn alerts_say_when_events_were_being_lost() {
    if !require_root("alerts_say_when_events_were_being_lost") {
        return;
    }
    // Floods the node: other tests' agents would see (and lose) its events.
    alone();
    let out_dir = scratch("drops-out");
    let out_file = out_dir.join("alerts.json");
    // The exec rule, and the unlink rule so that the kernel sends the flood's unlinks (none
    // matches it): the flood itself raises nothing but fills the ring.
    let rules = RULES
        .split("\n- rule: ")
        .filter(|r| r.starts_with("test_exec_true") || r.starts_with("test_unlink_marker"))
        .map(|r| format!("- rule: {r}"))
        .collect::<String>();
    let s = setup_with_rules(
        "drops",
        &format!(
            "sinks:\n  - {{type: file, path: '{}'}}\n",
            out_file.display()
        ),
        &rules,
    );
    let cg = TestCgroup::new("drops");
    // A one-page ring buffer: the flood must overflow it.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = start(
        &s,
        &cg,
        &[
            "--ring-buffer-bytes",
            "4096",
            "--metrics-addr",
            &addr,
            // The flood repeats one call: folded in the kernel, it would not overflow the ring.
            "--set",
            "capture.fold_window=0s",
        ],
    );
    assert!(cg.command("/bin/true").status().expect("true").success());
    wait_for("first alert", Duration::from_secs(10), || {
        json_lines(&out_file).len() == 1
    });
    let st = cg
        .command(trigger())
        .args(["unlink-flood", "200000", "/nonexistent/monitor-drops"])
        .status()
        .expect("flood");
    assert!(st.success());
    // Kernel drop counters are read once a second, into the metrics and the drop tracker at
    // the same time: once the metric shows them, the next alert must note them.
    wait_for("kernel drops read", Duration::from_secs(10), || {
        metric(
            &http_get(port, "/metrics"),
            "monitor_events_dropped_total{kind=\"unlink\",stage=\"kernel_ring\"}",
        )
        .is_some_and(|n| n > 0)
    });
    assert!(cg.command("/bin/true").status().expect("true").success());
    wait_for("second alert", Duration::from_secs(10), || {
        json_lines(&out_file).len() == 2
    });
    let out = agent.stop();
    let alerts = json_lines(&out_file);
    assert!(
        alerts[0].get("drops").is_none(),
        "before the flood: {}",
        alerts[0]
    );
    let d = &alerts[1]["drops"];
    let lost = d["kernel_ring"]["unlink"].as_u64().unwrap_or(0);
    assert!(lost > 0, "after the flood: {}", alerts[1]);
    assert_eq!(d["window_seconds"], 60);
    // Every drop was of this cgroup, and the kernel counted the same total.
    assert_eq!(d["same_cgroup"].as_u64(), d["total"].as_u64());
    let sum = |v: &Value, field: Option<&str>| -> u64 {
        v.as_object()
            .expect("object")
            .values()
            .map(|x| field.map_or(x, |f| &x[f]).as_u64().unwrap_or(0))
            .sum()
    };
    let lost_total = sum(&out.stats["kernel"]["kinds"], Some("dropped"));
    // The alert sees the drops counted up to its last one-second sample; the final counters
    // may include a few later ones.
    let noted = d["total"].as_u64().expect("total");
    assert!(
        noted <= lost_total && noted * 10 >= lost_total * 9,
        "{noted} of {lost_total}"
    );
}

// ------------------------------------------------------------------------------------------
// Metrics

#[test]
fn metrics_names_types_values_and_promtool() {
    if !require_root("metrics_names_types_values_and_promtool") {
        return;
    }
    const N: u64 = 12;
    let port = free_port();
    let out_dir = scratch("metrics-out");
    let s = setup(
        "metrics",
        &format!(
            "metrics: {{addr: '127.0.0.1:{port}'}}\nsinks:\n  - {{type: file, path: '{}'}}\n",
            out_dir.join("alerts.json").display()
        ),
    );
    let cg = TestCgroup::new("metrics2");
    let agent = start(&s, &cg, &[]);
    assert!(
        http_get(port, "/readyz").starts_with("HTTP/1.1 200"),
        "ready"
    );
    assert!(
        http_get(port, "/healthz").starts_with("HTTP/1.1 200"),
        "healthy"
    );
    let before = http_get(port, "/metrics");
    let execs_before = metric(&before, "monitor_events_received_total{kind=\"exec\"}").unwrap_or(0);
    for _ in 0..N {
        assert!(cg.command("/bin/true").status().expect("true").success());
    }
    let alert_series =
        "monitor_alerts_total{rule=\"test_exec_true\",severity=\"notice\",source=\"rule\"}";
    wait_for("alert counter", Duration::from_secs(10), || {
        metric(&http_get(port, "/metrics"), alert_series) == Some(N)
    });
    let text = http_get(port, "/metrics");
    assert_eq!(
        metric(&text, "monitor_events_received_total{kind=\"exec\"}"),
        Some(execs_before + N)
    );
    for (name, ty) in [
        ("monitor_events_received_total", "counter"),
        ("monitor_events_dropped_total", "counter"),
        ("monitor_alerts_total", "counter"),
        ("monitor_sink_delivered_total", "counter"),
        ("monitor_rule_evaluation_seconds", "histogram"),
        ("monitor_rules_loaded", "gauge"),
        ("monitor_rules_last_reload_success", "gauge"),
        ("monitor_probe_attached", "gauge"),
        ("monitor_build_info", "gauge"),
        ("monitor_sink_queue_length", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {ty}\n")),
            "{name} {ty}:\n{text}"
        );
    }
    assert_eq!(metric(&text, "monitor_rules_loaded "), Some(3));
    assert_eq!(metric(&text, "monitor_rules_last_reload_success "), Some(1));
    assert!(
        text.lines().any(|l| l
            .starts_with("monitor_probe_attached{probe=\"tracepoint/sched/sched_process_exec\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(text.contains("monitor_build_info{kernel="), "{text}");
    wait_for("delivery counter", Duration::from_secs(10), || {
        metric(
            &http_get(port, "/metrics"),
            "monitor_sink_delivered_total{sink=\"file\"}",
        ) == Some(N)
    });
    // No high-cardinality series by default.
    assert!(!text.contains("monitor_alerts_by_pod_total"));

    // promtool (Debian package `prometheus`) lints names, types, units and HELP.
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(body.as_bytes())
                .expect("feed promtool");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is required in CI (apt package prometheus): {e}"
            );
            eprintln!("note: promtool not installed ({e}); lint skipped outside CI");
        }
    }
    agent.stop();
}
