//! The hold queue: events of a container whose metadata is being fetched wait here, in arrival
//! order per container, until the answer arrives or their deadline passes.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::event::Event;

/// Events held at most, over all containers; beyond it they go out as `pending` at once.
pub(crate) const MAX_HELD: usize = 100_000;

struct Held {
    deadline: Instant,
    events: VecDeque<Event>,
}

/// Held events by container id.
pub(crate) struct HoldQueue {
    held: HashMap<String, Held>,
    count: usize,
    hold: Duration,
}

impl HoldQueue {
    /// A queue whose events wait at most `hold`.
    pub(crate) fn new(hold: Duration) -> HoldQueue {
        HoldQueue {
            held: HashMap::new(),
            count: 0,
            hold,
        }
    }

    /// True when no further event may be held.
    pub(crate) fn is_full(&self) -> bool {
        self.count >= MAX_HELD
    }

    /// True when nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds `e` behind the other events of container `id`.
    pub(crate) fn push(&mut self, id: String, e: Event, now: Instant) {
        let deadline = now + self.hold;
        self.held
            .entry(id)
            .or_insert_with(|| Held {
                deadline,
                events: VecDeque::new(),
            })
            .events
            .push_back(e);
        self.count += 1;
    }

    /// The earliest deadline of any container's events.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.deadline).min()
    }

    /// Takes the events of container `id`, in arrival order.
    pub(crate) fn take(&mut self, id: &str) -> VecDeque<Event> {
        let Some(h) = self.held.remove(id) else {
            return VecDeque::new();
        };
        self.count -= h.events.len();
        h.events
    }

    /// Containers whose deadline has passed.
    pub(crate) fn due(&self, now: Instant) -> Vec<String> {
        self.held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
