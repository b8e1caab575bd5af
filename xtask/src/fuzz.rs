//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/`, each for a bounded time.
//!
//! The targets are built here with the instrumentation flags `cargo fuzz` would pass (sancov
//! coverage, `--cfg fuzzing`, debug assertions), all four in one cargo invocation, so nothing
//! needs installing beyond the nightly toolchain. `cargo xtask fuzz` builds optimised with
//! AddressSanitizer; the smoke run of `cargo xtask test` builds unoptimised without it, which
//! compiles in about half the time and still replays the corpus and explores for a while.
//!
//! Each run starts from the corpus kept in the repository (`fuzz/corpus/<target>`, read only)
//! and writes what it discovers to `target/fuzz/corpus/<target>`; a crash stops the run with the
//! input saved under `target/fuzz/artifacts/<target>/` (add it to the corpus and a unit test once
//! fixed).
use std::{path::Path, process::Command};

use anyhow::{Context, bail};

pub(crate) const TARGETS: &[&str] = &["decode", "rules", "config", "cgroup"];

/// How the targets are built.
#[derive(Clone, Copy)]
pub(crate) enum Build {
    /// Optimised, with AddressSanitizer: for real fuzzing sessions.
    Thorough,
    /// Unoptimised, no sanitizer: the CI smoke run.
    Smoke,
}

/// The host triple the targets are built for (set explicitly so that build scripts and proc
/// macros are not instrumented, as cargo fuzz does).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

fn rustflags(build: Build) -> String {
    let mut f = vec![
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg=fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ];
    if let Build::Thorough = build {
        f.push("-Zsanitizer=address");
    }
    f.join(" ")
}

/// How the fuzz build shares the machine.
#[derive(Clone, Copy)]
pub(crate) enum Priority {
    /// As any command.
    Normal,
    /// At nice 19, beside the integration tests.
    Background,
}

/// The command that builds every fuzz target at once.
pub(crate) fn build_command(root: &Path, build: Build, priority: Priority) -> Command {
    let mut cmd = match priority {
        Priority::Normal => Command::new("cargo"),
        Priority::Background => {
            let mut c = Command::new("nice");
            c.args(["-n19", "cargo"]);
            c
        }
    };
    cmd.current_dir(root.join("fuzz"))
        .args(["+nightly", "build", "--target", TRIPLE, "--bins"])
        .env("RUSTFLAGS", rustflags(build))
        // The fuzz targets need the agent library, not its kernel programs.
        .env("AYA_BUILD_SKIP", "1");
    if let Build::Thorough = build {
        cmd.arg("--release");
    }
    cmd
}

/// Builds the targets, then runs them.
pub(crate) fn run(
    root: &Path,
    seconds: u64,
    only: Option<&str>,
    build: Build,
) -> anyhow::Result<()> {
    crate::run(&mut build_command(root, build, Priority::Normal))
        .context("building the fuzz targets")?;
    run_built(root, seconds, only, build)
}

/// Runs targets built by [`build_command`], each for `seconds`.
pub(crate) fn run_built(
    root: &Path,
    seconds: u64,
    only: Option<&str>,
    build: Build,
) -> anyhow::Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("unknown fuzz target `{t}` (known: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let profile = match build {
        Build::Thorough => "release",
        Build::Smoke => "debug",
    };
    let bins = root.join("fuzz/target").join(TRIPLE).join(profile);
    for t in targets {
        let work = root.join("target/fuzz/corpus").join(t);
        let artifacts = root.join("target/fuzz/artifacts").join(t);
        std::fs::create_dir_all(&work)?;
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("fuzz: {t} for {seconds} s");
        crate::run(
            Command::new(bins.join(t))
                .arg(&work)
                .arg(root.join("fuzz/corpus").join(t))
                .arg(format!("-max_total_time={seconds}"))
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-rss_limit_mb=2048")
                .arg("-print_final_stats=1"),
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
