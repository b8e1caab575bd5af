//! Tracepoint formats from tracefs (`events/<group>/<name>/format`): field names and offsets of
//! the running kernel, so that no layout is hard-coded for one kernel version.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where tracefs is normally mounted, then the legacy location under debugfs.
pub(crate) const TRACEFS_CANDIDATES: [&str; 2] =
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub(crate) enum TracefsError {
    #[error(
        "tracefs is not mounted (looked for events/ under {0:?}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    NotMounted(Vec<String>),
    #[error("tracepoint {group}/{name} does not exist on this kernel ({path})")]
    NoTracepoint {
        group: String,
        name: String,
        path: PathBuf,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: malformed field description: {text}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{tracepoint}: field `{field}` not found")]
    MissingField { tracepoint: String, field: String },
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// The C declaration before the name, e.g. `__data_loc char[]` or `pid_t`.
    pub(crate) decl: String,
    pub(crate) offset: u32,
    pub(crate) size: u32,
}

/// Parsed format of one tracepoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Format {
    /// `group/name`, for error messages.
    pub(crate) name: String,
    pub(crate) fields: HashMap<String, Field>,
}

impl Format {
    /// Parses the text of a `format` file; `origin` names it in errors.
    pub(crate) fn parse(name: &str, text: &str, origin: &Path) -> Result<Format, TracefsError> {
        let mut fields = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let bad = || TracefsError::Malformed {
                path: origin.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            };
            // field:<decl> <name>[N];	offset:O;	size:S;	signed:X;
            let mut parts = rest.split(';').map(str::trim);
            let decl_name = parts.next().ok_or_else(bad)?;
            let mut offset = None;
            let mut size = None;
            for p in parts {
                if let Some(v) = p.strip_prefix("offset:") {
                    offset = v.parse::<u32>().ok();
                } else if let Some(v) = p.strip_prefix("size:") {
                    size = v.parse::<u32>().ok();
                }
            }
            let (offset, size) = (offset.ok_or_else(bad)?, size.ok_or_else(bad)?);
            let (decl, fname) = split_decl(decl_name).ok_or_else(bad)?;
            fields.insert(fname, Field { decl, offset, size });
        }
        Ok(Format {
            name: name.to_string(),
            fields,
        })
    }

    /// The field named `name`.
    pub(crate) fn field(&self, name: &str) -> Result<&Field, TracefsError> {
        self.fields
            .get(name)
            .ok_or_else(|| TracefsError::MissingField {
                tracepoint: self.name.clone(),
                field: name.to_string(),
            })
    }

    /// Offset of `name`, if the kernel has that field.
    pub(crate) fn offset(&self, name: &str) -> Option<u32> {
        self.fields.get(name).map(|f| f.offset)
    }
}

/// Splits `unsigned char comm[16]` into (`unsigned char []`, `comm`).
fn split_decl(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    let (head, array) = match s.find('[') {
        Some(i) if s.ends_with(']') && !s[..i].ends_with(' ') => (&s[..i], &s[i..]),
        _ => (s, ""),
    };
    let cut = head.rfind(|c: char| c.is_whitespace() || c == '*')?;
    let name = head[cut + 1..].trim();
    if name.is_empty() {
        return None;
    }
    let decl = format!("{}{}", head[..=cut].trim_end(), array);
    Some((decl, name.to_string()))
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub(crate) struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds a mounted tracefs among the usual places.
    pub(crate) fn find() -> Result<Tracefs, TracefsError> {
        for c in TRACEFS_CANDIDATES {
            if Path::new(c).join("events").is_dir() {
                return Ok(Tracefs {
                    root: PathBuf::from(c),
                });
            }
        }
        Err(TracefsError::NotMounted(
            TRACEFS_CANDIDATES.iter().map(|s| s.to_string()).collect(),
        ))
    }

    /// True when the tracepoint exists on this kernel.
    pub(crate) fn exists(&self, group: &str, name: &str) -> bool {
        self.root.join("events").join(group).join(name).is_dir()
    }

    /// Reads and parses `events/<group>/<name>/format`.
    pub(crate) fn format(&self, group: &str, name: &str) -> Result<Format, TracefsError> {
        let dir = self.root.join("events").join(group).join(name);
        if !dir.is_dir() {
            return Err(TracefsError::NoTracepoint {
                group: group.into(),
                name: name.into(),
                path: dir,
            });
        }
        let path = dir.join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Read {
            path: path.clone(),
            source,
        })?;
        Format::parse(&format!("{group}/{name}"), &text, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_618: &str = include_str!("../../tests/fixtures/tracefs/sched_process_fork.format");
    const OPENAT: &str = include_str!("../../tests/fixtures/tracefs/sys_enter_openat.format");
    const SOCK: &str = include_str!("../../tests/fixtures/tracefs/inet_sock_set_state.format");

    #[test]
    fn parses_data_loc_and_plain_fields() {
        let f = Format::parse("sched/sched_process_fork", FORK_618, Path::new("x")).expect("parse");
        let pc = f.field("parent_comm").expect("parent_comm");
        assert_eq!(pc.decl, "__data_loc char[]");
        assert_eq!((pc.offset, pc.size), (8, 4));
        assert_eq!(f.offset("child_pid"), Some(20));
        assert_eq!(f.offset("common_pid"), Some(4));
        assert!(f.field("nope").is_err());
    }

    #[test]
    fn parses_syscall_args() {
        let f = Format::parse("syscalls/sys_enter_openat", OPENAT, Path::new("x")).expect("parse");
        assert_eq!(f.offset("__syscall_nr"), Some(8));
        assert_eq!(f.offset("dfd"), Some(16));
        assert_eq!(f.offset("filename"), Some(24));
        assert_eq!(f.field("filename").expect("f").decl, "const char *");
        assert_eq!(f.offset("mode"), Some(40));
    }

    #[test]
    fn parses_arrays() {
        let f = Format::parse("sock/inet_sock_set_state", SOCK, Path::new("x")).expect("parse");
        let s = f.field("saddr_v6").expect("saddr_v6");
        assert_eq!(s.size, 16);
        assert_eq!(s.decl, "__u8[16]");
        assert!(f.offset("skaddr").is_some());
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let text = "name: x\nformat:\n\tfield:int a;\toffset:zz;\tsize:4;\n";
        let err = Format::parse("g/x", text, Path::new("/t/format")).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("/t/format") && msg.contains("line 3"), "{msg}");
    }
}
