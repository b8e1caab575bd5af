//! The monitor agent: loads the kernel programs, decodes their records, keeps a process table,
//! attributes each event to its container and pod, judges it against rules and learned
//! baselines, and delivers alerts and metrics.
//!
//! One room per stage. Listed in dependency order: each module uses only those above it (the
//! `cargo xtask deps` check fails on any cycle, at every level of the tree).
//!
//! | room | what it is for |
//! |---|---|
//! | `config` | the configuration file, environment and `--set` overrides, validated |
//! | `telemetry` | Prometheus metrics, `/metrics`, `/healthz`, `/readyz` |
//! | `process` | the process table and everything read from `/proc` |
//! | `load` | loading and attaching the kernel programs, capability and offset probing |
//! | `capture` | the ring buffer reader, record decoding, kernel counters, drop tracking |
//! | `event` | the event model and its builder |
//! | `enrich` | container and pod attribution (cgroup paths, CRI), the hold queue |
//! | `pipeline` | records to enriched events, filters, ending in an `EventSink` |
//! | `detect` | alerts; rules and baselines that raise them |
//! | `output` | alert formats, redaction, sinks; trace output |
//! | `agent` | the runtime of `monitor run` and `monitor trace`, wiring the stages |
//! | `cli` | the command line: arguments and the subcommands that are not the agent |
mod agent;
mod capture;
pub mod cli;
mod config;
mod detect;
mod enrich;
mod event;
pub mod fuzzing;
mod load;
mod output;
mod pipeline;
mod process;
mod telemetry;
