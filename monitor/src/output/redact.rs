//! Secrets in command lines (`--password=...`, tokens, keys) are redacted from alerts before they
//! leave the node: the SIEM and everyone who reads it must not learn them from the monitor.
//!
//! Each pattern is a regular expression; when it has a group named `secret` only that group is
//! replaced by `***`, else the whole match is. In argument lists, an argument that is a bare
//! secret flag (`--password`, `--api-key`) also hides the argument after it.
use std::sync::Arc;

use regex::Regex;
use thiserror::Error;

use crate::{detect::Alert, event::Detail};

const MASK: &str = "***";

/// Secret-bearing names, as they appear in flags, variables and keys.
const NAMES: &str = r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?)";

/// The built-in patterns (on unless `alerts.redact_defaults: false`).
pub(crate) fn default_patterns() -> Vec<String> {
    vec![
        // key=value and key: value (flags, environment assignments, query strings, JSON-ish).
        format!(r#"(?i){NAMES}[a-z0-9_-]*(?:=|:)\s*(?P<secret>[^\s&;'",]+)"#),
        // --password VALUE on a command line.
        format!(r"(?i)(?:^|\s)--?[a-z0-9_-]*{NAMES}[a-z0-9_-]*\s+(?P<secret>[^\s-]\S*)"),
        // HTTP authorization headers and bare bearer tokens.
        r#"(?i)authorization:\s*(?:bearer|basic|token)\s+(?P<secret>[^\s'"]+)"#.into(),
        r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)".into(),
        // Passwords in URLs: scheme://user:password@host
        r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@".into(),
        // Well-known token shapes: AWS access key ids, GitHub and Slack tokens.
        r"\b(?P<secret>AKIA[0-9A-Z]{16})\b".into(),
        r"\b(?P<secret>gh[pousr]_[A-Za-z0-9]{36,})\b".into(),
        r"\b(?P<secret>xox[abprs]-[A-Za-z0-9-]{10,})\b".into(),
    ]
}

#[derive(Debug, Error)]
#[error("redaction pattern `{pattern}`: {source}")]
pub(crate) struct RedactError {
    pattern: String,
    source: regex::Error,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    patterns: Arc<Vec<Regex>>,
    /// A bare secret flag: the next argument is the secret.
    flag: Option<Arc<Regex>>,
}

impl Redactor {
    pub(crate) fn new(defaults: bool, extra: &[String]) -> Result<Redactor, RedactError> {
        let mut texts = if defaults {
            default_patterns()
        } else {
            Vec::new()
        };
        texts.extend(extra.iter().cloned());
        let mut patterns = Vec::new();
        for p in texts {
            let re = Regex::new(&p).map_err(|source| RedactError {
                pattern: p.clone(),
                source,
            })?;
            patterns.push(re);
        }
        let flag = if defaults {
            Some(Arc::new(
                Regex::new(&format!(r"(?i)^--?[a-z0-9_-]*{NAMES}[a-z0-9_-]*$")).map_err(
                    |source| RedactError {
                        pattern: "secret flag".into(),
                        source,
                    },
                )?,
            ))
        } else {
            None
        };
        Ok(Redactor {
            patterns: Arc::new(patterns),
            flag,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.flag.is_none()
    }

    /// The text with every secret masked; `None` when nothing matched.
    pub(crate) fn text(&self, s: &str) -> Option<String> {
        let mut cur: Option<String> = None;
        for re in self.patterns.iter() {
            let src = cur.as_deref().unwrap_or(s);
            if !re.is_match(src) {
                continue;
            }
            let mut out = String::with_capacity(src.len());
            let mut last = 0;
            for caps in re.captures_iter(src) {
                let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else {
                    continue;
                };
                out.push_str(&src[last..m.start()]);
                out.push_str(MASK);
                last = m.end();
            }
            out.push_str(&src[last..]);
            cur = Some(out);
        }
        cur
    }

    fn args(&self, args: &mut [String]) {
        let mut hide_next = false;
        for a in args.iter_mut() {
            if hide_next {
                *a = MASK.into();
                hide_next = false;
                continue;
            }
            if let Some(r) = self.text(a) {
                *a = r;
            }
            hide_next = self.flag.as_ref().is_some_and(|f| f.is_match(a));
        }
    }

    fn field(&self, s: &mut String) {
        if let Some(r) = self.text(s) {
            *s = r;
        }
    }

    /// Masks secrets in the alert's command lines, arguments and rendered message.
    pub(crate) fn alert(&self, a: &mut Alert) {
        if self.is_empty() {
            return;
        }
        let p = &mut a.event.process;
        // The event shares these with the process table: masked on a copy of the alert's own.
        let mut args = p.args.to_vec();
        self.args(&mut args);
        p.args = args.into();
        if let Some(r) = self.text(&p.command_line) {
            p.command_line = r.into();
        }
        if let Detail::Exec(x) = &mut a.event.detail {
            self.args(&mut x.args);
        }
        self.field(&mut a.output);
        if let Some(s) = &mut a.sequence {
            self.field(&mut s.summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(true, &[]).expect("defaults compile")
    }

    #[test]
    fn masks_common_secret_shapes() {
        let r = r();
        for (input, want) in [
            (
                "mysql --password=hunter2 -h db",
                "mysql --password=*** -h db",
            ),
            (
                "app --db-password hunter2 --port 1",
                "app --db-password *** --port 1",
            ),
            ("env API_KEY=abc123 run", "env API_KEY=*** run"),
            (
                "curl -H 'Authorization: Bearer eyJhbGciOi.x.y' https://x",
                "curl -H 'Authorization: Bearer ***' https://x",
            ),
            (
                "psql postgres://app:s3cr3t@db:5432/x",
                "psql postgres://app:***@db:5432/x",
            ),
            ("aws AKIAABCDEFGHIJKLMNOP", "aws ***"),
            (
                "wget http://x/?token=zzz&a=1",
                "wget http://x/?token=***&a=1",
            ),
        ] {
            assert_eq!(r.text(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(r.text("ls -la /tmp"), None);
        assert_eq!(r.text("cat /etc/passwd"), None);
    }

    #[test]
    fn argument_lists_hide_the_value_after_a_secret_flag() {
        let mut args: Vec<String> = ["app", "--token", "abc", "--name", "x", "--password=p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        r().args(&mut args);
        assert_eq!(
            args,
            ["app", "--token", "***", "--name", "x", "--password=***"]
        );
    }

    #[test]
    fn extra_patterns_and_errors() {
        let r = Redactor::new(false, &[r"--license[= ](?P<secret>\S+)".into()]).expect("ok");
        assert_eq!(
            r.text("x --license=ABC").as_deref(),
            Some("x --license=***")
        );
        assert_eq!(r.text("x --password=p"), None, "defaults off");
        let e = Redactor::new(false, &["(".into()]).expect_err("bad regex");
        assert!(e.to_string().contains("`(`"), "{e}");
    }
}
