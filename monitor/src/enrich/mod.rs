//! Container and pod attribution: cgroup -> container id (from the cgroup path) -> container,
//! image and pod metadata (from the runtime over CRI), cached, never blocking the pipeline.
//!
//! The [`Attributor`] answers synchronously from its cache; a miss sends the container id to the
//! [`resolver`] task and the event is held (see [`hold`]) until the answer comes back or a hold
//! deadline passes, when it goes out marked `pending`.
mod attributor;
pub(crate) mod cgroup;
mod cgroupfs;
pub(crate) mod cri;
pub(crate) mod hold;
mod resolver;
#[cfg(test)]
mod tests;
mod workload;

pub(crate) use attributor::{Attributor, AttributorConfig, Lookup};
pub(crate) use resolver::{RuntimeConn, resolver};
pub(crate) use workload::workload_of;
