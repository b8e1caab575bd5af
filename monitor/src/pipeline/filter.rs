//! `monitor trace` filters: which enriched events are wanted, by kind, process tree and name.
use std::collections::HashSet;

use monitor_common::EventKind;
use thiserror::Error;

use crate::event::Event;

/// A filter that cannot be built.
#[derive(Debug, Error)]
pub(crate) enum FilterError {
    /// `--kind` named no event kind.
    #[error("unknown event kind `{0}` (known: {1})")]
    UnknownKind(String, String),
}

/// Decides which enriched events go on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    kinds: HashSet<&'static str>,
    pids: HashSet<u32>,
    comms: HashSet<String>,
}

impl Filter {
    /// Events of these kinds (comma-separated lists allowed), of these processes and their
    /// descendants, with these names; an empty list allows everything.
    pub(crate) fn new(
        kinds: &[String],
        pids: &[u32],
        comms: &[String],
    ) -> Result<Filter, FilterError> {
        let mut k = HashSet::new();
        for name in kinds
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let kind = EventKind::from_name(name).ok_or_else(|| {
                let known: Vec<_> = EventKind::ALL
                    .iter()
                    .filter(|k| !k.is_internal())
                    .map(|k| k.name())
                    .collect();
                FilterError::UnknownKind(name.to_string(), known.join(", "))
            })?;
            k.insert(kind.name());
        }
        Ok(Filter {
            kinds: k,
            pids: pids.iter().copied().collect(),
            comms: comms.iter().cloned().collect(),
        })
    }

    /// A pid filter matches the process, its parent or any listed ancestor, so that a command
    /// and everything it starts are followed.
    pub(crate) fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(e.kind))
            && (self.pids.is_empty()
                || self.pids.contains(&e.process.pid)
                || e.process
                    .ancestors
                    .iter()
                    .any(|a| self.pids.contains(&a.pid)))
            && (self.comms.is_empty() || self.comms.iter().any(|c| **c == *e.process.comm))
    }
}
