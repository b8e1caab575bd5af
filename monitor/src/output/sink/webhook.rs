//! Webhook sink: POSTs batches of JSON lines (`application/x-ndjson`) over HTTP or HTTPS.
//!
//! 2xx: delivered. 408, 429 and 5xx, timeouts and connection errors: retried with backoff, the
//! same batch in the same order. Other 4xx: the receiver will never take these bytes, so the
//! batch is dropped and counted (`reason="rejected"`) instead of blocking the queue forever.
//! Every request carries `X-Monitor-Batch: <first alert id>` and each alert its own `id`, so a
//! receiver can drop a re-sent batch it had already stored before a timeout.
use std::{path::PathBuf, sync::Arc, time::Duration};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{SinkError, Transport};
use crate::config::SinkKind;

pub(crate) struct Webhook {
    client: reqwest::Client,
    url: String,
    token_file: Option<PathBuf>,
    timeout: Duration,
    linger: Duration,
}

impl Webhook {
    pub(crate) fn new(kind: &SinkKind) -> Result<Webhook, String> {
        let SinkKind::Webhook {
            url,
            headers,
            bearer_token_file,
            ca_file,
            timeout,
            linger,
        } = kind
        else {
            return Err("not a webhook sink".into());
        };
        let mut hm = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("header name `{k}`: {e}"))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|e| format!("header `{k}` value: {e}"))?;
            value.set_sensitive(true);
            hm.insert(name, value);
        }
        let mut b = reqwest::Client::builder()
            .default_headers(hm)
            .timeout(timeout.0)
            .connect_timeout(timeout.0.min(Duration::from_secs(5)))
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        if let Some(t) = bearer_token_file {
            std::fs::metadata(t).map_err(|e| format!("bearer_token_file {}: {e}", t.display()))?;
        }
        Ok(Webhook {
            client,
            url: url.clone(),
            token_file: bearer_token_file.clone(),
            timeout: timeout.0,
            linger: linger.0,
        })
    }
}

/// The `X-Monitor-Batch` value: the first alert's id, read from its JSON without a full parse.
fn batch_id(first: &[u8]) -> String {
    let text = String::from_utf8_lossy(&first[..first.len().min(4096)]);
    for key in ["\"id\":\"", "\"uid\":\""] {
        if let Some(i) = text.find(key) {
            let rest = &text[i + key.len()..];
            if let Some(end) = rest.find('"') {
                return rest[..end].to_string();
            }
        }
    }
    String::new()
}

impl Transport for Webhook {
    async fn send(&mut self, batch: &[Arc<[u8]>]) -> Result<(), SinkError> {
        let body = super::lines(batch);
        let mut req = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/x-ndjson")
            .header(
                "X-Monitor-Batch",
                batch.first().map(|b| batch_id(b)).unwrap_or_default(),
            )
            .body(body);
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path).map_err(|source| SinkError::Io {
                what: format!("bearer_token_file {}", path.display()),
                source,
            })?;
            req = req.bearer_auth(token.trim());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                SinkError::Timeout(self.timeout)
            } else {
                SinkError::Request(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        // Read (and discard) the body so the connection can be reused.
        let _ = resp.bytes().await;
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(SinkError::Status(status)),
            _ => Err(SinkError::Rejected(status)),
        }
    }

    fn linger(&self) -> Duration {
        self.linger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_id_reads_the_first_id() {
        assert_eq!(batch_id(br#"{"id":"abc-1","rule":"x"}"#), "abc-1");
        assert_eq!(batch_id(br#"{"finding_info":{"uid":"abc-2"}}"#), "abc-2");
        assert_eq!(batch_id(b"not json"), "");
    }
}
