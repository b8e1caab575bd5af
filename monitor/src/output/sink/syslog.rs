//! Syslog sink: RFC 5424 messages over UDP (one datagram each), TCP (RFC 6587 octet-counting
//! framing) or a unix datagram socket such as /dev/log.
//!
//! The message body is the alert in the sink's format (JSON); the header carries the severity,
//! the node as HOSTNAME, the rule as MSGID, and structured data with the rule, severity and id.
//! Over TCP a broken connection is re-opened and the whole batch re-sent: syslog has no
//! acknowledgements, so a receiver may see the alerts of that batch twice (never zero times).
use std::{path::PathBuf, sync::Arc};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpStream, UdpSocket, UnixDatagram},
};

use super::{SinkError, Transport};
use crate::{
    config::{Format, SyslogAddr, facility_code, parse_syslog_addr},
    detect::Alert,
    output::format::{encode, syslog_severity},
};

/// Private enterprise number used in our SD-ID (`monitor@32473`; 32473 is the IANA example
/// number reserved for documentation, as no number is registered for this project).
pub(crate) const SD_ID: &str = "monitor@32473";

enum Conn {
    Udp(Option<UdpSocket>, String),
    Tcp(Option<TcpStream>, String),
    Unix(Option<UnixDatagram>, PathBuf),
}

pub(crate) struct Syslog {
    conn: Conn,
}

/// RFC 5424 PRINTUSASCII, at most `max` characters, `-` if empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// SD-PARAM value escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// RFC 5424 TIMESTAMP: at most 6 fractional digits.
fn timestamp(rfc3339: &str) -> String {
    match rfc3339.split_once('.') {
        Some((head, frac)) => {
            let digits: String = frac
                .chars()
                .take_while(char::is_ascii_digit)
                .take(6)
                .collect();
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None if rfc3339.is_empty() => "-".into(),
        None => rfc3339.into(),
    }
}

/// One RFC 5424 message for an alert.
pub(crate) fn message(alert: &Alert, facility: u8, app_name: &str, format: Format) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(alert.severity));
    let mut m = format!(
        "<{pri}>1 {} {} {} {} {} [{SD_ID} id=\"{}\" rule=\"{}\" severity=\"{}\" source=\"{}\"] ",
        timestamp(&alert.event.time),
        header_field(&alert.event.node, 255),
        header_field(app_name, 48),
        std::process::id(),
        header_field(&alert.rule, 32),
        sd_escape(&alert.id),
        sd_escape(&alert.rule),
        sd_escape(alert.severity),
        sd_escape(alert.source),
    )
    .into_bytes();
    m.extend_from_slice(&encode(alert, format));
    m
}

impl Syslog {
    pub(crate) fn new(address: &str, facility: &str) -> Result<Syslog, String> {
        facility_code(facility).ok_or(format!("unknown facility `{facility}`"))?;
        let conn = match parse_syslog_addr(address)? {
            SyslogAddr::Udp(a) => Conn::Udp(None, a),
            SyslogAddr::Tcp(a) => Conn::Tcp(None, a),
            SyslogAddr::Unix(p) => Conn::Unix(None, p),
        };
        Ok(Syslog { conn })
    }

    /// The encoder this sink's queue stores messages with.
    pub(crate) fn encoder(
        facility: &str,
        app_name: &str,
        format: Format,
    ) -> impl Fn(&Alert) -> Vec<u8> + Send + 'static {
        let facility = facility_code(facility).unwrap_or(10);
        let app = app_name.to_string();
        move |a| message(a, facility, &app, format)
    }
}

fn io(what: &str, source: std::io::Error) -> SinkError {
    SinkError::Io {
        what: what.to_string(),
        source,
    }
}

impl Transport for Syslog {
    async fn send(&mut self, batch: &[Arc<[u8]>]) -> Result<(), SinkError> {
        match &mut self.conn {
            Conn::Udp(sock, addr) => {
                if sock.is_none() {
                    let bind = if addr.starts_with('[') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    };
                    let s = UdpSocket::bind(bind)
                        .await
                        .map_err(|e| io("syslog udp bind", e))?;
                    s.connect(addr.as_str())
                        .await
                        .map_err(|e| io(&format!("syslog udp {addr}"), e))?;
                    *sock = Some(s);
                }
                let Some(s) = sock.as_ref() else {
                    return Err(SinkError::Request("no socket".into()));
                };
                for m in batch {
                    if let Err(e) = s.send(m).await {
                        *sock = None;
                        return Err(io(&format!("syslog udp {addr}"), e));
                    }
                }
                Ok(())
            }
            Conn::Tcp(stream, addr) => {
                if stream.is_none() {
                    let s = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|e| io(&format!("syslog tcp {addr}"), e))?;
                    let _ = s.set_nodelay(true);
                    *stream = Some(s);
                }
                let mut framed = Vec::new();
                for m in batch {
                    framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    framed.extend_from_slice(m);
                }
                let Some(s) = stream.as_mut() else {
                    return Err(SinkError::Request("no connection".into()));
                };
                let r = async {
                    s.write_all(&framed).await?;
                    s.flush().await
                }
                .await;
                if let Err(e) = r {
                    *stream = None;
                    return Err(io(&format!("syslog tcp {addr}"), e));
                }
                Ok(())
            }
            Conn::Unix(sock, path) => {
                if sock.is_none() {
                    *sock = Some(UnixDatagram::unbound().map_err(|e| io("syslog unix socket", e))?);
                }
                let Some(s) = sock.as_ref() else {
                    return Err(SinkError::Request("no socket".into()));
                };
                for m in batch {
                    s.send_to(m, &path)
                        .await
                        .map_err(|e| io(&format!("syslog unix {}", path.display()), e))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parts() {
        assert_eq!(
            timestamp("2026-11-22T10:00:00.123456789Z"),
            "2026-11-22T10:00:00.123456Z"
        );
        assert_eq!(timestamp("2026-11-22T10:00:00Z"), "2026-11-22T10:00:00Z");
        assert_eq!(header_field("a b\u{e9}c", 32), "abc");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
    }
}
