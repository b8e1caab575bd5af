//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (cargo fuzz), each for a bounded time.
//!
//! Each run starts from the corpus kept in the repository (`fuzz/corpus/<target>`, read only)
//! and writes what it discovers to `target/fuzz/corpus/<target>`; a crash stops the run with the
//! input saved under `target/fuzz/artifacts/<target>/` (add it to the corpus and a unit test once
//! fixed).
use std::{path::Path, process::Command};

use anyhow::{Context, bail};

pub(crate) const TARGETS: &[&str] = &["decode", "rules", "config", "cgroup"];

fn cargo_fuzz_installed() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn run(root: &Path, seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    if !cargo_fuzz_installed() {
        crate::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
            .context("installing cargo-fuzz")?;
    }
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("unknown fuzz target `{t}` (known: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    for t in targets {
        let work = root.join("target/fuzz/corpus").join(t);
        let artifacts = root.join("target/fuzz/artifacts").join(t);
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("fuzz: {t} for {seconds} s");
        crate::run(
            Command::new("cargo")
                .current_dir(root)
                .args(["+nightly", "fuzz", "run", t])
                .arg(&work)
                .arg(root.join("fuzz/corpus").join(t))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-rss_limit_mb=2048")
                .arg("-print_final_stats=1")
                // The fuzz targets need the agent library, not its kernel programs.
                .env("AYA_BUILD_SKIP", "1"),
        )
        .with_context(|| {
            format!(
                "fuzz target `{t}` failed: the crashing input is in {}",
                artifacts.display()
            )
        })?;
    }
    Ok(())
}
