//! The index must find every rule that fires: judged against running every rule's condition as
//! written, over events made from every value the default rules test.
use std::{collections::BTreeSet, time::Instant};

use super::*;
use crate::{
    detect::rules::{Engine, RuleSource, load},
    event::{
        CallResult, Detail, ExecDetail, FileDetail, NetDetail,
        fixtures::{event, in_container, process},
    },
};

fn rules(text: &str) -> RuleSet {
    load(&[RuleSource::Text {
        name: "t.yaml".into(),
        text: text.into(),
    }])
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn compile(cond: &str) -> Matcher {
    let set = rules(&format!(
        "- rule: r\n  condition: {cond}\n  severity: notice\n  output: x\n"
    ));
    set.rules[0].condition.clone().expect("a condition")
}

#[test]
fn kind_tests_are_folded_away() {
    let m = compile("kind in (open, unlink) and file.path startswith /etc/");
    assert!(matches!(specialise(&m, "open"), Matcher::Str(..)), "{m:?}");
    assert_eq!(as_constant(&specialise(&m, "exec")), Some(false));
    let m = compile("kind = open or process.name = sh");
    assert_eq!(as_constant(&specialise(&m, "open")), Some(true));
    assert!(matches!(specialise(&m, "exec"), Matcher::Str(..)));
    let m = compile("not kind = exec and process.name = sh");
    assert_eq!(as_constant(&specialise(&m, "exec")), Some(false));
}

#[test]
fn anchors_are_necessary_tests_on_string_fields() {
    let path = |c: &str| anchor(&compile(c)).map(|a| a.parts);
    let a = path("kind = open and file.path startswith /etc/ and process.name in (sh, bash)")
        .expect("anchored");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].exact.len(), 2, "exact names beat a prefix: {a:?}");
    let a = path("file.path startswith /etc/ or file.target glob '/usr/bin/*'").expect("or");
    assert_eq!(a.len(), 2, "one part per field: {a:?}");
    assert_eq!(a[1].prefixes, vec!["/usr/bin/".to_string()]);
    for none in [
        "not file.path startswith /etc/",
        "file.path contains shadow",
        "file.path endswith .so",
        "file.path startswith /etc/ or process.uid = 0",
        "file.path glob '*shadow'",
        "process.args in (sh)",
    ] {
        assert_eq!(path(none), None, "{none}");
    }
}

#[test]
fn the_trie_admits_exact_values_and_prefixes_only() {
    let set = rules(
        "- rule: a\n  condition: kind = open and file.path startswith /etc/\n  severity: notice\n  output: x\n\
         - rule: b\n  condition: kind = open and file.path in (/etc/shadow, /root)\n  severity: notice\n  output: x\n\
         - rule: c\n  condition: kind = open and file.setuid\n  severity: notice\n  output: x\n",
    );
    let ix = set.index.for_kind("open");
    assert_eq!(ix.anchored(), 2);
    let ids = |path: &str| -> Vec<&str> {
        let e = open_event(path, &[]);
        let mut b = Bits::default();
        ix.candidates(&e, &mut b);
        b.iter()
            .map(|p| set.rules[ix.entries[p].rule].id.as_str())
            .collect()
    };
    assert_eq!(ids("/etc/shadow"), ["a", "b", "c"]);
    assert_eq!(ids("/etc/"), ["a", "c"]);
    assert_eq!(ids("/etc"), ["c"]);
    assert_eq!(ids("/root"), ["b", "c"]);
    assert_eq!(ids("/root/x"), ["c"]);
    assert_eq!(ids("/usr/lib/x"), ["c"]);
    assert!(set.index.for_kind("exec").entries.is_empty());
}

fn open_event(path: &str, flags: &[&'static str]) -> Event {
    file_event("open", "openat", path, None, flags)
}

fn file_event(
    kind: &'static str,
    syscall: &'static str,
    path: &str,
    target: Option<&str>,
    flags: &[&'static str],
) -> Event {
    event(
        kind,
        process(7, "app", "/usr/bin/app"),
        Detail::File(FileDetail {
            call: CallResult {
                syscall,
                result: 0,
                error: None,
                via: None,
            },
            path: Some(path.into()),
            raw_path: None,
            target: target.map(Into::into),
            flags: Some(0),
            flag_names: flags.to_vec(),
            mode: Some("4755".into()),
            owner_uid: None,
            owner_gid: None,
            truncated: false,
        }),
    )
}

fn exec_event(name: &str, parent_name: &str) -> Event {
    let path = if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/usr/bin/{name}")
    };
    let mut p = process(8, name, &path);
    p.ancestors = vec![crate::process::Ancestor {
        pid: 1,
        id: "a".into(),
        exe: format!("/usr/sbin/{parent_name}").into(),
        start_ticks: 0,
    }];
    event(
        "exec",
        p,
        Detail::Exec(ExecDetail {
            filename: path.clone(),
            args: vec![name.into(), "-c".into()],
            args_truncated: false,
            filename_truncated: false,
        }),
    )
}

fn connect_event(address: &str) -> Event {
    event(
        "connect",
        process(9, "app", "/usr/bin/app"),
        Detail::Network(NetDetail {
            call: CallResult {
                syscall: "connect",
                result: 0,
                error: None,
                via: None,
            },
            fd: 3,
            family: Some(
                if address.starts_with('/') {
                    "unix"
                } else {
                    "inet"
                }
                .into(),
            ),
            address: (!address.starts_with('/')).then(|| address.into()),
            port: Some(443),
            unix_path: address.starts_with('/').then(|| address.into()),
            backlog: None,
            socket_type: None,
            protocol: None,
        }),
    )
}

/// Every string a matcher compares with.
fn strings(m: &Matcher, out: &mut BTreeSet<String>) {
    match m {
        Matcher::And(v) | Matcher::Or(v) => v.iter().for_each(|m| strings(m, out)),
        Matcher::Not(m) => strings(m, out),
        Matcher::Str(_, t) => match t {
            StrTest::In(s) | StrTest::NotIn(s) => out.extend(s.iter().cloned()),
            StrTest::Prefix(v) | StrTest::Suffix(v) | StrTest::Contains(v) => {
                out.extend(v.iter().cloned())
            }
            StrTest::Glob(g) => out.extend(g.iter().map(|g| g.literal_prefix())),
        },
        _ => {}
    }
}

/// The alerts of running every rule as written, in file order.
fn every_rule(set: &RuleSet, e: &Event) -> Vec<String> {
    set.rules
        .iter()
        .filter(|r| {
            r.condition.as_ref().is_some_and(|c| c.matches(e))
                && !r.exceptions.iter().any(|(_, m)| m.matches(e))
        })
        .map(|r| r.id.clone())
        .collect()
}

/// Events probing the default rules' string values: each value, and values just inside and
/// just outside it, in opens, file changes, execs and connects.
fn probe_events(set: &RuleSet) -> Vec<Event> {
    let mut values = BTreeSet::new();
    for r in &set.rules {
        for m in r
            .condition
            .iter()
            .chain(r.exceptions.iter().map(|(_, m)| m))
        {
            strings(m, &mut values);
        }
    }
    // Each value, and values just inside and just outside it.
    let mut probes = BTreeSet::new();
    for v in &values {
        probes.insert(v.clone());
        probes.insert(format!("{v}x"));
        probes.insert(format!("{v}/x"));
        probes.insert(format!("/x{v}"));
        let mut shorter = v.clone();
        shorter.pop();
        probes.insert(shorter);
    }
    let mut events = Vec::new();
    for p in &probes {
        for flags in [&["O_RDONLY"][..], &["O_WRONLY", "O_CREAT"][..]] {
            events.push(open_event(p, flags));
        }
        for (kind, call) in [
            ("unlink", "unlinkat"),
            ("chmod", "fchmodat"),
            ("symlink", "symlinkat"),
        ] {
            events.push(file_event(kind, call, p, None, &[]));
        }
        events.push(file_event("rename", "renameat2", "/tmp/x", Some(p), &[]));
        events.push(exec_event(p, "bash"));
        events.push(exec_event("sh", p));
        events.push(connect_event(p));
    }
    events
}

#[test]
fn the_default_rules_fire_through_the_index_as_they_do_without_it() {
    let set = load(&[RuleSource::Builtin]).expect("default rules");
    let events = probe_events(&set);
    let (mut judged, mut fired) = (0, 0);
    for e in events {
        for e in [e.clone(), in_container(e, &"c".repeat(64))] {
            let want = every_rule(&set, &e);
            // No dedup state between events: a fresh engine per event.
            let got: Vec<String> = Engine::default()
                .evaluate(&set, &e, Instant::now())
                .into_iter()
                .map(|a| a.rule)
                .collect();
            assert_eq!(got, want, "{} {:?}", e.kind, e.detail);
            judged += 1;
            fired += usize::from(!want.is_empty());
        }
    }
    assert!(
        fired > judged / 20,
        "the probes must make rules fire: {fired} of {judged}"
    );
}

/// A sequence rule's steps, specialised per kind, say what the steps as written say, for every
/// default sequence rule and every probe event (in and out of a container); a rule missing from
/// a kind's list has no step that matches it.
#[test]
fn sequence_steps_specialised_per_kind_agree_with_the_rule() {
    let set = load(&[RuleSource::Builtin]).expect("default rules");
    let mut events = probe_events(&set);
    events.push(connect_event("10.0.0.7"));
    let seqs: Vec<(usize, &crate::detect::rules::Sequence)> = set
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.sequence.as_ref().map(|s| (i, s)))
        .collect();
    assert!(seqs.len() >= 2, "the default rules have sequences");
    let (mut checked, mut matched) = (0, 0);
    for e in events {
        for e in [e.clone(), in_container(e, &"c".repeat(64))] {
            let ix = set.index.for_kind(e.kind);
            for &(i, s) in &seqs {
                let want = (s.first.matches(&e), s.then.matches(&e));
                let got = ix
                    .entries
                    .iter()
                    .find(|x| x.rule == i)
                    .map_or((false, false), |x| {
                        let steps = x.steps.as_ref().expect("a sequence entry has steps");
                        (
                            steps.first.as_ref().is_some_and(|m| m.matches(&e)),
                            steps.then.as_ref().is_some_and(|m| m.matches(&e)),
                        )
                    });
                assert_eq!(
                    got, want,
                    "{} on {} {:?}",
                    set.rules[i].id, e.kind, e.detail
                );
                checked += 1;
                matched += usize::from(want.0 || want.1);
            }
        }
    }
    assert!(matched > 0 && matched < checked, "{matched} of {checked}");
}
