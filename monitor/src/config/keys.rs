//! The settable keys: their dotted paths and environment variable names, and how a
//! `KEY=VALUE` override is applied to the parsed configuration.
use serde_json::Value;

use super::{Config, ConfigError};

/// Every settable key, as a dotted path, with its environment variable name.
pub(crate) fn keys() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(Value::Object(top)) = serde_json::to_value(Config::default()) else {
        return out;
    };
    for (k, v) in top {
        match v {
            Value::Object(inner) if k != "sinks" => {
                for ik in inner.keys() {
                    let path = format!("{k}.{ik}");
                    out.push((path.clone(), env_name(&path)));
                }
            }
            _ => out.push((k.clone(), env_name(&k))),
        }
    }
    out
}

pub(super) fn env_name(path: &str) -> String {
    format!("MONITOR_{}", path.replace('.', "_").to_uppercase())
}

/// Environment variables the agent reads that are not configuration keys.
pub(super) const OTHER_ENV: &[&str] = &[
    "MONITOR_LOG",
    "MONITOR_LOG_FORMAT",
    "MONITOR_CONFIG",
    "MONITOR_REQUIRE_ROOT",
];

pub(super) fn set_path(
    root: &mut Value,
    path: &str,
    value: Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let known = keys();
    if !known.iter().any(|(k, _)| k == path) {
        return Err(ConfigError::UnknownKey {
            origin: origin.into(),
            key: path.into(),
            known: known
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(ConfigError::Value {
                origin: origin.into(),
                key: path.into(),
                message: "the enclosing section is not a mapping".into(),
            });
        };
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// Deserializes after one override so that a bad value is blamed on where it came from.
pub(super) fn check(root: &Value, origin: &str, key: &str) -> Result<(), ConfigError> {
    serde_json::from_value::<Config>(root.clone())
        .map(|_| ())
        .map_err(|e| ConfigError::Value {
            origin: origin.into(),
            key: key.into(),
            message: e.to_string(),
        })
}

/// Parses a value given on the command line or in the environment.
pub(super) fn scalar(text: &str) -> Value {
    serde_norway::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
