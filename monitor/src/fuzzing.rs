//! Entry points for the fuzz targets (`fuzz/`): each takes untrusted input the way the agent
//! does and must return, never panic.
use crate::{
    capture::decode::{Payload, decode},
    config::Config,
    detect::rules::{RuleSource, load},
    enrich::cgroup::{container_of_process, parse, parse_proc_cgroup},
    event::{NodeContext, build},
    process::{ProcessTable, procfs::Procfs},
};

/// A kernel record: decoded (or rejected), then built into an event against a process table
/// that knows nothing (a /proc that does not exist), and written as JSON.
pub fn record(data: &[u8]) {
    let Ok(ev) = decode(data) else {
        return;
    };
    // cgroup records carry a kernel path the attribution parses.
    if let Payload::Cgroup { path, .. } = &ev.payload {
        let _ = parse(path);
    }
    let mut table = ProcessTable::new(
        Procfs {
            root: "/nonexistent-proc".into(),
        },
        "boot".into(),
        100,
    );
    let node = NodeContext {
        node: "fuzz".into(),
        boot_to_wall_ns: 0,
    };
    if let Some(e) = build(&ev, &mut table, &node) {
        let _ = serde_json::to_vec(&e);
    }
}

/// A rule file: loaded into a rule set (whose kinds are then listed) or a list of errors.
pub fn rules(text: &str) {
    let sources = [RuleSource::Text {
        name: "fuzz.yaml".into(),
        text: text.into(),
    }];
    match load(&sources) {
        Ok(set) => {
            let _ = set.len();
        }
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
        }
    }
}

/// A configuration file (TOML if `toml`, else YAML): validated and written back, or an error.
pub fn config(text: &str, toml: bool) {
    match Config::from_text(text, toml) {
        Ok(c) => {
            let _ = c.to_yaml();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A cgroup path or a `/proc/<pid>/cgroup` file.
pub fn cgroup(text: &str) {
    let _ = parse(text);
    let _ = container_of_process(&parse_proc_cgroup(text));
}
