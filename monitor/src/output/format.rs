//! Alert encodings for sinks: the native JSON, OCSF 1.3 Detection Finding, Elastic ECS 8.x.
//!
//! Each encoder returns one JSON document without a trailing newline; sinks frame it.
use serde_json::{Map, Value, json};

use crate::{
    config::Format,
    detect::Alert,
    event::{Detail, Event},
};

/// OCSF schema version the encoder follows.
pub(crate) const OCSF_VERSION: &str = "1.3.0";
/// ECS version the encoder follows.
pub(crate) const ECS_VERSION: &str = "8.11.0";

/// Encodes an alert in `format`.
pub(crate) fn encode(alert: &Alert, format: Format) -> Vec<u8> {
    let v = match format {
        Format::Native => return serde_json::to_vec(alert).unwrap_or_else(|e| error_doc(alert, e)),
        Format::Ocsf => ocsf(alert),
        Format::Ecs => ecs(alert),
    };
    serde_json::to_vec(&v).unwrap_or_else(|e| error_doc(alert, e))
}

/// Serializing our own types cannot fail in practice; if it ever does, the alert still goes out
/// with what identifies it.
fn error_doc(alert: &Alert, e: serde_json::Error) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": alert.id, "rule": alert.rule, "severity": alert.severity,
        "encoding_error": e.to_string(),
    }))
    .unwrap_or_default()
}

/// Syslog severity code (RFC 5424) of an alert severity name.
pub(crate) fn syslog_severity(name: &str) -> u8 {
    match name {
        "emergency" => 0,
        "alert" => 1,
        "critical" => 2,
        "error" => 3,
        "warning" => 4,
        "notice" => 5,
        "informational" => 6,
        _ => 7,
    }
}

/// OCSF severity_id and its caption.
fn ocsf_severity(name: &str) -> (u8, &'static str) {
    match name {
        "emergency" => (6, "Fatal"),
        "alert" | "critical" => (5, "Critical"),
        "error" => (4, "High"),
        "warning" => (3, "Medium"),
        "notice" => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the agent writes it
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`).
pub(crate) fn rfc3339_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = s.get(19..s.len() - 1)?;
    let ms = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let mut digits: String = f.chars().take(3).collect();
            while digits.len() < 3 {
                digits.push('0');
            }
            digits.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None if frac.is_empty() => 0,
        None => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// `T1234` or `T1234.567`.
fn is_technique(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn insert_some(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v
        && !v.is_null()
    {
        m.insert(k.into(), v);
    }
}

fn ocsf_process(e: &Event) -> Value {
    let p = &e.process;
    let mut proc_ = json!({
        "pid": p.pid,
        "uid": p.id,
        "name": p.comm,
        "cmd_line": p.command_line,
        "file": { "path": p.exe, "name": basename(&p.exe), "type_id": 1, "type": "Regular File" },
        "user": { "uid": p.euid.to_string(), "type_id": if p.euid == 0 { 2 } else { 1 } },
        "tid": p.tid,
    });
    if let Some(cwd) = &p.cwd {
        proc_["working_directory"] = json!(cwd);
    }
    if let Some(parent) = p.ancestors.first() {
        proc_["parent_process"] = json!({
            "pid": parent.pid,
            "uid": parent.id,
            "name": basename(&parent.exe),
            "file": { "path": parent.exe, "name": basename(&parent.exe), "type_id": 1 },
        });
    } else if p.ppid != 0 {
        proc_["parent_process"] = json!({ "pid": p.ppid });
    }
    proc_
}

fn ocsf_container(e: &Event) -> Option<Value> {
    let c = e.attribution.container.as_ref()?;
    let mut v = json!({ "uid": c.id, "runtime": c.runtime, "orchestrator": "kubernetes" });
    if let Some(m) = &c.meta {
        v["name"] = json!(m.name);
        v["image"] = json!({ "name": m.image, "uid": m.image_digest });
        if !m.labels.is_empty() {
            v["labels"] = json!(
                m.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            );
        }
    }
    if let Some(p) = &e.attribution.pod {
        v["pod_uuid"] = json!(p.uid);
    }
    Some(v)
}

fn ocsf_file(path: &str) -> Value {
    json!({ "path": path, "name": basename(path), "type_id": 0, "type": "Unknown" })
}

fn ocsf_endpoint(addr: &str, port: Option<u16>) -> Value {
    let mut v = json!({ "ip": addr });
    if let Some(p) = port {
        v["port"] = json!(p);
    }
    v
}

/// OCSF 1.3 Detection Finding (category 2 Findings, class 2004, activity 1 Create).
pub(crate) fn ocsf(a: &Alert) -> Value {
    let e = &a.event;
    let (sev_id, sev) = ocsf_severity(a.severity);
    let time = rfc3339_to_ms(&e.time).unwrap_or(0);
    let first = rfc3339_to_ms(&a.dedup.first_seen).unwrap_or(time);
    let last = rfc3339_to_ms(&a.dedup.last_seen).unwrap_or(time);

    let mut evidence = Map::new();
    evidence.insert("process".into(), ocsf_process(e));
    evidence.insert(
        "actor".into(),
        json!({ "process": ocsf_process(e), "user": { "uid": e.process.uid.to_string() } }),
    );
    insert_some(&mut evidence, "container", ocsf_container(e));
    match &e.detail {
        Detail::Exec(x) => {
            evidence.insert("file".into(), ocsf_file(&x.filename));
        }
        Detail::File(f) => {
            if let Some(p) = &f.path {
                evidence.insert("file".into(), ocsf_file(p));
            }
        }
        Detail::Network(n) => {
            if let Some(addr) = &n.address {
                evidence.insert("dst_endpoint".into(), ocsf_endpoint(addr, n.port));
            }
            insert_some(
                &mut evidence,
                "connection_info",
                n.family
                    .as_ref()
                    .map(|f| json!({ "protocol_name": f, "direction_id": 2 })),
            );
        }
        Detail::Tcp(t) => {
            evidence.insert(
                "src_endpoint".into(),
                ocsf_endpoint(&t.saddr, Some(t.sport)),
            );
            evidence.insert(
                "dst_endpoint".into(),
                ocsf_endpoint(&t.daddr, Some(t.dport)),
            );
            evidence.insert(
                "connection_info".into(),
                json!({ "protocol_name": "tcp", "protocol_num": 6 }),
            );
        }
        Detail::Privilege(_) | Detail::Fork(_) | Detail::Exit(_) => {}
    }
    let mut resources = Vec::new();
    if let Some(p) = &e.attribution.pod {
        let mut r = json!({
            "type": "Kubernetes Pod",
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
            "labels": p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        });
        if let Some(w) = &p.workload {
            r["owner"] = json!({ "name": format!("{}/{}", w.kind, w.name) });
        }
        resources.push(r);
    }
    resources.push(json!({ "type": "Kubernetes Node", "name": e.node }));

    let mut finding = json!({
        "uid": a.id,
        "title": a.rule,
        "desc": a.description,
        "types": [a.source],
        "analytic": {
            "name": a.rule,
            "uid": a.rule,
            "type_id": if a.source == "anomaly" { 4 } else { 1 },
            "type": if a.source == "anomaly" { "Behavioral" } else { "Rule" },
        },
        "created_time": time,
        "first_seen_time": first,
        "last_seen_time": last,
        "related_events_count": a.dedup.count,
        "data_sources": ["ebpf"],
    });
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
        finding["attacks"] = json!(attacks);
    }
    let mut unmapped =
        json!({ "tags": a.tags, "event_kind": e.kind, "metadata": e.attribution.metadata });
    if let Some(d) = &a.drops {
        unmapped["drops"] = json!(d);
    }
    if let Some(an) = &a.anomaly {
        unmapped["anomaly"] = json!(an);
    }
    json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "confidence_id": if a.source == "anomaly" { 2 } else { 3 },
        "is_alert": true,
        "time": time,
        "start_time": first,
        "end_time": last,
        "count": a.dedup.count,
        "message": a.output,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": a.id,
            "product": {
                "name": "monitor",
                "vendor_name": "monitor",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": "alerts",
            "original_time": e.time,
        },
        "finding_info": finding,
        "evidences": [Value::Object(evidence)],
        "resources": resources,
        "device": { "hostname": e.node, "name": e.node, "type_id": 1, "type": "Server" },
        "unmapped": unmapped,
    })
}

/// Elastic Common Schema document.
pub(crate) fn ecs(a: &Alert) -> Value {
    let e = &a.event;
    let p = &e.process;
    let category = match &e.detail {
        Detail::Exec(_) | Detail::Fork(_) | Detail::Exit(_) => "process",
        Detail::File(_) => "file",
        Detail::Network(_) | Detail::Tcp(_) => "network",
        Detail::Privilege(_) => "process",
    };
    let event_type = match &e.detail {
        Detail::Exec(_) | Detail::Fork(_) => "start",
        Detail::Exit(_) => "end",
        Detail::File(_) => "change",
        Detail::Network(_) | Detail::Tcp(_) => "connection",
        Detail::Privilege(_) => "change",
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
        "labels": { "dedup_count": a.dedup.count.to_string(), "metadata_status": format!("{:?}", e.attribution.metadata.status).to_lowercase() },
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
        Detail::Privilege(_) | Detail::Fork(_) | Detail::Exit(_) => {}
    }
    if let Some(c) = &e.attribution.container {
        doc["container"] = json!({ "id": c.id, "runtime": c.runtime });
        if let Some(m) = &c.meta {
            doc["container"]["name"] = json!(m.name);
            doc["container"]["image"] =
                json!({ "name": m.image, "hash": { "all": [m.image_digest] } });
        }
    }
    if let Some(pod) = &e.attribution.pod {
        doc["orchestrator"] = json!({
            "type": "kubernetes",
            "namespace": pod.namespace,
            "resource": { "type": "pod", "name": pod.name, "id": pod.uid },
        });
        if let Some(w) = &pod.workload {
            doc["orchestrator"]["resource"]["parent"] = json!({ "type": w.kind.to_lowercase() });
            doc["labels"]["workload"] = json!(format!("{}/{}", w.kind, w.name));
        }
    }
    if let Some(d) = &a.drops {
        doc["monitor"] = json!({ "drops": d });
    }
    if let Some(an) = &a.anomaly {
        doc["monitor"]["anomaly"] = json!(an);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_to_ms() {
        for ns in [
            0i128,
            1_700_000_000_123_456_789,
            951_782_400_000_000_000,
            4_102_444_799_999_000_000,
        ] {
            let s = crate::event::rfc3339(ns);
            assert_eq!(rfc3339_to_ms(&s), Some((ns / 1_000_000) as i64), "{s}");
        }
        assert_eq!(
            rfc3339_to_ms("2026-11-22T10:00:00Z"),
            Some(1_795_341_600_000)
        );
        assert_eq!(rfc3339_to_ms("2026-11-22 10:00:00Z"), None);
        assert_eq!(rfc3339_to_ms("2026-11-22T10:00:00.Z"), None);
        assert_eq!(rfc3339_to_ms("garbage"), None);
    }

    #[test]
    fn severities_map_in_order() {
        assert_eq!(syslog_severity("critical"), 2);
        assert_eq!(syslog_severity("warning"), 4);
        assert_eq!(ocsf_severity("critical").0, 5);
        assert_eq!(ocsf_severity("notice").0, 2);
    }

    #[test]
    fn technique_tags() {
        assert!(is_technique("T1059") && is_technique("T1059.004"));
        assert!(
            !is_technique("T10") && !is_technique("mitre_execution") && !is_technique("T1059-004")
        );
    }
}
