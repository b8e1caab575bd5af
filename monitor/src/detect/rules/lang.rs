//! The condition language: tokens, grammar, syntax tree.
//!
//! ```text
//! expr    := and ('or' and)*
//! and     := unary ('and' unary)*
//! unary   := 'not' unary | '(' expr ')' | field 'exists' | field OP operand | NAME
//! OP      := = != < <= > >= in contains startswith endswith glob
//! operand := value | '(' value (',' value)* ')'
//! value   := 'quoted' | "quoted" | bare-word | number     (a bare word in a list may name a list)
//! ```
//! A bare `NAME` is a macro or a boolean field. Field names are dotted words; label fields take a
//! key in brackets: `pod.label[app.kubernetes.io/name]`.

/// A syntax error at a column (1-based) of the condition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) col: usize,
    pub(crate) msg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    StartsWith,
    EndsWith,
    Glob,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Contains => "contains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
        }
    }
}

/// A literal as written; typed against its field at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lit {
    pub(crate) text: String,
    pub(crate) quoted: bool,
    pub(crate) col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operand {
    One(Lit),
    List(Vec<Lit>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        field: String,
        op: Op,
        value: Operand,
        col: usize,
    },
    Exists {
        field: String,
        col: usize,
    },
    /// A macro name or a boolean field.
    Name {
        name: String,
        col: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Op(Op),
    Word(String),
    Quoted(String),
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((Tok::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Tok::RParen, col));
                i += 1;
            }
            ',' => {
                out.push((Tok::Comma, col));
                i += 1;
            }
            '=' => {
                out.push((Tok::Op(Op::Eq), col));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push((Tok::Op(Op::Ne), col));
                i += 2;
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, eq) {
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    _ => Op::Gt,
                };
                out.push((Tok::Op(op), col));
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(SyntaxError {
                                col,
                                msg: "unterminated string".into(),
                            });
                        }
                        Some('\\') if chars.get(i + 1).is_some() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Quoted(s), col));
            }
            _ => {
                let start = i;
                let mut depth = 0;
                while i < chars.len() {
                    let ch = chars[i];
                    // Brackets (label keys) may hold any character but whitespace.
                    if ch == '[' {
                        depth += 1;
                    } else if ch == ']' && depth > 0 {
                        depth -= 1;
                    } else if depth == 0
                        && (ch.is_whitespace()
                            || "(),=<>\"'".contains(ch)
                            || (ch == '!' && chars.get(i + 1) == Some(&'=')))
                    {
                        break;
                    }
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                let tok = match w.as_str() {
                    "in" => Tok::Op(Op::In),
                    "contains" => Tok::Op(Op::Contains),
                    "startswith" => Tok::Op(Op::StartsWith),
                    "endswith" => Tok::Op(Op::EndsWith),
                    "glob" => Tok::Op(Op::Glob),
                    _ => Tok::Word(w),
                };
                out.push((tok, col));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.end_col)
    }
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            col: self.col(),
            msg: msg.into(),
        })
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.unary()?];
        while self.is_word("and") {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        let col = self.col();
        match self.peek().cloned() {
            Some(Tok::Word(w)) if w == "not" => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) if ["and", "or"].contains(&w.as_str()) => {
                self.err(format!("expected a condition before `{w}`"))
            }
            Some(Tok::Word(name)) => {
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Tok::Word(x)) if x == "exists" => {
                        self.pos += 1;
                        Ok(Expr::Exists { field: name, col })
                    }
                    Some(Tok::Op(op)) => {
                        self.pos += 1;
                        let value = self.operand()?;
                        Ok(Expr::Cmp {
                            field: name,
                            op,
                            value,
                            col,
                        })
                    }
                    _ => Ok(Expr::Name { name, col }),
                }
            }
            Some(_) => self.err("expected a field, a macro, `not` or `(`"),
            None => self.err("unexpected end of condition"),
        }
    }

    fn value(&mut self) -> Result<Lit, SyntaxError> {
        let col = self.col();
        match self.peek().cloned() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(Lit {
                    text: w,
                    quoted: false,
                    col,
                })
            }
            Some(Tok::Quoted(s)) => {
                self.pos += 1;
                Ok(Lit {
                    text: s,
                    quoted: true,
                    col,
                })
            }
            _ => self.err("expected a value"),
        }
    }

    fn operand(&mut self) -> Result<Operand, SyntaxError> {
        if self.peek() != Some(&Tok::LParen) {
            return Ok(Operand::One(self.value()?));
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(Operand::List(items));
        }
        loop {
            items.push(self.value()?);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(Tok::RParen) => {
                    self.pos += 1;
                    return Ok(Operand::List(items));
                }
                _ => return self.err("expected `,` or `)` in list"),
            }
        }
    }
}

/// Parses a condition.
pub(crate) fn parse(src: &str) -> Result<Expr, SyntaxError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(SyntaxError {
            col: 1,
            msg: "empty condition".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end_col: src.chars().count() + 1,
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the condition (missing `and`/`or`?)");
    }
    Ok(e)
}

/// A compiled shell-style pattern: `*` (any run, `/` included), `?` (one character), `[abc]`,
/// `[a-z]`, `[!x]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    parts: Vec<GlobPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobPart {
    Lit(char),
    Any,
    One,
    Class {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// The text every match starts with: the pattern up to its first wildcard.
    pub(crate) fn literal_prefix(&self) -> String {
        self.parts
            .iter()
            .map_while(|p| match p {
                GlobPart::Lit(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn new(p: &str) -> Result<Glob, String> {
        let cs: Vec<char> = p.chars().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            match cs[i] {
                '*' => {
                    if parts.last() != Some(&GlobPart::Any) {
                        parts.push(GlobPart::Any);
                    }
                    i += 1;
                }
                '?' => {
                    parts.push(GlobPart::One);
                    i += 1;
                }
                '[' => {
                    let mut j = i + 1;
                    let negate = cs.get(j) == Some(&'!');
                    if negate {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    let mut first = true;
                    while j < cs.len() {
                        if cs[j] == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        if cs.get(j + 1) == Some(&'-') && cs.get(j + 2).is_some_and(|c| *c != ']') {
                            ranges.push((cs[j], cs[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((cs[j], cs[j]));
                            j += 1;
                        }
                    }
                    if !closed {
                        return Err(format!("unclosed `[` in pattern `{p}`"));
                    }
                    parts.push(GlobPart::Class { negate, ranges });
                    i = j + 1;
                }
                c => {
                    parts.push(GlobPart::Lit(c));
                    i += 1;
                }
            }
        }
        Ok(Glob { parts })
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        // Walked by byte offsets at character boundaries: no copy of the string per test.
        let at = |i: usize| s.get(i..).and_then(|r| r.chars().next());
        // Iterative wildcard matching with one backtrack point (linear in practice).
        let (mut p, mut i) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = at(i) {
            let step = match self.parts.get(p) {
                Some(GlobPart::Lit(l)) => *l == c,
                Some(GlobPart::One) => true,
                Some(GlobPart::Class { negate, ranges }) => {
                    ranges.iter().any(|(a, b)| (*a..=*b).contains(&c)) != *negate
                }
                Some(GlobPart::Any) => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                None => false,
            };
            if step {
                p += 1;
                i += c.len_utf8();
            } else if let Some((sp, si)) = star {
                let next = si + at(si).map_or(1, char::len_utf8);
                p = sp + 1;
                i = next;
                star = Some((sp, next));
            } else {
                return false;
            }
        }
        self.parts[p..].iter().all(|x| *x == GlobPart::Any)
    }
}

#[cfg(test)]
mod tests;
