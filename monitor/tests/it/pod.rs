//! Root integration tests of the agent as it is deployed: the DaemonSet of `deploy/` rendered
//! by kustomize, run as a kubelet would run its pod (see `common::pod`), against the real kernel
//! and a real containerd. A change of the DaemonSet that breaks the agent fails here.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    containerd::{Containerd, SERIAL},
    pod::{Pod, Rendered, image_archive},
    *,
};

/// The tools and the image the harness needs; under CI their absence is a failure.
fn harness_available(test: &str) -> bool {
    if !require_root(test) || !containerd::available(test) {
        return false;
    }
    let kubectl = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    let image = image_archive().exists();
    if kubectl && image {
        return true;
    }
    let what = if kubectl {
        format!(
            "the image {} (`cargo xtask image`)",
            image_archive().display()
        )
    } else {
        "kubectl (cargo xtask setup installs it)".to_string()
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {what} is required in CI"
    );
    eprintln!("SKIPPED {test}: {what} missing");
    false
}

/// Host paths the test provides instead of the node's own.
struct Host {
    pins: BpfFs,
    state: TempDir,
    alerts: TempDir,
    cri_dir: PathBuf,
}

impl Host {
    fn new(cri_dir: PathBuf) -> Host {
        Host {
            pins: BpfFs::mount("pod-bpffs"),
            state: TempDir::new("pod-state"),
            alerts: TempDir::new("pod-alerts"),
            cri_dir,
        }
    }

    fn paths(&self) -> HashMap<&'static str, PathBuf> {
        [
            ("/sys/fs/bpf", self.pins.path().to_path_buf()),
            ("/var/lib/monitor", self.state.path().to_path_buf()),
            ("/var/log/monitor", self.alerts.path().to_path_buf()),
            ("/run/containerd", self.cri_dir.clone()),
        ]
        .into_iter()
        .collect()
    }

    /// The alerts of the file sink, on the host.
    fn alerts(&self) -> Vec<Value> {
        json_lines(&self.alerts.path().join("alerts.json"))
    }
}

/// The containerd overlay, with the CRI socket named as the test's containerd names it.
fn rendered(socket: &str) -> Rendered {
    let mut r = Rendered::overlay("containerd");
    let sock = format!("/run/containerd/{socket}");
    let env = r.container()["env"].as_array_mut().expect("env");
    env.push(serde_json::json!({"name": "MONITOR_RUNTIME_CRI_SOCKET", "value": sock}));
    r
}

fn socket_name(ctd: &Containerd) -> String {
    ctd.socket
        .file_name()
        .expect("socket name")
        .to_string_lossy()
        .into_owned()
}

fn shell_alert<'a>(alerts: &'a [Value], cid: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["rule"] == "shell_in_container" && a["container"]["id"] == cid)
}

fn wait_alert(host: &Host, pod: &Pod, what: &str, cid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(a) = shell_alert(&host.alerts(), cid) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alert for {what} ({cid}) in the file sink; agent log:\n{}",
            pod.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

type PodId<'a> = (&'a str, &'a str, &'a str);

fn start_container(ctd: &mut Containerd, pod: PodId<'_>, cmd: &[&str]) -> String {
    let (name, ns, uid) = pod;
    let labels = HashMap::new();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    ctd.run_container(&sandbox, (name, ns, uid, &labels), "app", cmd)
}

fn metric_of(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_daemonset_pod_attributes_delivers_serves_metrics_and_restarts_without_a_gap() {
    let t = "the_daemonset_pod_attributes_delivers_serves_metrics_and_restarts_without_a_gap";
    if !harness_available(t) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctd = Containerd::start();
    let host = Host::new(ctd.socket.parent().expect("socket dir").to_path_buf());
    let r = rendered(&socket_name(&ctd));
    let grace = Duration::from_secs(
        r.daemonset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30),
    );

    // A container started before the agent: a shell every second.
    let before = (
        "web-6c9f8d7b5a-b4f0r",
        "shop",
        "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    );
    let a = start_container(
        &mut ctd,
        before,
        &["/bin/sh", "-c", "while true; do /bin/sh -c 'sleep 1'; done"],
    );
    let mut pod = Pod::start(&r, &host.paths()).expect("the DaemonSet's pod starts");
    pod.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|log| panic!("the pod never became ready:\n{log}"));
    let alert = wait_alert(&host, &pod, "the container started before the agent", &a);
    assert_eq!(alert["pod"]["name"], before.0, "{alert:#}");
    assert_eq!(alert["pod"]["uid"], before.2);
    assert_eq!(
        alert["node"], "harness-node",
        "the downward API's node name"
    );

    // One started after, and one that is gone at once.
    let after = (
        "api-5b8c7d6e4f-k2l3m",
        "shop",
        "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
    );
    let b = start_container(&mut ctd, after, &["/bin/sh", "-c", "exec sleep 3600"]);
    let brief = ("job-x7k2p", "batch", "3c4d5e6f-7a8b-4c9d-8e0f-2a3b4c5d6e7f");
    let c = start_container(&mut ctd, brief, &["/bin/sh", "-c", "true"]);
    for (what, cid, p) in [("after the agent", &b, after), ("short-lived", &c, brief)] {
        let alert = wait_alert(&host, &pod, what, cid);
        assert_eq!(alert["pod"]["name"], p.0, "{what}: {alert:#}");
        assert_eq!(alert["pod"]["namespace"], p.1);
        assert_eq!(alert["metadata"]["status"], "complete");
    }

    // Metrics on the pod's port, at the pod's address.
    let (status, body) = pod.get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric_of(&body, "monitor_programs_pinned"),
        Some(1.0),
        "pinned in bpffs"
    );
    assert!(
        metric_of(&body, "monitor_events_received_total{kind=\"exec\"}").is_some_and(|v| v > 0.0),
        "exec events counted"
    );

    // The kubelet stops the pod (SIGTERM from the runtime): a runtime's stop is no alert.
    let agent_pid = pod.pid();
    let took = pod.stop(grace);
    eprintln!(
        "MEASURED DaemonSet pod: agent exit after the runtime's SIGTERM: {} ms (grace {} s)",
        took.as_millis(),
        grace.as_secs()
    );
    assert!(
        took < grace,
        "the agent outlived its grace period:\n{}",
        pod.log()
    );

    // While no agent runs: a new container runs a shell, and then the runtime goes down.
    let gap = (
        "cron-28473920-z9y8x",
        "batch",
        "4d5e6f7a-8b9c-4d0e-9f1a-3b4c5d6e7f8a",
    );
    let e = start_container(&mut ctd, gap, &["/bin/sh", "-c", "exec sleep 3600"]);
    ctd.stop_daemon();

    // The next pod adopts the pinned programs and reports the shell; with the runtime down,
    // the pod is named by the uid its cgroup path holds.
    let mut pod2 = Pod::start(&r, &host.paths()).expect("the restarted pod starts");
    pod2.wait_ready(Duration::from_secs(60))
        .unwrap_or_else(|log| panic!("the restarted pod never became ready:\n{log}"));
    assert!(
        pod2.log().contains("adopted the pinned programs"),
        "{}",
        pod2.log()
    );
    let alert = wait_alert(&host, &pod2, "the shell run while no agent ran", &e);
    assert!(
        alert["pod"].is_null(),
        "no runtime, no pod metadata: {alert:#}"
    );
    assert_eq!(
        alert["container"]["pod_uid_from_cgroup"], gap.2,
        "{alert:#}"
    );
    assert_eq!(alert["metadata"]["status"], "missing");
    let (_, body) = pod2.get("/metrics").expect("GET /metrics");
    assert_eq!(
        metric_of(&body, "monitor_programs_pinned"),
        Some(2.0),
        "adopted"
    );

    // The runtime comes back (a new socket in its directory): a new container is named again.
    ctd.launch();
    let back = (
        "web-6c9f8d7b5a-n5m6b",
        "shop",
        "5e6f7a8b-9c0d-4e1f-8a2b-4c5d6e7f8a9b",
    );
    let f = start_container(&mut ctd, back, &["/bin/sh", "-c", "exec sleep 3600"]);
    let alert = wait_alert(&host, &pod2, "a container once the runtime is back", &f);
    assert_eq!(alert["pod"]["name"], back.0, "{alert:#}");
    let took = pod2.stop(grace);
    eprintln!(
        "MEASURED DaemonSet pod (adopted): agent exit after SIGTERM: {} ms",
        took.as_millis()
    );

    let all = host.alerts();
    let signalled: Vec<&Value> = all
        .iter()
        .filter(|a| {
            a["rule"] == "monitor_agent_signalled"
                && a["signal"]["target_pid"].as_u64() == Some(agent_pid.into())
        })
        .collect();
    assert!(
        signalled.is_empty(),
        "the runtime stopping the pod is no alert: {signalled:#?}"
    );
    drop(ctd);
}

/// Removes a volume mount (by volume name) or an added capability from the DaemonSet.
enum Break {
    Mount(&'static str),
    Capability(&'static str),
}

#[test]
fn a_daemonset_missing_a_mount_or_a_capability_fails_naming_it() {
    let t = "a_daemonset_missing_a_mount_or_a_capability_fails_naming_it";
    if !harness_available(t) {
        return;
    }
    // No runtime is needed: the agent must stop before it would ask one.
    let cri = TempDir::new("pod-no-cri");
    let host = Host::new(cri.path().to_path_buf());
    // Not the `btf` mount: the sysfs a runtime gives every container has /sys/kernel/btf too,
    // so the DaemonSet's mount of it is a belt-and-braces one.
    let cases = [
        (Break::Mount("tracefs"), "tracefs"),
        (
            Break::Mount("host-cgroup"),
            "runtime.cgroup_root /host/sys/fs/cgroup",
        ),
        (Break::Capability("BPF"), "CAP_BPF"),
        (Break::Capability("PERFMON"), "CAP_PERFMON"),
    ];
    for (change, named) in cases {
        let mut r = rendered("containerd.sock");
        let label = match &change {
            Break::Mount(v) => {
                let mounts = r.container()["volumeMounts"]
                    .as_array_mut()
                    .expect("mounts");
                let n = mounts.len();
                mounts.retain(|m| m["name"] != *v);
                assert_eq!(mounts.len() + 1, n, "the DaemonSet mounts {v}");
                format!("without the {v} mount")
            }
            Break::Capability(cap) => {
                let caps = r.container()["securityContext"]["capabilities"]["add"]
                    .as_array_mut()
                    .expect("caps");
                caps.retain(|c| c != *cap);
                format!("without CAP_{cap}")
            }
        };
        let started = Instant::now();
        let pod = Pod::start(&r, &host.paths()).expect("runc starts the pod");
        let log = pod
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|log| panic!("{label}: the agent kept running:\n{log}"));
        assert!(
            pod.get("/readyz").is_none(),
            "{label}: the pod must not be ready"
        );
        assert!(
            log.contains(named),
            "{label}: the error must name {named}:\n{log}"
        );
        eprintln!(
            "{label}: the agent stopped after {} ms, naming {named}",
            started.elapsed().as_millis()
        );
    }
}
