//! The root integration tests of the agent, one binary (one build, shared helpers): each module
//! is a topic, `common` is the harness (the real agent, cgroups, containers, receivers).
#![allow(
    clippy::print_stderr,
    reason = "tests report what they measured, and why they cannot run, on stderr"
)]
mod common;

mod attribution;
mod baseline;
mod capture;
mod coverage;
mod delivery;
mod deploy;
mod faults;
mod interest;
mod metrics;
mod pod;
mod restart;
mod rules;
mod rules_lifecycle;
mod siem;
