//! Live reload: rules are reloaded on SIGHUP and when a rule file changes; a valid set is
//! published to the detector (which swaps between two events), an invalid one is rejected with
//! every error logged and the rules in force stay.
use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::{info, warn};

use super::{RuleError, RuleSet};
use crate::telemetry::Metrics;

/// Modification times of the rule files, to notice edits.
fn rule_mtimes(paths: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    for p in paths {
        out.push((
            p.clone(),
            std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        ));
        if let Ok(rd) = std::fs::read_dir(p) {
            let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files {
                out.push((
                    f.clone(),
                    std::fs::metadata(&f).and_then(|m| m.modified()).ok(),
                ));
            }
        }
    }
    out
}

/// Reloads rules on SIGHUP and when a rule file changes (checked every second). Invalid rules
/// are rejected with every error logged; the rules in force stay.
pub(crate) async fn watch_rules(
    paths: Vec<PathBuf>,
    load: impl Fn() -> Result<Arc<RuleSet>, Vec<RuleError>>,
    tx: watch::Sender<Arc<RuleSet>>,
    metrics: Metrics,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut last = rule_mtimes(&paths);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let reason = tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => "SIGHUP",
            _ = tick.tick() => {
                let now = rule_mtimes(&paths);
                if now == last { continue; }
                last = now;
                "rule file changed"
            }
        };
        metrics.rules_last_reload_time.set(Metrics::now_seconds());
        match load() {
            Ok(rs) => {
                info!(reason, rules = rs.len(), "rules reloaded");
                metrics.rules_loaded.set(rs.len() as i64);
                metrics.rules_reloads.with_label_values(&["success"]).inc();
                metrics.rules_last_reload_success.set(1);
                let _ = tx.send(rs);
            }
            Err(errors) => {
                metrics.rules_reloads.with_label_values(&["failure"]).inc();
                metrics.rules_last_reload_success.set(0);
                for e in &errors {
                    tracing::error!("{e}");
                }
                warn!(
                    reason,
                    errors = errors.len(),
                    "rule reload rejected; keeping the previous rules"
                );
            }
        }
    }
}
