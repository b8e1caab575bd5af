//! A real Prometheus server (Debian's `prometheus`) scraping an agent every second, asked over
//! its HTTP API.
use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::{free_port, wait_for};

pub(crate) struct Prometheus {
    port: u16,
    child: Child,
}

impl Prometheus {
    /// Scrapes `target` (`HOST:PORT`) as job `monitor`; its data lives in `dir`.
    pub(crate) fn start(dir: &Path, target: &str) -> Prometheus {
        let port = free_port();
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: monitor\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .expect("prometheus.yml");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("err"))
            .spawn()
            .expect("start prometheus (Debian package prometheus)");
        let p = Prometheus { port, child };
        wait_for("prometheus ready", Duration::from_secs(30), || {
            p.get("/-/ready").starts_with("HTTP/1.1 200")
        });
        p
    }

    fn get(&self, path: &str) -> String {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The result vector of an instant query.
    pub(crate) fn query(&self, promql: &str) -> Vec<Value> {
        let mut q = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                q.push(b as char);
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        let text = self.get(&format!("/api/v1/query?query={q}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
