//! `cargo xtask bench`: overhead, throughput and drops of the agent against a no-agent baseline
//! measured in the same run. Needs root (the agent loads eBPF programs). Traffic stays on
//! loopback; container placements use a kubelet-style cgroup the bench creates and removes.
use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) root: PathBuf,
}

/// Syscall loops of the trigger, then the two realistic workloads: `server` (a loopback
/// network service under load, by the trigger) and `build` (compiles and a tree of file reads,
/// timed here).
const OPS: [&str; 6] = ["getpid", "openclose", "forkexec", "tcp", "server", "build"];

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Config {
    NoAgent,
    /// The mechanism floor: the agent's tracepoints with programs that return at once.
    Floor,
    AgentNoRules,
    AgentDefaultRules,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::NoAgent => "no agent",
            Config::Floor => "floor",
            Config::AgentNoRules => "agent, no rules",
            Config::AgentDefaultRules => "agent, default rules + baselines + file",
        }
    }
}

pub(crate) struct Agent {
    child: Child,
    dir: PathBuf,
    metrics_port: u16,
}

pub(crate) fn bin(root: &Path, name: &str) -> PathBuf {
    root.join("target/release").join(name)
}

impl Agent {
    pub(crate) fn start(
        root: &Path,
        cfg: Config,
        extra: &[&str],
        port: u16,
    ) -> anyhow::Result<Agent> {
        let dir = std::env::temp_dir().join(format!("monitor-bench-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let empty = dir.join("empty.yaml");
        std::fs::write(&empty, "")?;
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(bin(root, "monitor"));
        if cfg == Config::Floor {
            cmd.arg("bench-floor").arg("--ready-file").arg(&ready);
        } else {
            cmd.arg("run").arg("--ready-file").arg(&ready);
            // The default configuration learns baselines too; a bench of its own each time.
            if cfg == Config::AgentDefaultRules {
                cmd.arg("--baseline-dir").arg(dir.join("baselines"));
            } else {
                cmd.arg("--no-baselines");
            }
            cmd.args([
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--cri-socket",
                "/nonexistent/bench.sock",
            ]);
            cmd.arg("--stats-json").arg(dir.join("stats.json"));
            if cfg == Config::AgentNoRules {
                cmd.arg("--no-default-rules").arg("--rules").arg(&empty);
            }
            cmd.args(extra);
        }
        cmd.stdout(std::fs::File::create(dir.join("alerts.jsonl"))?)
            .stderr(std::fs::File::create(dir.join("stderr"))?);
        let child = cmd.spawn().context("starting monitor")?;
        let mut a = Agent {
            child,
            dir,
            metrics_port: port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if Instant::now() > deadline || a.child.try_wait()?.is_some() {
                bail!(
                    "agent did not start: {}",
                    std::fs::read_to_string(a.dir.join("stderr")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(a)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn metrics(&self) -> String {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return String::new();
        };
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    pub(crate) fn stop(mut self) -> anyhow::Result<Value> {
        run_quiet(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        self.child.wait()?;
        let stats =
            std::fs::read_to_string(self.dir.join("stats.json")).unwrap_or_else(|_| "{}".into());
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(serde_json::from_str(&stats)?)
    }
}

fn run_quiet(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Instructions the pipeline executes per record, decoding, building, judging and (with
/// `every`) writing it, on `events` of the bench's recorded events with one worker: callgrind
/// counts inside `monitor bench-pipeline`'s per-record function only, so neither start-up nor
/// making the records is in the figure. `None` when valgrind is not installed.
fn instructions_per_event(root: &Path, every: bool, events: u64) -> anyhow::Result<Option<f64>> {
    let mut c = Command::new("valgrind");
    c.args([
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--toggle-collect=*bench::Worker::take",
    ])
    .arg(bin(root, "monitor"))
    .args(["bench-pipeline", "--events", &events.to_string()]);
    if every {
        c.arg("--every-event");
    }
    let out = match c.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("{c:?}")),
    };
    if !out.status.success() {
        bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let collected = collected(&String::from_utf8_lossy(&out.stderr))
        .with_context(|| format!("{c:?} printed no `Collected :` line"))?;
    if collected == 0 {
        bail!("{c:?} counted no instruction inside the per-record function: was it renamed?");
    }
    // Every record the per-record function took: the timed ones and the warm-up before them.
    let report: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{c:?} printed no JSON report"))?;
    let taken = ["events", "warm_up"]
        .iter()
        .map(|k| report[*k].as_u64().unwrap_or(0))
        .sum::<u64>()
        .max(events);
    Ok(Some(collected as f64 / taken as f64))
}

/// The instruction count callgrind prints at exit (`==pid== Collected : N`).
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let (_, n) = l.split_once("Collected :")?;
        n.trim().replace(',', "").parse().ok()
    })
}

/// A kubelet/containerd-style cgroup (so the agent attributes it to a container).
struct BenchCgroup {
    top: PathBuf,
    leaf: PathBuf,
}

impl BenchCgroup {
    fn new(container: bool) -> anyhow::Result<BenchCgroup> {
        let root = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        let top = PathBuf::from(root).join(format!(
            "monitor-bench-{}-{}",
            std::process::id(),
            container as u8
        ));
        std::fs::create_dir_all(&top)?;
        let leaf = if container {
            let l = top
                .join("kubepods-besteffort-pod0f6c2b1e_3a4d_4e5f_8a9b_1c2d3e4f5a6b.slice")
                .join(format!("cri-containerd-{}.scope", "be".repeat(32)));
            std::fs::create_dir_all(&l)?;
            l
        } else {
            top.clone()
        };
        Ok(BenchCgroup { top, leaf })
    }

    /// Runs the trigger inside the cgroup and returns its JSON line.
    fn run(&self, root: &Path, args: &[&str]) -> anyhow::Result<Value> {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
            self.leaf.display()
        );
        let out = run_quiet(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(bin(root, "monitor-trigger"))
                .args(args),
        )?;
        serde_json::from_str(out.trim()).with_context(|| format!("trigger output {out}"))
    }
}

impl BenchCgroup {
    /// Runs a shell script inside the cgroup; returns its wall time in seconds.
    fn time_sh(&self, script: &str) -> anyhow::Result<f64> {
        let inner = format!("echo $$ > {}/cgroup.procs && {script}", self.leaf.display());
        let t = Instant::now();
        run_quiet(Command::new("sh").arg("-c").arg(inner))?;
        Ok(t.elapsed().as_secs_f64())
    }
}

/// The build-like workload: a C file compiled ten times (gcc execs its cc1 and as, opens
/// headers, writes objects) and `cat` of a tree of 10,000 small files.
struct BuildTree {
    dir: PathBuf,
}

impl BuildTree {
    fn new() -> anyhow::Result<BuildTree> {
        let dir = std::env::temp_dir().join(format!("monitor-bench-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in 0..100 {
            let sub = dir.join("tree").join(format!("d{d:03}"));
            std::fs::create_dir_all(&sub)?;
            for f in 0..100 {
                std::fs::write(
                    sub.join(format!("f{f:03}.txt")),
                    format!("{d} {f}\n").repeat(8),
                )?;
            }
        }
        std::fs::write(
            dir.join("main.c"),
            "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <errno.h>\n\
             static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }\n\
             int main(int argc, char **argv) { qsort(argv, argc, sizeof *argv, cmp);\n\
             for (int i = 0; i < argc; i++) printf(\"%s %d\\n\", argv[i], errno); return 0; }\n",
        )?;
        Ok(BuildTree { dir })
    }

    fn script(&self) -> String {
        let d = self.dir.display();
        format!(
            "for i in 0 1 2 3 4 5 6 7 8 9; do gcc -O1 -c {d}/main.c -o {d}/main$i.o || exit 1; done; \
             find {d}/tree -type f -exec cat {{}} + > /dev/null"
        )
    }
}

impl Drop for BuildTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let mut p = self.leaf.clone();
        while p.starts_with(&self.top) {
            let _ = std::fs::remove_dir(&p);
            if !p.pop() {
                break;
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub(crate) fn proc_stat(pid: u32) -> (f64, u64, u64) {
    // (cpu seconds, VmRSS kB, VmHWM kB)
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

/// One in this many events of the ramp and the sustained run is one the default rules alert on.
const MATCH_EVERY: u64 = 20;

/// Events of every kind dropped at `stage` (`kernel_ring`: the one place the agent loses them).
fn dropped(text: &str, stage: &str) -> u64 {
    let tag = format!("stage=\"{stage}\"");
    text.lines()
        .filter(|l| l.starts_with("monitor_events_dropped_total{") && l.contains(&tag))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

pub(crate) fn metric_sum(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

pub(crate) fn run(o: Opts) -> anyhow::Result<()> {
    let root = &o.root;
    let (rounds, millis, ramp_secs, sustain_secs) = if o.quick {
        (3, 1000, 4, 10)
    } else {
        (5, 3000, 10, 60)
    };
    eprintln!(
        "bench: {} ({} rounds, {} ms per measurement)",
        if o.quick { "quick" } else { "full" },
        rounds,
        millis
    );
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": run_quiet(Command::new("uname").arg("-r")).unwrap_or_default().trim(),
    });

    // 0. The user-space pipeline alone, first: nothing else runs yet. Median of 5, on one core
    //    (one worker) and with the worker pool on two.
    let pipe = |every: bool, workers: usize| -> anyhow::Result<Value> {
        let mut c = Command::new(bin(root, "monitor"));
        c.args([
            "bench-pipeline",
            "--events",
            // Not fewer, in quick mode either: runs of 300,000 (a tenth of a second with two
            // workers) moved the pool's ratio from 1.3x to 2x from one run to the next.
            "1000000",
            "--workers",
            &workers.to_string(),
        ]);
        if every {
            c.arg("--every-event");
        }
        Ok(serde_json::from_str(
            run_quiet(c.stdin(Stdio::null()))?.trim(),
        )?)
    };
    let median_of = |every: bool, workers: usize| -> anyhow::Result<Value> {
        let mut runs = (0..5)
            .map(|_| pipe(every, workers))
            .collect::<anyhow::Result<Vec<_>>>()?;
        runs.sort_by(|a, b| {
            a["events_per_sec"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["events_per_sec"].as_f64().unwrap_or(0.0))
        });
        Ok(runs.swap_remove(2))
    };
    let (p_run, p_trace) = (median_of(false, 1)?, median_of(true, 1)?);
    let (pool_run, pool_trace) = (median_of(false, 2)?, median_of(true, 2)?);
    let rate = |v: &Value| v["events_per_sec"].as_f64().unwrap_or(0.0);
    let ratio = |pool: &Value, one: &Value| rate(pool) / rate(one).max(1.0);
    println!(
        "User-space pipeline, one core: {:.0} events/s judging (run), {:.0} events/s writing every event (trace)",
        rate(&p_run),
        rate(&p_trace)
    );
    println!(
        "User-space pipeline, worker pool on two cores: {:.0} events/s judging ({:.2}x one core), {:.0} events/s trace ({:.2}x)",
        rate(&pool_run),
        ratio(&pool_run, &p_run),
        rate(&pool_trace),
        ratio(&pool_trace, &p_trace)
    );

    // Instructions per event, counted: unlike the rates above, this does not move with the
    // machine's speed or load, so a change to the pipeline can be judged by it to a fraction of
    // a percent.
    let counted = |every: bool| instructions_per_event(root, every, 100_000);
    let (i_run, i_trace) = (counted(false)?, counted(true)?);
    match (i_run, i_trace) {
        (Some(r), Some(t)) => println!(
            "User-space pipeline, instructions per event (callgrind, one worker): {r:.0} judging, {t:.0} writing every event"
        ),
        _ => println!(
            "User-space pipeline, instructions per event: skipped (valgrind is not installed)"
        ),
    }

    // 1. Micro-loops and workloads, interleaved: every round runs every config on both
    //    placements. The floor is the same tracepoints with programs that return at once.
    let configs = [
        Config::NoAgent,
        Config::Floor,
        Config::AgentNoRules,
        Config::AgentDefaultRules,
    ];
    let tree = BuildTree::new()?;
    let placements = [("host", false), ("container", true)];
    let mut samples: std::collections::BTreeMap<(usize, usize, usize), Vec<f64>> =
        Default::default();
    let mut rss_rest = Vec::new();
    for r in 0..rounds {
        for (ci, cfg) in configs.iter().enumerate() {
            let agent = match cfg {
                Config::NoAgent => None,
                _ => Some(Agent::start(root, *cfg, &[], 19750 + ci as u16)?),
            };
            if let Some(a) = &agent
                && *cfg == Config::AgentDefaultRules
            {
                std::thread::sleep(Duration::from_millis(500));
                rss_rest.push(proc_stat(a.pid()).1 as f64);
            }
            for (pi, (_, container)) in placements.iter().enumerate() {
                let cg = BenchCgroup::new(*container)?;
                for (oi, op) in OPS.iter().enumerate() {
                    let rate = if *op == "build" {
                        // Builds per second, so that every row reads the same way: as many
                        // whole builds as fit in the measurement time (at least one).
                        let (mut n, mut secs) = (0u32, 0.0);
                        while n == 0 || secs < millis as f64 / 1000.0 {
                            secs += cg.time_sh(&tree.script())?;
                            n += 1;
                        }
                        f64::from(n) / secs.max(1e-9)
                    } else {
                        let v = cg.run(root, &["bench", op, &millis.to_string()])?;
                        v["ops"].as_f64().unwrap_or(0.0) / v["secs"].as_f64().unwrap_or(1.0)
                    };
                    samples.entry((ci, pi, oi)).or_default().push(rate);
                }
            }
            if let Some(a) = agent {
                a.stop()?;
            }
            eprintln!("bench: round {}/{} {} done", r + 1, rounds, cfg.name());
        }
    }
    let mut micro = Vec::new();
    println!(
        "\nSyscall loops and workloads: median rate over {rounds} interleaved rounds (ops/s; build: builds/s),"
    );
    println!(
        "and throughput ratios in the same run (1.00 = no cost). floor = the agent's tracepoints with empty programs."
    );
    println!(
        "{:<10} {:<10} {:>12} {:>10} {:>16} {:>16} {:>16} {:>16}",
        "placement",
        "workload",
        "no agent",
        "floor/no",
        "no rules/no",
        "no rules/floor",
        "default/no",
        "default/floor"
    );
    for (pi, (place, _)) in placements.iter().enumerate() {
        for (oi, op) in OPS.iter().enumerate() {
            let m: Vec<f64> = (0..configs.len())
                .map(|ci| {
                    median(
                        samples
                            .get_mut(&(ci, pi, oi))
                            .map(|v| v.as_mut_slice())
                            .unwrap_or(&mut []),
                    )
                })
                .collect();
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            println!(
                "{:<10} {:<10} {:>12.1} {:>10.2} {:>16.2} {:>16.2} {:>16.2} {:>16.2}",
                place,
                op,
                m[0],
                ratio(m[1], m[0]),
                ratio(m[2], m[0]),
                ratio(m[2], m[1]),
                ratio(m[3], m[0]),
                ratio(m[3], m[1]),
            );
            micro.push(
                json!({"placement": place, "op": op, "no_agent": m[0], "floor": m[1],
                "agent_no_rules": m[2], "agent_default_rules": m[3],
                "floor_vs_no_agent": ratio(m[1], m[0]),
                "no_rules_vs_no_agent": ratio(m[2], m[0]), "no_rules_vs_floor": ratio(m[2], m[1]),
                "default_vs_no_agent": ratio(m[3], m[0]), "default_vs_floor": ratio(m[3], m[1])}),
            );
        }
    }
    drop(tree);

    // 2. Event-rate ramp with the default rules: highest rate without drops, CPU per 100k events.
    //    Every event is distinct (none folded in the kernel); one in MATCH_EVERY is a read the
    //    default rules alert on.
    println!(
        "\nEvent-rate ramp (distinct unlinks, 1 in {MATCH_EVERY} a credential read that alerts; default rules + file output), {ramp_secs} s per step"
    );
    println!(
        "{:>10} {:>12} {:>14} {:>18}",
        "target/s", "generated", "kernel drops", "agent CPU ms/100k"
    );
    let agent = Agent::start(root, Config::AgentDefaultRules, &[], 19760)?;
    let cg = BenchCgroup::new(false)?;
    let mut ramp = Vec::new();
    let mut best_zero = 0u64;
    for rate in [
        10_000u64, 25_000, 50_000, 100_000, 200_000, 400_000, 800_000,
    ] {
        let before = agent.metrics();
        let (cpu0, _, _) = proc_stat(agent.pid());
        let v = cg.run(
            root,
            &[
                "rate",
                &rate.to_string(),
                &(ramp_secs * 1000).to_string(),
                "/nonexistent/monitor-bench",
                &MATCH_EVERY.to_string(),
            ],
        )?;
        std::thread::sleep(Duration::from_millis(2500));
        let after = agent.metrics();
        let (cpu1, _, _) = proc_stat(agent.pid());
        let generated = v["generated"].as_u64().unwrap_or(0);
        let kd = dropped(&after, "kernel_ring") - dropped(&before, "kernel_ring");
        let cpu_per_100k = if generated > 0 {
            (cpu1 - cpu0) * 1000.0 * 100_000.0 / generated as f64
        } else {
            0.0
        };
        println!("{rate:>10} {generated:>12} {kd:>14} {cpu_per_100k:>18.1}");
        ramp.push(json!({"target_rate": rate, "generated": generated, "kernel_drops": kd, "agent_cpu_ms_per_100k": cpu_per_100k}));
        if kd == 0 {
            best_zero = rate;
        } else {
            break;
        }
    }
    let (_, _, hwm) = proc_stat(agent.pid());
    agent.stop()?;

    // 3. Sustained 50k events/s with the default rules.
    let agent = Agent::start(root, Config::AgentDefaultRules, &[], 19761)?;
    let before = agent.metrics();
    let (cpu0, _, _) = proc_stat(agent.pid());
    let sustained = cg.run(
        root,
        &[
            "rate",
            "50000",
            &(sustain_secs * 1000).to_string(),
            "/nonexistent/monitor-bench",
            &MATCH_EVERY.to_string(),
        ],
    )?;
    std::thread::sleep(Duration::from_millis(2500));
    let after = agent.metrics();
    let (cpu1, _, _) = proc_stat(agent.pid());
    let sustained_drops = dropped(&after, "kernel_ring") - dropped(&before, "kernel_ring");
    let sustained_generated = sustained["generated"].as_u64().unwrap_or(0);
    let sustained_cpu_per_1000 = if sustained_generated > 0 {
        (cpu1 - cpu0) * 1000.0 * 1000.0 / sustained_generated as f64
    } else {
        0.0
    };
    let alerts =
        metric_sum(&after, "monitor_alerts_total") - metric_sum(&before, "monitor_alerts_total");
    agent.stop()?;
    println!(
        "\nSustained 50k events/s for {sustain_secs} s: generated {sustained_generated} ({} alerting), drops {sustained_drops}, agent CPU {sustained_cpu_per_1000:.2} ms per 1000 events, {alerts} alerts delivered",
        sustained["matching"]
    );

    // 3b. Memory after a storm of short-lived processes, once their exit grace period (30 s)
    //     and the next sweep are over: what the agent keeps of them.
    let agent = Agent::start(root, Config::AgentDefaultRules, &[], 19763)?;
    std::thread::sleep(Duration::from_secs(2));
    let (_, storm_before, _) = proc_stat(agent.pid());
    let storm = cg.run(root, &["fork-storm", "16000", "25000"])?;
    let (_, storm_peak, _) = proc_stat(agent.pid());
    std::thread::sleep(Duration::from_secs(if o.quick { 35 } else { 65 }));
    let (_, storm_after, storm_hwm) = proc_stat(agent.pid());
    agent.stop()?;
    println!(
        "Process storm ({} short-lived processes): RSS {:.1} MiB before, {:.1} MiB at its end, {:.1} MiB after the grace period (peak {:.1} MiB)",
        storm["forked"],
        storm_before as f64 / 1024.0,
        storm_peak as f64 / 1024.0,
        storm_after as f64 / 1024.0,
        storm_hwm as f64 / 1024.0
    );

    // 4. Exact accounting under overload: a one-page ring filtered to the bench cgroup, every
    //    call captured (no rules would otherwise leave the unlinks out in the kernel).
    let flood = BenchCgroup::new(false)?;
    let agent = Agent::start(
        root,
        Config::AgentNoRules,
        &[
            "--cgroup",
            &flood.leaf.to_string_lossy(),
            "--ring-buffer-bytes",
            "4096",
            "--set",
            "capture.interest_filter=false",
            // The flood repeats one call: folded, it would never overflow the ring.
            "--set",
            "capture.fold_window=0s",
        ],
        19762,
    )?;
    // unlink-flood prints nothing (its output is not JSON): we know what we asked for.
    let _ = flood.run(
        root,
        &["unlink-flood", "300000", "/nonexistent/monitor-bench"],
    );
    let stats = agent.stop()?;
    let k = &stats["kernel"]["kinds"]["unlink"];
    let (sub, kd, filtered) = (
        k["submitted"].as_u64().unwrap_or(0),
        k["dropped"].as_u64().unwrap_or(0),
        k["filtered"].as_u64().unwrap_or(0),
    );
    let rec = stats["received"]["unlink"].as_u64().unwrap_or(0);
    let exact = sub + kd + filtered == 300_000 && rec == sub;
    println!(
        "Accounting under overload: generated 300000 = submitted {sub} + kernel drops {kd} + filtered {filtered}; received {rec}: {}",
        if exact { "exact" } else { "MISMATCH" }
    );

    let rss_rest_mib = median(&mut rss_rest) / 1024.0;
    println!(
        "Agent memory: RSS at rest {:.1} MiB (median), peak during ramp {:.1} MiB",
        rss_rest_mib,
        hwm as f64 / 1024.0
    );
    println!("Highest ramp rate with zero drops: {best_zero} events/s");

    let results = json!({
        "machine": machine, "quick": o.quick, "rounds": rounds, "millis": millis,
        "micro": micro, "ramp": ramp, "highest_zero_drop_rate": best_zero,
        "sustained_50k": {"secs": sustain_secs, "generated": sustained_generated, "matching": sustained["matching"], "drops": sustained_drops, "agent_cpu_ms_per_1000": sustained_cpu_per_1000, "alerts": alerts},
        "accounting": {"generated": 300000, "submitted": sub, "kernel_drops": kd, "filtered": filtered, "received": rec, "exact": exact},
        "pipeline": {"run": p_run, "trace": p_trace,
            "instructions_per_event": {"run": i_run, "trace": i_trace},
            "pool_2": {"run": pool_run, "trace": pool_trace,
                "run_ratio": ratio(&pool_run, &p_run), "trace_ratio": ratio(&pool_trace, &p_trace)}},
        "rss_rest_mib": rss_rest_mib, "rss_peak_mib": hwm as f64 / 1024.0,
        "storm": {"processes": storm["forked"], "rss_before_mib": storm_before as f64 / 1024.0,
            "rss_end_mib": storm_peak as f64 / 1024.0, "rss_after_grace_mib": storm_after as f64 / 1024.0,
            "rss_peak_mib": storm_hwm as f64 / 1024.0},
    });
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let file = out.join("results.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&results)?)?;
    println!("\nResults: {}", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::collected;

    /// What valgrind 3.19 prints at the end of a callgrind run.
    #[test]
    fn the_count_is_read_from_callgrinds_summary() {
        let stderr = "==10669== Callgrind, a call-graph generating cache profiler\n\
            ==10669== Events    : Ir\n\
            ==10669== Collected : 590615019\n\
            ==10669== \n\
            ==10669== I   refs:      590,615,019\n";
        assert_eq!(collected(stderr), Some(590_615_019));
        assert_eq!(collected("==1== I   refs: 5\n"), None);
    }
}
