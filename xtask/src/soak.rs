//! `cargo xtask soak --minutes N`: the agent under mixed load for a long time, with faults
//! injected on a schedule, reporting memory and counter trends. Not part of CI. Needs root.
//!
//! Load: file events at a steady rate (`monitor-trigger rate`), process churn
//! (`monitor-trigger fork-storm`), and bursts that overflow the ring buffer every 5 minutes.
//! Faults: the webhook receiver (run here, on loopback) answers 503 for 30 s of every 2
//! minutes; SIGHUP every minute, with a broken rule file every third time (then repaired).
//! Every 10 s a sample: agent RSS and CPU, events received, kernel drops, alerts,
//! sink deliveries, failures and drops. The summary gives the RSS slope over the second half
//! (KiB per minute: near zero means no growth) and writes `target/soak/results.json`.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;

use crate::bench::{Agent, Config, bin, metric_sum, proc_stat};

/// A keep-alive HTTP server answering 200, or 503 while `down` is set.
fn receiver(down: Arc<AtomicBool>) -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let down = down.clone();
            std::thread::spawn(move || {
                let Ok(mut w) = c.try_clone() else { return };
                let mut r = BufReader::new(c);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let status = if down.load(Ordering::Relaxed) {
                        503
                    } else {
                        200
                    };
                    let _ = write!(w, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    Ok(port)
}

fn slope_per_minute(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

pub(crate) fn run(root: &Path, minutes: u64) -> anyhow::Result<()> {
    let dir = root.join("target/soak");
    std::fs::create_dir_all(&dir)?;
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir)?;
    let rule_file = rules_dir.join("soak.yaml");
    let good = "- rule: soak_marker\n  desc: soak load marker\n  condition: kind = unlink and file.path startswith /tmp/monitor-soak-alert\n  severity: notice\n  output: \"{file.path}\"\n  dedup: false\n";
    std::fs::write(&rule_file, good)?;
    let down = Arc::new(AtomicBool::new(false));
    let port = receiver(down.clone())?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "sinks:\n  - {{type: file, path: '{}', max_bytes: 10485760, max_files: 2}}\n  - {{type: webhook, url: 'http://127.0.0.1:{port}/x', queue: 20000}}\n",
            dir.join("alerts.json").display()
        ),
    )?;
    let metrics_port = 47990;
    let agent = Agent::start(
        root,
        Config::AgentDefaultRules,
        &[
            "--config",
            &config.to_string_lossy(),
            "--rules",
            &rules_dir.to_string_lossy(),
        ],
        metrics_port,
    )?;
    let trigger = bin(root, "monitor-trigger");
    let total = Duration::from_secs(minutes * 60);
    let ms = (minutes * 60_000).to_string();
    let mut load = vec![
        Command::new(&trigger)
            .args(["rate", "20000", &ms, "/tmp/monitor-soak-absent"])
            .stdout(Stdio::null())
            .spawn()
            .context("file load")?,
        Command::new(&trigger)
            .args(["fork-storm", "500", &ms])
            .stdout(Stdio::null())
            .spawn()
            .context("process churn")?,
        // Alerts at ~5 a second: a marker unlink every 200 ms.
        Command::new(&trigger)
            .args(["rate", "5", &ms, "/tmp/monitor-soak-alert"])
            .stdout(Stdio::null())
            .spawn()
            .context("alert load")?,
    ];
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_hup = Instant::now();
    let mut hups = 0u32;
    let mut last_burst = Instant::now();
    eprintln!(
        "soak: {minutes} min; t(s) rss(KiB) cpu(s) received kernel_drop alerts delivered sink_fail sink_drop"
    );
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(10));
        let t = start.elapsed().as_secs();
        // Receiver: down 30 s of every 120 s.
        down.store(t % 120 >= 90, Ordering::Relaxed);
        if last_hup.elapsed() >= Duration::from_secs(60) {
            last_hup = Instant::now();
            hups += 1;
            if hups.is_multiple_of(3) {
                std::fs::write(&rule_file, "- rule: broken\n  condition: kind = nope\n")?;
            } else {
                std::fs::write(&rule_file, good)?;
            }
            let _ = Command::new("kill")
                .args(["-HUP", &agent.pid().to_string()])
                .status();
        }
        if last_burst.elapsed() >= Duration::from_secs(300) {
            last_burst = Instant::now();
            let _ = Command::new(&trigger)
                .args(["unlink-flood", "300000", "/tmp/monitor-soak-absent"])
                .stdout(Stdio::null())
                .status();
        }
        let (cpu, rss, _) = proc_stat(agent.pid());
        let m = agent.metrics();
        let s = json!({
            "t": t,
            "rss_kib": rss,
            "cpu_s": cpu,
            "received": metric_sum(&m, "monitor_events_received_total"),
            "alerts": metric_sum(&m, "monitor_alerts_total"),
            "delivered": metric_sum(&m, "monitor_sink_delivered_total"),
            "sink_failures": metric_sum(&m, "monitor_sink_failures_total"),
            "sink_dropped": metric_sum(&m, "monitor_sink_dropped_total"),
            "healthy": !m.is_empty(),
        });
        let dropped = |stage: &str| -> u64 {
            m.lines()
                .filter(|l| l.starts_with("monitor_events_dropped_total") && l.contains(stage))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        };
        let kernel = dropped("kernel_ring");
        eprintln!(
            "soak: {t:>5} {rss:>8} {cpu:>7.1} {:>10} {kernel:>10} {:>7} {:>9} {:>9} {:>9}",
            s["received"], s["alerts"], s["delivered"], s["sink_failures"], s["sink_dropped"]
        );
        let mut s = s;
        s["kernel_dropped"] = json!(kernel);
        samples.push(s);
    }
    for mut c in load.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::fs::write(&rule_file, good)?;
    let stats = agent.stop()?;
    let half: Vec<(f64, f64)> = samples
        .iter()
        .skip(samples.len() / 2)
        .filter_map(|s| Some((s["t"].as_f64()?, s["rss_kib"].as_f64()?)))
        .collect();
    let slope = slope_per_minute(&half);
    let peak = samples
        .iter()
        .filter_map(|s| s["rss_kib"].as_u64())
        .max()
        .unwrap_or(0);
    let summary = json!({
        "minutes": minutes,
        "rss_slope_kib_per_minute_second_half": slope,
        "rss_peak_kib": peak,
        "samples": samples,
        "final_stats": stats,
    });
    let out = dir.join("results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
    eprintln!(
        "soak: RSS slope over the second half {slope:+.1} KiB/min, peak {peak} KiB; {}",
        out.display()
    );
    Ok(())
}
