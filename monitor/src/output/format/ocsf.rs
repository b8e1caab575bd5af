//! OCSF Detection Finding (category 2 Findings, class 2004, activity 1 Create), in any version
//! from 1.3.0 to 1.8.0. Attributes that a version does not define are left out of it; what
//! OCSF has no attribute for goes to `unmapped`. The profiles whose attributes are used are
//! declared in `metadata.profiles`: `host` (the actor, and the device in 1.3) and `container`.
use serde_json::{Map, Value, json};

use super::{basename, is_technique, ocsf_severity, rfc3339_to_ms};
use crate::{
    config::OcsfVersion,
    detect::Alert,
    event::{Detail, Event, NetDetail},
};

/// What a version adds over 1.3.0 that the encoder uses.
struct Has {
    /// `is_alert`, `finding_info.related_events_count`, `process.working_directory`,
    /// `container.labels` (all 1.4.0).
    v1_4: bool,
}

impl Has {
    fn of(v: OcsfVersion) -> Has {
        Has {
            v1_4: v >= OcsfVersion::V1_4,
        }
    }
}

fn user(uid: u32) -> Value {
    let (type_id, ty) = if uid == 0 { (2, "Admin") } else { (1, "User") };
    json!({ "uid": uid.to_string(), "type_id": type_id, "type": ty })
}

fn process(e: &Event, has: &Has) -> Value {
    let p = &e.process;
    let mut v = json!({
        "pid": p.pid,
        "uid": p.id,
        "name": p.comm,
        "cmd_line": p.command_line,
        "file": file(&p.exe, 1, "Regular File"),
        "user": user(p.euid),
        "tid": p.tid,
    });
    if has.v1_4
        && let Some(cwd) = &p.cwd
    {
        v["working_directory"] = json!(cwd);
    }
    if let Some(parent) = p.ancestors.first() {
        v["parent_process"] = json!({
            "pid": parent.pid,
            "uid": parent.id,
            "name": basename(&parent.exe),
            "file": file(&parent.exe, 1, "Regular File"),
        });
    } else if p.ppid != 0 {
        v["parent_process"] = json!({ "pid": p.ppid });
    }
    v
}

fn container(e: &Event, has: &Has) -> Option<Value> {
    let c = e.attribution.container.as_ref()?;
    let mut v = json!({ "uid": c.id, "runtime": c.runtime, "orchestrator": "Kubernetes" });
    if let Some(m) = &c.meta {
        v["name"] = json!(m.name);
        let mut image = json!({ "name": m.image });
        if !m.image_digest.is_empty() {
            image["uid"] = json!(m.image_digest);
        } else {
            // `image.uid` is required: without a digest, the reference is all there is.
            image["uid"] = json!(m.image);
        }
        v["image"] = image;
        if has.v1_4 && !m.labels.is_empty() {
            v["labels"] = json!(
                m.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            );
        }
    }
    if let Some(p) = &e.attribution.pod
        && !p.uid.is_empty()
    {
        v["pod_uuid"] = json!(p.uid);
    }
    Some(v)
}

fn file(path: &str, type_id: u8, ty: &str) -> Value {
    json!({ "path": path, "name": basename(path), "type_id": type_id, "type": ty })
}

fn endpoint(addr: &str, port: Option<u16>) -> Value {
    let mut v = json!({ "ip": addr });
    if let Some(p) = port {
        v["port"] = json!(p);
    }
    v
}

/// Direction of a socket call: connect goes out, accept comes in, the rest is not a flow.
fn direction(n: &NetDetail) -> (u8, &'static str) {
    match n.call.syscall {
        "connect" => (2, "Outbound"),
        "accept" | "accept4" => (1, "Inbound"),
        _ => (0, "Unknown"),
    }
}

/// The evidence: the process, its actor, its container, and the object it acted on.
fn evidence(e: &Event, has: &Has) -> Value {
    let mut ev = Map::new();
    ev.insert("process".into(), process(e, has));
    ev.insert(
        "actor".into(),
        json!({ "process": process(e, has), "user": user(e.process.uid) }),
    );
    if let Some(c) = container(e, has) {
        ev.insert("container".into(), c);
    }
    match &e.detail {
        Detail::Exec(x) => {
            ev.insert("file".into(), file(&x.filename, 1, "Regular File"));
        }
        Detail::File(f) => {
            if let Some(p) = &f.path {
                ev.insert("file".into(), file(p, 0, "Unknown"));
            }
        }
        Detail::Network(n) => {
            if let Some(addr) = &n.address {
                ev.insert("dst_endpoint".into(), endpoint(addr, n.port));
            }
            if n.family.is_some() {
                let (id, dir) = direction(n);
                let mut ci = json!({ "direction_id": id, "direction": dir });
                if let Some(f) = &n.family {
                    ci["protocol_name"] = json!(f);
                }
                ev.insert("connection_info".into(), ci);
            }
        }
        Detail::Tcp(t) => {
            ev.insert("src_endpoint".into(), endpoint(&t.saddr, Some(t.sport)));
            ev.insert("dst_endpoint".into(), endpoint(&t.daddr, Some(t.dport)));
            ev.insert(
                "connection_info".into(),
                json!({
                    "protocol_name": "tcp", "protocol_num": 6,
                    "direction_id": 0, "direction": "Unknown",
                }),
            );
        }
        Detail::Privilege(_) | Detail::Fork(_) | Detail::Exit(_) | Detail::Signal(_) => {}
    }
    Value::Object(ev)
}

/// The pod, its workload and the node, as resources.
fn resources(e: &Event) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(p) = &e.attribution.pod {
        let mut r = json!({
            "type": "Kubernetes Pod",
            "name": p.name,
            "namespace": p.namespace,
            "labels": p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        });
        if !p.uid.is_empty() {
            r["uid"] = json!(p.uid);
        }
        out.push(r);
        if let Some(w) = &p.workload {
            out.push(json!({
                "type": format!("Kubernetes {}", w.kind),
                "name": w.name,
                "namespace": p.namespace,
            }));
        }
    }
    out.push(json!({ "type": "Kubernetes Node", "name": e.node }));
    out
}

fn finding_info(a: &Alert, has: &Has, times: (i64, i64, i64)) -> Value {
    let (time, first, last) = times;
    let (type_id, ty) = if a.source == "anomaly" {
        (2, "Behavioral")
    } else {
        (1, "Rule")
    };
    let mut f = json!({
        "uid": a.id,
        "title": a.rule,
        "desc": a.description,
        "types": [a.source],
        "analytic": { "name": a.rule, "uid": a.rule, "type_id": type_id, "type": ty },
        "created_time": time,
        "first_seen_time": first,
        "last_seen_time": last,
        "data_sources": ["ebpf"],
    });
    if has.v1_4 {
        f["related_events_count"] = json!(a.dedup.count);
    }
    // Tags name MITRE ATT&CK techniques (`T1059.004`) and tactics (`mitre_execution`).
    let tactics: Vec<Value> = a
        .tags
        .iter()
        .filter_map(|t| t.strip_prefix("mitre_"))
        .map(|t| json!({ "name": t.replace('_', " ") }))
        .collect();
    let attacks: Vec<Value> = a
        .tags
        .iter()
        .filter(|t| is_technique(t))
        .map(|t| {
            let mut at = json!({ "technique": { "uid": t } });
            if let Some(first) = tactics.first() {
                at["tactic"] = first.clone();
            }
            at
        })
        .collect();
    if !attacks.is_empty() {
        f["attacks"] = json!(attacks);
    }
    f
}

/// The alert as an OCSF Detection Finding of version `v`.
pub(crate) fn ocsf(a: &Alert, v: OcsfVersion) -> Value {
    let has = Has::of(v);
    let e = &a.event;
    let (sev_id, sev) = ocsf_severity(a.severity);
    let time = rfc3339_to_ms(&e.time).unwrap_or(0);
    let first = rfc3339_to_ms(&a.dedup.first_seen).unwrap_or(time);
    let last = rfc3339_to_ms(&a.dedup.last_seen).unwrap_or(time);
    let mut unmapped =
        json!({ "tags": a.tags, "event_kind": e.kind, "metadata": e.attribution.metadata });
    if let Some(d) = &a.drops {
        unmapped["drops"] = json!(d);
    }
    if let Some(an) = &a.anomaly {
        unmapped["anomaly"] = json!(an);
    }
    if !has.v1_4 {
        unmapped["related_events_count"] = json!(a.dedup.count);
    }
    let (conf_id, conf) = if a.source == "anomaly" {
        (2, "Medium")
    } else {
        (3, "High")
    };
    let mut doc = json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200_401,
        "type_name": "Detection Finding: Create",
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "confidence_id": conf_id,
        "confidence": conf,
        "time": time,
        "start_time": first,
        "end_time": last,
        "count": a.dedup.count,
        "message": a.output,
        "metadata": {
            "version": v.as_str(),
            "profiles": ["host", "container"],
            "uid": a.id,
            "product": {
                "name": "monitor",
                "vendor_name": "monitor",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": "alerts",
            "original_time": e.time,
        },
        "finding_info": finding_info(a, &has, (time, first, last)),
        "evidences": [evidence(e, &has)],
        "resources": resources(e),
        "device": { "hostname": e.node, "name": e.node, "type_id": 1, "type": "Server" },
        "unmapped": unmapped,
    });
    if has.v1_4 {
        doc["is_alert"] = json!(true);
    }
    doc
}
