//! Syslog sink: RFC 5424 messages over UDP (one datagram each), TCP (RFC 6587 octet-counting
//! framing), TLS (RFC 5425: TCP with TLS, octet-counted; rustls, a CA file or the system's
//! roots, an optional client certificate) or a unix datagram socket such as /dev/log.
//!
//! The message body is the alert in the sink's format (JSON); the header carries the severity,
//! the node as HOSTNAME, the rule as MSGID, and structured data with the rule, severity and id.
//! Over TCP a broken connection is re-opened and the whole batch re-sent: syslog has no
//! acknowledgements, so a receiver may see the alerts of that batch twice (never zero times).
//! Before each batch the connection is checked for a receiver that has closed it (a write to
//! it would still succeed once, and be lost).
use std::{os::fd::AsRawFd, path::PathBuf, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    net::{TcpStream, UdpSocket, UnixDatagram},
};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls};

use super::{SinkError, Transport};
use crate::{
    config::{Encoding, SyslogAddr, SyslogTls, facility_code, parse_syslog_addr},
    detect::Alert,
    output::format::{encode, syslog_severity},
};

/// Private enterprise number used in our SD-ID (`monitor@32473`; 32473 is the IANA example
/// number reserved for documentation, as no number is registered for this project).
pub(crate) const SD_ID: &str = "monitor@32473";

enum Conn {
    Udp(Option<UdpSocket>, String),
    Tcp(Option<TcpStream>, String),
    Tls(Option<Box<TlsStream<TcpStream>>>, String, Box<Tls>),
    Unix(Option<UnixDatagram>, PathBuf),
}

/// What a TLS connection is made with.
struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Tls {
    /// The client configuration: the CA file's certificates (or the system's roots) and, when
    /// given, a client certificate and key. Unreadable or empty files are errors naming them.
    fn new(addr: &str, t: &SyslogTls) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_file {
            Some(f) => {
                let certs = CertificateDer::pem_file_iter(f)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("tls.ca_file {}: {e}", f.display()))?;
                if certs.is_empty() {
                    return Err(format!("tls.ca_file {}: no certificate in it", f.display()));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("tls.ca_file {}: {e}", f.display()))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots);
        let config = match (&t.cert_file, &t.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("tls client certificate: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        let host = match &t.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_string(),
        };
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("tls server name `{host}`: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// The host part of `HOST:PORT` or `[V6]:PORT`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// What a look at a connection's receive side says before a batch is written to it.
#[derive(Debug, PartialEq, Eq)]
enum Peer {
    /// Nothing to read: the receiver is there (syslog receivers never write).
    Quiet,
    /// Something arrived: over TLS, a close_notify or an alert.
    Sent,
    /// The receiver closed the connection (or it was reset).
    Gone,
}

/// Looks at the receive side without consuming anything. A receiver that went away has sent
/// FIN: writing to such a connection still succeeds once (into the kernel's buffer) and that
/// batch would be lost, so the connection is re-made instead.
fn peer(fd: std::os::fd::RawFd) -> Peer {
    let mut b = [0u8; 1];
    // SAFETY: recv into a 1-byte buffer we own; MSG_PEEK | MSG_DONTWAIT never blocks or consumes.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peer::Gone,
        n if n > 0 => Peer::Sent,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peer::Quiet,
            _ => Peer::Gone,
        },
    }
}

/// Writes a batch octet-counted (RFC 6587 / RFC 5425) and flushes it.
async fn write_framed<W: AsyncWrite + Unpin>(
    w: &mut W,
    batch: &[Arc<[u8]>],
) -> std::io::Result<()> {
    let mut framed = Vec::new();
    for m in batch {
        framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
        framed.extend_from_slice(m);
    }
    w.write_all(&framed).await?;
    w.flush().await
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
pub(crate) fn message(alert: &Alert, facility: u8, app_name: &str, encoding: Encoding) -> Vec<u8> {
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
    m.extend_from_slice(&encode(alert, encoding));
    m
}

impl Syslog {
    pub(crate) fn new(address: &str, facility: &str, tls: &SyslogTls) -> Result<Syslog, String> {
        facility_code(facility).ok_or(format!("unknown facility `{facility}`"))?;
        let conn = match parse_syslog_addr(address)? {
            SyslogAddr::Udp(a) => Conn::Udp(None, a),
            SyslogAddr::Tcp(a) => Conn::Tcp(None, a),
            SyslogAddr::Tls(a) => {
                let t = Tls::new(&a, tls)?;
                Conn::Tls(None, a, Box::new(t))
            }
            SyslogAddr::Unix(p) => Conn::Unix(None, p),
        };
        Ok(Syslog { conn })
    }

    /// The encoder this sink's queue stores messages with.
    pub(crate) fn encoder(
        facility: &str,
        app_name: &str,
        encoding: Encoding,
    ) -> impl Fn(&Alert) -> Vec<u8> + Send + 'static {
        let facility = facility_code(facility).unwrap_or(10);
        let app = app_name.to_string();
        move |a| message(a, facility, &app, encoding)
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
                if stream
                    .as_ref()
                    .is_some_and(|s| peer(s.as_raw_fd()) == Peer::Gone)
                {
                    *stream = None;
                }
                if stream.is_none() {
                    let s = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|e| io(&format!("syslog tcp {addr}"), e))?;
                    let _ = s.set_nodelay(true);
                    *stream = Some(s);
                }
                let Some(s) = stream.as_mut() else {
                    return Err(SinkError::Request("no connection".into()));
                };
                if let Err(e) = write_framed(s, batch).await {
                    *stream = None;
                    return Err(io(&format!("syslog tcp {addr}"), e));
                }
                Ok(())
            }
            Conn::Tls(stream, addr, tls) => {
                // A receiver sends nothing over RFC 5425 but a close_notify or an alert.
                if stream
                    .as_ref()
                    .is_some_and(|s| peer(s.get_ref().0.as_raw_fd()) != Peer::Quiet)
                {
                    *stream = None;
                }
                if stream.is_none() {
                    let tcp = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|e| io(&format!("syslog tls {addr}"), e))?;
                    let _ = tcp.set_nodelay(true);
                    let s = tls
                        .connector
                        .connect(tls.server_name.clone(), tcp)
                        .await
                        .map_err(|e| io(&format!("syslog tls {addr}: handshake"), e))?;
                    *stream = Some(Box::new(s));
                }
                let Some(s) = stream.as_mut() else {
                    return Err(SinkError::Request("no connection".into()));
                };
                if let Err(e) = write_framed(s.as_mut(), batch).await {
                    *stream = None;
                    return Err(io(&format!("syslog tls {addr}"), e));
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

    #[test]
    fn tls_settings_name_what_is_wrong() {
        assert_eq!(host_of("127.0.0.1:6514"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6514"), "::1");
        assert_eq!(host_of("logs.example:6514"), "logs.example");
        let missing = SyslogTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..SyslogTls::default()
        };
        let e = Tls::new("127.0.0.1:6514", &missing).err().expect("error");
        assert!(e.contains("tls.ca_file /nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().expect("dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = Tls::new(
            "127.0.0.1:6514",
            &SyslogTls {
                ca_file: Some(empty),
                ..SyslogTls::default()
            },
        )
        .err()
        .expect("error");
        assert!(e.contains("no certificate"), "{e}");
        assert!(Tls::new("127.0.0.1:6514", &SyslogTls::default()).is_ok());
    }
}
