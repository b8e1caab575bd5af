//! The event model and its builder: a decoded kernel record plus what the process table knows
//! (and, once `enrich` has run, where it ran) as one [`Event`].
mod attribution;
mod build;
mod detail;
#[cfg(test)]
pub(crate) mod fixtures;
mod model;
mod names;
mod node;

pub(crate) use attribution::*;
pub(crate) use build::{build, learn};
pub(crate) use model::*;
#[cfg(test)]
pub(crate) use names::open_flag_names;
pub(crate) use names::{program_name, tcp_state_name};
pub(crate) use node::NodeContext;
#[cfg(test)]
pub(crate) use node::rfc3339;
