//! `cargo xtask deps`: the module graph of a crate, checked for cycles at every level.
//!
//! Modules come from the file layout (`a.rs`, `a/mod.rs`, `a/b.rs`) and inline `mod x {`
//! blocks; references from `crate::`, `super::` and `self::` paths, in `use` trees (with
//! nested groups) and in expressions. A reference from module `A` to `T` is an edge between the
//! two children of their deepest common ancestor that lead to them, so `crate::detect::rules`
//! using `crate::event` is an edge `detect -> event` under the crate root, and
//! `detect::rules` using `detect::baseline` one `rules -> baseline` under `detect`. A module
//! using its ancestors (re-exports, `super::*`) or descendants is no edge. Any cycle among
//! siblings fails the check, with one example reference (file and line) per edge.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// One module path, e.g. `["detect", "rules"]`; the crate root is empty.
type ModPath = Vec<String>;

/// A reference found in the source: from module, to path (modules then maybe an item), where.
struct Reference {
    from: ModPath,
    to: ModPath,
    file: PathBuf,
    line: usize,
}

/// Module path of a source file below `src`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if !matches!(stem, "mod" | "lib" | "main") {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            // A crate's other binaries (src/bin) are crates of their own.
            if dir.parent().is_some() && p.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The text with comments and string/char literals blanked (newlines kept, so line numbers
/// stay right).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'r' && (rest.starts_with(b"r\"") || rest.starts_with(b"r#")) {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = 2 + hashes;
            let end = text[i + start..]
                .find(&close)
                .map_or(rest.len(), |e| start + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let end = rest[2..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(rest.len(), |e| e + 3);
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// A small tokenizer: identifiers, `::`, and single punctuation.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((text[i..end].to_string(), line));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push(("::".into(), line));
        } else if !c.is_whitespace() {
            out.push((c.to_string(), line));
        }
    }
    out
}

/// Paths of a `use` tree or an expression path starting at `toks[i]` (after its first
/// segment `prefix`), expanded through nested `{...}` groups.
fn paths_from(toks: &[(String, usize)], mut i: usize, prefix: ModPath, out: &mut Vec<ModPath>) {
    let mut path = prefix;
    while i + 1 < toks.len() && toks[i].0 == "::" {
        let next = &toks[i + 1].0;
        if next == "{" {
            // Each comma-separated item of the group, at depth one.
            let mut j = i + 2;
            let mut start = true;
            let mut depth = 0;
            while j < toks.len() {
                match toks[j].0.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 0 => break,
                    "}" => depth -= 1,
                    "," if depth == 0 => start = true,
                    t if start && depth == 0 => {
                        start = false;
                        if t == "self" {
                            out.push(path.clone());
                        } else if t.chars().all(|c| c.is_alphanumeric() || c == '_') {
                            let mut p = path.clone();
                            p.push(t.to_string());
                            out.push(p.clone());
                            paths_from(toks, j + 1, p, out);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            return;
        }
        if next == "*" || !next.chars().all(|c| c.is_alphanumeric() || c == '_') {
            break;
        }
        path.push(next.clone());
        i += 2;
    }
    out.push(path);
}

/// Every module, and every reference, of the crate whose source root is `src`.
fn scan(src: &Path) -> anyhow::Result<(BTreeSet<ModPath>, Vec<Reference>)> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut modules = BTreeSet::new();
    let mut refs = Vec::new();
    for file in &files {
        let module = module_of(src, file);
        modules.insert(module.clone());
        let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let toks = tokens(&strip(&text));
        // Inline `mod x {` blocks: a module stack by brace depth.
        let mut stack: Vec<(String, i32)> = Vec::new();
        let mut depth = 0;
        let current = |stack: &[(String, i32)]| {
            let mut m = module.clone();
            m.extend(stack.iter().map(|(n, _)| n.clone()));
            m
        };
        for (i, (t, line)) in toks.iter().enumerate() {
            match t.as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if stack.last().is_some_and(|(_, d)| *d == depth) {
                        stack.pop();
                    }
                }
                "mod" if toks.get(i + 2).is_some_and(|(t, _)| t == "{") => {
                    if let Some((name, _)) = toks.get(i + 1) {
                        stack.push((name.clone(), depth));
                        modules.insert(current(&stack));
                    }
                }
                "crate" | "super" | "self"
                    if toks.get(i + 1).is_some_and(|(t, _)| t == "::")
                        && (i == 0 || toks[i - 1].0 != "::") =>
                {
                    let here = current(&stack);
                    // `k`: the `::` after the last prefix keyword (`super::super::` climbs two).
                    let (base, k) = match t.as_str() {
                        "crate" => (Vec::new(), i + 1),
                        "self" => (here.clone(), i + 1),
                        _ => {
                            let mut b = here.clone();
                            let mut j = i;
                            while toks.get(j).is_some_and(|(t, _)| t == "super")
                                && toks.get(j + 1).is_some_and(|(t, _)| t == "::")
                            {
                                b.pop();
                                j += 2;
                            }
                            (b, j - 1)
                        }
                    };
                    let mut paths = Vec::new();
                    paths_from(&toks, k, base, &mut paths);
                    for to in paths {
                        refs.push(Reference {
                            from: here.clone(),
                            to,
                            file: file.clone(),
                            line: *line,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    Ok((modules, refs))
}

/// Sibling edges, by parent module: (from child, to child) -> an example reference.
type Edges = BTreeMap<ModPath, BTreeMap<(String, String), String>>;

fn edges(modules: &BTreeSet<ModPath>, refs: &[Reference], src: &Path) -> Edges {
    let mut out: Edges = BTreeMap::new();
    for r in refs {
        // The longest module prefix of the target (the rest names an item).
        let mut to = r.to.clone();
        while !to.is_empty() && !modules.contains(&to) {
            to.pop();
        }
        let common = r.from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        if common >= r.from.len() || common >= to.len() {
            continue; // an ancestor or a descendant
        }
        let parent = r.from[..common].to_vec();
        let rel = r.file.strip_prefix(src).unwrap_or(&r.file);
        out.entry(parent)
            .or_default()
            .entry((r.from[common].clone(), to[common].clone()))
            .or_insert_with(|| format!("{}:{}", rel.display(), r.line));
    }
    out
}

/// The cycles of one sibling graph (each as a closed list of nodes), found by DFS.
fn cycles(graph: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in graph.keys() {
        adj.entry(a).or_default().push(b);
    }
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut seen_sets: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    fn dfs<'a>(
        node: &'a str,
        adj: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        out: &mut Vec<Vec<&'a str>>,
    ) {
        if let Some(pos) = stack.iter().position(|n| *n == node) {
            let mut c = stack[pos..].to_vec();
            c.push(node);
            out.push(c);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node);
        for next in adj.get(node).into_iter().flatten() {
            dfs(next, adj, stack, done, out);
        }
        stack.pop();
        done.insert(node);
    }
    let mut raw = Vec::new();
    let mut done = BTreeSet::new();
    for start in adj.keys() {
        dfs(start, &adj, &mut Vec::new(), &mut done, &mut raw);
    }
    for c in raw {
        let set: BTreeSet<String> = c.iter().map(|s| (*s).to_string()).collect();
        if seen_sets.insert(set) {
            found.push(c.iter().map(|s| (*s).to_string()).collect());
        }
    }
    found
}

/// Checks the crate whose source root is `src`; the error lists every cycle.
pub(crate) fn check(src: &Path) -> anyhow::Result<usize> {
    let (modules, refs) = scan(src)?;
    let graph = edges(&modules, &refs, src);
    let mut report = Vec::new();
    let mut n_edges = 0;
    for (parent, g) in &graph {
        n_edges += g.len();
        for c in cycles(g) {
            let at = if parent.is_empty() {
                "crate".to_string()
            } else {
                format!("crate::{}", parent.join("::"))
            };
            let mut lines = vec![format!("cycle under {at}: {}", c.join(" -> "))];
            for w in c.windows(2) {
                if let Some(ex) = g.get(&(w[0].clone(), w[1].clone())) {
                    lines.push(format!("    {} -> {} ({ex})", w[0], w[1]));
                }
            }
            report.push(lines.join("\n"));
        }
    }
    if !report.is_empty() {
        bail!(
            "{}: modules must depend one way\n{}",
            src.display(),
            report.join("\n")
        );
    }
    Ok(n_edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-deps-{}-{}",
            std::process::id(),
            files.len() * 31 + files.first().map_or(0, |f| f.1.len())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        dir
    }

    #[test]
    fn a_planted_cycle_fails_and_names_its_edges() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            ("b/mod.rs", "mod inner;\n"),
            ("b/inner.rs", "fn f() { crate::a::g(); }\n"),
        ]);
        let err = check(&dir).expect_err("cycle").to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains("cycle under crate: a -> b -> a"), "{err}");
        assert!(err.contains("b -> a (b/inner.rs:1)"), "{err}");
    }

    #[test]
    fn nested_groups_super_and_inline_modules_are_followed() {
        let dir = tree(&[
            ("lib.rs", "mod x;\nmod y;\n"),
            ("x/mod.rs", "mod p;\nmod q;\n"),
            // q -> p through a nested group, p -> q through super: a cycle under x.
            ("x/p.rs", "use super::{q::{self, Z}};\n"),
            (
                "x/q.rs",
                "// use super::p; is a comment\nmod t { use super::super::p::W; }\n",
            ),
            // One-way at the top: y uses x only.
            (
                "y.rs",
                "const S: &str = \"crate::x is text\";\nuse crate::x;\n",
            ),
        ]);
        let err = check(&dir).expect_err("cycle").to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains("cycle under crate::x: p -> q -> p"), "{err}");
        assert!(!err.contains("cycle under crate: "), "{err}");
    }

    #[test]
    fn ancestors_descendants_and_one_way_siblings_pass() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("a/mod.rs", "mod c;\npub use c::A;\n"),
            ("a/c.rs", "use super::super::b::B;\nuse crate::a::A as _;\n"),
            ("b.rs", "pub struct B;\n"),
        ]);
        let n = check(&dir).expect("no cycle");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(n, 1, "one edge: a -> b");
    }

    #[test]
    fn the_agent_has_no_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/src");
        let n = check(&src).unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 20, "too few edges found ({n}): the scanner is broken");
    }
}
