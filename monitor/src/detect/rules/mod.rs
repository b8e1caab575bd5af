//! Behaviour rules: YAML files of lists, macros and rules, validated with errors that name file,
//! line and rule, compiled once, evaluated per event kind, with deduplication and sequences.
//!
//! `lang` parses conditions, `compile` turns them into typed matchers over `fields`, `load`
//! reads and validates files, `engine` evaluates them (dedup windows, sequences) and `reload`
//! swaps in edited rules while the agent runs.
pub(crate) mod compile;
mod engine;
pub(crate) mod fields;
pub(crate) mod index;
pub(crate) mod lang;
mod load;
pub(crate) mod reload;
mod template;
#[cfg(test)]
mod tests;

use std::{fmt, path::PathBuf, time::Duration};

use serde::Serialize;

use self::{compile::Matcher, fields::Field};
pub(crate) use self::{
    engine::Engine,
    load::{load, load_for_agent},
    template::Template,
};

/// The default rule set, compiled into the binary (also at monitor/rules/default.yaml).
pub(crate) const DEFAULT_RULES: &str = include_str!("../../../rules/default.yaml");
/// How the built-in rules are named in errors.
pub(crate) const DEFAULT_RULES_NAME: &str = "builtin:default.yaml";

/// One validation error, as `file:line: rule `id`: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleError {
    pub(crate) file: String,
    pub(crate) line: Option<usize>,
    pub(crate) rule: Option<String>,
    pub(crate) msg: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.rule {
            write!(f, ": rule `{r}`")?;
        }
        write!(f, ": {}", self.msg)
    }
}

/// Syslog severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Severity {
    pub(crate) fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "emergency" => Severity::Emergency,
            "alert" => Severity::Alert,
            "critical" => Severity::Critical,
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            "notice" => Severity::Notice,
            "informational" | "info" => Severity::Informational,
            "debug" => Severity::Debug,
            _ => return None,
        })
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Severity::Emergency => "emergency",
            Severity::Alert => "alert",
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Informational => "informational",
            Severity::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqBy {
    Process,
    Container,
}

#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub(crate) by: SeqBy,
    pub(crate) within: Duration,
    pub(crate) first: Matcher,
    pub(crate) then: Matcher,
    /// (field of the `then` event, field of the `first` event) that must be equal.
    pub(crate) same: Vec<(Field, Field)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Dedup {
    pub(crate) window: Duration,
    pub(crate) by: Vec<Field>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: String,
    pub(crate) desc: String,
    pub(crate) severity: Severity,
    pub(crate) tags: Vec<String>,
    pub(crate) output: Template,
    pub(crate) condition: Option<Matcher>,
    pub(crate) exceptions: Vec<(String, Matcher)>,
    pub(crate) sequence: Option<Sequence>,
    pub(crate) dedup: Option<Dedup>,
}

/// Compiled rules, indexed by event kind.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    by_kind: rustc_hash::FxHashMap<String, Vec<usize>>,
    any_kind: Vec<usize>,
    /// Per kind, the rules specialised to it with their anchors (built once all are pushed).
    pub(crate) index: index::Index,
}

impl RuleSet {
    /// Rules that may match events of `kind`, in file order: the kind's own and those of any
    /// kind, two ascending index lists merged as they are walked (no allocation per event).
    #[cfg(test)]
    pub(crate) fn for_kind(&self, kind: &str) -> impl Iterator<Item = &Rule> {
        self.indexes_for_kind(kind).map(|i| &self.rules[i])
    }
    /// Indexes in [`RuleSet::rules`] of the rules that may match events of `kind`, ascending.
    fn indexes_for_kind(&self, kind: &str) -> impl Iterator<Item = usize> {
        let own = self.by_kind.get(kind).map_or(&[][..], Vec::as_slice);
        Merged {
            a: own,
            b: &self.any_kind,
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }
    /// Builds the per-kind index once every rule is in.
    fn finish(&mut self) {
        self.index = index::Index::build(self);
    }
}

/// Two ascending lists of rule indexes, walked as one ascending sequence.
struct Merged<'a> {
    a: &'a [usize],
    b: &'a [usize],
}

impl Iterator for Merged<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(x), Some(y)) => x <= y,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first)
    }
}

/// Where rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleSource {
    Builtin,
    Path(PathBuf),
    /// Rules given as text (tests, fuzzing); `name` stands for the file in errors.
    Text {
        name: String,
        text: String,
    },
}
