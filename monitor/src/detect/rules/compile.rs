//! Conditions compiled once into typed matchers: fields resolved, lists expanded, macros
//! inlined, values typed, patterns built. Evaluation never looks at strings of the rule again.
use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashSet;

use super::{
    fields::{self, Field, Ty, Val},
    lang::{Expr, Glob, Lit, Op, Operand},
};
use crate::event::Event;

#[derive(Debug, Clone)]
pub(crate) enum StrTest {
    In(FxHashSet<String>),
    NotIn(FxHashSet<String>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    Contains(Vec<String>),
    Glob(Vec<Glob>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    And(Vec<Matcher>),
    Or(Vec<Matcher>),
    Not(Box<Matcher>),
    Str(Field, StrTest),
    Int(Field, IntOp, Vec<i64>),
    Bool(Field, bool),
    Exists(Field),
}

/// Whether some string of `v` (itself, or an element of a list) passes `f`; nothing passes
/// for a value that is not a string. No allocation: this runs for every string test.
fn any_str(v: &Val<'_>, mut f: impl FnMut(&str) -> bool) -> bool {
    match v {
        Val::Str(s) => f(s),
        Val::List(l) => l.iter().any(|s| f(s)),
        Val::Names(l) => l.iter().any(|s| f(s)),
        Val::Strings(l) => l.iter().any(|s| f(s)),
        _ => false,
    }
}

impl Matcher {
    pub(crate) fn matches(&self, e: &Event) -> bool {
        match self {
            Matcher::And(v) => v.iter().all(|m| m.matches(e)),
            Matcher::Or(v) => v.iter().any(|m| m.matches(e)),
            Matcher::Not(m) => !m.matches(e),
            Matcher::Exists(f) => fields::get(f, e) != Val::None,
            Matcher::Bool(f, want) => matches!(fields::get(f, e), Val::Bool(b) if b == *want),
            Matcher::Int(f, op, vals) => match fields::get(f, e) {
                Val::Int(x) => match op {
                    IntOp::Eq => vals.contains(&x),
                    IntOp::Ne => !vals.contains(&x),
                    IntOp::Lt => x < vals[0],
                    IntOp::Le => x <= vals[0],
                    IntOp::Gt => x > vals[0],
                    IntOp::Ge => x >= vals[0],
                },
                _ => false,
            },
            Matcher::Str(f, t) => {
                let v = fields::get(f, e);
                if v == Val::None {
                    return false;
                }
                match t {
                    StrTest::In(set) => any_str(&v, |s| set.contains(s)),
                    StrTest::NotIn(set) => !any_str(&v, |s| set.contains(s)),
                    StrTest::Prefix(p) => {
                        any_str(&v, |s| p.iter().any(|x| s.starts_with(x.as_str())))
                    }
                    StrTest::Suffix(p) => {
                        any_str(&v, |s| p.iter().any(|x| s.ends_with(x.as_str())))
                    }
                    StrTest::Contains(p) => {
                        any_str(&v, |s| p.iter().any(|x| s.contains(x.as_str())))
                    }
                    StrTest::Glob(g) => any_str(&v, |s| g.iter().any(|x| x.matches(s))),
                }
            }
        }
    }

    /// The event kinds this matcher can match, when it restricts them (`None`: any kind).
    pub(crate) fn kinds(&self) -> Option<HashSet<String>> {
        match self {
            Matcher::Str(Field::Static(i), StrTest::In(set))
                if fields::FIELDS[*i].name == "kind" =>
            {
                Some(set.iter().cloned().collect())
            }
            Matcher::And(v) => v
                .iter()
                .filter_map(Matcher::kinds)
                .reduce(|a, b| a.intersection(&b).cloned().collect()),
            Matcher::Or(v) => {
                let all: Option<Vec<_>> = v.iter().map(Matcher::kinds).collect();
                all.map(|sets| sets.into_iter().flatten().collect())
            }
            _ => None,
        }
    }
}

/// A compile error at a column of the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileError {
    pub(crate) col: usize,
    pub(crate) msg: String,
}

/// Lists and macros visible to conditions.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    pub(crate) lists: HashMap<String, Vec<String>>,
    pub(crate) macros: HashMap<String, String>,
}

fn looks_like_list_name(w: &str) -> bool {
    w.contains('_')
        && w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(crate) struct Compiler<'a> {
    scope: &'a Scope,
    /// Macros being expanded, to report cycles.
    stack: Vec<String>,
}

fn err<T>(col: usize, msg: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        col,
        msg: msg.into(),
    })
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(scope: &'a Scope) -> Self {
        Compiler {
            scope,
            stack: Vec::new(),
        }
    }

    /// Parses and compiles a condition.
    pub(crate) fn condition(&mut self, src: &str) -> Result<Matcher, CompileError> {
        let expr = super::lang::parse(src).map_err(|e| CompileError {
            col: e.col,
            msg: e.msg,
        })?;
        self.expr(&expr)
    }

    fn values(&self, v: &Operand, op: Op, col: usize) -> Result<Vec<Lit>, CompileError> {
        match v {
            Operand::One(l)
                if op == Op::In && !l.quoted && self.scope.lists.contains_key(&l.text) =>
            {
                self.expand(std::slice::from_ref(l))
            }
            Operand::One(l) => Ok(vec![l.clone()]),
            Operand::List(items) => {
                if !matches!(
                    op,
                    Op::In
                        | Op::StartsWith
                        | Op::EndsWith
                        | Op::Contains
                        | Op::Glob
                        | Op::Eq
                        | Op::Ne
                ) {
                    return err(
                        col,
                        format!("operator `{}` takes a single value, not a list", op.name()),
                    );
                }
                self.expand(items)
            }
        }
    }

    fn expand(&self, items: &[Lit]) -> Result<Vec<Lit>, CompileError> {
        let mut out = Vec::new();
        for l in items {
            match self.scope.lists.get(&l.text) {
                Some(list) if !l.quoted => out.extend(list.iter().map(|t| Lit {
                    text: t.clone(),
                    quoted: true,
                    col: l.col,
                })),
                // A bare lower_snake_case word in a list is a list name: a typo must not turn
                // into a value that never matches.
                None if !l.quoted && looks_like_list_name(&l.text) => {
                    return err(
                        l.col,
                        format!(
                            "undefined list `{}` (quote it to use it as a value)",
                            l.text
                        ),
                    );
                }
                _ => out.push(l.clone()),
            }
        }
        Ok(out)
    }

    fn expr(&mut self, e: &Expr) -> Result<Matcher, CompileError> {
        Ok(match e {
            Expr::And(v) => Matcher::And(v.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Or(v) => Matcher::Or(v.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?),
            Expr::Not(x) => Matcher::Not(Box::new(self.expr(x)?)),
            Expr::Exists { field, col } => Matcher::Exists(self.field(field, *col)?.0),
            Expr::Name { name, col } => {
                if let Some(src) = self.scope.macros.get(name) {
                    if self.stack.contains(name) {
                        return err(
                            *col,
                            format!(
                                "macro `{name}` refers to itself (through {})",
                                self.stack.join(" -> ")
                            ),
                        );
                    }
                    self.stack.push(name.clone());
                    let m = self.condition(src).map_err(|e| CompileError {
                        col: *col,
                        msg: format!("in macro `{name}`, column {}: {}", e.col, e.msg),
                    });
                    self.stack.pop();
                    return m;
                }
                match fields::lookup(name) {
                    Some((f, Ty::Bool)) => Matcher::Bool(f, true),
                    Some((_, ty)) => {
                        return err(
                            *col,
                            format!(
                                "field `{name}` is a {}: compare it (e.g. `{name} = ...` or `{name} exists`)",
                                ty.name()
                            ),
                        );
                    }
                    None => return err(*col, format!("undefined macro or unknown field `{name}`")),
                }
            }
            Expr::Cmp {
                field,
                op,
                value,
                col,
            } => {
                let (f, ty) = self.field(field, *col)?;
                let vals = self.values(value, *op, *col)?;
                if vals.is_empty() {
                    return err(*col, "empty list");
                }
                if field == "kind" {
                    for v in &vals {
                        if monitor_common::EventKind::from_name(&v.text).is_none() {
                            return err(v.col, format!("unknown event kind `{}`", v.text));
                        }
                    }
                }
                match ty {
                    Ty::Str | Ty::List => {
                        let texts = || vals.iter().map(|v| v.text.clone());
                        let test = match op {
                            Op::Eq | Op::In => StrTest::In(texts().collect()),
                            Op::Ne => StrTest::NotIn(texts().collect()),
                            Op::StartsWith => StrTest::Prefix(texts().collect()),
                            Op::EndsWith => StrTest::Suffix(texts().collect()),
                            Op::Contains => StrTest::Contains(texts().collect()),
                            Op::Glob => StrTest::Glob(
                                vals.iter()
                                    .map(|v| {
                                        Glob::new(&v.text).map_err(|m| CompileError {
                                            col: v.col,
                                            msg: format!("bad pattern: {m}"),
                                        })
                                    })
                                    .collect::<Result<_, _>>()?,
                            ),
                            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                                return err(
                                    *col,
                                    format!(
                                        "`{field}` is a {}: `{}` needs an integer field",
                                        ty.name(),
                                        op.name()
                                    ),
                                );
                            }
                        };
                        Matcher::Str(f, test)
                    }
                    Ty::Int => {
                        let ints = vals
                            .iter()
                            .map(|v| {
                                v.text.parse::<i64>().map_err(|_| CompileError {
                                    col: v.col,
                                    msg: format!("`{field}` is an integer, `{}` is not", v.text),
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let iop = match op {
                            Op::Eq | Op::In => IntOp::Eq,
                            Op::Ne => IntOp::Ne,
                            Op::Lt => IntOp::Lt,
                            Op::Le => IntOp::Le,
                            Op::Gt => IntOp::Gt,
                            Op::Ge => IntOp::Ge,
                            _ => {
                                return err(
                                    *col,
                                    format!(
                                        "`{}` does not apply to the integer field `{field}`",
                                        op.name()
                                    ),
                                );
                            }
                        };
                        if !matches!(iop, IntOp::Eq | IntOp::Ne) && ints.len() != 1 {
                            return err(*col, format!("`{}` takes one value", op.name()));
                        }
                        Matcher::Int(f, iop, ints)
                    }
                    Ty::Bool => {
                        let want = match (op, vals.as_slice()) {
                            (Op::Eq, [v]) | (Op::Ne, [v])
                                if v.text == "true" || v.text == "false" =>
                            {
                                (v.text == "true") == (*op == Op::Eq)
                            }
                            _ => {
                                return err(
                                    *col,
                                    format!(
                                        "`{field}` is a boolean: use `{field}`, `not {field}` or `{field} = true|false`"
                                    ),
                                );
                            }
                        };
                        Matcher::Bool(f, want)
                    }
                }
            }
        })
    }

    fn field(&self, name: &str, col: usize) -> Result<(Field, Ty), CompileError> {
        fields::lookup(name).ok_or_else(|| {
            let hint = fields::suggest(name)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            CompileError {
                col,
                msg: format!("unknown field `{name}`{hint}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::default();
        s.lists
            .insert("shells".into(), vec!["sh".into(), "bash".into()]);
        s.macros.insert("spawned".into(), "kind = exec".into());
        s.macros.insert("loop_a".into(), "loop_b".into());
        s.macros.insert("loop_b".into(), "loop_a".into());
        s
    }

    fn compile(src: &str) -> Result<Matcher, CompileError> {
        let sc = scope();
        Compiler::new(&sc).condition(src)
    }

    #[test]
    fn compile_errors_name_the_problem() {
        let cases = [
            (
                "proc.name = sh",
                "unknown field `proc.name` (did you mean `process.name`?)",
            ),
            ("process.pid = abc", "is an integer"),
            ("process.name > 3", "needs an integer field"),
            ("kind = nope", "unknown event kind `nope`"),
            ("undefined_macro", "undefined macro or unknown field"),
            (
                "process.name in (shell_binarie)",
                "undefined list `shell_binarie`",
            ),
            ("loop_a", "refers to itself"),
            ("file.path glob '[abc'", "bad pattern"),
            ("process.name", "compare it"),
            ("file.write = maybe", "is a boolean"),
            ("process.pid < (1, 2)", "takes a single value"),
        ];
        for (src, want) in cases {
            let e = compile(src).expect_err(src);
            assert!(e.msg.contains(want), "{src}: got `{}`", e.msg);
        }
    }

    #[test]
    fn kinds_are_extracted() {
        let m = compile("spawned and process.name in (shells)").expect("compile");
        assert_eq!(m.kinds(), Some(["exec".to_string()].into()));
        let m = compile("kind in (open, exec) and not kind = open").expect("compile");
        assert_eq!(
            m.kinds(),
            Some(["open".to_string(), "exec".to_string()].into())
        );
        let m = compile("kind = open or kind = exec").expect("compile");
        assert_eq!(m.kinds().map(|k| k.len()), Some(2));
        assert_eq!(
            compile("kind = open or process.pid = 1")
                .expect("compile")
                .kinds(),
            None
        );
    }
}
