//! Which rules an event needs to be judged by, found without running them all.
//!
//! Per event kind, each rule's condition is specialised to the kind (its `kind` tests folded to
//! true or false, so rules that cannot match the kind are not listed and the rest never test the
//! kind again). Then each condition's *anchor* is taken: a test on one string field that every
//! match must pass (`exec.name in (...)`, `file.path startswith (...)`, a glob's literal
//! prefix), taken from the top-level `and` or, for an `or`, from all its branches on the same
//! field. The anchors of all rules of a kind are merged into one byte trie per field, so one walk
//! over an event's `file.path` says which of the path-anchored rules can match; the others are
//! skipped. An anchor is only ever a necessary condition, so the alerts are those of running
//! every rule, in the same (file) order.
use rustc_hash::FxHashMap;

use super::{
    RuleSet,
    compile::{Matcher, StrTest},
    fields::{self, Field, Ty},
};
use crate::event::Event;

/// A set of positions in a kind's rule list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    fn with_len(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    fn union(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
    /// Becomes a copy of `other`, reusing the allocation.
    fn assign(&mut self, other: &Bits) {
        self.0.clear();
        self.0.extend_from_slice(&other.0);
    }
    /// The positions set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
}

/// A matcher that always holds (`and` of nothing) or never does (`or` of nothing).
fn constant(b: bool) -> Matcher {
    if b {
        Matcher::And(Vec::new())
    } else {
        Matcher::Or(Vec::new())
    }
}

fn as_constant(m: &Matcher) -> Option<bool> {
    match m {
        Matcher::And(v) if v.is_empty() => Some(true),
        Matcher::Or(v) if v.is_empty() => Some(false),
        _ => None,
    }
}

fn is_kind_field(f: &Field) -> bool {
    matches!(f, Field::Static(i) if fields::FIELDS[*i].name == "kind")
}

/// `m` for events of kind `kind` only: tests of the kind are replaced by their answer and
/// `and`/`or`/`not` folded around them.
pub(crate) fn specialise(m: &Matcher, kind: &str) -> Matcher {
    match m {
        Matcher::Str(f, t) if is_kind_field(f) => match t {
            StrTest::In(set) => constant(set.contains(kind)),
            StrTest::NotIn(set) => constant(!set.contains(kind)),
            StrTest::Prefix(p) => constant(p.iter().any(|x| kind.starts_with(x.as_str()))),
            StrTest::Suffix(p) => constant(p.iter().any(|x| kind.ends_with(x.as_str()))),
            StrTest::Contains(p) => constant(p.iter().any(|x| kind.contains(x.as_str()))),
            StrTest::Glob(g) => constant(g.iter().any(|x| x.matches(kind))),
        },
        Matcher::Exists(f) if is_kind_field(f) => constant(true),
        Matcher::And(v) => {
            let mut out = Vec::with_capacity(v.len());
            for c in v {
                let c = specialise(c, kind);
                match as_constant(&c) {
                    Some(true) => {}
                    Some(false) => return constant(false),
                    None => out.push(c),
                }
            }
            if out.len() == 1 {
                out.pop().unwrap_or_else(|| constant(true))
            } else {
                Matcher::And(out)
            }
        }
        Matcher::Or(v) => {
            let mut out = Vec::with_capacity(v.len());
            for c in v {
                let c = specialise(c, kind);
                match as_constant(&c) {
                    Some(true) => return constant(true),
                    Some(false) => {}
                    None => out.push(c),
                }
            }
            if out.len() == 1 {
                out.pop().unwrap_or_else(|| constant(false))
            } else {
                Matcher::Or(out)
            }
        }
        Matcher::Not(x) => {
            let x = specialise(x, kind);
            match as_constant(&x) {
                Some(b) => constant(!b),
                None => Matcher::Not(Box::new(x)),
            }
        }
        other => other.clone(),
    }
}

/// A necessary test on string fields: some `field` has a value that is one of `exact` or
/// starts with one of `prefixes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) parts: Vec<Part>,
}

/// The values of one field an [`Anchor`] admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) field: Field,
    pub(crate) exact: Vec<String>,
    pub(crate) prefixes: Vec<String>,
}

impl Anchor {
    /// Smaller is better: one field before several, exact values only before any prefix, then
    /// fewer entries.
    fn cost(&self) -> (usize, bool, usize) {
        (
            self.parts.len(),
            self.parts.iter().any(|p| !p.prefixes.is_empty()),
            self.parts
                .iter()
                .map(|p| p.exact.len() + p.prefixes.len())
                .sum(),
        )
    }

    /// Admits what either admits.
    fn unite(mut self, other: Anchor) -> Anchor {
        for p in other.parts {
            match self.parts.iter_mut().find(|q| q.field == p.field) {
                Some(q) => {
                    q.exact.extend(p.exact);
                    q.prefixes.extend(p.prefixes);
                }
                None => self.parts.push(p),
            }
        }
        self
    }
}

/// The anchor of `m`, if it has one.
pub(crate) fn anchor(m: &Matcher) -> Option<Anchor> {
    match m {
        Matcher::Str(f @ Field::Static(i), t)
            if fields::FIELDS[*i].ty == Ty::Str && !is_kind_field(f) =>
        {
            let (exact, prefixes) = match t {
                StrTest::In(set) => (set.iter().cloned().collect(), Vec::new()),
                StrTest::Prefix(p) => (Vec::new(), p.clone()),
                StrTest::Glob(g) => (Vec::new(), g.iter().map(|g| g.literal_prefix()).collect()),
                StrTest::NotIn(_) | StrTest::Suffix(_) | StrTest::Contains(_) => return None,
            };
            // An empty prefix admits every value: no anchor.
            if prefixes.iter().any(String::is_empty) {
                return None;
            }
            Some(Anchor {
                parts: vec![Part {
                    field: f.clone(),
                    exact,
                    prefixes,
                }],
            })
        }
        Matcher::And(v) => v.iter().filter_map(anchor).min_by_key(Anchor::cost),
        Matcher::Or(v) if !v.is_empty() => {
            let mut all = v.iter().map(anchor);
            let mut acc = all.next()??;
            for a in all {
                acc = acc.unite(a?);
            }
            Some(acc)
        }
        _ => None,
    }
}

/// A byte trie over the anchor values of one field: each node holds the rules a value ending
/// there matches exactly and those any value passing through it matches by prefix.
#[derive(Debug, Default)]
struct Trie {
    /// Nodes; 0 is the root. Children sorted by byte.
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    children: Vec<(u8, u32)>,
    exact: Option<Bits>,
    prefix: Option<Bits>,
}

impl Trie {
    fn node_for(&mut self, key: &[u8]) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = 0usize;
        for &b in key {
            let next = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let n = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (b, n as u32));
                    n
                }
            };
            at = next;
        }
        at
    }

    fn add(&mut self, key: &str, pos: usize, prefix: bool, len: usize) {
        let n = self.node_for(key.as_bytes());
        let node = &mut self.nodes[n];
        let slot = if prefix {
            &mut node.prefix
        } else {
            &mut node.exact
        };
        slot.get_or_insert_with(|| Bits::with_len(len)).set(pos);
    }

    /// Adds to `out` the rules `value` can match.
    fn walk(&self, value: &str, out: &mut Bits) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let bytes = value.as_bytes();
        let mut i = 0;
        loop {
            if let Some(p) = &node.prefix {
                out.union(p);
            }
            let Some(&b) = bytes.get(i) else {
                if let Some(x) = &node.exact {
                    out.union(x);
                }
                return;
            };
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(c) => match self.nodes.get(node.children[c].1 as usize) {
                    Some(n) => node = n,
                    None => return,
                },
                Err(_) => return,
            }
            i += 1;
        }
    }
}

/// One rule as judged for a kind.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Index in [`RuleSet::rules`].
    pub(crate) rule: usize,
    /// The condition specialised to the kind; `None` for a sequence rule.
    pub(crate) condition: Option<Matcher>,
    /// A sequence rule's steps specialised to the kind.
    pub(crate) steps: Option<Steps>,
}

/// `m` specialised to `kind`, or as written for the index of any kind (`None`).
fn for_kind(m: &Matcher, kind: Option<&str>) -> Matcher {
    match kind {
        Some(k) => specialise(m, k),
        None => m.clone(),
    }
}

/// A sequence rule's `first` and `then` specialised to one kind: `None` where the step cannot
/// match an event of the kind (it is then not tested at all), and no kind test left in the rest.
#[derive(Debug)]
pub(crate) struct Steps {
    pub(crate) first: Option<Matcher>,
    pub(crate) then: Option<Matcher>,
}

impl Steps {
    fn of(s: &super::Sequence, kind: Option<&str>) -> Steps {
        let step = |m: &Matcher| {
            let m = for_kind(m, kind);
            (as_constant(&m) != Some(false)).then_some(m)
        };
        Steps {
            first: step(&s.first),
            then: step(&s.then),
        }
    }
}

/// The rules of one kind, with their anchors.
#[derive(Debug, Default)]
pub(crate) struct KindIndex {
    pub(crate) entries: Vec<Entry>,
    /// Entries without an anchor: always judged.
    always: Bits,
    /// Anchored entries, per field.
    fields: Vec<(Field, Trie)>,
}

impl KindIndex {
    /// The index of `kind` (any kind: `None`) over the rules `candidates` (file order) of `set`.
    fn build(set: &RuleSet, candidates: impl Iterator<Item = usize>, kind: Option<&str>) -> Self {
        let mut entries = Vec::new();
        let mut anchors = Vec::new();
        for i in candidates {
            let Some(rule) = set.rules.get(i) else {
                continue;
            };
            match &rule.condition {
                Some(c) => {
                    let c = for_kind(c, kind);
                    if as_constant(&c) == Some(false) {
                        continue;
                    }
                    anchors.push(anchor(&c));
                    entries.push(Entry {
                        rule: i,
                        condition: Some(c),
                        steps: None,
                    });
                }
                None => {
                    let steps = rule.sequence.as_ref().map(|s| Steps::of(s, kind));
                    // Neither step can match the kind: the rule has nothing to do with it.
                    if steps
                        .as_ref()
                        .is_some_and(|s| s.first.is_none() && s.then.is_none())
                    {
                        continue;
                    }
                    anchors.push(None);
                    entries.push(Entry {
                        rule: i,
                        condition: None,
                        steps,
                    });
                }
            }
        }
        let len = entries.len();
        let mut always = Bits::with_len(len);
        let mut fields: Vec<(Field, Trie)> = Vec::new();
        for (pos, a) in anchors.into_iter().enumerate() {
            let Some(a) = a else {
                always.set(pos);
                continue;
            };
            for part in &a.parts {
                let t = match fields.iter().position(|(f, _)| *f == part.field) {
                    Some(t) => t,
                    None => {
                        fields.push((part.field.clone(), Trie::default()));
                        fields.len() - 1
                    }
                };
                let trie = &mut fields[t].1;
                for v in &part.exact {
                    trie.add(v, pos, false, len);
                }
                for p in &part.prefixes {
                    trie.add(p, pos, true, len);
                }
            }
        }
        KindIndex {
            entries,
            always,
            fields,
        }
    }

    /// Into `out`: the positions of the entries `e` can match.
    pub(crate) fn candidates(&self, e: &Event, out: &mut Bits) {
        out.assign(&self.always);
        for (f, trie) in &self.fields {
            match fields::get(f, e) {
                fields::Val::Str(s) => trie.walk(&s, out),
                // A field without a value fails every positive string test.
                fields::Val::None => {}
                // Not a string (cannot happen for a string field): judge every rule.
                _ => {
                    out.0.fill(u64::MAX);
                    return;
                }
            }
        }
    }

    /// How many entries have an anchor.
    #[cfg(test)]
    pub(crate) fn anchored(&self) -> usize {
        self.entries.len() - self.always.iter().count()
    }
}

/// Per event kind name, its index; kinds without rules of their own use `other`.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_kind: FxHashMap<&'static str, KindIndex>,
    other: KindIndex,
}

impl Index {
    pub(crate) fn build(set: &RuleSet) -> Index {
        let mut by_kind = FxHashMap::default();
        for k in monitor_common::EventKind::ALL {
            if k.is_internal() {
                continue;
            }
            let name = k.name();
            by_kind.insert(
                name,
                KindIndex::build(set, set.indexes_for_kind(name), Some(name)),
            );
        }
        let other = KindIndex::build(set, set.indexes_for_kind(""), None);
        Index { by_kind, other }
    }

    pub(crate) fn for_kind(&self, kind: &str) -> &KindIndex {
        self.by_kind.get(kind).unwrap_or(&self.other)
    }
}

#[cfg(test)]
mod tests;
