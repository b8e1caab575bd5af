//! Elastic Common Schema 9.x: the alert as an ECS document (`event.kind: alert`), with what ECS
//! has no field for under the vendor namespace `monitor`.
use serde_json::{Value, json};

use super::{basename, syslog_severity};
use crate::{detect::Alert, event::Detail};

/// ECS version the encoder follows.
pub(crate) const ECS_VERSION: &str = "9.4.0";

/// The alert as an Elastic Common Schema document.
pub(crate) fn ecs(a: &Alert) -> Value {
    let e = &a.event;
    let p = &e.process;
    let category = match &e.detail {
        Detail::Exec(_) | Detail::Fork(_) | Detail::Exit(_) => "process",
        Detail::File(_) => "file",
        Detail::Network(_) | Detail::Tcp(_) => "network",
        Detail::Privilege(_) | Detail::Signal(_) => "process",
    };
    let event_type = match &e.detail {
        Detail::Exec(_) | Detail::Fork(_) => "start",
        Detail::Exit(_) => "end",
        Detail::File(_) => "change",
        Detail::Network(_) | Detail::Tcp(_) => "connection",
        Detail::Privilege(_) => "change",
        Detail::Signal(_) => "info",
    };
    let mut process = json!({
        "pid": p.pid,
        "thread": { "id": p.tid },
        "entity_id": p.id,
        "name": p.comm,
        "executable": p.exe,
        "args": p.args,
        "args_count": p.args.len(),
        "command_line": p.command_line,
        "user": { "id": p.euid.to_string() },
        "real_user": { "id": p.uid.to_string() },
        "group": { "id": p.egid.to_string() },
    });
    if let Some(cwd) = &p.cwd {
        process["working_directory"] = json!(cwd);
    }
    if let Some(parent) = p.ancestors.first() {
        process["parent"] = json!({
            "pid": parent.pid, "entity_id": parent.id,
            "executable": parent.exe, "name": basename(&parent.exe),
        });
    } else {
        process["parent"] = json!({ "pid": p.ppid });
    }
    let mut doc = json!({
        "@timestamp": e.time,
        "ecs": { "version": ECS_VERSION },
        "message": a.output,
        "event": {
            "kind": "alert",
            "category": [category],
            "type": [event_type],
            "action": e.kind,
            "id": a.id,
            "module": "monitor",
            "dataset": "monitor.alerts",
            "provider": "monitor",
            "severity": syslog_severity(a.severity),
            "created": a.dedup.last_seen,
            "start": a.dedup.first_seen,
            "end": a.dedup.last_seen,
            "outcome": "unknown",
        },
        "log": { "level": a.severity, "syslog": { "severity": { "code": syslog_severity(a.severity), "name": a.severity } } },
        "rule": {
            "name": a.rule,
            "id": a.rule,
            "description": a.description,
            "category": a.source,
            "ruleset": if a.source == "anomaly" { "baselines" } else { "rules" },
        },
        "tags": a.tags,
        "host": { "name": e.node, "hostname": e.node },
        "observer": { "type": "host", "product": "monitor", "vendor": "monitor", "version": env!("CARGO_PKG_VERSION"), "hostname": e.node },
        "process": process,
        "user": { "id": p.euid.to_string() },
    });
    match &e.detail {
        Detail::Exec(x) => {
            doc["file"] = json!({ "path": x.filename, "name": basename(&x.filename) });
        }
        Detail::File(f) => {
            if let Some(path) = &f.path {
                doc["file"] = json!({ "path": path, "name": basename(path) });
                if let Some(t) = &f.target {
                    doc["file"]["target_path"] = json!(t);
                }
            }
            if f.call.result < 0 {
                doc["event"]["outcome"] = json!("failure");
            } else {
                doc["event"]["outcome"] = json!("success");
            }
        }
        Detail::Network(n) => {
            if let Some(addr) = &n.address {
                doc["destination"] = json!({ "ip": addr, "address": addr });
                if let Some(port) = n.port {
                    doc["destination"]["port"] = json!(port);
                }
            }
            if let Some(f) = &n.family {
                doc["network"] = json!({ "type": match f.as_str() { "inet" => "ipv4", "inet6" => "ipv6", o => o } });
            }
            doc["event"]["outcome"] = json!(if n.call.result < 0
                && n.call.error != Some("EINPROGRESS")
            {
                "failure"
            } else {
                "success"
            });
        }
        Detail::Tcp(t) => {
            doc["source"] = json!({ "ip": t.saddr, "port": t.sport });
            doc["destination"] = json!({ "ip": t.daddr, "port": t.dport });
            doc["network"] = json!({ "transport": "tcp", "type": if t.family == "inet6" { "ipv6" } else { "ipv4" } });
        }
        Detail::Privilege(_) | Detail::Fork(_) | Detail::Exit(_) | Detail::Signal(_) => {}
    }
    if let Some(c) = &e.attribution.container {
        doc["container"] = json!({ "id": c.id, "runtime": c.runtime });
        if let Some(m) = &c.meta {
            doc["container"]["name"] = json!(m.name);
            doc["container"]["image"] =
                json!({ "name": m.image, "hash": { "all": [m.image_digest] } });
        }
    }
    let uid_from_cgroup = e
        .attribution
        .container
        .as_ref()
        .and_then(|c| c.pod_uid_from_cgroup.as_deref());
    if let (None, Some(uid)) = (&e.attribution.pod, uid_from_cgroup) {
        doc["orchestrator"] = json!({
            "type": "kubernetes",
            "resource": { "type": "pod", "id": uid },
        });
    }
    if let Some(pod) = &e.attribution.pod {
        doc["orchestrator"] = json!({
            "type": "kubernetes",
            "namespace": pod.namespace,
            "resource": { "type": "pod", "name": pod.name, "id": pod.uid },
        });
        if let Some(w) = &pod.workload {
            doc["orchestrator"]["resource"]["parent"] = json!({ "type": w.kind.to_lowercase() });
            doc["labels"] = json!({ "workload": format!("{}/{}", w.kind, w.name) });
        }
    }
    // What ECS has no field for goes below `monitor`, the vendor namespace.
    let mut vendor = json!({
        "dedup_count": a.dedup.count,
        "metadata": e.attribution.metadata,
    });
    if let Some(d) = &a.drops {
        vendor["drops"] = json!(d);
    }
    if let Some(an) = &a.anomaly {
        vendor["anomaly"] = json!(an);
    }
    doc["monitor"] = vendor;
    doc
}
