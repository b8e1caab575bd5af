//! Developer tasks: `cargo xtask setup | build | run | test`.
//!
//! `setup` installs what building the kernel programs needs on a Debian machine of this project's
//! kind, idempotently: LLVM (for bpf-linker), bpf-linker itself, the nightly toolchain's rust-src.
//! `run` and `test` call it first, so a fresh clone needs nothing but cargo and root.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a developer command: it reports progress on stderr and results on stdout"
)]
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

mod bench;
mod deps;
mod fuzz;
mod image;
mod soak;
use clap::{Parser, Subcommand};

/// LLVM major version of Debian's packages and of the Rust toolchains' LLVM.
const LLVM_MAJOR: &str = "22";
/// bpf-linker release known to build against that LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages needed to build bpf-linker (only installed when bpf-linker is missing).
const APT_LINKER: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
/// Debian packages the build and the tests always need: protoc (CRI bindings), unshare
/// (util-linux), a real container runtime for the attribution tests, the Prometheus server and
/// promtool (package prometheus) to scrape the agent and test the alerting rules, kubectl
/// (kustomize) to render the manifests, buildah to build the image offline, rsyslog with its
/// TLS driver as the syslog receiver, openssl for the test certificates, and iproute2 for the
/// pod-shaped tests' network namespace; the benign suite's real programs: a C compiler, sqlite3
/// (a database writing its files) and logrotate; valgrind, whose callgrind counts the
/// pipeline's instructions per event in `cargo xtask bench`.
const APT_ALWAYS: &[&str] = &[
    "protobuf-compiler",
    "util-linux",
    "containerd",
    "runc",
    "busybox-static",
    "tar",
    "prometheus",
    "kubectl",
    "buildah",
    "rsyslog",
    "rsyslog-gnutls",
    "openssl",
    "iproute2",
    "gcc",
    "libc6-dev",
    "sqlite3",
    "logrotate",
    "valgrind",
];

/// Debian packages for Node.js and npm, installed only when no `npm` is on the machine (the
/// machine's own Node.js may ship npm and conflict with Debian's).
const APT_NODE: &[&str] = &["nodejs", "npm"];

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SMOKE_SECONDS: u64 = 20;

/// PyPI package validating the rendered manifests against the Kubernetes schemas.
/// PyPI packages: the Kubernetes schemas for the rendered manifests, the OCSF schema exports
/// (1.0.0 ... 1.8.0) and a JSON Schema validator for the alert conformance tests.
const PIP_ALWAYS: &[(&str, &str)] = &[
    ("kubernetes-validate", "kubernetes_validate"),
    ("ocsf-json-schema==1.2.0", "ocsf_json_schema"),
    ("jsonschema", "jsonschema"),
];

/// The ECS version the alerts are validated against, and the npm package that ships its field
/// table (`EcsFlat`).
const ECS_VERSION: &str = "9.4.0";

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install build prerequisites (apt packages, bpf-linker, nightly rust-src). Idempotent.
    Setup,
    /// Build the agent (with its kernel programs) in release mode.
    Build,
    /// Build and run the agent as root; arguments after `--` go to `monitor` (default: `run`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure overhead, throughput and drops against a no-agent baseline in one run (root).
    Bench {
        /// A shorter run (under 5 minutes).
        #[arg(long)]
        quick: bool,
    },
    /// Run the fuzz targets (cargo fuzz, libFuzzer) from the kept corpus, each for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (decode, rules, config, cgroup).
        target: Option<String>,
    },
    /// Run the agent under mixed load with faults injected for N minutes; report memory and
    /// counter trends (root; not part of CI).
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
    },
    /// Build the container image offline (buildah from scratch; root) and check it runs.
    Image,
    /// Check that the agent's modules depend one way (no cycle at any level of the tree).
    Deps {
        /// Source roots to check instead of the workspace's crates.
        src: Vec<PathBuf>,
    },
    /// Set up, then run the whole test suite: lints, unit tests and the root integration tests,
    /// and (as root) the container image build.
    Test {
        /// Skip clippy and rustfmt checks.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    home.join("bin").join(name)
}

fn bpf_linker_ok() -> bool {
    let path = cargo_bin("bpf-linker");
    Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

fn setup() -> anyhow::Result<()> {
    let need_linker = !bpf_linker_ok();
    let need_node = !succeeds(Command::new("npm").arg("--version"));
    let wanted = APT_ALWAYS
        .iter()
        .chain(if need_linker { APT_LINKER } else { &[] })
        .chain(if need_node { APT_NODE } else { &[] });
    let missing: Vec<&str> = wanted
        .copied()
        .filter(|p| !succeeds(Command::new("dpkg").args(["-s", p])))
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages {missing:?}; run `cargo xtask setup` as root or install them with apt-get"
            );
        }
        if !succeeds(Command::new("apt-get").arg("--version")) {
            bail!(
                "missing packages {missing:?} and no apt-get: install them by hand (LLVM {LLVM_MAJOR} dev files, protoc, containerd, runc, busybox)"
            );
        }
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if need_linker {
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{LLVM_MAJOR}"))
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM_MAJOR}")))
        .context(
            "installing bpf-linker (needs LLVM development files, see ../shared/TOOLCHAIN.md)",
        )?;
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .context("the kernel programs need a nightly toolchain (-Z build-std)")?;
    }
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup component list")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    for (package, module) in PIP_ALWAYS {
        if !succeeds(Command::new("python3").args(["-c", &format!("import {module}")])) {
            run(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                package,
            ]))
            .with_context(|| format!("installing {package} from PyPI"))?;
        }
    }
    ecs_schema()?;
    eprintln!("setup: prerequisites present (bpf-linker {BPF_LINKER_VERSION}, nightly rust-src)");
    Ok(())
}

/// Dumps the ECS field table of `@elastic/ecs` (npm) to `target/schemas/ecs-<version>.json` as
/// `{"version", "fields"}`, where `monitor/tests/schemas/validate.py` reads it. Idempotent.
fn ecs_schema() -> anyhow::Result<()> {
    let dir = workspace_root().join("target/schemas");
    let out = dir.join(format!("ecs-{ECS_VERSION}.json"));
    if out.exists() {
        return Ok(());
    }
    let npm = dir.join("npm");
    std::fs::create_dir_all(&npm).with_context(|| format!("creating {}", npm.display()))?;
    run(Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(&npm)
        .arg(format!("@elastic/ecs@{ECS_VERSION}")))
    .context("installing @elastic/ecs from the npm registry")?;
    let script = format!(
        "const e = require({:?}); require('fs').writeFileSync({:?}, JSON.stringify({{version: {ECS_VERSION:?}, fields: e.EcsFlat}}));",
        npm.join("node_modules/@elastic/ecs/build/commonjs/index.js"),
        out
    );
    run(Command::new("node").args(["-e", &script])).context("dumping the ECS field table")
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root);
    // bpf-linker lives in cargo's bin directory, which a root shell may not have on PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(dir) = cargo_bin("bpf-linker").parent()
        && !paths.iter().any(|p| p == dir)
    {
        paths.push(dir.to_path_buf());
    }
    if let Ok(joined) = std::env::join_paths(paths) {
        c.env("PATH", joined);
    }
    c
}

/// Crates whose module graphs must be acyclic.
const DEPS_CHECKED: &[&str] = &["monitor/src", "monitor-common/src", "xtask/src"];

fn deps_check(root: &Path) -> anyhow::Result<()> {
    for src in DEPS_CHECKED {
        let edges = deps::check(&root.join(src))?;
        eprintln!("deps: {src}: {edges} edges between sibling modules, no cycle");
    }
    Ok(())
}

/// Installs what is missing, then builds the agent and the trigger helper in release mode.
fn release_build(root: &Path) -> anyhow::Result<()> {
    setup()?;
    run(cargo(root).args([
        "build",
        "--release",
        "-p",
        "monitor",
        "-p",
        "monitor-trigger",
    ]))
}

/// The release build the integration tests run (`cargo test --release` unifies the features
/// of every workspace member and of the dev-dependencies, so its `monitor` differs from a
/// plain `cargo build` of it). The image packs this binary: the one the tests exercised, and
/// the one the pod-shaped tests expect to find in it.
fn tested_build(root: &Path) -> anyhow::Result<()> {
    setup()?;
    run(cargo(root).args(["build", "--release", "-p", "monitor-trigger"]))?;
    run(cargo(root).args(["test", "--release", "--no-run"]))
}

/// Runs one step of `cargo xtask test`, remembering how long it took.
fn step(
    times: &mut Vec<(&'static str, std::time::Duration)>,
    name: &'static str,
    f: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let r = f();
    times.push((name, t.elapsed()));
    eprintln!("xtask test: {name} took {:.0} s", t.elapsed().as_secs_f64());
    r
}

/// The whole suite, as CI runs it. One release build serves the tests and the image: the
/// integration tests run the release binaries, and the image packs the same `monitor`.
fn test(root: &Path, no_lint: bool, args: &[String]) -> anyhow::Result<()> {
    let mut times = Vec::new();
    step(&mut times, "setup", setup)?;
    if !no_lint {
        step(&mut times, "lint", || {
            deps_check(root)?;
            // Linting needs no kernel object: skip building it here (the test build makes it).
            run(cargo(root)
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .env("AYA_BUILD_SKIP", "1"))?;
            // The kernel crate only builds for the BPF target, with nightly: lint it alone.
            run(cargo(&root.join("monitor-ebpf")).args([
                "+nightly",
                "clippy",
                "--release",
                "-Z",
                "build-std=core",
                "--target",
                "bpfel-unknown-none",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
    }
    // The fuzz targets build in the background, at the lowest priority, while the integration
    // tests run: those mostly wait on the kernel and on receivers, which leaves CPU idle.
    let mut fuzz_build: Option<std::process::Child> = None;
    let tested = step(&mut times, "build and test", || {
        // The integration tests run the trigger helper from beside the agent's binary.
        run(cargo(root).args(["build", "--release", "-p", "monitor-trigger"]))?;
        run(cargo(root)
            .args(["test", "--release", "--no-run"])
            .args(args))?;
        // The pod-shaped tests run the agent from its image: build it from the binary the
        // tests use, before they run.
        if is_root() {
            image::build(root)?;
        }
        let mut fb = fuzz::build_command(root, fuzz::Build::Smoke, fuzz::Priority::Background);
        let log = root.join("target/fuzz-build.log");
        std::fs::create_dir_all(root.join("target"))?;
        let out = std::fs::File::create(&log)?;
        fb.stderr(out.try_clone()?).stdout(out);
        eprintln!("+ {fb:?} (background, log in {})", log.display());
        fuzz_build = Some(fb.spawn().context("starting the fuzz build")?);
        if !is_root() {
            eprintln!(
                "note: not root: the integration tests will report themselves skipped (they fail under CI=1)"
            );
        }
        run(cargo(root).args(["test", "--release"]).args(args))
    });
    if let Err(e) = tested {
        // Stop what runs in the background before reporting.
        if let Some(mut c) = fuzz_build.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(e);
    }
    // A smoke run of every fuzz target from the kept corpus.
    step(&mut times, "fuzz smoke", || {
        let status = match fuzz_build.take() {
            Some(mut c) => c.wait().context("waiting for the fuzz build")?,
            None => bail!("the fuzz build did not start"),
        };
        if !status.success() {
            let log =
                std::fs::read_to_string(root.join("target/fuzz-build.log")).unwrap_or_default();
            bail!("building the fuzz targets failed ({status}):\n{log}");
        }
        fuzz::run_built(root, FUZZ_SMOKE_SECONDS, None, fuzz::Build::Smoke)
    })?;
    let total: f64 = times.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let parts: Vec<String> = times
        .iter()
        .map(|(n, d)| format!("{n} {:.0} s", d.as_secs_f64()))
        .collect();
    eprintln!("xtask test: {} (total {total:.0} s)", parts.join(", "));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build => release_build(&root),
        Cmd::Run { args } => {
            release_build(&root)?;
            if !is_root() {
                bail!("the agent loads eBPF programs: run `cargo xtask run` as root");
            }
            let args = if args.is_empty() {
                vec!["run".to_string()]
            } else {
                args
            };
            run(Command::new(root.join("target/release/monitor")).args(args))
        }
        Cmd::Bench { quick } => {
            release_build(&root)?;
            if !is_root() {
                bail!("the bench runs the agent: run `cargo xtask bench` as root");
            }
            bench::run(bench::Opts { quick, root })
        }
        Cmd::Test { no_lint, args } => test(&root, no_lint, &args),
        Cmd::Fuzz { seconds, target } => {
            setup()?;
            fuzz::run(&root, seconds, target.as_deref(), fuzz::Build::Thorough)
        }
        Cmd::Soak { minutes } => {
            release_build(&root)?;
            if !is_root() {
                bail!("the soak runs the agent: run `cargo xtask soak` as root");
            }
            soak::run(&root, minutes)
        }
        Cmd::Deps { src } if !src.is_empty() => {
            for s in src {
                let edges = deps::check(&s)?;
                eprintln!(
                    "deps: {}: {edges} edges between sibling modules, no cycle",
                    s.display()
                );
            }
            Ok(())
        }
        Cmd::Deps { .. } => deps_check(&root),
        Cmd::Image => {
            tested_build(&root)?;
            image::build(&root).map(|_| ())
        }
    }
}
