//! Root integration tests of delivery to real receivers started from Debian packages: rsyslog
//! receiving the syslog sink over UDP, TCP and TLS (client certificate required), parsing RFC
//! 5424 itself, nothing lost on TCP and TLS across a receiver restart; and a Prometheus server
//! scraping the agent, asked for `monitor_alerts_total` by rule.
use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;

use crate::{
    common::{promserver::Prometheus, rsyslog::*, *},
    delivery::{setup, start, unlinks},
};

/// The alert ids rsyslog received on `input` (udp, tcp, tls), each message checked for the
/// header fields and structured data the sink writes.
fn ids(received: &[Value], input: &str, node: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in received.iter().filter(|m| m["input"] == input) {
        assert_eq!(m["hostname"], node, "{m}");
        assert_eq!(m["app"], "monitor", "{m}");
        assert_eq!(m["msgid"], "test_unlink_marker", "{m}");
        // <PRI> = facility local0 (16) * 8 + critical (2).
        assert_eq!(m["pri"], "130", "{m}");
        let sd = m["sd"].as_str().unwrap_or("");
        let body: Value = serde_json::from_str(m["msg"].as_str().unwrap_or("").trim())
            .unwrap_or_else(|e| panic!("message body is not the alert's JSON ({e}): {m}"));
        let id = body["id"].as_str().expect("alert id").to_string();
        assert!(
            sd.starts_with("[monitor@32473 ")
                && sd.contains(&format!("id=\"{id}\""))
                && sd.contains("rule=\"test_unlink_marker\"")
                && sd.contains("severity=\"critical\""),
            "structured data: {sd}"
        );
        out.insert(id);
    }
    out
}

#[test]
fn rsyslog_receives_udp_tcp_and_tls_parsed_and_tcp_tls_lose_nothing_across_a_restart() {
    let t = "rsyslog_receives_udp_tcp_and_tls_parsed_and_tcp_tls_lose_nothing_across_a_restart";
    if !require_root(t) {
        return;
    }
    const N: usize = 20;
    const WHILE_DOWN: usize = 10;
    let dir = scratch("rsyslog");
    let certs = Certs::make(&dir);
    let mut rsyslog = Rsyslog::start(&dir.join("rsyslog"), &certs);
    let node = "siem-node";
    let sink = |name: &str, addr: String, tls: &str| {
        format!(
            "  - {{type: syslog, name: {name}, address: '{addr}', facility: local0, retry_initial: 100ms, retry_max: 500ms{tls}}}\n"
        )
    };
    let tls = format!(
        ", tls: {{ca_file: '{}', cert_file: '{}', key_file: '{}'}}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let config = format!(
        "node: {node}\nsinks:\n  - {{type: stdout}}\n{}{}{}",
        sink("udp", format!("udp://127.0.0.1:{}", rsyslog.udp), ""),
        sink("tcp", format!("tcp://127.0.0.1:{}", rsyslog.tcp), ""),
        sink("tls", format!("tls://127.0.0.1:{}", rsyslog.tls), &tls),
    );
    let s = setup("rsyslog", &config);
    let cg = TestCgroup::new("rsyslog");
    let agent = start(&s, &cg, &[]);
    unlinks(&cg, N as u64);
    wait_for(
        "every alert on every transport",
        Duration::from_secs(30),
        || {
            let r = rsyslog.received();
            ["udp", "tcp", "tls"]
                .iter()
                .all(|i| ids(&r, i, node).len() >= N)
        },
    );
    // The receiver restarts: TCP and TLS retry until it is back and lose nothing.
    rsyslog.stop();
    unlinks(&cg, WHILE_DOWN as u64);
    // Both stream sinks have found the receiver gone before it comes back.
    for transport in ["syslog tcp", "syslog tls"] {
        agent.wait_log(transport, 1, Duration::from_secs(10));
    }
    rsyslog.launch();
    wait_for(
        "the alerts raised while rsyslog was down",
        Duration::from_secs(30),
        || {
            let r = rsyslog.received();
            ["tcp", "tls"]
                .iter()
                .all(|i| ids(&r, i, node).len() >= N + WHILE_DOWN)
        },
    );
    let out = agent.stop();
    let alerts: BTreeSet<String> = out
        .events
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(alerts.len(), N + WHILE_DOWN);
    let r = rsyslog.received();
    for input in ["tcp", "tls"] {
        // Octet-counted TCP may deliver a batch twice across a reconnect, never lose one.
        assert_eq!(
            ids(&r, input, node),
            alerts,
            "{input}: every alert, once or more"
        );
    }
    let udp = ids(&r, "udp", node);
    assert!(
        udp.is_subset(&alerts) && udp.len() >= N,
        "udp: {} of {}",
        udp.len(),
        alerts.len()
    );
    assert!(
        out.stderr.contains("syslog tcp") || out.stderr.contains("syslog tls"),
        "the outage was logged: {}",
        out.stderr
    );
}

#[test]
fn a_prometheus_server_scrapes_alert_counts_by_rule() {
    let t = "a_prometheus_server_scrapes_alert_counts_by_rule";
    if !require_root(t) {
        return;
    }
    const N: u64 = 7;
    let port = free_port();
    let s = setup(
        "promserver",
        &format!("metrics: {{addr: '127.0.0.1:{port}'}}\nsinks:\n  - {{type: stdout}}\n"),
    );
    let dir = scratch("promserver");
    let prom = Prometheus::start(&dir, &format!("127.0.0.1:{port}"));
    let cg = TestCgroup::new("promserver");
    let agent = start(&s, &cg, &[]);
    wait_for("the agent scraped", Duration::from_secs(30), || {
        prom.query("up{job=\"monitor\"}")
            .first()
            .is_some_and(|r| r["value"][1] == "1")
    });
    unlinks(&cg, N);
    let want = N.to_string();
    wait_for(
        "alert counts in Prometheus",
        Duration::from_secs(30),
        || {
            prom.query("monitor_alerts_total{rule=\"test_unlink_marker\"}")
                .first()
                .is_some_and(|r| r["value"][1] == want.as_str())
        },
    );
    let r = prom.query("monitor_alerts_total{rule=\"test_unlink_marker\"}");
    assert_eq!(r.len(), 1, "one series: {r:?}");
    assert_eq!(r[0]["metric"]["severity"], "critical", "{r:?}");
    assert_eq!(r[0]["metric"]["source"], "rule", "{r:?}");
    assert_eq!(r[0]["metric"]["job"], "monitor", "{r:?}");
    let out = agent.stop();
    assert_eq!(out.events.len() as u64, N);
}
