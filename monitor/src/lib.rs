//! The monitor agent: loads the kernel programs, decodes their events, keeps a process table
//! and turns each event into an enriched record.
pub mod baseline;
pub mod benchkit;
pub mod capture;
pub mod config;
pub mod decode_net;
pub mod drops;
pub mod enrich;
pub mod event;
pub mod format;
pub mod http;
pub mod load;
pub mod metrics;
pub mod pipeline;
pub mod process;
pub mod redact;
pub mod rules;
pub mod sink;
pub mod trace;
