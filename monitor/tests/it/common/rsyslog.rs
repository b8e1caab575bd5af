//! A real rsyslog (Debian's `rsyslog` and `rsyslog-gnutls`) receiving on loopback: UDP, TCP
//! (octet counting) and TLS (RFC 5425, gtls, client certificates required), parsing RFC 5424 with
//! its own parser and writing each message's parsed fields as a JSON line.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::{free_port, wait_for};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub(crate) struct Certs {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub(crate) fn make(dir: &Path) -> Certs {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=monitor test CA",
            ],
        );
        for (name, eku, san) in [
            ("server", "serverAuth", "IP:127.0.0.1,DNS:localhost"),
            ("client", "clientAuth", "DNS:monitor-agent"),
        ] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={eku}\nsubjectAltName={san}\n"
                ),
            )
            .expect("ext");
            openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN=monitor test {name}"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            );
        }
        Certs {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// The running receiver.
pub(crate) struct Rsyslog {
    dir: PathBuf,
    pub(crate) udp: u16,
    pub(crate) tcp: u16,
    pub(crate) tls: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd with listeners on three free loopback ports, writing to `dir`.
    pub(crate) fn start(dir: &Path, certs: &Certs) -> Rsyslog {
        std::fs::create_dir_all(dir.join("work")).expect("work dir");
        let (udp, tcp, tls) = (free_port(), free_port(), free_port());
        let conf = format!(
            r#"global(
  workDirectory="{dir}/work"
  maxMessageSize="256k"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imudp")
module(load="imtcp" maxSessions="100")
template(name="parsed" type="list" option.jsonf="on") {{
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="received") {{
  action(type="omfile" file="{dir}/received.jsonl" template="parsed")
}}
input(type="imudp" address="127.0.0.1" port="{udp}" name="udp" ruleset="received")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="tcp" ruleset="received")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="tls" ruleset="received"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"#,
            dir = dir.display(),
            ca = certs.ca.display(),
            cert = certs.server_cert.display(),
            key = certs.server_key.display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).expect("conf");
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            udp,
            tcp,
            tls,
            child: None,
        };
        r.launch();
        r
    }

    /// (Re)starts the daemon on the same ports and waits for its TCP listeners.
    pub(crate) fn launch(&mut self) {
        let check = Command::new("rsyslogd")
            .args(["-N1", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .output()
            .expect("rsyslogd (Debian package rsyslog)");
        assert!(
            check.status.success(),
            "rsyslog.conf: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.err")).expect("err"))
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        for port in [self.tcp, self.tls] {
            wait_for(
                &format!("rsyslog listening on {port}"),
                Duration::from_secs(20),
                || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            );
        }
    }

    /// Stops the daemon (SIGTERM by pid) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// What it has written so far: one parsed message per line.
    pub(crate) fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rsyslog wrote {l}: {e}")))
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
