//! Behaviour rules: YAML files of lists, macros and rules, validated with errors that name file,
//! line and rule, compiled once, evaluated per event kind, with deduplication and sequences.
pub mod compile;
pub mod fields;
pub mod lang;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use self::{
    compile::{Compiler, Matcher, Scope},
    fields::Field,
};
use crate::event::Event;

/// The default rule set, compiled into the binary (also at monitor/rules/default.yaml).
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.yaml");
pub const DEFAULT_RULES_NAME: &str = "builtin:default.yaml";

/// One validation error, as `file:line: rule `id`: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub msg: String,
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
pub enum Severity {
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
    pub fn parse(s: &str) -> Option<Severity> {
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
    pub fn name(self) -> &'static str {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    rule: Option<String>,
    list: Option<String>,
    #[serde(rename = "macro")]
    macro_: Option<String>,
    items: Option<Vec<serde_norway::Value>>,
    condition: Option<String>,
    desc: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    output: Option<String>,
    #[serde(default)]
    exceptions: Vec<RawException>,
    enabled: Option<bool>,
    sequence: Option<RawSequence>,
    dedup: Option<serde_norway::Value>,
    /// For a list: add the items to a list defined earlier instead of defining a new one.
    #[serde(default)]
    append: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    name: String,
    condition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSequence {
    by: String,
    within: String,
    first: String,
    then: String,
    #[serde(default)]
    same: BTreeMap<String, String>,
}

/// An output template: text with `{field}` placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<(String, Option<Field>)>,
}

impl Template {
    fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else {
                return Err(format!("unclosed `{{` in output at `{}`", &rest[i..]));
            };
            let name = &rest[i + 1..i + j];
            let (f, _) = fields::lookup(name)
                .ok_or_else(|| format!("output names unknown field `{name}`"))?;
            parts.push((rest[..i].to_string(), Some(f)));
            rest = &rest[i + j + 1..];
        }
        parts.push((rest.to_string(), None));
        Ok(Template { parts })
    }

    pub fn render(&self, e: &Event) -> String {
        let mut out = String::new();
        for (text, f) in &self.parts {
            out.push_str(text);
            if let Some(f) = f {
                out.push_str(
                    &fields::render(&fields::get(f, e)).unwrap_or_else(|| "<none>".into()),
                );
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqBy {
    Process,
    Container,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub by: SeqBy,
    pub within: Duration,
    pub first: Matcher,
    pub then: Matcher,
    /// (field of the `then` event, field of the `first` event) that must be equal.
    pub same: Vec<(Field, Field)>,
}

#[derive(Debug, Clone)]
pub struct Dedup {
    pub window: Duration,
    pub by: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub desc: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub output: Template,
    pub condition: Option<Matcher>,
    pub exceptions: Vec<(String, Matcher)>,
    pub sequence: Option<Sequence>,
    pub dedup: Option<Dedup>,
}

/// Compiled rules, indexed by event kind.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    by_kind: HashMap<String, Vec<usize>>,
    any_kind: Vec<usize>,
}

impl RuleSet {
    /// Rules that may match events of `kind`, in file order.
    pub fn for_kind(&self, kind: &str) -> impl Iterator<Item = &Rule> {
        let mut idx: Vec<usize> = self
            .by_kind
            .get(kind)
            .into_iter()
            .flatten()
            .chain(self.any_kind.iter())
            .copied()
            .collect();
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.rules[i])
    }
    pub fn len(&self) -> usize {
        self.rules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Where rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    Builtin,
    Path(PathBuf),
    /// Rules given as text (tests, fuzzing); `name` stands for the file in errors.
    Text {
        name: String,
        text: String,
    },
}

/// Files of a source: a file, or the *.yaml / *.yml files of a directory in name order.
fn expand(src: &RuleSource) -> Result<Vec<(String, String)>, RuleError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| RuleError {
            file: p.display().to_string(),
            line: None,
            rule: None,
            msg: e.to_string(),
        })
    };
    match src {
        RuleSource::Builtin => Ok(vec![(
            DEFAULT_RULES_NAME.to_string(),
            DEFAULT_RULES.to_string(),
        )]),
        RuleSource::Text { name, text } => Ok(vec![(name.clone(), text.clone())]),
        RuleSource::Path(p) if p.is_dir() => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| RuleError {
                    file: p.display().to_string(),
                    line: None,
                    rule: None,
                    msg: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            files
                .iter()
                .map(|f| Ok((f.display().to_string(), read(f)?)))
                .collect()
        }
        RuleSource::Path(p) => Ok(vec![(p.display().to_string(), read(p)?)]),
    }
}

/// Lines where top-level list items (`- ...` at column 0) start, in order.
fn item_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("- ") || *l == "-")
        .map(|(i, _)| i + 1)
        .collect()
}

/// Parses `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

/// Default dedup: one alert per rule, workload and main object a minute.
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_DEDUP_BY: &[&str] = &[
    "process.exe",
    "exec.filename",
    "file.path",
    "network.address",
    "network.port",
    "syscall",
];

struct Pending<'a> {
    file: &'a str,
    line: Option<usize>,
    item: RawItem,
}

/// Loads, validates and compiles rules from `sources`; every error is reported, not just the
/// first.
pub fn load(sources: &[RuleSource]) -> Result<RuleSet, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut texts = Vec::new();
    for s in sources {
        match expand(s) {
            Ok(files) => texts.extend(files),
            Err(e) => errors.push(e),
        }
    }
    let mut scope = Scope::default();
    let mut rules_raw: Vec<Pending<'_>> = Vec::new();
    let mut list_src: Vec<(String, &str, Option<usize>)> = Vec::new();
    let mut macro_src: Vec<(String, &str, Option<usize>)> = Vec::new();
    for (file, text) in &texts {
        let items: Vec<serde_norway::Value> =
            match serde_norway::from_str::<Option<Vec<serde_norway::Value>>>(text) {
                Ok(v) => v.unwrap_or_default(),
                Err(e) => {
                    let line = e.location().map(|l| l.line());
                    errors.push(RuleError {
                        file: file.clone(),
                        line,
                        rule: None,
                        msg: format!("not a YAML list of rules, lists and macros: {e}"),
                    });
                    continue;
                }
            };
        let lines = item_lines(text);
        for (i, v) in items.into_iter().enumerate() {
            let line = lines.get(i).copied();
            let id = v
                .get("rule")
                .or(v.get("list"))
                .or(v.get("macro"))
                .and_then(|x| x.as_str())
                .map(str::to_string);
            let item: RawItem = match serde_norway::from_value(v) {
                Ok(x) => x,
                Err(e) => {
                    errors.push(RuleError {
                        file: file.clone(),
                        line,
                        rule: id,
                        msg: e.to_string(),
                    });
                    continue;
                }
            };
            let e = |msg: String| RuleError {
                file: file.clone(),
                line,
                rule: id.clone(),
                msg,
            };
            match (&item.rule, &item.list, &item.macro_) {
                (Some(_), None, None) => rules_raw.push(Pending { file, line, item }),
                (None, Some(name), None) => {
                    let Some(values) = &item.items else {
                        errors.push(e(format!("list `{name}` has no `items`")));
                        continue;
                    };
                    let vals: Vec<String> = values
                        .iter()
                        .map(|v| match v {
                            serde_norway::Value::String(s) => s.clone(),
                            serde_norway::Value::Number(n) => n.to_string(),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    if item.append {
                        match scope.lists.get_mut(name) {
                            Some(existing) => existing.extend(vals),
                            None => errors.push(e(format!(
                                "`append: true` to list `{name}`, which is not defined before"
                            ))),
                        }
                        continue;
                    }
                    if scope.lists.contains_key(name) {
                        errors.push(e(format!(
                            "duplicate list `{name}` (use `append: true` to add items)"
                        )));
                        continue;
                    }
                    scope.lists.insert(name.clone(), vals);
                    list_src.push((name.clone(), file, line));
                }
                (None, None, Some(name)) => {
                    let Some(cond) = &item.condition else {
                        errors.push(e(format!("macro `{name}` has no `condition`")));
                        continue;
                    };
                    if scope.macros.contains_key(name) {
                        errors.push(e(format!("duplicate macro `{name}`")));
                        continue;
                    }
                    scope.macros.insert(name.clone(), cond.clone());
                    macro_src.push((name.clone(), file, line));
                }
                _ => errors.push(e(
                    "each item must have exactly one of `rule`, `list`, `macro`".into(),
                )),
            }
        }
    }
    // Lists may name other lists: expand one level so `in (a_list)` sees plain values.
    let snapshot = scope.lists.clone();
    for vals in scope.lists.values_mut() {
        let expanded: Vec<String> = vals
            .iter()
            .flat_map(|v| snapshot.get(v).cloned().unwrap_or_else(|| vec![v.clone()]))
            .collect();
        *vals = expanded;
    }
    // Macros are checked on their own too, so an unused broken macro is still reported.
    for (name, file, line) in &macro_src {
        if let Err(ce) = Compiler::new(&scope).condition(&scope.macros[name]) {
            errors.push(RuleError {
                file: file.to_string(),
                line: *line,
                rule: None,
                msg: format!("macro `{name}`: column {}: {}", ce.col, ce.msg),
            });
        }
    }
    let mut set = RuleSet::default();
    let mut ids = HashSet::new();
    for Pending { file, line, item } in rules_raw {
        let id = item.rule.clone().unwrap_or_default();
        let e = |msg: String| RuleError {
            file: file.to_string(),
            line,
            rule: Some(id.clone()),
            msg,
        };
        if !ids.insert(id.clone()) {
            errors.push(e("duplicate rule id".into()));
            continue;
        }
        if item.items.is_some() {
            errors.push(e("`items` belongs to lists, not rules".into()));
        }
        let mut ok = true;
        let mut fail = |m: String| {
            errors.push(e(m));
            ok = false;
        };
        let severity = match item.severity.as_deref().map(Severity::parse) {
            Some(Some(s)) => s,
            Some(None) => {
                fail(format!(
                    "unknown severity `{}` (emergency, alert, critical, error, warning, notice, informational, debug)",
                    item.severity.as_deref().unwrap_or("")
                ));
                Severity::Warning
            }
            None => {
                fail("missing `severity`".into());
                Severity::Warning
            }
        };
        let output = match item.output.as_deref().map(Template::parse) {
            Some(Ok(t)) => Some(t),
            Some(Err(m)) => {
                fail(m);
                None
            }
            None => {
                fail("missing `output`".into());
                None
            }
        };
        let compile_cond =
            |what: &str, src: &str, errors: &mut Vec<RuleError>| match Compiler::new(&scope)
                .condition(src)
            {
                Ok(m) => Some(m),
                Err(ce) => {
                    errors.push(RuleError {
                        file: file.to_string(),
                        line,
                        rule: Some(id.clone()),
                        msg: format!("{what}: column {}: {}", ce.col, ce.msg),
                    });
                    None
                }
            };
        let condition = match (&item.condition, &item.sequence) {
            (Some(c), None) => compile_cond("condition", c, &mut errors).or_else(|| {
                ok = false;
                None
            }),
            (None, Some(_)) => None,
            (Some(_), Some(_)) => {
                errors.push(e(
                    "a rule has either `condition` or `sequence`, not both".into()
                ));
                ok = false;
                None
            }
            (None, None) => {
                errors.push(e("missing `condition` (or `sequence`)".into()));
                ok = false;
                None
            }
        };
        let sequence = match &item.sequence {
            None => None,
            Some(s) => {
                let by = match s.by.as_str() {
                    "process" => Some(SeqBy::Process),
                    "container" => Some(SeqBy::Container),
                    other => {
                        errors.push(e(format!(
                            "sequence.by must be `process` or `container`, not `{other}`"
                        )));
                        None
                    }
                };
                let within = parse_duration(&s.within);
                if within.is_none() {
                    errors.push(e(format!(
                        "sequence.within `{}` is not a duration like 30s, 5m, 1h",
                        s.within
                    )));
                }
                let first = compile_cond("sequence.first", &s.first, &mut errors);
                let then = compile_cond("sequence.then", &s.then, &mut errors);
                let mut same = Vec::new();
                for (a, b) in &s.same {
                    match (fields::lookup(a), fields::lookup(b)) {
                        (Some((fa, _)), Some((fb, _))) => same.push((fa, fb)),
                        _ => errors.push(e(format!("sequence.same: unknown field in `{a}: {b}`"))),
                    }
                }
                match (by, within, first, then) {
                    (Some(by), Some(within), Some(first), Some(then))
                        if same.len() == s.same.len() =>
                    {
                        Some(Sequence {
                            by,
                            within,
                            first,
                            then,
                            same,
                        })
                    }
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut exceptions = Vec::new();
        for x in &item.exceptions {
            match compile_cond(
                &format!("exception `{}`", x.name),
                &x.condition,
                &mut errors,
            ) {
                Some(m) => exceptions.push((x.name.clone(), m)),
                None => ok = false,
            }
        }
        let dedup = match &item.dedup {
            None => Some(Dedup {
                window: DEFAULT_DEDUP_WINDOW,
                by: DEFAULT_DEDUP_BY
                    .iter()
                    .filter_map(|f| fields::lookup(f).map(|x| x.0))
                    .collect(),
            }),
            Some(serde_norway::Value::Bool(false)) => None,
            Some(v) => {
                let window = v.get("window").and_then(|w| w.as_str()).map(parse_duration);
                let by: Option<Vec<Field>> = v.get("by").and_then(|b| b.as_sequence()).map(|seq| {
                    seq.iter()
                        .filter_map(|f| f.as_str().and_then(fields::lookup).map(|x| x.0))
                        .collect()
                });
                match window {
                    Some(Some(w)) => Some(Dedup {
                        window: w,
                        by: by.unwrap_or_default(),
                    }),
                    _ => {
                        errors.push(e(
                            "dedup must be `false` or `{window: 60s, by: [fields]}`".into()
                        ));
                        ok = false;
                        None
                    }
                }
            }
        };
        if !ok || item.enabled == Some(false) {
            continue;
        }
        let Some(output) = output else { continue };
        let rule = Rule {
            id: id.clone(),
            desc: item.desc.unwrap_or_default(),
            severity,
            tags: item.tags,
            output,
            condition,
            exceptions,
            sequence,
            dedup,
        };
        let kinds = match (&rule.condition, &rule.sequence) {
            (Some(c), _) => c.kinds(),
            (None, Some(s)) => match (s.first.kinds(), s.then.kinds()) {
                (Some(a), Some(b)) => Some(a.union(&b).cloned().collect()),
                _ => None,
            },
            _ => None,
        };
        let i = set.rules.len();
        match kinds {
            Some(ks) => ks
                .into_iter()
                .for_each(|k| set.by_kind.entry(k).or_default().push(i)),
            None => set.any_kind.push(i),
        }
        set.rules.push(rule);
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Context of the first event of a sequence, carried on its alert.
#[derive(Debug, Clone, Serialize)]
pub struct SeqFirst {
    pub time: String,
    pub kind: &'static str,
    pub pid: u32,
    pub summary: String,
}

/// Dedup facts on an alert.
#[derive(Debug, Clone, Serialize)]
pub struct DedupInfo {
    /// Identical alerts this one stands for (1 unless folded).
    pub count: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// One alert: the rule's verdict and the whole event it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Unique id (agent run and sequence), stamped when the alert is handed to the sinks.
    pub id: String,
    pub source: &'static str,
    pub rule: String,
    pub severity: &'static str,
    pub tags: Vec<String>,
    pub output: String,
    pub description: String,
    pub dedup: DedupInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SeqFirst>,
    /// For `source: anomaly`: what was new, in which profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<crate::baseline::AnomalyInfo>,
    /// Events were being lost when this alert was raised: how many, where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drops: Option<crate::drops::DropNotice>,
    #[serde(flatten)]
    pub event: Event,
}

struct DedupState {
    first_seen: String,
    last_seen: String,
    window_end: Instant,
    suppressed: u64,
    last: Option<Alert>,
}

struct SeqEntry {
    at: Instant,
    /// When the first event happened, in /proc clock ticks since boot.
    ticks: u64,
    same: Vec<Option<String>>,
    first: SeqFirst,
}

/// Remembered first events per (rule, key) at most.
const SEQ_PER_KEY: usize = 1024;
/// Dedup keys and sequence keys held at most; beyond, the oldest are dropped (and counted).
const MAX_KEYS: usize = 65_536;

/// Rule evaluation state: dedup windows and sequence firsts, kept across rule reloads by rule id.
#[derive(Default)]
pub struct Engine {
    dedup: HashMap<(String, String), DedupState>,
    seq: HashMap<(String, String), VecDeque<SeqEntry>>,
    /// State entries dropped because a bound was reached.
    pub evicted: u64,
}

/// Sequence state keys a `then` event may continue, in order: its own key; for `by: process`
/// also each ancestor's, with the start time (ticks) of the ancestor's child on the event's line
/// of descent. Descriptors and state survive fork and exec, so a connection made by a parent
/// and put on stdio by a child it forked afterwards (`nc -e`, `bash -i >& /dev/tcp/...` run
/// from a wrapper) is still one reverse shell.
fn seq_candidates(by: SeqBy, own: &str, e: &Event) -> Vec<(String, Option<u64>)> {
    let mut out = vec![(own.to_string(), None)];
    if by == SeqBy::Process {
        let mut child_start = e.process.start_ticks;
        for a in &e.process.ancestors {
            out.push((format!("p{}", a.id), Some(child_start)));
            child_start = a.start_ticks;
        }
    }
    out
}

fn workload_key(e: &Event) -> String {
    if let Some(p) = &e.attribution.pod {
        return match &p.workload {
            Some(w) => format!("{}/{}/{}", p.namespace, w.kind, w.name),
            None => format!("{}/{}", p.namespace, p.name),
        };
    }
    match &e.attribution.container {
        Some(c) => format!("container/{}", c.id),
        None => "host".into(),
    }
}

impl Engine {
    /// Evaluates every rule that applies to `e`; returns the alerts to deliver now.
    pub fn evaluate(&mut self, rules: &RuleSet, e: &Event, now: Instant) -> Vec<Alert> {
        let mut out = Vec::new();
        for rule in rules.for_kind(e.kind) {
            let mut seq_first = None;
            let fired = match (&rule.condition, &rule.sequence) {
                (Some(c), _) => c.matches(e),
                (None, Some(s)) => {
                    let key = match s.by {
                        SeqBy::Process => format!("p{}", e.process.id),
                        SeqBy::Container => match &e.attribution.container {
                            Some(c) => format!("c{}", c.id),
                            None => "host".into(),
                        },
                    };
                    let k = (rule.id.clone(), key);
                    let mut hit = false;
                    if !self.seq.is_empty() && s.then.matches(e) {
                        // Rendered only once some state is found to compare it with.
                        let mut want: Option<Vec<Option<String>>> = None;
                        for (key, forked) in seq_candidates(s.by, &k.1, e) {
                            let Some(q) = self.seq.get_mut(&(rule.id.clone(), key)) else {
                                continue;
                            };
                            q.retain(|x| now.duration_since(x.at) <= s.within);
                            let want = want.get_or_insert_with(|| {
                                s.same
                                    .iter()
                                    .map(|(t, _)| fields::render(&fields::get(t, e)))
                                    .collect()
                            });
                            // An ancestor's first event counts only if the line of descent was
                            // forked after it (and so inherited what it opened).
                            let pos = q.iter().position(|x| {
                                x.same == *want && forked.is_none_or(|t| t != 0 && t >= x.ticks)
                            });
                            if let Some(pos) = pos {
                                seq_first = q.remove(pos).map(|x| x.first);
                                hit = true;
                                break;
                            }
                        }
                    }
                    if !hit && s.first.matches(e) {
                        if self.seq.len() >= MAX_KEYS && !self.seq.contains_key(&k) {
                            self.evicted += 1;
                            if let Some(victim) = self.seq.keys().next().cloned() {
                                self.seq.remove(&victim);
                            }
                        }
                        let q = self.seq.entry(k).or_default();
                        if q.len() >= SEQ_PER_KEY {
                            q.pop_front();
                            self.evicted += 1;
                        }
                        q.push_back(SeqEntry {
                            at: now,
                            ticks: e.ticks,
                            same: s
                                .same
                                .iter()
                                .map(|(_, f)| fields::render(&fields::get(f, e)))
                                .collect(),
                            first: SeqFirst {
                                time: e.time.clone(),
                                kind: e.kind,
                                pid: e.process.pid,
                                summary: rule_summary(e),
                            },
                        });
                    }
                    hit
                }
                _ => false,
            };
            if !fired || rule.exceptions.iter().any(|(_, m)| m.matches(e)) {
                continue;
            }
            let alert = Alert {
                id: String::new(),
                drops: None,
                source: "rule",
                rule: rule.id.clone(),
                severity: rule.severity.name(),
                tags: rule.tags.clone(),
                output: rule.output.render(e),
                description: rule.desc.clone(),
                dedup: DedupInfo {
                    count: 1,
                    first_seen: e.time.clone(),
                    last_seen: e.time.clone(),
                },
                sequence: seq_first,
                anomaly: None,
                event: e.clone(),
            };
            match &rule.dedup {
                None => out.push(alert),
                Some(d) => {
                    let mut key = workload_key(e);
                    for f in &d.by {
                        key.push('|');
                        key.push_str(&fields::render(&fields::get(f, e)).unwrap_or_default());
                    }
                    let k = (rule.id.clone(), key);
                    match self.dedup.get_mut(&k) {
                        Some(st) if now < st.window_end => {
                            st.suppressed += 1;
                            st.last_seen = e.time.clone();
                            st.last = Some(alert);
                        }
                        _ => {
                            if self.dedup.len() >= MAX_KEYS {
                                out.extend(self.flush(now, true));
                            }
                            self.dedup.insert(
                                k,
                                DedupState {
                                    first_seen: e.time.clone(),
                                    last_seen: e.time.clone(),
                                    window_end: now + d.window,
                                    suppressed: 0,
                                    last: None,
                                },
                            );
                            out.push(alert);
                        }
                    }
                }
            }
        }
        out
    }

    /// Ends dedup windows that are over (all of them with `all`): a window that folded identical
    /// alerts yields one alert with their count and first/last time.
    pub fn flush(&mut self, now: Instant, all: bool) -> Vec<Alert> {
        let mut out = Vec::new();
        self.dedup.retain(|_, st| {
            if !all && now < st.window_end {
                return true;
            }
            if let Some(mut a) = st.last.take() {
                a.dedup = DedupInfo {
                    count: st.suppressed + 1,
                    first_seen: st.first_seen.clone(),
                    last_seen: st.last_seen.clone(),
                };
                out.push(a);
            }
            false
        });
        out
    }

    /// Drops state of rules that no longer exist (after a reload).
    pub fn retain_rules(&mut self, rules: &RuleSet) {
        let ids: HashSet<&str> = rules.rules.iter().map(|r| r.id.as_str()).collect();
        self.seq.retain(|(r, _), _| ids.contains(r.as_str()));
    }
}

/// A short description of an event for sequence context.
fn rule_summary(e: &Event) -> String {
    use crate::event::Detail;
    match &e.detail {
        Detail::Exec(d) => format!("exec {}", d.filename),
        Detail::File(d) => format!("{} {}", d.call.syscall, d.path.as_deref().unwrap_or("")),
        Detail::Network(d) => format!(
            "{} {}{}",
            d.call.syscall,
            d.address
                .as_deref()
                .or(d.unix_path.as_deref())
                .unwrap_or(""),
            d.port.map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Detail::Privilege(d) => d
            .call
            .as_ref()
            .map(|c| c.syscall.to_string())
            .unwrap_or_default(),
        _ => e.kind.to_string(),
    }
}

/// Loads rules for the agent: the sources, or the built-in set when none is given.
pub fn load_for_agent(paths: &[PathBuf], builtin: bool) -> Result<Arc<RuleSet>, Vec<RuleError>> {
    load_for_agent_with(paths, builtin, &[])
}

/// As [`load_for_agent`], and appends `agent_files` (the agent's own binary, configuration,
/// state and output paths) to the `monitor_agent_files` list the self-protection rules use,
/// when the rules define it.
pub fn load_for_agent_with(
    paths: &[PathBuf],
    builtin: bool,
    agent_files: &[String],
) -> Result<Arc<RuleSet>, Vec<RuleError>> {
    let mut sources: Vec<RuleSource> = Vec::new();
    if builtin {
        sources.push(RuleSource::Builtin);
    }
    sources.extend(paths.iter().cloned().map(RuleSource::Path));
    let defines = |list: &str| {
        let needle = format!("list: {list}");
        sources.iter().any(|s| match s {
            RuleSource::Builtin => DEFAULT_RULES.contains(&needle),
            _ => expand(s).is_ok_and(|files| files.iter().any(|(_, t)| t.contains(&needle))),
        })
    };
    // Directories (existing, or written with a trailing slash) are watched by prefix, files
    // exactly: a prefix `/usr/bin/monitor` must not match `/usr/bin/monitor-helper`.
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for f in agent_files {
        if f.ends_with('/') {
            dirs.push(f.clone());
        } else if Path::new(f).is_dir() {
            dirs.push(format!("{f}/"));
        } else {
            files.push(f.clone());
        }
    }
    let mut extra = String::new();
    for (list, items) in [("monitor_agent_files", files), ("monitor_agent_dirs", dirs)] {
        if items.is_empty() || !defines(list) {
            continue;
        }
        let quoted: Vec<String> = items
            .iter()
            .map(|f| serde_json::to_string(f).unwrap_or_default())
            .collect();
        extra.push_str(&format!(
            "- list: {list}\n  append: true\n  items: [{}]\n",
            quoted.join(", ")
        ));
    }
    if !extra.is_empty() {
        sources.push(RuleSource::Text {
            name: "<agent's own paths>".into(),
            text: extra,
        });
    }
    load(&sources).map(Arc::new)
}

#[cfg(test)]
mod tests;
