//! Every alert the integration tests produce is also written in OCSF (the default version and a
//! pinned older one), ECS and the native format by sinks the harness adds to each `monitor run`,
//! and validated against the published schema data (`monitor/tests/schemas/validate.py`).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

/// The OCSF version a sink pins in the conformance run (the oldest the encoder emits).
pub(crate) const PINNED_OCSF: &str = "1.3.0";
/// The versions the encoder emits by default (asserted against the alerts' own metadata).
pub(crate) const DEFAULT_OCSF: &str = "1.8.0";
pub(crate) const ECS: &str = "9.4.0";

/// The conformance files of one agent and what each is validated against.
fn files(dir: &Path) -> [(&'static str, String, PathBuf); 4] {
    [
        ("ocsf", DEFAULT_OCSF.into(), dir.join("ocsf.jsonl")),
        ("ocsf", PINNED_OCSF.into(), dir.join("ocsf-pinned.jsonl")),
        ("ecs", ECS.into(), dir.join("ecs.jsonl")),
        (
            "native",
            native_schema().display().to_string(),
            dir.join("native.jsonl"),
        ),
    ]
}

/// The native format's JSON Schema, shipped in the repository.
pub(crate) fn native_schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/alert.schema.json")
}

/// The sinks that write the conformance files into `dir`.
fn sinks(dir: &Path) -> Vec<Value> {
    let [ocsf, pinned, ecs, native] = files(dir).map(|(_, _, p)| p.display().to_string());
    vec![
        json!({ "type": "file", "name": "conformance-ocsf", "format": "ocsf", "path": ocsf }),
        json!({ "type": "file", "name": "conformance-ocsf-pinned", "format": "ocsf",
                "ocsf_version": PINNED_OCSF, "path": pinned }),
        json!({ "type": "file", "name": "conformance-ecs", "format": "ecs", "path": ecs }),
        json!({ "type": "file", "name": "conformance-native", "path": native }),
    ]
}

/// A copy of the configuration `original` (YAML; none: the defaults) with the conformance sinks
/// added next to its own (stdout when it names none), written to `dir`. JSON is YAML, so the
/// agent reads it as it would the original.
pub(crate) fn config(original: Option<&Path>, dir: &Path) -> PathBuf {
    let mut doc: Value = match original {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .unwrap_or_else(|e| panic!("config {}: {e}", p.display()));
            serde_norway::from_str::<Option<Value>>(&text)
                .unwrap_or_else(|e| panic!("config {}: {e}", p.display()))
                .unwrap_or_else(|| json!({}))
        }
        None => json!({}),
    };
    let mut list = doc
        .get("sinks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![json!({ "type": "stdout" })]);
    list.extend(sinks(dir));
    doc["sinks"] = Value::Array(list);
    let path = dir.join("config-with-conformance.json");
    std::fs::write(&path, doc.to_string()).expect("conformance config");
    path
}

/// Validates one file of alerts (`kind` ocsf or ecs, `version`) against the schema data.
pub(crate) fn validate(kind: &str, version: &str, path: &Path) {
    run(&[format!("{kind}:{version}={}", path.display())]);
}

/// Runs the validator over `items` (`KIND:ARG=FILE`); fails the test on any invalid alert.
fn run(items: &[String]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/validate.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("batch")
        .args(items)
        .output()
        .expect("python3");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "alerts that do not validate against the published schemas:\n{report}"
    );
}

/// Validates what the conformance sinks in `dir` wrote; returns how many alerts there were.
pub(crate) fn check(dir: &Path) -> usize {
    let items: Vec<String> = files(dir)
        .into_iter()
        .map(|(kind, arg, path)| {
            if !path.exists() {
                // A sink creates its file with its first alert.
                let _ = std::fs::write(&path, "");
            }
            format!("{kind}:{arg}={}", path.display())
        })
        .collect();
    run(&items);
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let [ocsf, pinned, ecs, native] = files(dir).map(|(_, _, p)| lines(&p));
    assert!(
        ocsf == native && pinned == native && ecs == native,
        "every alert in every encoding: ocsf {ocsf}, pinned {pinned}, ecs {ecs}, native {native}"
    );
    native
}

/// Validates every complete line the conformance sinks in `dir` have written so far (for an
/// agent that keeps running: its sinks may be at different points, so counts are not compared).
pub(crate) fn check_so_far(dir: &Path) {
    let snap = super::scratch("conformance");
    let items: Vec<String> = files(dir)
        .into_iter()
        .map(|(kind, arg, path)| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // A line still being written has no newline yet.
            let complete = match text.rfind('\n') {
                Some(i) => &text[..=i],
                None => "",
            };
            let copy = snap.join(path.file_name().expect("name"));
            std::fs::write(&copy, complete).expect("snapshot");
            format!("{kind}:{arg}={}", copy.display())
        })
        .collect();
    run(&items);
}

/// Validates the conformance lines of one alert (by id), waiting for the sinks to write them.
pub(crate) fn check_alert(dir: &Path, id: &str) {
    let picked = dir.join(format!("picked-{}", id.replace('/', "_")));
    std::fs::create_dir_all(&picked).expect("dir");
    for (_, _, path) in files(dir) {
        let name = path.file_name().expect("name").to_owned();
        let mut found = None;
        super::wait_for(
            &format!("alert {id} in {}", path.display()),
            std::time::Duration::from_secs(10),
            || {
                found = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.contains(&format!("\"{id}\"")))
                    .map(str::to_string);
                found.is_some()
            },
        );
        std::fs::write(picked.join(name), found.unwrap_or_default() + "\n").expect("write");
    }
    assert_eq!(check(&picked), 1);
    let _ = std::fs::remove_dir_all(&picked);
}
