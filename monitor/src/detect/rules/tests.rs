//! Unit tests of rule loading, validation, evaluation, dedup and sequences.
use std::time::Instant;

use super::*;
use crate::{
    detect::Alert,
    event::{
        CallResult, Detail, Event, ExecDetail, FileDetail, NetDetail, PrivDetail, ProcessView,
        fixtures::{event, in_container, process},
    },
    process::Ancestor,
};

fn exec(pid: u32, path: &str) -> Event {
    let name = path.rsplit('/').next().unwrap_or(path);
    event(
        "exec",
        process(pid, name, path),
        Detail::Exec(ExecDetail {
            filename: path.into(),
            args: vec![path.into()],
            args_truncated: false,
            filename_truncated: false,
        }),
    )
}

fn open(pid: u32, comm: &str, path: &str, flags: &[&'static str]) -> Event {
    event(
        "open",
        process(pid, comm, &format!("/usr/bin/{comm}")),
        Detail::File(FileDetail {
            call: CallResult {
                syscall: "openat",
                result: 3,
                error: None,
                via: None,
            },
            path: Some(path.into()),
            raw_path: None,
            target: None,
            flags: Some(0),
            flag_names: flags.to_vec(),
            mode: None,
            owner_uid: None,
            owner_gid: None,
            truncated: false,
        }),
    )
}

fn load_str(text: &str) -> Result<RuleSet, Vec<RuleError>> {
    // A directory of its own: tests run in parallel.
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("r.yaml");
    std::fs::write(&f, text).expect("write");
    load(&[RuleSource::Path(f)])
}

#[test]
fn default_rules_compile_and_cover_the_required_behaviours() {
    let rs = load(&[RuleSource::Builtin]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    for id in [
        "shell_in_container",
        "package_manager_in_container",
        "network_tool_in_container",
        "sensitive_file_read",
        "service_account_token_read",
        "write_below_binary_dir",
        "write_below_etc",
        "container_drift_exec",
        "exec_from_temp_dir",
        "fileless_execution",
        "setuid_setgid_bit_set",
        "privilege_change_to_root_in_container",
        "ptrace_attach",
        "kernel_module_load",
        "mount_in_container",
        "namespace_change_in_container",
        "cloud_metadata_access",
        "reverse_shell",
        "listen_in_container",
    ] {
        assert!(
            rs.rules.iter().any(|r| r.id == id),
            "missing default rule {id}"
        );
    }
    // Every default rule is indexed by kind: none runs on every event.
    assert!(
        rs.any_kind.is_empty(),
        "rules without a kind restriction: {:?}",
        rs.any_kind
            .iter()
            .map(|i| &rs.rules[*i].id)
            .collect::<Vec<_>>()
    );
}

#[test]
fn validation_errors_name_file_line_and_rule() {
    let text = "\
- list: l
  items: [a]
- rule: dup
  condition: kind = exec
  severity: warning
  output: x
- rule: dup
  condition: kind = exec
  severity: warning
  output: x
- rule: bad_field
  condition: kind = exec and proc.name = x
  severity: warning
  output: x
- rule: bad_type
  condition: process.pid = abc
  severity: warning
  output: x
- rule: bad_macro
  condition: no_such_macro
  severity: warning
  output: x
- rule: bad_pattern
  condition: file.path glob '[x'
  severity: warning
  output: x
- rule: bad_severity
  condition: kind = exec
  severity: loud
  output: x
- rule: bad_output
  condition: kind = exec
  severity: warning
  output: '{nope.field}'
- rule: syntax
  condition: kind = exec and (
  severity: warning
  output: x
- rule: unknown_key
  condition: kind = exec
  severity: warning
  output: x
  colour: red
- rule: bad_list
  condition: kind = exec and process.name in (no_such_list)
  severity: warning
  output: x
";
    let errs = load_str(text).expect_err("must fail");
    let find = |rule: &str, line: usize, needle: &str| {
        assert!(
            errs.iter().any(|e| e.rule.as_deref() == Some(rule)
                && e.line == Some(line)
                && e.msg.contains(needle)
                && e.file.ends_with("r.yaml")),
            "no error for {rule} at line {line} containing `{needle}`; got:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    find("dup", 7, "duplicate rule id");
    find("bad_field", 11, "unknown field `proc.name`");
    find("bad_type", 15, "is an integer");
    find("bad_macro", 19, "undefined macro");
    find("bad_pattern", 23, "bad pattern");
    find("bad_severity", 27, "unknown severity");
    find("bad_output", 31, "unknown field `nope.field`");
    find("syntax", 35, "column");
    find("unknown_key", 39, "colour");
    find("bad_list", 44, "undefined list `no_such_list`");
    assert_eq!(
        errs.iter()
            .filter(|e| e.rule.as_deref() == Some("dup"))
            .count(),
        1
    );
    // Display form: file:line: rule `id`: message
    let shown = errs
        .iter()
        .find(|e| e.rule.as_deref() == Some("bad_type"))
        .expect("bad_type")
        .to_string();
    assert!(
        shown.contains("r.yaml:15: rule `bad_type`: condition: column"),
        "{shown}"
    );
    // YAML syntax errors carry the parser's line.
    let errs = load_str("- rule: x\n  condition: [unclosed\n").expect_err("yaml");
    assert!(
        errs[0].line.is_some() && errs[0].msg.contains("YAML"),
        "{:?}",
        errs
    );
}

fn one_rule(cond: &str) -> RuleSet {
    load_str(&format!("- list: shells\n  items: [sh, bash]\n- rule: r\n  condition: {cond}\n  severity: notice\n  output: 'hit {{process.name}} {{file.path}}'\n  dedup: false\n"))
        .unwrap_or_else(|e| panic!("{cond}: {e:?}"))
}

fn fires(cond: &str, e: &Event) -> bool {
    !Engine::default()
        .evaluate(&one_rule(cond), e, Instant::now())
        .is_empty()
}

#[test]
fn every_operator() {
    let o = open(5, "cat", "/etc/shadow", &["O_RDONLY"]);
    let w = open(5, "sh", "/etc/passwd", &["O_WRONLY", "O_CREAT"]);
    let cases: &[(&str, &Event, bool)] = &[
        ("kind = open and file.path = /etc/shadow", &o, true),
        ("kind = open and file.path != /etc/shadow", &o, false),
        (
            "kind = open and file.path in (/etc/passwd, /etc/shadow)",
            &o,
            true,
        ),
        ("kind = open and file.path startswith /etc/", &o, true),
        ("kind = open and file.path endswith dow", &o, true),
        ("kind = open and file.path contains sha", &o, true),
        ("kind = open and file.path glob '/etc/s*'", &o, true),
        ("kind = open and file.path glob '/etc/p*'", &o, false),
        (
            "kind = open and process.pid > 4 and process.pid >= 5 and process.pid < 6 and process.pid <= 5",
            &o,
            true,
        ),
        ("kind = open and process.pid in (1, 2)", &o, false),
        ("kind = open and file.flags contains O_CREAT", &w, true),
        ("kind = open and file.flags contains O_CREAT", &o, false),
        ("kind = open and file.write", &w, true),
        ("kind = open and not file.write", &o, true),
        ("kind = open and file.write = false", &o, true),
        ("kind = open and process.name in (shells)", &w, true),
        (
            "kind = open and (process.name = cat or process.name = sh) and not file.path = /etc/passwd",
            &o,
            true,
        ),
        ("kind = open and container.id exists", &o, false),
        ("kind = open and file.target exists", &o, false),
        ("kind = open and container.id != x", &o, false),
        ("kind = exec", &o, false),
    ];
    for (cond, e, want) in cases {
        assert_eq!(fires(cond, e), *want, "{cond}");
    }
}

#[test]
fn exceptions_macros_and_output() {
    let text = "\
- macro: shadow
  condition: file.path = /etc/shadow
- rule: r
  condition: kind = open and shadow
  severity: warning
  output: 'read {file.path} by {process.name} in {container.id}'
  exceptions:
    - name: trusted
      condition: process.name = sshd
";
    let rs = load_str(text).expect("load");
    let mut eng = Engine::default();
    let a = eng.evaluate(
        &rs,
        &open(1, "cat", "/etc/shadow", &["O_RDONLY"]),
        Instant::now(),
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].output, "read /etc/shadow by cat in <none>");
    assert_eq!(
        (a[0].rule.as_str(), a[0].severity, a[0].source),
        ("r", "warning", "rule")
    );
    assert!(
        eng.evaluate(
            &rs,
            &open(2, "sshd", "/etc/shadow", &["O_RDONLY"]),
            Instant::now()
        )
        .is_empty()
    );
    let json = serde_json::to_value(&a[0]).expect("json");
    assert_eq!(json["file"]["path"], "/etc/shadow");
    assert_eq!(json["process"]["comm"], "cat");
    assert_eq!(json["dedup"]["count"], 1);
}

#[test]
fn dedup_folds_identical_alerts_with_count_and_times() {
    let rs = load_str("- rule: r\n  condition: kind = open\n  severity: notice\n  output: x\n  dedup: {window: 10s, by: [file.path]}\n").expect("load");
    let mut eng = Engine::default();
    let t0 = Instant::now();
    let mut e = open(1, "cat", "/a", &[]);
    assert_eq!(
        eng.evaluate(&rs, &e, t0).len(),
        1,
        "first is delivered at once"
    );
    for i in 0..5 {
        e.time = format!("2026-11-22T00:00:0{i}.000000000Z");
        assert!(
            eng.evaluate(&rs, &e, t0 + Duration::from_secs(1))
                .is_empty(),
            "folded"
        );
    }
    // A different key is not folded.
    assert_eq!(eng.evaluate(&rs, &open(1, "cat", "/b", &[]), t0).len(), 1);
    assert!(
        eng.flush(t0 + Duration::from_secs(5), false).is_empty(),
        "window still open"
    );
    let folded = eng.flush(t0 + Duration::from_secs(11), false);
    assert_eq!(folded.len(), 1);
    assert_eq!(folded[0].dedup.count, 6);
    assert_eq!(folded[0].dedup.first_seen, "2026-11-22T00:00:00.000000000Z");
    assert_eq!(folded[0].dedup.last_seen, "2026-11-22T00:00:04.000000000Z");
    // After the window a new alert goes out again.
    assert_eq!(eng.evaluate(&rs, &e, t0 + Duration::from_secs(12)).len(), 1);
}

#[test]
fn rules_of_a_kind_come_in_file_order_with_those_of_any_kind() {
    let rs = load_str(
        "- rule: a\n  condition: kind = exec\n  output: a\n  severity: notice\n\
         - rule: b\n  condition: process.name = x\n  output: b\n  severity: notice\n\
         - rule: c\n  condition: kind in (exec, open)\n  output: c\n  severity: notice\n\
         - rule: d\n  condition: process.pid = 1\n  output: d\n  severity: notice\n",
    )
    .expect("load");
    let ids = |k: &str| -> Vec<&str> { rs.for_kind(k).map(|r| r.id.as_str()).collect() };
    assert_eq!(ids("exec"), ["a", "b", "c", "d"]);
    assert_eq!(ids("open"), ["b", "c", "d"]);
    assert_eq!(ids("connect"), ["b", "d"]);
}

#[test]
fn sequence_state_expires_oldest_first_and_keeps_the_live_entries() {
    let rs = load_str(
        "- rule: drift\n  sequence:\n    by: container\n    within: 10s\n    first: kind = open and file.write\n    then: kind = exec\n    same: {exec.filename: file.path}\n  severity: critical\n  output: 'ran {exec.filename}'\n  dedup: false\n",
    )
    .expect("load");
    let mut eng = Engine::default();
    let t0 = Instant::now();
    let write = |p: &str| in_container(open(1, "cp", p, &["O_WRONLY", "O_CREAT"]), "c1");
    let run = |p: &str| in_container(exec(2, p), "c1");
    // Writes at 0 s, 5 s and 8 s; at 12 s the first has expired, the others are live.
    for (t, p) in [(0, "/a"), (5, "/b"), (8, "/c")] {
        assert!(
            eng.evaluate(&rs, &write(p), t0 + Duration::from_secs(t))
                .is_empty()
        );
    }
    let at = t0 + Duration::from_secs(12);
    assert!(eng.evaluate(&rs, &run("/a"), at).is_empty(), "expired");
    assert_eq!(
        eng.evaluate(&rs, &run("/c"), at).len(),
        1,
        "live, behind another"
    );
    assert_eq!(
        eng.evaluate(&rs, &run("/b"), at).len(),
        1,
        "live, at the front"
    );
    // A file written again is remembered once, from its latest write: written at 0 s and
    // 9 s, it is still live at 15 s and pairs with one exec only.
    for t in [0, 9] {
        assert!(
            eng.evaluate(&rs, &write("/d"), t0 + Duration::from_secs(t))
                .is_empty()
        );
    }
    let at = t0 + Duration::from_secs(15);
    assert_eq!(eng.evaluate(&rs, &run("/d"), at).len(), 1, "the rewrite");
    assert!(eng.evaluate(&rs, &run("/d"), at).is_empty(), "one entry");
}

#[test]
fn sequences_pair_events_by_container_and_field() {
    let rs = load_str(
        "- rule: drift\n  sequence:\n    by: container\n    within: 60s\n    first: kind = open and file.write\n    then: kind = exec\n    same: {exec.filename: file.path}\n  severity: critical\n  output: 'ran {exec.filename}'\n  dedup: false\n",
    )
    .expect("load");
    let mut eng = Engine::default();
    let t0 = Instant::now();
    let write = in_container(open(1, "cp", "/tmp/x", &["O_WRONLY", "O_CREAT"]), "c1");
    assert!(eng.evaluate(&rs, &write, t0).is_empty());
    // Another path, another container, or too late: no alert.
    assert!(
        eng.evaluate(&rs, &in_container(exec(2, "/tmp/y"), "c1"), t0)
            .is_empty()
    );
    assert!(
        eng.evaluate(&rs, &in_container(exec(2, "/tmp/x"), "c2"), t0)
            .is_empty()
    );
    let a = eng.evaluate(
        &rs,
        &in_container(exec(2, "/tmp/x"), "c1"),
        t0 + Duration::from_secs(1),
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].output, "ran /tmp/x");
    let first = a[0].sequence.as_ref().expect("first event context");
    assert_eq!((first.kind, first.pid), ("open", 1));
    // Consumed: a second exec of the same file does not fire again.
    assert!(
        eng.evaluate(
            &rs,
            &in_container(exec(3, "/tmp/x"), "c1"),
            t0 + Duration::from_secs(2)
        )
        .is_empty()
    );
    assert!(eng.evaluate(&rs, &write, t0).is_empty());
    assert!(
        eng.evaluate(
            &rs,
            &in_container(exec(4, "/tmp/x"), "c1"),
            t0 + Duration::from_secs(120)
        )
        .is_empty(),
        "outside the window"
    );
}

/// A successful connect to 10.0.0.9:4444 on `fd`.
fn connect_out(p: ProcessView, fd: i64) -> Event {
    event(
        "connect",
        p,
        Detail::Network(NetDetail {
            call: CallResult {
                syscall: "connect",
                result: 0,
                error: None,
                via: None,
            },
            fd,
            family: Some("inet".into()),
            address: Some("10.0.0.9".into()),
            port: Some(4444),
            unix_path: None,
            backlog: None,
            socket_type: None,
            protocol: None,
        }),
    )
}

#[test]
fn reverse_shell_sequence_matches_fd() {
    let rs = load(&[RuleSource::Builtin]).expect("defaults");
    let mut eng = Engine::default();
    let t0 = Instant::now();
    let p = process(9, "bash", "/bin/bash");
    let connect = connect_out(p.clone(), 3);
    let dup = |fd: i64, new_fd: i64| {
        event(
            "dup",
            p.clone(),
            Detail::Privilege(Box::new(PrivDetail {
                call: Some(CallResult {
                    syscall: "dup2",
                    result: new_fd,
                    error: None,
                    via: None,
                }),
                fd: Some(fd),
                new_fd: Some(new_fd),
                ..PrivDetail::default()
            })),
        )
    };
    assert!(eng.evaluate(&rs, &connect, t0).is_empty());
    assert!(eng.evaluate(&rs, &dup(5, 0), t0).is_empty(), "another fd");
    let a = eng.evaluate(&rs, &dup(3, 0), t0);
    assert_eq!(a.iter().filter(|a| a.rule == "reverse_shell").count(), 1);
}

#[test]
fn reverse_shell_sequence_follows_a_fork_after_the_connect_only() {
    let rs = load(&[RuleSource::Builtin]).expect("defaults");
    let t0 = Instant::now();
    // nc connects at tick 1000 (fd 3), then a child puts fd 3 on stdin.
    let mut parent = process(9, "nc", "/usr/bin/nc");
    parent.start_ticks = 900;
    let mut connect = connect_out(parent.clone(), 3);
    connect.ticks = 1000;
    let dup_in_child = |child_start: u64| {
        let mut p = process(10, "nc", "/usr/bin/nc");
        p.start_ticks = child_start;
        p.ancestors = vec![Ancestor {
            pid: 9,
            id: parent.id.clone(),
            exe: parent.exe.clone(),
            start_ticks: parent.start_ticks,
        }];
        let mut e = event(
            "dup",
            p,
            Detail::Privilege(Box::new(PrivDetail {
                call: Some(CallResult {
                    syscall: "dup2",
                    result: 0,
                    error: None,
                    via: None,
                }),
                fd: Some(3),
                new_fd: Some(0),
                ..PrivDetail::default()
            })),
        );
        e.ticks = 1001;
        e
    };
    let count = |a: &[Alert]| a.iter().filter(|a| a.rule == "reverse_shell").count();

    // A child forked before the connect has its own fd 3: no alert.
    let mut eng = Engine::default();
    assert!(eng.evaluate(&rs, &connect, t0).is_empty());
    assert_eq!(count(&eng.evaluate(&rs, &dup_in_child(950), t0)), 0);
    // A child forked after it inherited the socket: the sequence completes.
    let a = eng.evaluate(&rs, &dup_in_child(1000), t0);
    assert_eq!(count(&a), 1);
    let first = a[0].sequence.as_ref().expect("first");
    assert_eq!(first.pid, 9);
    // A child whose start is unknown is not followed.
    let mut eng = Engine::default();
    assert!(eng.evaluate(&rs, &connect, t0).is_empty());
    assert_eq!(count(&eng.evaluate(&rs, &dup_in_child(0), t0)), 0);
}

#[test]
fn events_folded_in_the_kernel_count_in_the_alert() {
    let rs = load_str("- rule: r\n  condition: kind = open\n  severity: notice\n  output: x\n  dedup: {window: 10s, by: [file.path]}\n").expect("load");
    let mut eng = Engine::default();
    let t0 = Instant::now();
    // The first record of a flood, then one per fold window carrying what the kernel folded.
    let mut e = open(1, "cat", "/etc/shadow", &[]);
    e.folded = 0;
    let first = eng.evaluate(&rs, &e, t0);
    assert_eq!(first[0].dedup.count, 1);
    for _ in 0..3 {
        e.folded = 1000;
        assert!(
            eng.evaluate(&rs, &e, t0 + Duration::from_secs(1))
                .is_empty()
        );
    }
    let folded = eng.flush(t0 + Duration::from_secs(11), false);
    assert_eq!(
        folded[0].dedup.count,
        1 + 3 * 1001,
        "every folded event counts"
    );
    // A window opened by a record that carries a count says so at once.
    e.folded = 41;
    let again = eng.evaluate(&rs, &e, t0 + Duration::from_secs(12));
    assert_eq!(again[0].dedup.count, 42);
    let json = serde_json::to_value(&again[0].event).expect("json");
    assert_eq!(json["folded"], 41);
}
