//! Root integration tests of container and pod attribution against a real containerd (CRI).

use std::collections::HashMap;

use serde_json::Value;

use crate::common::{
    containerd::{Containerd, SERIAL},
    *,
};

fn pod_labels() -> HashMap<String, String> {
    [
        ("app", "web"),
        ("pod-template-hash", "5d8f7b9c6d"),
        ("tier", "frontend"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn exec_in<'a>(events: &'a [Value], container: &str, filename: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["kind"] == "exec"
                && e["container"]["id"] == container
                && e["exec"]["filename"] == filename
        })
        .collect()
}

#[test]
fn cri_pod_metadata_on_container_events() {
    if !require_root("cri_pod_metadata_on_container_events")
        || !containerd::available("cri_pod_metadata_on_container_events")
    {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctd = Containerd::start();
    let sock = ctd.socket.display().to_string();
    let agent = Agent::start(&["--cri-socket", &sock, "--kind", "exec,exit,open"]);
    // The default rules watch the same container start: runtime set-up must raise nothing.
    let rules_agent = Agent::start_with("run", &["--no-baselines", "--cri-socket", &sock]);
    let (name, ns, uid) = (
        "web-5d8f7b9c6d-abcde",
        "shop",
        "0f6c2b1e-3a4d-4e5f-8a9b-1c2d3e4f5a6b",
    );
    let labels = pod_labels();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    // The container's very first program: its exec must already carry the pod.
    let cid = ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        "app",
        &["/bin/sh", "-c", "cat /etc/hostname; exec sleep 3600"],
    );
    let out = ctd.exec(&cid, &["/bin/id", "-u"]);
    assert_eq!(out.trim(), "0");
    // The first program has run and been judged once both agents have written about it.
    let timeout = std::time::Duration::from_secs(10);
    agent.wait_output("the entrypoint's exec", timeout, |ev| {
        !exec_in(ev, &cid, "/bin/sh").is_empty()
    });
    rules_agent.wait_output("the entrypoint's shell alert", timeout, |alerts| {
        alerts
            .iter()
            .any(|a| a["rule"] == "shell_in_container" && a["container"]["id"] == cid)
    });
    let result = agent.stop();
    let ev = &result.events;
    let alerts = rules_agent.stop().events;
    let fired: std::collections::BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a["container"]["id"] == cid || a["container"]["id"] == sandbox)
        .filter_map(|a| a["rule"].as_str())
        .collect();
    // Only the entrypoint shell is alert-worthy; runc's mounts, namespaces and writes are not.
    assert_eq!(fired, ["shell_in_container"].into(), "{alerts:#?}");
    let shell = alerts
        .iter()
        .find(|a| a["rule"] == "shell_in_container" && a["container"]["id"] == cid)
        .expect("shell alert");
    assert_eq!(shell["pod"]["name"], name, "alerts carry the pod");

    let first = exec_in(ev, &cid, "/bin/sh");
    assert_eq!(
        first.len(),
        1,
        "exec of the entrypoint; container events: {:#?}",
        ev.iter()
            .filter(|e| e["container"]["id"] == cid)
            .collect::<Vec<_>>()
    );
    let e = first[0];
    assert_eq!(e["metadata"]["status"], "complete", "{e:#}");
    assert_eq!(e["metadata"]["scope"], "container");
    assert_eq!(e["container"]["name"], "app");
    assert_eq!(e["container"]["runtime"], "containerd");
    assert_eq!(e["container"]["image"], crate::common::containerd::IMAGE);
    assert!(
        e["container"]["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{e:#}"
    );
    assert_eq!(e["pod"]["name"], name);
    assert_eq!(e["pod"]["namespace"], ns);
    assert_eq!(e["pod"]["uid"], uid);
    assert_eq!(e["pod"]["labels"]["app"], "web");
    assert_eq!(e["pod"]["labels"]["tier"], "frontend");
    assert_eq!(
        e["pod"]["workload"],
        serde_json::json!({"kind": "Deployment", "name": "web"})
    );
    assert!(e["node"].as_str().is_some_and(|n| !n.is_empty()));

    // A process started later in the container (CRI exec) carries the same metadata.
    let id = exec_in(ev, &cid, "/bin/id");
    assert_eq!(id.len(), 1);
    assert_eq!(id[0]["pod"]["name"], name);
    assert_eq!(id[0]["metadata"]["status"], "complete");
    // Its open of /etc/hostname (inside the container) too.
    assert!(ev.iter().any(|e| e["kind"] == "open"
        && e["container"]["id"] == cid
        && e["file"]["path"] == "/etc/hostname"));
    // Host processes carry no container.
    let host = ev
        .iter()
        .find(|e| e["container"].is_null())
        .expect("host events");
    assert_eq!(host["metadata"]["scope"], "host");
    drop(ctd);
}

#[test]
fn runtime_socket_outage_is_survived_counted_and_recovered() {
    if !require_root("runtime_socket_outage") || !containerd::available("runtime_socket_outage") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ctd = Containerd::start();
    let sock = ctd.socket.display().to_string();
    let (name, ns, uid) = ("db-0", "shop", "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d");
    let labels: HashMap<String, String> = [(
        "statefulset.kubernetes.io/pod-name".to_string(),
        "db-0".to_string(),
    )]
    .into();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    let a = ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        "a",
        &["/bin/sleep", "3600"],
    );
    // A hold long enough that the event waits for the failed lookup's answer even on a loaded
    // machine (a call in flight when the socket vanished can take up to the 2 s call timeout),
    // so it carries `missing` and the reason rather than `pending`.
    // Four pipeline workers: the outage is seen by the fake container's worker and the
    // recovery, most likely, by another's; they share one runtime connection, so the outage is
    // reported once and its end too (with a connection per worker the end went unreported).
    let metrics = free_port();
    let agent = Agent::start(&[
        "--cri-socket",
        &sock,
        "--kind",
        "exec",
        "--set",
        "capture.workers=4",
        "--metadata-hold-ms",
        "6000",
        "--metrics-addr",
        &format!("127.0.0.1:{metrics}"),
    ]);

    // The runtime goes away; a container the agent has never seen starts a process.
    ctd.stop_daemon();
    let cg = TestCgroup::new("fakepod");
    let fake_id = "f".repeat(64);
    let fake = cg.path.join(format!(
        "kubepods-besteffort-pod{}.slice",
        uid.replace('-', "_")
    ));
    std::fs::create_dir(&fake).expect("mkdir");
    let fake_ctr = fake.join(format!("cri-containerd-{fake_id}.scope"));
    std::fs::create_dir(&fake_ctr).expect("mkdir");
    let status = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec /bin/true during-outage",
                fake_ctr.display()
            ),
        ])
        .status()
        .expect("run in fake container cgroup");
    assert!(status.success());
    // The runtime stays away until the agent has tried it for that container: until the
    // fake container's own event is out (held until its lookup failed). Another lookup failing
    // first (a worker asking about container `a`) is not enough: the runtime could come back
    // before the fake container's lookup, which would then get "not known" instead.
    agent.wait_output(
        "the exec during the outage",
        std::time::Duration::from_secs(20),
        |ev| ev.iter().any(|e| e["exec"]["args"][1] == "during-outage"),
    );
    wait_for(
        "the failed lookup counted by reason",
        std::time::Duration::from_secs(10),
        || {
            metric(
                &http_get(metrics, "/metrics"),
                "monitor_enrich_failures_total{reason=\"socket_unavailable\"}",
            )
            .is_some_and(|n| n >= 1)
        },
    );

    // The runtime comes back; a new container is created and runs a program.
    ctd.launch();
    let b = ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        "b",
        &["/bin/sh", "-c", "exec sleep 3600"],
    );
    ctd.exec(&a, &["/bin/true", "after-recovery"]);
    agent.wait_output(
        "the exec after recovery",
        std::time::Duration::from_secs(10),
        |ev| ev.iter().any(|e| e["exec"]["args"][1] == "after-recovery"),
    );
    let out = agent.stop();
    let ev = &out.events;
    let _ = std::fs::remove_dir(&fake_ctr);
    let _ = std::fs::remove_dir(&fake);

    let during: Vec<_> = ev
        .iter()
        .filter(|e| e["exec"]["args"][1] == "during-outage")
        .collect();
    assert_eq!(
        during.len(),
        1,
        "the agent kept capturing during the outage"
    );
    assert_eq!(during[0]["container"]["id"], fake_id);
    assert_eq!(during[0]["metadata"]["status"], "missing");
    assert!(
        during[0]["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&sock)),
        "{:#}",
        during[0]
    );
    assert!(
        out.stats["enrich_failures"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        out.stats
    );
    assert!(
        out.stderr.contains("container runtime unreachable")
            || out.stderr.contains("CRI call failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("reachable again"), "{}", out.stderr);

    let after = exec_in(ev, &b, "/bin/sh");
    assert_eq!(after.len(), 1, "new container after recovery");
    assert_eq!(after[0]["metadata"]["status"], "complete");
    assert_eq!(
        after[0]["pod"]["workload"],
        serde_json::json!({"kind": "StatefulSet", "name": "db"})
    );
    let a_exec: Vec<_> = ev
        .iter()
        .filter(|e| e["exec"]["args"][1] == "after-recovery")
        .collect();
    assert_eq!(a_exec.len(), 1);
    assert_eq!(a_exec[0]["container"]["name"], "a");
}
