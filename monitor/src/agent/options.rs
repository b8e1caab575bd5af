//! The one mapping from the configuration to what each stage is started with.
use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    config::{Config, SinkConfig, SinkKind},
    detect::{
        baseline::BaselineConfig,
        interest,
        rules::{RuleError, RuleSet, load_for_agent},
    },
    load::{LoadOptions, interest::KernelInterest},
    output::redact::{RedactError, Redactor},
};

/// What the agent runs as.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// `monitor trace`: every event that passes these filters, as JSON lines.
    Trace {
        kinds: Vec<String>,
        pids: Vec<u32>,
        comms: Vec<String>,
    },
    /// `monitor run`: alerts from rules and baselines, to the configured sinks.
    Run(RulesOptions),
}

/// Everything `agent::run` needs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) config: Config,
    pub(crate) mode: Mode,
    /// Write the final pipeline counters as JSON here on exit.
    pub(crate) stats_json: Option<PathBuf>,
    /// Create this file once probes are attached and the process table is seeded.
    pub(crate) ready_file: Option<PathBuf>,
}

impl Options {
    /// The kernel side's settings (cgroup filter ids are resolved at start), capturing
    /// `interest`.
    pub(crate) fn load(&self, interest: KernelInterest) -> LoadOptions {
        let c = &self.config.capture;
        LoadOptions {
            ring_bytes: c.ring_buffer_bytes,
            rings: c.pipeline_workers() as u32,
            cgroups: Vec::new(),
            interest,
            wakeup_bytes: c.wakeup_bytes,
            pin_dir: c.pin_dir.clone(),
            floor: false,
            fold_ms: u32::try_from(c.fold_window.0.as_millis()).unwrap_or(u32::MAX),
        }
    }
}

/// What the kernel captures for `monitor trace` (the kinds asked for), or everything when
/// `capture.interest_filter` is off.
pub(crate) fn trace_interest(config: &Config, kinds: &[String]) -> KernelInterest {
    if config.capture.interest_filter {
        interest::of_trace_kinds(kinds)
    } else {
        KernelInterest::everything()
    }
}

/// Where `monitor run` takes its rules from and sends its alerts.
#[derive(Debug, Clone)]
pub(crate) struct RulesOptions {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) builtin: bool,
    /// Learned baselines: their directory and settings (`None`: off).
    pub(crate) baselines: Option<(PathBuf, BaselineConfig)>,
    /// Where alerts go.
    pub(crate) sinks: Vec<SinkConfig>,
    /// Alerts note event loss within this window.
    pub(crate) drop_window: Duration,
    /// How long sinks may take to deliver what they hold at shutdown.
    pub(crate) shutdown_deadline: Duration,
    /// The agent's own files (binary, configuration, state, output), for the self-protection
    /// rules' `monitor_agent_files` list.
    pub(crate) agent_files: Vec<String>,
    /// Secret patterns to redact from alerts.
    pub(crate) redact: Redactor,
}

impl RulesOptions {
    /// From the configuration (and the file it came from, which the agent protects).
    pub(crate) fn from_config(
        c: &Config,
        config_file: Option<&std::path::Path>,
    ) -> Result<RulesOptions, RedactError> {
        let b = &c.baselines;
        let baselines = b.enabled.then(|| {
            let cfg = BaselineConfig {
                learn_for: b.learn.0,
                learn_events: b.learn_events,
                promote_after: b.promote_after,
                rate_per_minute: b.rate_per_minute,
                ..BaselineConfig::default()
            };
            (b.dir.clone(), cfg)
        });
        Ok(RulesOptions {
            paths: c.rules.paths.clone(),
            builtin: c.rules.builtin,
            baselines,
            sinks: c.sinks.clone(),
            drop_window: c.alerts.drop_window.0,
            shutdown_deadline: c.alerts.shutdown_deadline.0,
            agent_files: agent_files(c, config_file),
            redact: Redactor::new(c.alerts.redact_defaults, &c.alerts.redact)?,
        })
    }

    /// Loads and compiles the rules these options name.
    pub(crate) fn load(&self) -> Result<Arc<RuleSet>, Vec<RuleError>> {
        load_for_agent(&self.paths, self.builtin, &self.agent_files)
    }

    /// What the kernel must capture for `rules` and these options' baselines (everything when
    /// `filter` is off).
    pub(crate) fn interest(&self, rules: &RuleSet, filter: bool) -> interest::Derived {
        let mut d = interest::derive(rules, self.baselines.is_some());
        if !filter {
            d.interest = KernelInterest::everything();
        }
        d
    }
}

/// The agent's own paths: what the self-protection rules watch.
fn agent_files(c: &Config, config_file: Option<&std::path::Path>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        out.push(exe.display().to_string());
    }
    out.extend(config_file.map(|p| p.display().to_string()));
    out.extend(c.rules.paths.iter().map(|p| p.display().to_string()));
    if c.baselines.enabled {
        out.push(c.baselines.dir.display().to_string());
    }
    for s in &c.sinks {
        if let SinkKind::File { path, .. } = &s.kind {
            out.push(path.display().to_string());
        }
        out.extend(s.spool_dir.iter().map(|p| p.display().to_string()));
    }
    // Removing a pin while no agent runs detaches the programs: the trailing slash makes it a
    // directory watched by prefix even before the agent has created it.
    if let Some(dir) = &c.capture.pin_dir {
        out.push(format!(
            "{}/",
            dir.display().to_string().trim_end_matches('/')
        ));
    }
    out
}
