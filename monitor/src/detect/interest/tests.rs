//! The derived interest must admit every event a rule or the baselines can use (soundness,
//! checked over a corpus of events against the real matchers) and leave out what none can
//! (usefulness, checked on the default rules).
use monitor_common::{EventKind, interest::opens_for_write};

use super::*;
use crate::{
    detect::{
        baseline::items_of,
        rules::{
            RuleSource,
            compile::{Compiler, Scope},
            load,
        },
    },
    event::{
        CallResult, Detail, Event, ExecDetail, FileDetail, NetDetail, PrivDetail, TcpDetail,
        fixtures::{self, in_container, process},
        open_flag_names,
    },
};

/// An event of `kind` by `comm` on the host.
fn event(kind: &'static str, comm: &str, detail: Detail) -> Event {
    fixtures::event(kind, process(42, comm, &format!("/usr/bin/{comm}")), detail)
}

fn call(syscall: &'static str, result: i64) -> CallResult {
    CallResult {
        syscall,
        result,
        error: None,
        via: None,
    }
}

fn file(kind: &'static str, comm: &str, path: &str, target: Option<&str>, flags: u64) -> Event {
    let relative = !path.starts_with('/');
    event(
        kind,
        comm,
        Detail::File(FileDetail {
            call: call("openat", 3),
            // The agent resolves a relative path against the cwd ("/" here).
            path: Some(if relative {
                format!("/{path}")
            } else {
                path.into()
            }),
            raw_path: relative.then(|| path.to_string()),
            target: target.map(str::to_string),
            flags: (kind == "open").then_some(flags),
            flag_names: if kind == "open" {
                open_flag_names(flags)
            } else {
                vec![]
            },
            mode: (flags & 0o100 != 0 || kind == "chmod").then(|| "4755".into()),
            owner_uid: None,
            owner_gid: None,
            truncated: false,
        }),
    )
}

/// A corpus of events of every kind the rules look at, on the host and in a container.
fn corpus() -> Vec<Event> {
    let paths = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/hostname",
        "/etc/ld.so.preload",
        "/etc/sudoers.d/x",
        "/etc/ssh/ssh_host_rsa_key",
        "/root/.ssh/id_rsa",
        "/home/u/.ssh/id_ed25519",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "/var/lib/kubelet/pki/kubelet.key",
        "/usr/bin/ls",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/tmp/payload",
        "/dev/shm/x",
        "/etc/monitor/config.yaml",
        "/var/lib/monitor/baselines/x",
        "/proc/self/fd/3",
        "etc/shadow",
        "shadow",
    ];
    let flags = [0, 1, 2, 3, 0o100, 0o1000, 0o2000, 0o101, 0o4000];
    let comms = ["cat", "bash", "sshd", "nginx", "curl", "dpkg"];
    let mut out = Vec::new();
    for p in paths {
        for f in flags {
            for c in comms {
                out.push(file("open", c, p, None, f));
            }
        }
        for k in [
            "unlink", "rename", "chmod", "chown", "link", "symlink", "mkdir",
        ] {
            out.push(file(k, "bash", p, Some(p), 0));
            out.push(file(k, "bash", "/tmp/a", Some(p), 0));
        }
        let exec = ExecDetail {
            filename: p.into(),
            args: vec![p.into()],
            args_truncated: false,
            filename_truncated: false,
        };
        out.push(event("exec", "sh", Detail::Exec(exec)));
    }
    for (addr, family) in [
        ("169.254.169.254", "inet"),
        ("10.0.0.1", "inet"),
        ("::1", "inet6"),
    ] {
        for k in ["connect", "accept", "bind"] {
            let net = NetDetail {
                call: call(k, 0),
                fd: 3,
                family: Some(family.into()),
                address: Some(addr.into()),
                port: Some(80),
                unix_path: None,
                backlog: None,
                socket_type: None,
                protocol: None,
            };
            out.push(event(k, "curl", Detail::Network(net)));
        }
    }
    for s in 1..=12u32 {
        let tcp = TcpDetail {
            old_state: "CLOSE",
            new_state: tcp_state_name(s),
            family: "inet".into(),
            protocol: 6,
            saddr: "127.0.0.1".into(),
            sport: 8080,
            daddr: "127.0.0.1".into(),
            dport: 1,
            socket: "0x1".into(),
        };
        out.push(event("tcp_state", "nginx", Detail::Tcp(tcp)));
    }
    for (k, sys) in [
        ("setid", "setuid"),
        ("capset", "capset"),
        ("ptrace", "ptrace"),
        ("module_load", "finit_module"),
        ("mount", "mount"),
        ("umount", "umount2"),
        ("setns", "setns"),
        ("unshare", "unshare"),
        ("memfd_create", "memfd_create"),
        ("bpf", "bpf"),
        ("dup", "dup2"),
    ] {
        let d = PrivDetail {
            call: Some(call(sys, 0)),
            old_uid: Some(1000),
            old_euid: Some(1000),
            request: Some("PTRACE_ATTACH".into()),
            fd: Some(3),
            new_fd: Some(1),
            ..PrivDetail::default()
        };
        out.push(event(k, "bash", Detail::Privilege(Box::new(d))));
    }
    let containers: Vec<Event> = out.iter().cloned().map(|e| in_container(e, "c1")).collect();
    out.extend(containers);
    out
}

/// Whether the kernel, given `i`, would send `e` (the programs' logic, restated).
fn admits(i: &KernelInterest, e: &Event) -> bool {
    let Some(kind) = EventKind::from_name(e.kind) else {
        return true;
    };
    if ALWAYS.contains(&kind) {
        return true;
    }
    match (&e.detail, kind) {
        // io_uring operations have their own program, which no syscall interest filters.
        (Detail::File(d), _) if d.call.via.is_some() => true,
        (Detail::File(d), EventKind::Open) => {
            if !i.kinds.contains(&EventKind::Open) {
                return false;
            }
            let need = if opens_for_write(d.flags.unwrap_or(0)) {
                &i.open_write
            } else {
                &i.open_read
            };
            // What the kernel saw: the path as passed.
            let raw = d.raw_path.as_deref().or(d.path.as_deref()).unwrap_or("");
            match need {
                PathNeed::All => true,
                PathNeed::Prefixes(_) if !raw.starts_with('/') => true,
                PathNeed::Prefixes(s) => s.iter().any(|p| raw.starts_with(p.as_str())),
            }
        }
        (Detail::Tcp(t), _) => (1..=12u32)
            .find(|s| tcp_state_name(*s) == t.new_state)
            .is_some_and(|s| i.tcp_states & (1 << s) != 0),
        _ => i.kinds.contains(&kind),
    }
}

fn default_rules() -> RuleSet {
    load(&[RuleSource::Builtin]).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Every event a rule's condition or sequence step matches is admitted by the rule's own
/// interest and by the derived whole.
fn assert_sound(rules: &RuleSet, whole: &KernelInterest) {
    let events = corpus();
    let mut matched = 0;
    for r in &rules.rules {
        let own = match (&r.condition, &r.sequence) {
            (Some(c), _) => of_matcher(c, true),
            (None, Some(s)) => of_matcher(&s.first, true).union(&of_matcher(&s.then, true)),
            _ => continue,
        };
        for e in &events {
            let hit = match (&r.condition, &r.sequence) {
                (Some(c), _) => c.matches(e),
                (None, Some(s)) => s.first.matches(e) || s.then.matches(e),
                _ => false,
            };
            if hit {
                matched += 1;
                assert!(admits(&own, e), "rule {}: own interest drops {e:?}", r.id);
                assert!(
                    admits(whole, e),
                    "rule {}: derived interest drops {e:?}",
                    r.id
                );
            }
        }
    }
    assert!(
        matched > 100,
        "the corpus exercises the rules ({matched} matches)"
    );
}

#[test]
fn derived_interest_admits_everything_the_default_rules_and_baselines_can_use() {
    let rules = default_rules();
    let d = derive(&rules, true);
    assert_sound(&rules, &d.interest);
    let mut used = 0;
    for e in corpus() {
        if !items_of(&e).is_empty() {
            used += 1;
            assert!(admits(&d.interest, &e), "baselines need {e:?}");
            assert!(admits(&of_baselines(), &e), "baselines need {e:?}");
        }
    }
    assert!(used > 100, "the corpus exercises the baselines ({used})");
    // Without baselines the rules alone are still admitted.
    assert_sound(&rules, &derive(&rules, false).interest);
}

#[test]
fn derived_interest_leaves_out_what_no_default_rule_or_baseline_uses() {
    let rules = default_rules();
    let i = derive(&rules, true).interest;
    let lib = file(
        "open",
        "nginx",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        None,
        0,
    );
    assert!(
        !admits(&i, &lib),
        "read-only opens of libraries are not needed"
    );
    let hostname = file("open", "cat", "/etc/hostname", None, 0);
    assert!(!admits(&i, &hostname));
    assert!(admits(&i, &file("open", "cat", "/etc/shadow", None, 0)));
    assert!(admits(&i, &file("open", "cat", "/etc/hostname", None, 1)));
    assert!(!i.kinds.contains(&EventKind::Accept));
    assert!(!i.kinds.contains(&EventKind::Bind));
    assert!(!i.kinds.contains(&EventKind::Listen));
    assert!(i.kinds.contains(&EventKind::Connect));
    assert!(i.kinds.contains(&EventKind::Dup));
    assert_eq!(i.tcp_states, 1 << 10, "only LISTEN");
    assert_eq!(
        i.open_write,
        PathNeed::All,
        "the baselines learn every write"
    );
    let PathNeed::Prefixes(read) = &i.open_read else {
        panic!("read-only opens are filtered by path: {:?}", i.open_read);
    };
    for p in ["/etc/shadow", "/root/.ssh/", "/home/", "/var/run/secrets/"] {
        assert!(read.contains(p), "{p} in {read:?}");
    }
    // Without baselines, writes narrow to what the rules name... except the drift sequence,
    // which remembers every write in a container.
    let no_baselines = derive(&rules, false).interest;
    assert_eq!(no_baselines.open_write, PathNeed::All);
    assert!(!no_baselines.kinds.contains(&EventKind::Capset));
}

fn compile(src: &str) -> Matcher {
    let mut scope = Scope::default();
    scope.lists.insert(
        "secrets".into(),
        vec!["/etc/shadow".into(), "/etc/gshadow".into()],
    );
    Compiler::new(&scope)
        .condition(src)
        .unwrap_or_else(|e| panic!("{src}: {}", e.msg))
}

#[test]
fn conditions_the_kernel_cannot_judge_widen_the_capture() {
    type Check = fn(&KernelInterest) -> bool;
    let cases: &[(&str, Check)] = &[
        // A negated path test cannot be a prefix set.
        ("kind = open and not file.path startswith /usr/", |i| {
            i.open_read == PathNeed::All && i.open_write == PathNeed::All
        }),
        ("kind = open and file.path contains shadow", |i| {
            i.open_read == PathNeed::All
        }),
        ("kind = open and file.path endswith /shadow", |i| {
            i.open_read == PathNeed::All
        }),
        ("kind = open and file.path glob '*/id_rsa'", |i| {
            i.open_read == PathNeed::All
        }),
        // A field the kernel does not see keeps every kind.
        ("process.name = nc", |i| *i == KernelInterest::everything()),
        ("kind != open", |i| {
            !i.kinds.contains(&EventKind::Open) && i.kinds.contains(&EventKind::Accept)
        }),
        ("not (kind = open and file.path in (secrets))", |i| {
            i.open_read == PathNeed::All && i.kinds.contains(&EventKind::Connect)
        }),
    ];
    for (src, ok) in cases {
        let i = of_matcher(&compile(src), true);
        assert!(ok(&i), "{src}: {i:?}");
    }
}

#[test]
fn conditions_that_reduce_narrow_the_capture() {
    let i = of_matcher(
        &compile("kind = open and not file.write and file.path in (secrets)"),
        true,
    );
    assert_eq!(i.kinds, [EventKind::Open].into());
    assert_eq!(
        i.open_read,
        PathNeed::Prefixes(["/etc/gshadow".into(), "/etc/shadow".into()].into())
    );
    assert!(i.open_write.is_none());
    // `not not` is the test itself; `file.write = false` is the negation.
    let i = of_matcher(&compile("kind = open and not not file.write"), true);
    assert!(i.open_read.is_none() && i.open_write == PathNeed::All);
    let i = of_matcher(&compile("kind = open and file.write = false"), true);
    assert!(i.open_write.is_none() && i.open_read == PathNeed::All);
    // Only an open that creates has a mode, so a setuid bit is never a read-only open.
    let i = of_matcher(
        &compile("kind = open and (file.setuid or file.setgid)"),
        true,
    );
    assert!(i.open_read.is_none() && i.open_write == PathNeed::All);
    let i = of_matcher(&compile("kind = open and not file.setuid"), true);
    assert_eq!(i.open_read, PathNeed::All);
    // A glob keeps its literal start; `or` unites.
    let i = of_matcher(
        &compile(
            "kind = open and (file.path glob '/home/*/.ssh/id_*' or file.target startswith /x)",
        ),
        true,
    );
    assert_eq!(i.open_read, PathNeed::Prefixes(["/home/".into()].into()));
    let i = of_matcher(
        &compile("kind = tcp_state and tcp.new_state in (LISTEN, ESTABLISHED)"),
        true,
    );
    assert_eq!(i.tcp_states, (1 << 10) | (1 << 1));
    assert_eq!(i.kinds, [EventKind::TcpState].into());
    // Flags only writing opens carry rule read-only opens out; a read flag does not.
    let i = of_matcher(
        &compile("kind = open and file.flags in (O_TRUNC, O_CREAT)"),
        true,
    );
    assert!(i.open_read.is_none() && i.open_write == PathNeed::All);
    let i = of_matcher(
        &compile("kind = open and file.flags in (O_TRUNC, O_CLOEXEC)"),
        true,
    );
    assert_eq!(i.open_read, PathNeed::All);
    // io_uring operations are captured by their own program: no syscall is needed for them.
    let i = of_matcher(&compile("kind = open and via = io_uring"), true);
    assert!(i.kinds.is_empty(), "{i:?}");
    let i = of_matcher(&compile("kind = open and not via = io_uring"), true);
    assert_eq!(i.open_read, PathNeed::All);
    // A kind ruled out by every branch is not captured at all.
    let i = of_matcher(
        &compile("kind = open and file.write and not file.write"),
        true,
    );
    assert!(i.kinds.is_empty(), "{i:?}");
}

#[test]
fn the_kernel_and_the_rules_agree_on_what_an_open_writes() {
    for acc in 0..4u64 {
        for extra in 0..64u64 {
            // O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK.
            let f = acc | (extra << 6);
            assert_eq!(
                opens_for_write(f),
                fields::opens_for_write(&open_flag_names(f)),
                "flags {f:#o}"
            );
        }
    }
}

#[test]
fn trace_kinds_capture_those_kinds_and_the_lifecycle() {
    let i = of_trace_kinds(&["connect".into()]);
    assert!(i.kinds.contains(&EventKind::Connect));
    assert!(!i.kinds.contains(&EventKind::Open));
    assert!(i.open_read.is_none());
    assert_eq!(of_trace_kinds(&[]), KernelInterest::everything());
}

#[test]
fn the_report_names_who_asked_for_each_capture() {
    let rules = default_rules();
    let text = derive(&rules, true).explain();
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line in\n{text}"))
            .to_string()
    };
    assert!(line("accept").contains("not captured"));
    assert!(line("connect").contains("cloud_metadata_access"));
    assert!(line("connect").contains("baselines"));
    assert!(line("tcp_state").contains("LISTEN"));
    assert!(line("tcp_state").contains("listen_in_container"));
    assert!(line("  /etc/shadow").contains("sensitive_file_read"));
    assert!(line("exec").contains("always"));
}
