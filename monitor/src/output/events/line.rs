//! One event as a JSON line, written straight into a buffer: byte for byte what `serde_json`
//! writes for `Event` (the tests hold the two equal, for every kind of detail and for strings
//! that need escaping), at a fraction of the cost. Profiling `monitor trace` showed serde
//! spending a third of the pipeline's time scanning bytes one at a time (field names included)
//! and walking the flattened parts as maps; here field names are literals, strings are scanned
//! eight bytes at a time, and the parts of every event (process, container, pod) are written
//! directly. The rarer details still go through serde. A [`Lines`] writer also keeps the
//! rendered process and attribution of recent events: the next event of the same process or
//! container copies them instead of escaping the same strings again.
use std::{collections::BTreeMap, sync::Arc};

use rustc_hash::FxHashMap;

use crate::{
    event::{
        Attribution, CallResult, ContainerView, Detail, Event, ExecDetail, FileDetail, PodMeta,
        ProcessView, Status,
    },
    process::Source,
};

/// Appends literal bytes (field names, punctuation: nothing to escape).
macro_rules! lit {
    ($out:expr, $s:literal) => {
        $out.extend_from_slice($s.as_bytes())
    };
}

/// Appends `e` as one JSON object (no newline), rendering every part.
#[cfg(test)]
pub(crate) fn write(out: &mut Vec<u8>, e: &Event) -> serde_json::Result<()> {
    Lines::default().write(out, e)
}

/// Entries each cache holds at most; past that it starts again (a node's busy processes and
/// its containers are found again within a few events).
const CACHED: usize = 2048;

/// Writes events as JSON, keeping the rendered process (all but its thread id) and attribution
/// of recent events.
#[derive(Default)]
pub(crate) struct Lines {
    /// By the address of the process's shared `id`.
    processes: FxHashMap<usize, Rendered<ProcessView>>,
    /// By the address of the container's shared `id` (0: no container).
    attributions: FxHashMap<usize, Rendered<Attribution>>,
}

/// A part and its JSON. The part is kept (its strings are shared, so this copies none): while
/// it is held, an `Arc` at the same address is the same string.
struct Rendered<T> {
    part: T,
    json: Vec<u8>,
    /// For a process: where the thread id goes.
    split: usize,
}

impl Lines {
    /// Appends `e` as one JSON object (no newline).
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, e: &Event) -> serde_json::Result<()> {
        lit!(out, "{\"time\":");
        string(out, &e.time);
        lit!(out, ",\"kind\":");
        string(out, e.kind);
        lit!(out, ",\"node\":");
        string(out, &e.node);
        lit!(out, ",\"process\":");
        self.process(out, &e.process);
        lit!(out, ",\"cgroup_id\":");
        number(out, e.cgroup_id);
        if e.folded != 0 {
            lit!(out, ",\"folded\":");
            number(out, e.folded);
        }
        self.attribution(out, &e.attribution);
        detail(out, &e.detail)?;
        out.push(b'}');
        Ok(())
    }

    fn process(&mut self, out: &mut Vec<u8>, p: &ProcessView) {
        let key = Arc::as_ptr(&p.id).cast::<u8>() as usize;
        if let Some(r) = self.processes.get(&key)
            && same_process(&r.part, p)
        {
            let (head, tail) = r.json.split_at(r.split);
            out.extend_from_slice(head);
            number(out, p.tid);
            out.extend_from_slice(tail);
            return;
        }
        if self.processes.len() >= CACHED {
            self.processes.clear();
        }
        let mut json = Vec::with_capacity(256);
        let split = process(&mut json, p);
        let (head, tail) = json.split_at(split);
        out.extend_from_slice(head);
        number(out, p.tid);
        out.extend_from_slice(tail);
        self.processes.insert(
            key,
            Rendered {
                part: p.clone(),
                json,
                split,
            },
        );
    }

    fn attribution(&mut self, out: &mut Vec<u8>, a: &Attribution) {
        let key = a
            .container
            .as_ref()
            .map_or(0, |c| Arc::as_ptr(&c.id).cast::<u8>() as usize);
        if let Some(r) = self.attributions.get(&key)
            && same_attribution(&r.part, a)
        {
            out.extend_from_slice(&r.json);
            return;
        }
        if self.attributions.len() >= CACHED {
            self.attributions.clear();
        }
        let mut json = Vec::with_capacity(256);
        attribution(&mut json, a);
        out.extend_from_slice(&json);
        self.attributions.insert(
            key,
            Rendered {
                part: a.clone(),
                json,
                split: 0,
            },
        );
    }
}

/// Whether two views of a process render the same, thread id aside. Shared strings are
/// compared by address: the cached view holds its own, so the same address is the same text.
fn same_process(a: &ProcessView, b: &ProcessView) -> bool {
    a.pid == b.pid
        && a.ppid == b.ppid
        && Arc::ptr_eq(&a.id, &b.id)
        && a.comm == b.comm
        && Arc::ptr_eq(&a.exe, &b.exe)
        && Arc::ptr_eq(&a.args, &b.args)
        && Arc::ptr_eq(&a.command_line, &b.command_line)
        && match (&a.cwd, &b.cwd) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            (None, None) => true,
            _ => false,
        }
        && (a.uid, a.gid, a.euid, a.egid) == (b.uid, b.gid, b.euid, b.egid)
        && a.source == b.source
        && a.ancestors.len() == b.ancestors.len()
        && a.ancestors.iter().zip(&b.ancestors).all(|(x, y)| {
            x.pid == y.pid && Arc::ptr_eq(&x.id, &y.id) && Arc::ptr_eq(&x.exe, &y.exe)
        })
}

/// Whether two attributions render the same (shared parts compared by address, as above).
fn same_attribution(a: &Attribution, b: &Attribution) -> bool {
    fn same_arc<T: ?Sized>(x: Option<&Arc<T>>, y: Option<&Arc<T>>) -> bool {
        match (x, y) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            (None, None) => true,
            _ => false,
        }
    }
    let containers = match (&a.container, &b.container) {
        (Some(x), Some(y)) => {
            Arc::ptr_eq(&x.id, &y.id)
                && Arc::ptr_eq(&x.runtime, &y.runtime)
                && x.pod_uid_from_cgroup == y.pod_uid_from_cgroup
                && same_arc(x.meta.as_ref(), y.meta.as_ref())
        }
        (None, None) => true,
        _ => false,
    };
    containers && same_arc(a.pod.as_ref(), b.pod.as_ref()) && a.metadata == b.metadata
}

/// Writes the process; returns where its thread id goes (which it leaves out).
fn process(out: &mut Vec<u8>, p: &ProcessView) -> usize {
    lit!(out, "{\"pid\":");
    number(out, p.pid);
    lit!(out, ",\"tid\":");
    let split = out.len();
    lit!(out, ",\"id\":");
    string(out, &p.id);
    lit!(out, ",\"ppid\":");
    number(out, p.ppid);
    lit!(out, ",\"comm\":");
    string(out, &p.comm);
    lit!(out, ",\"exe\":");
    string(out, &p.exe);
    lit!(out, ",\"args\":");
    strings(out, p.args.iter().map(String::as_str));
    lit!(out, ",\"command_line\":");
    string(out, &p.command_line);
    if let Some(cwd) = &p.cwd {
        lit!(out, ",\"cwd\":");
        string(out, cwd);
    }
    lit!(out, ",\"uid\":");
    number(out, p.uid);
    lit!(out, ",\"gid\":");
    number(out, p.gid);
    lit!(out, ",\"euid\":");
    number(out, p.euid);
    lit!(out, ",\"egid\":");
    number(out, p.egid);
    lit!(out, ",\"source\":");
    out.extend_from_slice(match p.source {
        Source::Exec => b"\"exec\"",
        Source::Procfs => b"\"procfs\"",
        Source::Unknown => b"\"unknown\"",
    });
    lit!(out, ",\"ancestors\":[");
    for (i, a) in p.ancestors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        lit!(out, "{\"pid\":");
        number(out, a.pid);
        lit!(out, ",\"id\":");
        string(out, &a.id);
        lit!(out, ",\"exe\":");
        string(out, &a.exe);
        out.push(b'}');
    }
    lit!(out, "]}");
    split
}

/// The flattened `container`, `pod` and `metadata` fields, each with its leading comma.
fn attribution(out: &mut Vec<u8>, a: &Attribution) {
    if let Some(c) = &a.container {
        lit!(out, ",\"container\":");
        container(out, c);
    }
    if let Some(p) = &a.pod {
        lit!(out, ",\"pod\":");
        pod(out, p);
    }
    lit!(out, ",\"metadata\":{\"status\":");
    out.extend_from_slice(match a.metadata.status {
        Status::Complete => b"\"complete\"",
        Status::Pending => b"\"pending\"",
        Status::Missing => b"\"missing\"",
    });
    lit!(out, ",\"scope\":");
    string(out, a.metadata.scope);
    if let Some(r) = &a.metadata.reason {
        lit!(out, ",\"reason\":");
        string(out, r);
    }
    out.push(b'}');
}

fn container(out: &mut Vec<u8>, c: &ContainerView) {
    lit!(out, "{\"id\":");
    string(out, &c.id);
    lit!(out, ",\"runtime\":");
    string(out, &c.runtime);
    if let Some(uid) = &c.pod_uid_from_cgroup {
        lit!(out, ",\"pod_uid_from_cgroup\":");
        string(out, uid);
    }
    // The runtime's metadata is flattened into the same object (its `id` repeats the one
    // above, as serde writes it).
    if let Some(m) = &c.meta {
        lit!(out, ",\"id\":");
        string(out, &m.id);
        lit!(out, ",\"name\":");
        string(out, &m.name);
        lit!(out, ",\"image\":");
        string(out, &m.image);
        lit!(out, ",\"image_digest\":");
        string(out, &m.image_digest);
        lit!(out, ",\"sandbox\":");
        boolean(out, m.sandbox);
        if !m.labels.is_empty() {
            lit!(out, ",\"labels\":");
            map(out, &m.labels);
        }
    }
    out.push(b'}');
}

fn pod(out: &mut Vec<u8>, p: &PodMeta) {
    lit!(out, "{\"name\":");
    string(out, &p.name);
    lit!(out, ",\"namespace\":");
    string(out, &p.namespace);
    lit!(out, ",\"uid\":");
    string(out, &p.uid);
    lit!(out, ",\"labels\":");
    map(out, &p.labels);
    lit!(out, ",\"workload\":");
    match &p.workload {
        Some(w) => {
            lit!(out, "{\"kind\":");
            string(out, w.kind);
            lit!(out, ",\"name\":");
            string(out, &w.name);
            out.push(b'}');
        }
        None => lit!(out, "null"),
    }
    out.push(b'}');
}

/// The detail, flattened: `,"<kind>":{...}`. Exec and file details (most events) are written
/// here; the others through serde.
fn detail(out: &mut Vec<u8>, d: &Detail) -> serde_json::Result<()> {
    match d {
        Detail::Exec(x) => exec(out, x),
        Detail::File(x) => file(out, x),
        Detail::Fork(x) => serde_part(out, b",\"fork\":", x)?,
        Detail::Exit(x) => serde_part(out, b",\"exit\":", x)?,
        Detail::Network(x) => serde_part(out, b",\"network\":", x)?,
        Detail::Tcp(x) => serde_part(out, b",\"tcp\":", x)?,
        Detail::Privilege(x) => serde_part(out, b",\"privilege\":", x)?,
        Detail::Signal(x) => serde_part(out, b",\"signal\":", x)?,
    }
    Ok(())
}

/// `key` (a literal with its leading comma and colon), then `x` as serde writes it.
fn serde_part<T: serde::Serialize>(out: &mut Vec<u8>, key: &[u8], x: &T) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    serde_json::to_writer(&mut *out, x)
}

fn exec(out: &mut Vec<u8>, x: &ExecDetail) {
    lit!(out, ",\"exec\":{\"filename\":");
    string(out, &x.filename);
    lit!(out, ",\"args\":");
    strings(out, x.args.iter().map(String::as_str));
    lit!(out, ",\"args_truncated\":");
    boolean(out, x.args_truncated);
    lit!(out, ",\"filename_truncated\":");
    boolean(out, x.filename_truncated);
    out.push(b'}');
}

fn file(out: &mut Vec<u8>, x: &FileDetail) {
    lit!(out, ",\"file\":{");
    call(out, &x.call);
    lit!(out, ",\"path\":");
    match &x.path {
        Some(p) => string(out, p),
        None => lit!(out, "null"),
    }
    if let Some(p) = &x.raw_path {
        lit!(out, ",\"raw_path\":");
        string(out, p);
    }
    if let Some(t) = &x.target {
        lit!(out, ",\"target\":");
        string(out, t);
    }
    if let Some(f) = x.flags {
        lit!(out, ",\"flags\":");
        number(out, f);
    }
    if !x.flag_names.is_empty() {
        lit!(out, ",\"flag_names\":");
        strings(out, x.flag_names.iter().copied());
    }
    if let Some(m) = &x.mode {
        lit!(out, ",\"mode\":");
        string(out, m);
    }
    if let Some(u) = x.owner_uid {
        lit!(out, ",\"owner_uid\":");
        number(out, u);
    }
    if let Some(g) = x.owner_gid {
        lit!(out, ",\"owner_gid\":");
        number(out, g);
    }
    lit!(out, ",\"truncated\":");
    boolean(out, x.truncated);
    out.push(b'}');
}

/// A call's result, flattened (no braces).
fn call(out: &mut Vec<u8>, c: &CallResult) {
    lit!(out, "\"syscall\":");
    string(out, c.syscall);
    lit!(out, ",\"result\":");
    number(out, c.result);
    if let Some(e) = c.error {
        lit!(out, ",\"error\":");
        string(out, e);
    }
    if let Some(v) = c.via {
        lit!(out, ",\"via\":");
        string(out, v);
    }
}

fn number<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn strings<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

fn map(out: &mut Vec<u8>, m: &BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        string(out, v);
    }
    out.push(b'}');
}

/// Eight copies of a byte.
const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Whether any of the eight bytes of `w` needs escaping: a control character (below 0x20), a
/// quote or a backslash. Exact in the absence of such bytes, so a clean word is never escaped;
/// a word it flags is looked at byte by byte.
fn word_needs_escape(w: u64) -> bool {
    const HIGH: u64 = splat(0x80);
    let has_zero = |v: u64| v.wrapping_sub(splat(1)) & !v & HIGH != 0;
    let below_space = w.wrapping_sub(splat(0x20)) & !w & HIGH != 0;
    below_space || has_zero(w ^ splat(b'"')) || has_zero(w ^ splat(b'\\'))
}

/// `s` as a JSON string, escaped as serde_json escapes it: the two-character forms for `"`,
/// `\`, backspace, form feed, newline, carriage return and tab, `\u00xx` (lower-case hex) for
/// the other control characters, everything else (UTF-8 included) as is.
fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !word_needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            let short = match b {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                0x08 => Some(b'b'),
                0x0c => Some(b'f'),
                b'\n' => Some(b'n'),
                b'\r' => Some(b'r'),
                b'\t' => Some(b't'),
                _ if b < 0x20 => None,
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[start..i]);
            match short {
                Some(c) => out.extend_from_slice(&[b'\\', c]),
                None => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests;
