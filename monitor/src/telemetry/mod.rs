//! Telemetry: the agent's Prometheus metrics and the HTTP endpoint serving them with the
//! liveness (`/healthz`) and readiness (`/readyz`) checks.
pub(crate) mod http;
pub(crate) mod metrics;

pub(crate) use http::Health;
pub(crate) use metrics::Metrics;
