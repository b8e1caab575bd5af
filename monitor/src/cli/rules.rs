//! `monitor rules`: validate rule files, list the fields conditions can use.
use std::{path::PathBuf, process::ExitCode};

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
    /// List the fields conditions and outputs can use.
    Fields,
}

/// Runs a rules subcommand; invalid rules print every error and exit 1.
pub(super) fn run(cmd: RulesCmd) -> ExitCode {
    match cmd {
        RulesCmd::Fields => {
            for f in FIELDS {
                println!("{:<26} {:<8} {}", f.name, f.ty.name(), f.doc);
            }
            for (name, doc) in [
                ("pod.label[KEY]", "a pod label"),
                ("container.label[KEY]", "a container label"),
            ] {
                println!("{name:<26} {:<8} {doc}", Ty::Str.name());
            }
            ExitCode::SUCCESS
        }
        RulesCmd::Check {
            paths,
            with_defaults,
        } => {
            let mut sources = Vec::new();
            if paths.is_empty() || with_defaults {
                sources.push(RuleSource::Builtin);
            }
            sources.extend(paths.into_iter().map(RuleSource::Path));
            match load(&sources) {
                Ok(set) => {
                    println!("OK: {} rules", set.len());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors {
                        println!("{e}");
                    }
                    eprintln!("{} error(s)", errors.len());
                    ExitCode::FAILURE
                }
            }
        }
    }
}
