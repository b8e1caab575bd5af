//! `monitor bench-pipeline` and `monitor bench-floor` (hidden, used by `cargo xtask bench`):
//! the user-space pipeline on records in memory, or the decoder's fuzzing corpus written out;
//! and the mechanism floor.
use std::{collections::HashSet, path::Path};

use super::CliError;
use crate::agent::bench;

/// Writes the first records of each distinct kind to `dir`.
pub(super) fn dump_records(dir: &Path) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        what: "writing records to",
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut seen = HashSet::new();
    for r in bench::records(2000) {
        let kind = r.get(..4).map(<[u8]>::to_vec);
        if seen.insert(kind) {
            let name = format!("record-{}", seen.len());
            std::fs::write(dir.join(name), &r).map_err(io)?;
        }
    }
    println!("{} records in {}", seen.len(), dir.display());
    Ok(())
}

/// Runs the pipeline over `events` records with `workers` workers and prints the figures as
/// JSON.
pub(super) fn pipeline(events: usize, every_event: bool, workers: usize) -> Result<(), CliError> {
    // The heap as the running agent has it.
    crate::pipeline::steady_heap();
    let report = bench::run(events, every_event, workers);
    println!(
        "{}",
        serde_json::to_string(&report).map_err(CliError::Json)?
    );
    Ok(())
}

/// The mechanism floor: the agent's tracepoints, each with a program that returns at once,
/// attached until SIGTERM or SIGINT. `ready` is written once they are.
pub(super) fn floor(ready: &Path) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let opts = crate::load::LoadOptions {
        floor: true,
        ..Default::default()
    };
    let loaded = crate::load::load(&opts)?;
    crate::load::log_probes(&loaded.probes);
    // Listening before the ready file says so: a SIGTERM right after it ends this cleanly.
    let stop = {
        let _rt = rt.enter();
        super::shutdown_signal()
    };
    std::fs::write(ready, b"ready\n").map_err(|source| CliError::Io {
        what: "writing the ready file",
        path: ready.to_path_buf(),
        source,
    })?;
    rt.block_on(stop);
    drop(loaded);
    Ok(())
}
