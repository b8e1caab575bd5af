//! What the OCSF and ECS encodings of an alert must carry, checked field by field.
use serde_json::Value;

fn required(v: &Value, path: &str) -> Value {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .get(part)
            .unwrap_or_else(|| panic!("missing required `{path}` in {v}"));
    }
    assert!(!cur.is_null(), "`{path}` is null in {v}");
    cur.clone()
}

/// OCSF 1.3 Detection Finding: the attributes the class requires (base event, finding,
/// detection finding, and the required attributes of the objects used), their types and
/// enumerations, and no top-level attribute the class does not define.
pub(crate) fn check_ocsf(v: &Value) {
    for k in [
        "activity_id",
        "category_uid",
        "class_uid",
        "type_uid",
        "severity_id",
        "time",
        "metadata.version",
        "metadata.product.name",
        "metadata.product.vendor_name",
        "finding_info.uid",
        "finding_info.title",
    ] {
        required(v, k);
    }
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["category_uid"], 2);
    let activity = v["activity_id"].as_u64().expect("activity_id int");
    assert!([0, 1, 2, 3, 99].contains(&activity));
    assert_eq!(v["type_uid"].as_u64(), Some(2004 * 100 + activity));
    let sev = v["severity_id"].as_u64().expect("severity_id int");
    assert!(sev <= 6 || sev == 99);
    assert!(v["time"].as_i64().expect("time is ms") > 1_600_000_000_000);
    assert!(
        v["finding_info"]["uid"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let allowed = [
        "activity_id",
        "activity_name",
        "category_uid",
        "category_name",
        "class_uid",
        "class_name",
        "type_uid",
        "type_name",
        "severity_id",
        "severity",
        "status_id",
        "status",
        "confidence_id",
        "is_alert",
        "time",
        "start_time",
        "end_time",
        "count",
        "message",
        "metadata",
        "finding_info",
        "evidences",
        "resources",
        "device",
        "unmapped",
    ];
    for k in v.as_object().expect("object").keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "`{k}` is not a Detection Finding attribute"
        );
    }
    let ev = &v["evidences"][0];
    let at_least_one = [
        "actor",
        "api",
        "connection_info",
        "data",
        "database",
        "databucket",
        "device",
        "dst_endpoint",
        "email",
        "file",
        "process",
        "query",
        "resources",
        "src_endpoint",
        "url",
        "user",
        "job",
        "script",
    ];
    assert!(at_least_one.iter().any(|k| ev.get(*k).is_some()), "{ev}");
    // Object-level requirements: process (pid or name), file (name, type_id), endpoints (ip).
    assert!(ev["process"]["pid"].is_u64() && ev["process"]["file"]["path"].is_string());
    if let Some(f) = ev.get("file") {
        assert!(f["name"].is_string() && f["type_id"].is_u64(), "{f}");
    }
    if let Some(d) = ev.get("dst_endpoint") {
        assert!(d["ip"].is_string() && d["port"].is_u64(), "{d}");
    }
    for r in v["resources"].as_array().expect("resources") {
        assert!(r["type"].is_string() && r["name"].is_string(), "{r}");
    }
}

/// ECS: `@timestamp` and `ecs.version` (required), and the allowed values of the categorization
/// fields.
pub(crate) fn check_ecs(v: &Value) {
    let ts = required(v, "@timestamp");
    assert!(
        ts.as_str()
            .is_some_and(|s| s.ends_with('Z') && s.contains('T'))
    );
    assert!(
        required(v, "ecs.version")
            .as_str()
            .is_some_and(|s| s.starts_with("8."))
    );
    assert_eq!(v["event"]["kind"], "alert");
    let cats = [
        "api",
        "authentication",
        "configuration",
        "database",
        "driver",
        "email",
        "file",
        "host",
        "iam",
        "intrusion_detection",
        "library",
        "malware",
        "network",
        "package",
        "process",
        "registry",
        "session",
        "threat",
        "vulnerability",
        "web",
    ];
    let types = [
        "access",
        "admin",
        "allowed",
        "change",
        "connection",
        "creation",
        "deletion",
        "denied",
        "end",
        "error",
        "group",
        "indicator",
        "info",
        "installation",
        "protocol",
        "start",
        "user",
    ];
    for c in required(v, "event.category").as_array().expect("array") {
        assert!(cats.contains(&c.as_str().unwrap_or("")), "{c}");
    }
    for t in required(v, "event.type").as_array().expect("array") {
        assert!(types.contains(&t.as_str().unwrap_or("")), "{t}");
    }
    for k in [
        "rule.name",
        "message",
        "host.name",
        "process.pid",
        "process.executable",
    ] {
        required(v, k);
    }
    assert!(v["process"]["pid"].is_u64());
    if v["event"]["category"][0] == "network" {
        assert!(v["destination"]["port"].is_u64(), "{v}");
    }
}
