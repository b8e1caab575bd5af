//! Reading rule files: YAML items (rules, lists, macros) validated with errors that name file,
//! line and rule, then compiled and indexed by event kind. Every error is reported, not just
//! the first.
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;

use super::{
    DEFAULT_RULES, DEFAULT_RULES_NAME, Dedup, Rule, RuleError, RuleSet, RuleSource, SeqBy,
    Sequence, Severity, Template,
    compile::{Compiler, Matcher, Scope},
    fields::{self, Field},
};
use crate::config::parse_duration;

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

/// A rule item waiting for every list and macro to be known.
struct Pending<'a> {
    file: &'a str,
    line: Option<usize>,
    item: RawItem,
}

/// What the first pass over the files collects.
#[derive(Default)]
struct Collected<'a> {
    scope: Scope,
    rules: Vec<Pending<'a>>,
    macros: Vec<(String, &'a str, Option<usize>)>,
    errors: Vec<RuleError>,
}

impl<'a> Collected<'a> {
    /// Sorts one file's items into rules, lists and macros.
    fn file(&mut self, file: &'a str, text: &str) {
        let items: Vec<serde_norway::Value> =
            match serde_norway::from_str::<Option<Vec<serde_norway::Value>>>(text) {
                Ok(v) => v.unwrap_or_default(),
                Err(e) => {
                    self.errors.push(RuleError {
                        file: file.to_string(),
                        line: e.location().map(|l| l.line()),
                        rule: None,
                        msg: format!("not a YAML list of rules, lists and macros: {e}"),
                    });
                    return;
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
            let err = |msg: String| RuleError {
                file: file.to_string(),
                line,
                rule: id.clone(),
                msg,
            };
            let item: RawItem = match serde_norway::from_value(v) {
                Ok(x) => x,
                Err(e) => {
                    self.errors.push(err(e.to_string()));
                    continue;
                }
            };
            let result = match (&item.rule, &item.list, &item.macro_) {
                (Some(_), None, None) => {
                    self.rules.push(Pending { file, line, item });
                    Ok(())
                }
                (None, Some(name), None) => self.list(name, &item),
                (None, None, Some(name)) => self.define_macro(name, &item, file, line),
                _ => Err("each item must have exactly one of `rule`, `list`, `macro`".into()),
            };
            if let Err(msg) = result {
                self.errors.push(err(msg));
            }
        }
    }

    /// A list: new, or `append: true` to one defined earlier.
    fn list(&mut self, name: &str, item: &RawItem) -> Result<(), String> {
        let Some(values) = &item.items else {
            return Err(format!("list `{name}` has no `items`"));
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
            return match self.scope.lists.get_mut(name) {
                Some(existing) => {
                    existing.extend(vals);
                    Ok(())
                }
                None => Err(format!(
                    "`append: true` to list `{name}`, which is not defined before"
                )),
            };
        }
        if self.scope.lists.contains_key(name) {
            return Err(format!(
                "duplicate list `{name}` (use `append: true` to add items)"
            ));
        }
        self.scope.lists.insert(name.to_string(), vals);
        Ok(())
    }

    fn define_macro(
        &mut self,
        name: &str,
        item: &RawItem,
        file: &'a str,
        line: Option<usize>,
    ) -> Result<(), String> {
        let Some(cond) = &item.condition else {
            return Err(format!("macro `{name}` has no `condition`"));
        };
        if self.scope.macros.contains_key(name) {
            return Err(format!("duplicate macro `{name}`"));
        }
        self.scope.macros.insert(name.to_string(), cond.clone());
        self.macros.push((name.to_string(), file, line));
        Ok(())
    }

    /// Lists may name other lists: expand one level so `in (a_list)` sees plain values.
    /// Macros are checked on their own too, so an unused broken macro is still reported.
    fn finish_scope(&mut self) {
        let snapshot = self.scope.lists.clone();
        for vals in self.scope.lists.values_mut() {
            let expanded: Vec<String> = vals
                .iter()
                .flat_map(|v| snapshot.get(v).cloned().unwrap_or_else(|| vec![v.clone()]))
                .collect();
            *vals = expanded;
        }
        for (name, file, line) in &self.macros {
            if let Err(ce) = Compiler::new(&self.scope).condition(&self.scope.macros[name]) {
                self.errors.push(RuleError {
                    file: (*file).to_string(),
                    line: *line,
                    rule: None,
                    msg: format!("macro `{name}`: column {}: {}", ce.col, ce.msg),
                });
            }
        }
    }
}

/// Compiles one rule item, pushing its errors; `None` when it is invalid or disabled.
struct RuleCompiler<'s, 'e> {
    scope: &'s Scope,
    file: &'s str,
    line: Option<usize>,
    id: String,
    errors: &'e mut Vec<RuleError>,
    ok: bool,
}

impl RuleCompiler<'_, '_> {
    fn fail(&mut self, msg: String) {
        self.errors.push(RuleError {
            file: self.file.to_string(),
            line: self.line,
            rule: Some(self.id.clone()),
            msg,
        });
        self.ok = false;
    }

    fn condition(&mut self, what: &str, src: &str) -> Option<Matcher> {
        match Compiler::new(self.scope).condition(src) {
            Ok(m) => Some(m),
            Err(ce) => {
                self.fail(format!("{what}: column {}: {}", ce.col, ce.msg));
                None
            }
        }
    }

    fn severity(&mut self, s: Option<&str>) -> Severity {
        match s.map(Severity::parse) {
            Some(Some(s)) => s,
            Some(None) => {
                self.fail(format!(
                    "unknown severity `{}` (emergency, alert, critical, error, warning, notice, informational, debug)",
                    s.unwrap_or("")
                ));
                Severity::Warning
            }
            None => {
                self.fail("missing `severity`".into());
                Severity::Warning
            }
        }
    }

    fn output(&mut self, s: Option<&str>) -> Option<Template> {
        match s.map(Template::parse) {
            Some(Ok(t)) => Some(t),
            Some(Err(m)) => {
                self.fail(m);
                None
            }
            None => {
                self.fail("missing `output`".into());
                None
            }
        }
    }

    fn main_condition(&mut self, item: &RawItem) -> Option<Matcher> {
        match (&item.condition, &item.sequence) {
            (Some(c), None) => self.condition("condition", c),
            (None, Some(_)) => None,
            (Some(_), Some(_)) => {
                self.fail("a rule has either `condition` or `sequence`, not both".into());
                None
            }
            (None, None) => {
                self.fail("missing `condition` (or `sequence`)".into());
                None
            }
        }
    }

    fn sequence(&mut self, s: &RawSequence) -> Option<Sequence> {
        let by = match s.by.as_str() {
            "process" => Some(SeqBy::Process),
            "container" => Some(SeqBy::Container),
            other => {
                self.fail(format!(
                    "sequence.by must be `process` or `container`, not `{other}`"
                ));
                None
            }
        };
        let within = parse_duration(&s.within);
        if within.is_none() {
            self.fail(format!(
                "sequence.within `{}` is not a duration like 30s, 5m, 1h",
                s.within
            ));
        }
        let first = self.condition("sequence.first", &s.first);
        let then = self.condition("sequence.then", &s.then);
        let mut same = Vec::new();
        for (a, b) in &s.same {
            match (fields::lookup(a), fields::lookup(b)) {
                (Some((fa, _)), Some((fb, _))) => same.push((fa, fb)),
                _ => self.fail(format!("sequence.same: unknown field in `{a}: {b}`")),
            }
        }
        Some(Sequence {
            by: by?,
            within: within?,
            first: first?,
            then: then?,
            same,
        })
    }

    fn dedup(&mut self, v: Option<&serde_norway::Value>) -> Option<Dedup> {
        match v {
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
                if let Some(Some(w)) = window {
                    Some(Dedup {
                        window: w,
                        by: by.unwrap_or_default(),
                    })
                } else {
                    self.fail("dedup must be `false` or `{window: 60s, by: [fields]}`".into());
                    None
                }
            }
        }
    }

    fn rule(&mut self, item: RawItem) -> Option<Rule> {
        if item.items.is_some() {
            self.errors.push(RuleError {
                file: self.file.to_string(),
                line: self.line,
                rule: Some(self.id.clone()),
                msg: "`items` belongs to lists, not rules".into(),
            });
        }
        let severity = self.severity(item.severity.as_deref());
        let output = self.output(item.output.as_deref());
        let condition = self.main_condition(&item);
        let sequence = item.sequence.as_ref().and_then(|s| {
            let r = self.sequence(s);
            if r.is_none() {
                self.ok = false;
            }
            r
        });
        let mut exceptions = Vec::new();
        for x in &item.exceptions {
            if let Some(m) = self.condition(&format!("exception `{}`", x.name), &x.condition) {
                exceptions.push((x.name.clone(), m));
            }
        }
        let dedup = self.dedup(item.dedup.as_ref());
        if !self.ok || item.enabled == Some(false) {
            return None;
        }
        Some(Rule {
            id: self.id.clone(),
            desc: item.desc.unwrap_or_default(),
            severity,
            tags: item.tags,
            output: output?,
            condition,
            exceptions,
            sequence,
            dedup,
        })
    }
}

impl RuleSet {
    /// Adds a rule, indexed by the event kinds its condition (or sequence) can match.
    fn push(&mut self, rule: Rule) {
        let kinds = match (&rule.condition, &rule.sequence) {
            (Some(c), _) => c.kinds(),
            (None, Some(s)) => match (s.first.kinds(), s.then.kinds()) {
                (Some(a), Some(b)) => Some(a.union(&b).cloned().collect()),
                _ => None,
            },
            _ => None,
        };
        let i = self.rules.len();
        match kinds {
            Some(ks) => ks
                .into_iter()
                .for_each(|k| self.by_kind.entry(k).or_default().push(i)),
            None => self.any_kind.push(i),
        }
        self.rules.push(rule);
    }
}

/// Loads, validates and compiles rules from `sources`; every error is reported, not just the
/// first.
pub(crate) fn load(sources: &[RuleSource]) -> Result<RuleSet, Vec<RuleError>> {
    let mut texts = Vec::new();
    let mut expand_errors = Vec::new();
    for s in sources {
        match expand(s) {
            Ok(files) => texts.extend(files),
            Err(e) => expand_errors.push(e),
        }
    }
    let mut c = Collected {
        errors: expand_errors,
        ..Collected::default()
    };
    for (file, text) in &texts {
        c.file(file, text);
    }
    c.finish_scope();
    let Collected {
        scope,
        rules,
        mut errors,
        ..
    } = c;
    let mut set = RuleSet::default();
    let mut ids = HashSet::new();
    for Pending { file, line, item } in rules {
        let id = item.rule.clone().unwrap_or_default();
        if !ids.insert(id.clone()) {
            errors.push(RuleError {
                file: file.to_string(),
                line,
                rule: Some(id),
                msg: "duplicate rule id".into(),
            });
            continue;
        }
        let mut rc = RuleCompiler {
            scope: &scope,
            file,
            line,
            id,
            errors: &mut errors,
            ok: true,
        };
        if let Some(rule) = rc.rule(item) {
            set.push(rule);
        }
    }
    if errors.is_empty() {
        set.finish();
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Loads rules for the agent: the built-in set (if `builtin`) and `paths`, and appends `agent_files` (the agent's own binary, configuration,
/// state and output paths) to the `monitor_agent_files` list the self-protection rules use,
/// when the rules define it.
pub(crate) fn load_for_agent(
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
