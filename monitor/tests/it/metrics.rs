//! Root integration test of the metrics endpoint: events counted exactly, as they are read.
use crate::common::*;

#[test]
fn metrics_endpoint_counts_events_exactly() {
    if !require_root("metrics_endpoint_counts_events_exactly") {
        return;
    }
    const N: u64 = 25;
    let port = 47400 + (std::process::id() % 500) as u16;
    let cg = TestCgroup::new("metrics");
    let cgroup = cg.path.to_string_lossy().into_owned();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(&[
        "--cgroup",
        &cgroup,
        "--metrics-addr",
        &addr,
        "--kind",
        "exec",
    ]);
    assert!(http_get(port, "/healthz").ends_with("ok\n"));
    for _ in 0..N {
        assert!(cg.command("/bin/true").status().expect("true").success());
    }
    // Counters are published as events are read.
    wait_for(
        "every exec counted",
        std::time::Duration::from_secs(10),
        || {
            metric(
                &http_get(port, "/metrics"),
                "monitor_events_received_total{kind=\"exec\"}",
            ) >= Some(N)
        },
    );
    let text = http_get(port, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("# TYPE monitor_events_received_total counter"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "monitor_events_received_total{kind=\"exec\"}"),
        Some(N),
        "{text}"
    );
    assert!(http_get(port, "/nope").starts_with("HTTP/1.1 404"));
    let out = agent.stop();
    assert_eq!(out.stats["received"]["exec"], N);
}
