//! The Kubernetes deployment (`deploy/`): every overlay renders (`kubectl kustomize`), validates
//! against the Kubernetes schemas (`kubernetes-validate --strict`), keeps the security settings
//! the README promises, and its configuration and rules are accepted by the agent; and the real
//! agent runs with exactly the DaemonSet's capability set and names a missing one.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    pod::{docs, render, strings},
    *,
};

const OVERLAYS: &[&str] = &["containerd", "crio", "k3s"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The command for a tool: `kubernetes-validate` runs as a Python module (pip may put its
/// script outside PATH).
fn tool(name: &str) -> Command {
    if name == "kubernetes-validate" {
        let mut c = Command::new("python3");
        c.args(["-m", "kubernetes_validate"]);
        c
    } else {
        Command::new(name)
    }
}

/// True when `tool` can run; outside CI a missing tool skips the test with a note, in CI it
/// fails (`.ci/run` installs them all through `cargo xtask setup`).
fn have(name: &str, test: &str) -> bool {
    let ok = tool(name)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `{name}` is required in CI (cargo xtask setup installs it)"
        );
        eprintln!("note: {test} skipped: `{name}` is not installed");
    }
    ok
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn strs(v: &Value) -> BTreeSet<String> {
    strings(v)
}

#[test]
fn every_overlay_validates_against_the_kubernetes_schemas() {
    let t = "every_overlay_validates_against_the_kubernetes_schemas";
    if !have("kubectl", t) || !have("kubernetes-validate", t) {
        return;
    }
    for overlay in OVERLAYS {
        let text = render(overlay);
        // 1.30 is the oldest release with the appArmorProfile field; the latest the tool knows.
        for version in ["1.30.0", "1.37.0"] {
            let mut child = tool("kubernetes-validate")
                .args(["--strict", "-k", version, "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubernetes-validate");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("feed manifests");
            let out = child.wait_with_output().expect("validate");
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{overlay} @ {version}:\n{report}");
            for kind in [
                "namespace",
                "serviceaccount",
                "configmap",
                "service",
                "daemonset",
            ] {
                assert!(
                    report.contains(&format!("passed for resource {kind}/")),
                    "{overlay} @ {version}: {kind} not validated:\n{report}"
                );
            }
            assert!(!report.contains("failed"), "{report}");
        }
    }
}

/// The expected capability set, each justified in the manifest's comments.
const CAPS: &[&str] = &["BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"];

fn daemonset_caps(d: &[Value]) -> BTreeSet<String> {
    let c = &find(d, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    strs(&c["securityContext"]["capabilities"]["add"])
}

#[test]
fn daemonset_security_and_wiring() {
    let t = "daemonset_security_and_wiring";
    if !have("kubectl", t) {
        return;
    }
    for overlay in OVERLAYS {
        let d = docs(&render(overlay));
        let ns = find(&d, "Namespace");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        let ds = find(&d, "DaemonSet");
        let spec = &ds["spec"]["template"]["spec"];
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        assert_ne!(sc["privileged"], true, "{overlay}: privileged");
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsUser"], 0, "runAsUser documented and explicit");
        assert_eq!(
            strs(&sc["capabilities"]["drop"]),
            BTreeSet::from(["ALL".into()])
        );
        assert_eq!(
            daemonset_caps(&d),
            CAPS.iter().map(|s| s.to_string()).collect()
        );
        assert!(!daemonset_caps(&d).contains("SYS_ADMIN"));
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert!(
                c[probe]["httpGet"]["path"].is_string(),
                "{overlay}: {probe}"
            );
        }
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        for k in ["cpu", "memory"] {
            assert!(c["resources"]["requests"][k].is_string(), "request {k}");
            assert!(c["resources"]["limits"][k].is_string(), "limit {k}");
        }
        assert_eq!(spec["hostPID"], true);
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["tolerations"][0]["operator"], "Exists");
        assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
        let env = c["env"].as_array().expect("env");
        assert!(env.iter().any(|e| e["name"] == "NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"));
        // Host paths: read-only except the three the agent writes (its pins in bpffs).
        let volumes = spec["volumes"].as_array().expect("volumes");
        let writable: BTreeSet<&str> = ["state", "alerts", "bpffs"].into();
        for m in c["volumeMounts"].as_array().expect("mounts") {
            let name = m["name"].as_str().expect("name");
            let v = volumes.iter().find(|v| v["name"] == name).expect("volume");
            if v.get("hostPath").is_some() && !writable.contains(name) {
                assert_eq!(m["readOnly"], true, "{overlay}: host mount {name} writable");
            }
            if writable.contains(name) {
                assert_ne!(m["readOnly"], true, "{name} must be writable");
            }
        }
        // The CRI socket's directory is mounted (a mounted socket file would go stale when
        // the runtime restarts), and the agent's socket is inside it.
        let dir = volumes
            .iter()
            .find(|v| v["name"] == "cri-socket")
            .expect("cri-socket")["hostPath"]
            .clone();
        let (expect_dir, expect_sock) = match *overlay {
            "crio" => ("/run/crio", "/run/crio/crio.sock"),
            "k3s" => ("/run/k3s/containerd", "/run/k3s/containerd/containerd.sock"),
            _ => ("/run/containerd", "/run/containerd/containerd.sock"),
        };
        assert_eq!(dir["path"], expect_dir, "{overlay}");
        assert_eq!(dir["type"], "Directory", "{overlay}");
        let mount = c["volumeMounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "cri-socket"))
            .expect("cri-socket mount");
        assert_eq!(mount["mountPath"], expect_dir, "{overlay}");
        let sock_env = env
            .iter()
            .find(|e| e["name"] == "MONITOR_RUNTIME_CRI_SOCKET")
            .and_then(|e| e["value"].as_str());
        let cm = d
            .iter()
            .find(|x| {
                x["kind"] == "ConfigMap"
                    && x["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("monitor-config-"))
            })
            .expect("config map");
        let config_sock = cm["data"]["config.yaml"]
            .as_str()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.trim().strip_prefix("cri_socket: "))
            })
            .map(str::to_string);
        let sock = sock_env
            .map(str::to_string)
            .or(config_sock)
            .expect("a CRI socket");
        assert_eq!(sock, expect_sock, "{overlay}");
        // The pods roll on config change: the ConfigMap name carries a content hash.
        let cm_ref = volumes
            .iter()
            .find(|v| v["name"] == "config")
            .expect("config volume")["configMap"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        assert!(
            cm_ref.starts_with("monitor-config-") && cm_ref.len() > "monitor-config-".len(),
            "{cm_ref}"
        );
        assert!(
            d.iter()
                .any(|x| x["kind"] == "ConfigMap" && x["metadata"]["name"] == cm_ref.as_str())
        );
        // Service, ServiceMonitor and the container port agree.
        let svc = find(&d, "Service");
        let sm = find(&d, "ServiceMonitor");
        for (k, v) in sm["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector")
        {
            assert_eq!(
                &svc["metadata"]["labels"][k], v,
                "ServiceMonitor selects the Service"
            );
            assert_eq!(&spec_labels(ds)[k], v, "Service selects the pods");
        }
        assert_eq!(
            sm["spec"]["endpoints"][0]["port"],
            svc["spec"]["ports"][0]["name"]
        );
        assert_eq!(c["ports"][0]["containerPort"], 9750);
        // The dashboard is a Grafana sidecar ConfigMap whose JSON parses and uses our metrics.
        let dash = d
            .iter()
            .find(|x| x["metadata"]["name"] == "monitor-dashboard")
            .expect("dashboard");
        assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
        let json: Value = serde_json::from_str(
            dash["data"]["monitor-dashboard.json"]
                .as_str()
                .expect("json"),
        )
        .expect("dashboard JSON");
        let exprs: String = json["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().unwrap_or("").to_string())
            .collect();
        for m in [
            "monitor_events_received_total",
            "monitor_events_dropped_total",
            "monitor_alerts_total",
            "monitor_sink_delivered_total",
            "monitor_sink_failures_total",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ] {
            assert!(exprs.contains(m), "dashboard lacks {m}");
        }
    }
}

fn spec_labels(ds: &Value) -> &Value {
    &ds["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let t = "prometheus_rules_pass_promtool_check_and_unit_tests";
    if !have("kubectl", t) || !have("promtool", t) {
        return;
    }
    let d = docs(&render("containerd"));
    let rule = find(&d, "PrometheusRule");
    let names: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "MonitorKernelEventDrops",
        "MonitorSinkFailing",
        "MonitorAgentNotReady",
        "MonitorHighSeverityDetections",
    ] {
        assert!(names.contains(&want), "missing alert {want}");
    }
    // The workers read the kernel's rings directly: there is no agent queue left to alert on.
    assert!(!names.contains(&"MonitorQueueEventDrops"), "{names:?}");
    let dir = TempDir::new("promrules");
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        serde_norway::to_string(&serde_json::json!({ "groups": rule["spec"]["groups"] }))
            .expect("yaml"),
    )
    .expect("write");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unit tests of the alerts themselves (deploy/tests/alerts.test.yaml): each fires on the
    // series it is about, with its labels and annotations, and only then.
    let tests_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tests/alerts.test.yaml");
    let tests_text = std::fs::read_to_string(&tests_file).expect("alert tests");
    let tests: Value = serde_norway::from_str(&tests_text).expect("alert tests YAML");
    let tested: Vec<&str> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|t| t["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|t| t["alertname"].as_str())
        .collect();
    for n in &names {
        assert!(
            tested.contains(n),
            "alert {n} has no promtool unit test that fires it"
        );
    }
    std::fs::write(dir.path().join("alerts.test.yaml"), tests_text).expect("copy");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(dir.path().join("alerts.test.yaml"))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_config_and_rules_are_accepted_by_the_agent() {
    // The ConfigMap's copy of the default rules is the one compiled into the agent.
    let shipped = std::fs::read_to_string(repo().join("deploy/base/rules/default.yaml"))
        .expect("deploy rules");
    let builtin =
        std::fs::read_to_string(repo().join("monitor/rules/default.yaml")).expect("builtin rules");
    assert!(
        shipped == builtin,
        "deploy/base/rules/default.yaml differs from monitor/rules/default.yaml: copy it over"
    );
    let dir = TempDir::new("deploycfg");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("dir");
    std::fs::write(rules.join("default.yaml"), shipped).expect("rules");
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["config", "check", "--rules", "--config"])
        .arg(repo().join("deploy/base/config.yaml"))
        .arg("--set")
        .arg(format!("rules.paths=[{}]", rules.display()))
        .env_remove("MONITOR_CONFIG")
        .output()
        .expect("monitor config check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("OK: configuration valid"), "{stderr}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("addr: 0.0.0.0:9750"), "{printed}");
}

/// Runs `monitor trace` with only `caps` in its bounding set (so, as root, exactly those are
/// effective), watching `cg`; returns (exit success, events, stderr).
fn trace_with_caps(caps: &BTreeSet<String>, cg: &TestCgroup) -> (bool, Vec<Value>, String) {
    let dir = TempDir::new("capsagent");
    let ready = dir.path().join("ready");
    let set: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", set.join(",")))
        .arg("--inh-caps=-all")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "trace",
            "--kind",
            "exec",
            "--cri-socket",
            "/nonexistent/cri.sock",
        ])
        .arg("--cgroup")
        .arg(&cg.path)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(std::fs::File::create(dir.path().join("out")).expect("out"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("err"))
        .spawn()
        .expect("setpriv");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut exited = None;
    while !ready.exists() && Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            exited = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = match exited {
        Some(st) => st,
        None => {
            assert!(cg.command("/bin/true").status().expect("true").success());
            let out = dir.path().join("out");
            wait_for("the exec of /bin/true", Duration::from_secs(10), || {
                json_lines(&out)
                    .iter()
                    .any(|e| e["exec"]["filename"] == "/bin/true")
            });
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().expect("wait")
        }
    };
    let events = std::fs::read_to_string(dir.path().join("out"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    (status.success(), events, err)
}

#[test]
fn agent_runs_with_exactly_the_daemonset_capabilities() {
    let t = "agent_runs_with_exactly_the_daemonset_capabilities";
    if !require_root(t) || !have("kubectl", t) || !have("setpriv", t) {
        return;
    }
    let caps = daemonset_caps(&docs(&render("containerd")));
    let cg = TestCgroup::new("caps");
    let (ok, events, err) = trace_with_caps(&caps, &cg);
    assert!(ok, "agent failed with the DaemonSet's capabilities: {err}");
    assert!(err.contains("kernel probes attached"), "{err}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "exec" && e["exec"]["filename"] == "/bin/true"),
        "no exec event: {err}"
    );
    // Nothing the DaemonSet grants is reported missing, except what this machine cannot give
    // at all (a sandbox may lack CAP_SYS_RESOURCE in its own bounding set).
    let own = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .expect("CapBnd");
    for (name, bit) in [
        ("CAP_BPF", 39),
        ("CAP_PERFMON", 38),
        ("CAP_SYS_PTRACE", 19),
        ("CAP_SYS_RESOURCE", 24),
    ] {
        let warned = err
            .lines()
            .any(|l| l.contains("capability missing") && l.contains(name));
        if own & (1 << bit) != 0 {
            assert!(!warned, "{name} granted but reported missing: {err}");
        } else {
            eprintln!("note: this machine cannot grant {name} (not in the test's bounding set)");
        }
    }

    for required in ["PERFMON", "BPF"] {
        let mut fewer = caps.clone();
        fewer.remove(required);
        let (ok, _, err) = trace_with_caps(&fewer, &cg);
        assert!(!ok, "agent ran without CAP_{required}: {err}");
        assert!(
            err.contains(&format!("missing capability CAP_{required}")),
            "error does not name CAP_{required}: {err}"
        );
    }
    // A recommended one missing: the agent runs, and says what it cannot do.
    let mut fewer = caps.clone();
    fewer.remove("SYS_PTRACE");
    let (ok, _, err) = trace_with_caps(&fewer, &cg);
    assert!(ok, "{err}");
    assert!(
        err.contains("capability missing") && err.contains("CAP_SYS_PTRACE"),
        "{err}"
    );
}
