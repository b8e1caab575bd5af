//! Output: alerts encoded in the chosen format (native, OCSF, ECS), secrets redacted, delivered
//! by sinks (stdout, file, syslog, webhook) each with its own queue and retries; and, for
//! `monitor trace`, every event as a JSON line.
#![allow(
    clippy::print_stdout,
    reason = "the stdout sink and trace output are this module's purpose"
)]
pub(crate) mod events;
pub(crate) mod format;
pub(crate) mod redact;
pub(crate) mod sink;
