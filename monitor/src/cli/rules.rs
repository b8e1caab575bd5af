//! `monitor rules`: validate rule files, list the fields conditions can use.
use std::{io::Write as _, path::PathBuf, process::ExitCode};

use clap::Subcommand;

use crate::detect::rules::{
    RuleSource,
    fields::{FIELDS, Ty},
    load,
};

#[derive(Subcommand)]
pub(crate) enum RulesCmd {
    /// Validate rule files (or directories of *.yaml); prints every error with file, line and
    /// rule, exits non-zero on any. Without paths, checks the built-in rules.
    Check {
        paths: Vec<PathBuf>,
        /// Check the paths together with the built-in rules (they may use its lists and macros).
        #[arg(long)]
        with_defaults: bool,
    },
    /// List the rules that are on (the built-in ones without paths): id, severity, tags and
    /// description, or one JSON array with `--json`.
    List {
        paths: Vec<PathBuf>,
        /// List the paths together with the built-in rules.
        #[arg(long)]
        with_defaults: bool,
        /// One JSON array of {id, severity, tags, kind, desc}.
        #[arg(long)]
        json: bool,
    },
    /// List the fields conditions and outputs can use.
    Fields,
}

fn sources(paths: Vec<PathBuf>, with_defaults: bool) -> Vec<RuleSource> {
    let mut sources = Vec::new();
    if paths.is_empty() || with_defaults {
        sources.push(RuleSource::Builtin);
    }
    sources.extend(paths.into_iter().map(RuleSource::Path));
    sources
}

fn print_errors(errors: &[impl std::fmt::Display]) -> ExitCode {
    for e in errors {
        println!("{e}");
    }
    eprintln!("{} error(s)", errors.len());
    ExitCode::FAILURE
}

/// Runs a rules subcommand; invalid rules print every error and exit 1.
pub(super) fn run(cmd: RulesCmd) -> ExitCode {
    match cmd {
        RulesCmd::Fields => {
            // Written without println!: a closed pipe (`| head`) ends the listing, not the process.
            let mut o = std::io::stdout().lock();
            for f in FIELDS {
                let _ = writeln!(o, "{:<26} {:<8} {}", f.name, f.ty.name(), f.doc);
            }
            for (name, doc) in [
                ("pod.label[KEY]", "a pod label"),
                ("container.label[KEY]", "a container label"),
            ] {
                let _ = writeln!(o, "{name:<26} {:<8} {doc}", Ty::Str.name());
            }
            ExitCode::SUCCESS
        }
        RulesCmd::Check {
            paths,
            with_defaults,
        } => match load(&sources(paths, with_defaults)) {
            Ok(set) => {
                println!("OK: {} rules", set.len());
                ExitCode::SUCCESS
            }
            Err(errors) => print_errors(&errors),
        },
        RulesCmd::List {
            paths,
            with_defaults,
            json,
        } => match load(&sources(paths, with_defaults)) {
            Ok(set) => {
                let rows: Vec<serde_json::Value> = set
                    .rules
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id,
                            "severity": r.severity.name(),
                            "tags": r.tags,
                            "kind": if r.sequence.is_some() { "sequence" } else { "condition" },
                            "desc": r.desc,
                        })
                    })
                    .collect();
                let mut o = std::io::stdout().lock();
                if json {
                    let _ = writeln!(o, "{}", serde_json::Value::Array(rows));
                } else {
                    for r in &set.rules {
                        let _ = writeln!(
                            o,
                            "{:<40} {:<9} {}",
                            r.id,
                            r.severity.name(),
                            r.tags.join(",")
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(errors) => print_errors(&errors),
        },
    }
}
