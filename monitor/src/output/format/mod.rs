//! Alert encodings for sinks: the native JSON, OCSF Detection Finding (1.3.0 to 1.8.0, the
//! newest by default) and Elastic Common Schema 9.x. Each is validated in the tests against the
//! published schema data of its version (`monitor/tests/schemas`).
//!
//! Each encoder returns one JSON document without a trailing newline; sinks frame it.
mod ecs;
mod ocsf;

#[cfg(test)]
pub(crate) use ecs::ECS_VERSION;
use ecs::ecs;
use ocsf::ocsf;
use serde_json::json;

use crate::{
    config::{Encoding, Format},
    detect::Alert,
};

/// Encodes an alert as a sink's encoding says.
pub(crate) fn encode(alert: &Alert, enc: Encoding) -> Vec<u8> {
    let v = match enc.format {
        Format::Native => return serde_json::to_vec(alert).unwrap_or_else(|e| error_doc(alert, e)),
        Format::Ocsf => ocsf(alert, enc.ocsf),
        Format::Ecs => ecs(alert),
    };
    serde_json::to_vec(&v).unwrap_or_else(|e| error_doc(alert, e))
}

/// Serializing our own types cannot fail in practice; if it ever does, the alert still goes out
/// with what identifies it.
fn error_doc(alert: &Alert, e: serde_json::Error) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": alert.id, "rule": alert.rule, "severity": alert.severity,
        "encoding_error": e.to_string(),
    }))
    .unwrap_or_default()
}

/// Syslog severity code (RFC 5424) of an alert severity name.
pub(crate) fn syslog_severity(name: &str) -> u8 {
    match name {
        "emergency" => 0,
        "alert" => 1,
        "critical" => 2,
        "error" => 3,
        "warning" => 4,
        "notice" => 5,
        "informational" => 6,
        _ => 7,
    }
}

/// OCSF severity_id and its caption.
pub(super) fn ocsf_severity(name: &str) -> (u8, &'static str) {
    match name {
        "emergency" => (6, "Fatal"),
        "alert" | "critical" => (5, "Critical"),
        "error" => (4, "High"),
        "warning" => (3, "Medium"),
        "notice" => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as the agent writes it
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`).
pub(crate) fn rfc3339_to_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = s.get(19..s.len() - 1)?;
    let ms = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) => {
            let mut digits: String = f.chars().take(3).collect();
            while digits.len() < 3 {
                digits.push('0');
            }
            digits.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None if frac.is_empty() => 0,
        None => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// `T1234` or `T1234.567`.
pub(super) fn is_technique(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: &[u8]| r.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

pub(super) fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests;
