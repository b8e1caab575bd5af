//! Unit tests of the configuration: sources, precedence, validation, sinks.
use super::*;

/// A temporary file ending in `name` (its extension picks the syntax), removed on drop.
fn write(name: &str, text: &str) -> tempfile::TempPath {
    let f = tempfile::Builder::new()
        .prefix("monitor-config-")
        .suffix(name)
        .tempfile()
        .expect("temp file");
    std::fs::write(f.path(), text).expect("write");
    f.into_temp_path()
}

#[test]
fn defaults_are_valid_and_print_stdout_sink() {
    let c = Config::load(&Sources::default()).expect("defaults");
    assert_eq!(c.sinks, vec![SinkConfig::stdout()]);
    assert!(c.to_yaml().contains("type: stdout"));
}

#[test]
fn yaml_and_toml_give_the_same_config() {
    let y = write(
        "a.yaml",
        "metrics:\n  addr: 127.0.0.1:9750\nsinks:\n  - type: file\n    path: /tmp/x.json\n    max_bytes: 8192\n    format: ocsf\n  - type: syslog\n    address: udp://127.0.0.1:514\n",
    );
    let t = write(
        "a.toml",
        "[metrics]\naddr = \"127.0.0.1:9750\"\n[[sinks]]\ntype = \"file\"\npath = \"/tmp/x.json\"\nmax_bytes = 8192\nformat = \"ocsf\"\n[[sinks]]\ntype = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\n",
    );
    let a = Config::load(&Sources {
        file: Some(y.to_path_buf()),
        ..Default::default()
    })
    .expect("yaml");
    let b = Config::load(&Sources {
        file: Some(t.to_path_buf()),
        ..Default::default()
    })
    .expect("toml");
    assert_eq!(a, b);
    assert_eq!(a.sinks[0].format, Format::Ocsf);
    assert_eq!(a.sinks[1].display_name(), "syslog");
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let y = write(
        "b.yaml",
        "capture:\n  wakeup_bytes: 100\nbaselines:\n  learn: 2h\n",
    );
    let c = Config::load(&Sources {
        file: Some(y.to_path_buf()),
        env: vec![
            ("MONITOR_CAPTURE_WAKEUP_BYTES".into(), "200".into()),
            ("MONITOR_BASELINES_LEARN".into(), "30m".into()),
            ("MONITOR_LOG".into(), "debug".into()),
            ("PATH".into(), "/bin".into()),
        ],
        set: vec!["capture.wakeup_bytes=300".into()],
    })
    .expect("load");
    assert_eq!(c.capture.wakeup_bytes, 300);
    assert_eq!(c.baselines.learn, Dur(Duration::from_secs(1800)));
}

#[test]
fn sinks_can_come_from_the_environment() {
    let c = Config::load(&Sources {
        env: vec![(
            "MONITOR_SINKS".into(),
            "[{type: webhook, url: 'http://127.0.0.1:1/x', format: ecs}]".into(),
        )],
        ..Default::default()
    })
    .expect("load");
    assert_eq!(c.sinks.len(), 1);
    assert_eq!(c.sinks[0].format, Format::Ecs);
    assert_eq!(c.sinks[0].display_name(), "webhook");
}

#[test]
fn errors_name_the_file_and_the_key() {
    let y = write("c.yaml", "capture:\n  queu: 1\n");
    let e = Config::load(&Sources {
        file: Some(y.to_path_buf()),
        ..Default::default()
    })
    .expect_err("typo");
    let s = e.to_string();
    assert!(
        s.contains(&y.display().to_string()) && s.contains("queu"),
        "{s}"
    );

    // Unknown variables are only warned about (Kubernetes service links add some).
    let c = Config::load(&Sources {
        env: vec![("MONITOR_SERVICE_HOST".into(), "10.0.0.1".into())],
        ..Default::default()
    })
    .expect("unknown env var ignored");
    assert_eq!(c, Config::default());
    let e = Config::load(&Sources {
        env: vec![("MONITOR_CAPTURE_WAKEUP_BYTES".into(), "many".into())],
        ..Default::default()
    })
    .expect_err("bad env value");
    assert!(e.to_string().contains("wakeup_bytes"), "{e}");

    let e = Config::load(&Sources {
        set: vec!["metrics.adr=1".into()],
        ..Default::default()
    })
    .expect_err("set typo");
    assert!(e.to_string().contains("metrics.adr"), "{e}");
}

#[test]
fn validation_reports_every_problem() {
    let y = write(
        "d.yaml",
        "capture:\n  ring_buffer_bytes: 5000\nsinks:\n  - type: syslog\n    address: 127.0.0.1:514\n    facility: nope\n  - type: webhook\n    url: ftp://x\n  - type: stdout\n  - type: stdout\n",
    );
    let e = Config::load(&Sources {
        file: Some(y.to_path_buf()),
        ..Default::default()
    })
    .expect_err("invalid");
    let s = e.to_string();
    for needle in [
        "ring_buffer_bytes",
        "udp://HOST:PORT",
        "facility `nope`",
        "ftp://x",
        "duplicate sink name",
    ] {
        assert!(s.contains(needle), "missing {needle} in {s}");
    }
}

#[test]
fn ocsf_versions_and_syslog_tls_settings_are_checked() {
    let ok = Config::from_text(
        "sinks:\n  - {type: stdout, format: ocsf, ocsf_version: '1.3'}\n  - {type: stdout, name: new, format: ocsf}\n",
        false,
    )
    .expect("valid");
    assert_eq!(ok.sinks[0].ocsf_version, OcsfVersion::V1_3);
    assert_eq!(ok.sinks[1].ocsf_version, OcsfVersion::V1_8);
    let e = Config::from_text("sinks:\n  - {type: stdout, ocsf_version: 2.0.0}\n", false)
        .expect_err("unknown version")
        .to_string();
    assert!(e.contains("2.0.0") && e.contains("1.3.0, 1.4.0"), "{e}");
    let e = Config::from_text(
        "sinks:\n  - {type: syslog, address: 'udp://127.0.0.1:514', tls: {ca_file: /x}}\n  - {type: syslog, name: t, address: 'tls://127.0.0.1:6514', tls: {cert_file: /nonexistent/c.pem}}\n",
        false,
    )
    .expect_err("invalid")
    .to_string();
    for needle in [
        "`tls` settings need a tls:// address",
        "tls.cert_file and tls.key_file go together",
        "tls.cert_file /nonexistent/c.pem is not a readable file",
    ] {
        assert!(e.contains(needle), "missing {needle} in {e}");
    }
}

#[test]
fn durations_parse_in_all_forms() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_duration("x"), None);
    let d: Dur = serde_json::from_str("5").expect("secs");
    assert_eq!(d, Dur(Duration::from_secs(5)));
    for text in ["250ms", "10s", "5m", "2h", "0s"] {
        let d: Dur = serde_json::from_str(&format!("\"{text}\"")).expect("parse");
        assert_eq!(
            serde_json::to_string(&d).expect("print"),
            format!("\"{text}\"")
        );
    }
}
