//! What the loaded rules and baselines can ever use, derived from their compiled conditions, so
//! that the kernel sends only that (`load::interest` writes it into the kernel's maps).
//!
//! Each condition is read as an over-approximation: the set of events it could match, per event
//! kind, with the accesses and path prefixes of opens and the TCP states of state changes. `and`
//! intersects, `or` unites, negations are pushed down to the tests; a test the kernel cannot
//! judge (a field only known in user space, a negated path test, `contains`) keeps everything
//! it touches. So the result is never narrower than what the conditions can match: correctness
//! first, then cost. Exceptions only ever narrow a rule and are left out. A sequence needs what
//! its `first` and its `then` need.
use std::{collections::BTreeSet, fmt::Write as _};

use monitor_common::EventKind;

use super::{
    baseline,
    rules::{
        RuleSet,
        compile::{Matcher, StrTest},
        fields::{self, Field},
    },
};
use crate::{
    event::tcp_state_name,
    load::interest::{ALL_TCP_STATES, KernelInterest, PathNeed},
};

/// Events of these kinds are always captured: the process table (its working directories
/// included), attribution and the self-protection rules depend on them.
pub(crate) const ALWAYS: [EventKind; 7] = [
    EventKind::Chdir,
    EventKind::Exec,
    EventKind::Fork,
    EventKind::Exit,
    EventKind::CgroupMkdir,
    EventKind::CgroupRmdir,
    EventKind::Signal,
];

/// `top` restricted to `kinds`: every event of those kinds.
fn only_kinds(kinds: impl IntoIterator<Item = EventKind>) -> KernelInterest {
    let kinds: BTreeSet<EventKind> = kinds.into_iter().collect();
    let open = kinds.contains(&EventKind::Open);
    KernelInterest {
        open_read: if open {
            PathNeed::All
        } else {
            PathNeed::none()
        },
        open_write: if open {
            PathNeed::All
        } else {
            PathNeed::none()
        },
        tcp_states: if kinds.contains(&EventKind::TcpState) {
            ALL_TCP_STATES
        } else {
            0
        },
        kinds,
    }
}

fn top() -> KernelInterest {
    KernelInterest::everything()
}

/// What both capture.
fn meet(a: &KernelInterest, b: &KernelInterest) -> KernelInterest {
    normalized(KernelInterest {
        kinds: a.kinds.intersection(&b.kinds).copied().collect(),
        open_read: a.open_read.intersect(&b.open_read),
        open_write: a.open_write.intersect(&b.open_write),
        tcp_states: a.tcp_states & b.tcp_states,
    })
}

/// A kind whose every access or state is ruled out is not needed at all.
fn normalized(mut x: KernelInterest) -> KernelInterest {
    if x.open_read.is_none() && x.open_write.is_none() {
        x.kinds.remove(&EventKind::Open);
    }
    if !x.kinds.contains(&EventKind::Open) {
        x.open_read = PathNeed::none();
        x.open_write = PathNeed::none();
    }
    if x.tcp_states == 0 {
        x.kinds.remove(&EventKind::TcpState);
    }
    if !x.kinds.contains(&EventKind::TcpState) {
        x.tcp_states = 0;
    }
    x
}

fn kinds_named<'a>(names: impl Iterator<Item = &'a String>) -> BTreeSet<EventKind> {
    names.filter_map(|n| EventKind::from_name(n)).collect()
}

fn all_kinds_but(but: &BTreeSet<EventKind>) -> BTreeSet<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|k| !but.contains(k))
        .collect()
}

fn tcp_bits<'a>(names: impl Iterator<Item = &'a String>) -> u32 {
    let names: BTreeSet<&str> = names.map(String::as_str).collect();
    (1..=12u32)
        .filter(|s| names.contains(tcp_state_name(*s)))
        .fold(0, |acc, s| acc | (1 << s))
}

/// `open(2)` flag names only opens that write, create, truncate or append carry (as
/// `file.write` and the kernel's `opens_for_write` have it).
const WRITE_FLAG_NAMES: [&str; 5] = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"];

/// The path prefixes a positive string test on `file.path` can match, if it reduces to some.
fn path_prefixes(t: &StrTest) -> Option<BTreeSet<String>> {
    match t {
        StrTest::In(set) => Some(set.iter().cloned().collect()),
        StrTest::Prefix(p) => Some(p.iter().cloned().collect()),
        StrTest::Glob(g) => g.iter().map(|g| Some(g.literal_prefix())).collect(),
        StrTest::NotIn(_) | StrTest::Suffix(_) | StrTest::Contains(_) => None,
    }
    // An empty prefix is every path.
    .filter(|p: &BTreeSet<String>| !p.iter().any(String::is_empty))
}

fn field_name(f: &Field) -> &'static str {
    match f {
        Field::Static(i) => fields::FIELDS[*i].name,
        Field::PodLabel(_) | Field::ContainerLabel(_) => "",
    }
}

/// One test, taken as written (`positive`) or negated.
fn leaf(m: &Matcher, positive: bool) -> KernelInterest {
    match m {
        Matcher::Str(f, t) => match (field_name(f), t) {
            ("kind", StrTest::In(set)) | ("kind", StrTest::NotIn(set)) => {
                let named = kinds_named(set.iter());
                let is_in = matches!(t, StrTest::In(_)) == positive;
                only_kinds(if is_in { named } else { all_kinds_but(&named) })
            }
            ("file.path", t) if positive => match path_prefixes(t) {
                Some(p) => KernelInterest {
                    open_read: PathNeed::Prefixes(p.clone()),
                    open_write: PathNeed::Prefixes(p),
                    ..top()
                },
                None => top(),
            },
            // Opens have no second path: a test on it is false for every open.
            ("file.target", _) if positive => KernelInterest {
                open_read: PathNeed::none(),
                open_write: PathNeed::none(),
                ..top()
            },
            // Flags that only writing opens carry: a read-only open has none of them.
            ("file.flags", StrTest::In(set))
                if positive
                    && !set.is_empty()
                    && set.iter().all(|f| WRITE_FLAG_NAMES.contains(&f.as_str())) =>
            {
                KernelInterest {
                    open_read: PathNeed::none(),
                    ..top()
                }
            }
            // Operations submitted through io_uring are captured by their own program, whatever
            // the syscall interest says: a test for them needs no syscall at all.
            ("via", StrTest::In(set)) if positive && !set.is_empty() => KernelInterest::nothing(),
            ("tcp.new_state", StrTest::In(set)) if positive => KernelInterest {
                tcp_states: tcp_bits(set.iter()),
                ..top()
            },
            _ => top(),
        },
        // An open has a mode only when it creates (O_CREAT, O_TMPFILE), which writes: a set
        // setuid or setgid bit is never a read-only open.
        Matcher::Bool(f, true)
            if positive && matches!(field_name(f), "file.setuid" | "file.setgid") =>
        {
            KernelInterest {
                open_read: PathNeed::none(),
                ..top()
            }
        }
        Matcher::Bool(f, want) if field_name(f) == "file.write" => {
            if *want == positive {
                KernelInterest {
                    open_read: PathNeed::none(),
                    ..top()
                }
            } else {
                KernelInterest {
                    open_write: PathNeed::none(),
                    ..top()
                }
            }
        }
        _ => top(),
    }
}

/// The events `m` (or, with `positive` false, `not m`) can match, over-approximated.
pub(crate) fn of_matcher(m: &Matcher, positive: bool) -> KernelInterest {
    let combine = |v: &[Matcher], intersect: bool| {
        let mut parts = v.iter().map(|x| of_matcher(x, positive));
        let first = parts.next().unwrap_or_else(|| {
            // An empty `and` is true, an empty `or` false.
            if intersect {
                top()
            } else {
                KernelInterest::nothing()
            }
        });
        parts.fold(first, |acc, x| {
            if intersect {
                meet(&acc, &x)
            } else {
                acc.union(&x)
            }
        })
    };
    normalized(match m {
        // not (a and b) = not a or not b; not (a or b) = not a and not b.
        Matcher::And(v) => combine(v, positive),
        Matcher::Or(v) => combine(v, !positive),
        Matcher::Not(x) => of_matcher(x, !positive),
        _ => leaf(m, positive),
    })
}

/// Who asked for what: one entry per rule (by id) or consumer.
pub(crate) struct Derived {
    pub(crate) interest: KernelInterest,
    pub(crate) by_source: Vec<(String, KernelInterest)>,
}

/// What the baselines record (see `baseline::items_of`): execs, every write, reads of the
/// sensitive prefixes, connects, listening sockets and privilege calls.
pub(crate) fn of_baselines() -> KernelInterest {
    let mut kinds: BTreeSet<EventKind> = [
        EventKind::Open,
        EventKind::Unlink,
        EventKind::Rename,
        EventKind::Mkdir,
        EventKind::Chmod,
        EventKind::Chown,
        EventKind::Link,
        EventKind::Symlink,
        EventKind::Connect,
        EventKind::TcpState,
    ]
    .into();
    // Every other syscall kind decodes to a privilege detail, which the baselines record.
    kinds.extend(
        monitor_common::Syscall::ALL
            .iter()
            .map(|c| c.kind())
            .filter(|k| (*k as u32) / 100 == 4 && !baseline::NOT_LEARNED.contains(&k.name())),
    );
    KernelInterest {
        kinds,
        open_read: PathNeed::Prefixes(
            baseline::SENSITIVE_PREFIXES
                .iter()
                .map(|p| (*p).to_string())
                .collect(),
        ),
        open_write: PathNeed::All,
        tcp_states: 1 << 10,
    }
}

/// What `monitor run` needs: the rules' conditions and sequences, and the baselines if on.
pub(crate) fn derive(rules: &RuleSet, baselines: bool) -> Derived {
    let mut by_source: Vec<(String, KernelInterest)> = rules
        .rules
        .iter()
        .map(|r| {
            let x = match (&r.condition, &r.sequence) {
                (Some(c), _) => of_matcher(c, true),
                (None, Some(s)) => of_matcher(&s.first, true).union(&of_matcher(&s.then, true)),
                (None, None) => KernelInterest::nothing(),
            };
            (r.id.clone(), x)
        })
        .collect();
    if baselines {
        by_source.push(("baselines".into(), of_baselines()));
    }
    let interest = by_source
        .iter()
        .fold(only_kinds(ALWAYS), |acc, (_, x)| acc.union(x));
    Derived {
        interest,
        by_source,
    }
}

/// What `monitor trace` needs: the kinds asked for (all without `--kind`).
pub(crate) fn of_trace_kinds(kinds: &[String]) -> KernelInterest {
    if kinds.is_empty() {
        return KernelInterest::everything();
    }
    only_kinds(kinds_named(kinds.iter())).union(&only_kinds(ALWAYS))
}

fn describe_paths(p: &PathNeed) -> String {
    match p {
        PathNeed::All => "every path".into(),
        PathNeed::Prefixes(s) if s.is_empty() => "none".into(),
        PathNeed::Prefixes(s) => format!("{} path prefixes", s.len()),
    }
}

fn describe_states(bits: u32) -> String {
    if bits == ALL_TCP_STATES {
        return "every state".into();
    }
    let names: Vec<&str> = (1..=12u32)
        .filter(|s| bits & (1 << s) != 0)
        .map(tcp_state_name)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl Derived {
    /// The rules and consumers for which `pick` holds, comma-separated.
    fn who(&self, pick: impl Fn(&KernelInterest) -> bool) -> String {
        let names: Vec<&str> = self
            .by_source
            .iter()
            .filter(|(_, x)| pick(x))
            .map(|(n, _)| n.as_str())
            .collect();
        if names.is_empty() {
            "-".into()
        } else {
            names.join(", ")
        }
    }

    /// The rows of one access of `open`: the summary, then each prefix with who asked.
    fn explain_open(&self, out: &mut String, label: &str, get: fn(&KernelInterest) -> &PathNeed) {
        let need = get(&self.interest);
        let _ = writeln!(
            out,
            "{label:<14} {:<22} {}",
            describe_paths(need),
            self.who(|x| !get(x).is_none())
        );
        if let PathNeed::Prefixes(set) = need {
            for p in set {
                let by = self.who(|x| match get(x) {
                    PathNeed::All => true,
                    PathNeed::Prefixes(s) => s.contains(p),
                });
                let _ = writeln!(out, "  {p:<36} {by}");
            }
        }
    }

    /// A report of what the kernel captures and which rule or consumer asked for it.
    pub(crate) fn explain(&self) -> String {
        let mut out = String::new();
        let i = &self.interest;
        let _ = writeln!(out, "{:<14} {:<22} asked for by", "kind", "captured");
        for k in EventKind::ALL.into_iter().filter(|k| !k.is_internal()) {
            match k {
                _ if ALWAYS.contains(&k) => {
                    let _ = writeln!(
                        out,
                        "{:<14} {:<22} process table, attribution, self-protection",
                        k.name(),
                        "always"
                    );
                }
                EventKind::Open => {
                    self.explain_open(&mut out, "open (read)", |x| &x.open_read);
                    self.explain_open(&mut out, "open (write)", |x| &x.open_write);
                }
                EventKind::TcpState => {
                    let _ = writeln!(
                        out,
                        "{:<14} {:<22} {}",
                        k.name(),
                        describe_states(i.tcp_states),
                        self.who(|x| x.tcp_states != 0)
                    );
                }
                _ => {
                    let captured = if i.kinds.contains(&k) {
                        "every call"
                    } else {
                        "not captured"
                    };
                    let _ = writeln!(
                        out,
                        "{:<14} {:<22} {}",
                        k.name(),
                        captured,
                        self.who(|x| x.kinds.contains(&k))
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
