//! `monitor baseline`: show, export, import and reset learned profiles.
use std::path::PathBuf;

use clap::Subcommand;

use super::CliError;
use crate::detect::baseline::{ItemKind, store::Store};

#[derive(Subcommand)]
pub(crate) enum BaselineCmd {
    /// List profiles (workload, state, items per kind), or print one as YAML.
    Show { workload: Option<String> },
    /// Print a workload's profile as YAML (to review, edit, ship with the workload).
    Export { workload: String },
    /// Validate a YAML profile and hand it to the agent (applied within a second, or at start).
    Import { file: PathBuf },
    /// Forget a workload's profile (or all): it learns anew.
    Reset {
        workload: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

pub(super) fn run(dir: &std::path::Path, cmd: BaselineCmd) -> Result<(), CliError> {
    let store = Store::open(dir)?;
    match cmd {
        BaselineCmd::Show { workload: Some(w) } | BaselineCmd::Export { workload: w } => {
            let p = store.get(&w)?;
            print!("{}", serde_norway::to_string(&p).map_err(CliError::Yaml)?);
        }
        BaselineCmd::Show { workload: None } => {
            let (profiles, errors) = store.load_all();
            println!(
                "{:<48} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  stable since",
                "workload", "state", "exec", "write", "read", "conn", "listen", "priv"
            );
            for p in profiles {
                let n = |k: ItemKind| p.items.get(&k).map_or(0, |s| s.len());
                println!(
                    "{:<48} {:<10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}",
                    p.workload,
                    format!("{:?}", p.state).to_lowercase(),
                    n(ItemKind::Exec),
                    n(ItemKind::Write),
                    n(ItemKind::SensitiveRead),
                    n(ItemKind::Connect),
                    n(ItemKind::Listen),
                    n(ItemKind::Privilege),
                    p.stable_since
                );
            }
            for e in errors {
                eprintln!("warning: {e}");
            }
        }
        BaselineCmd::Import { file } => {
            let p = Store::read(&file)?;
            let queued = store.queue_import(&p)?;
            println!(
                "queued {} ({} items) as {}",
                p.workload,
                p.size(),
                queued.display()
            );
        }
        BaselineCmd::Reset { workload, all } => {
            let targets: Vec<String> = match (workload, all) {
                (Some(w), false) => vec![w],
                (None, true) => store.load_all().0.into_iter().map(|p| p.workload).collect(),
                _ => return Err(CliError::Usage("give a workload or --all".into())),
            };
            for w in targets {
                store.queue_reset(&w)?;
                // Without a running agent the profile goes now; a running one drops it within a second.
                let _ = store.remove(&w);
                println!("reset {w}");
            }
        }
    }
    Ok(())
}
