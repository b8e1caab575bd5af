//! Alerts: what rules, baselines and drop notices raise, shared by every detector and read by
//! the outputs.
use serde::Serialize;

use crate::{capture::drops::DropNotice, event::Event};

/// Context of the first event of a sequence, carried on its alert.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeqFirst {
    pub(crate) time: String,
    pub(crate) kind: &'static str,
    pub(crate) pid: u32,
    pub(crate) summary: String,
}

/// Dedup facts on an alert.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DedupInfo {
    /// Identical alerts this one stands for (1 unless folded).
    pub(crate) count: u64,
    pub(crate) first_seen: String,
    pub(crate) last_seen: String,
}

/// One alert: the rule's verdict and the whole event it is about.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alert {
    /// Unique id (agent run and sequence), stamped when the alert is handed to the sinks.
    pub(crate) id: String,
    pub(crate) source: &'static str,
    pub(crate) rule: String,
    pub(crate) severity: &'static str,
    pub(crate) tags: Vec<String>,
    pub(crate) output: String,
    pub(crate) description: String,
    pub(crate) dedup: DedupInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sequence: Option<SeqFirst>,
    /// For `source: anomaly`: what was new, in which profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) anomaly: Option<AnomalyInfo>,
    /// Events were being lost when this alert was raised: how many, where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drops: Option<DropNotice>,
    #[serde(flatten)]
    pub(crate) event: Event,
}

/// What a deviation alert says about the profile.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AnomalyInfo {
    pub(crate) kind: &'static str,
    /// The new item, as the profile would store it.
    pub(crate) item: String,
    pub(crate) profile: String,
    pub(crate) stable_since: String,
}
