//! The coverage table (docs/coverage.md), proven: every in-scope behaviour is performed for real
//! inside a container of a pod that a real containerd starts through CRI, and the default rules
//! must raise the named rule about that container with the key fields of what was done. Then
//! ordinary work (a web server serving, a database writing, a periodic job, a client reading
//! its service-account token, log rotation) runs in containers and on the host and must raise
//! nothing.
//!
//! Behaviours run through CRI ExecSync, as `kubectl exec` would; what they need that a shell
//! tool does not do is done by `monitor-trigger`, copied into the image with its libraries.
//! Traffic stays on loopback (the pods share the node's network namespace).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    containerd::{self, Containerd, SERIAL},
    *,
};

/// One behaviour: the shell script run in the container, the rule it must raise, and fields the
/// alert must carry (a JSON path into the alert, and a text its value must contain).
struct Case {
    rule: &'static str,
    script: &'static str,
    fields: &'static [(&'static str, &'static str)],
    /// A syscall tracepoint the behaviour needs: a kernel built without it (no module support,
    /// say) cannot do the behaviour at all, and then no alert is the right answer.
    needs: Option<&'static str>,
}

const fn case(
    rule: &'static str,
    script: &'static str,
    fields: &'static [(&'static str, &'static str)],
) -> Case {
    Case {
        rule,
        script,
        fields,
        needs: None,
    }
}

impl Case {
    const fn needs(mut self, tracepoint: &'static str) -> Case {
        self.needs = Some(tracepoint);
        self
    }

    /// Whether this kernel can perform the behaviour.
    fn possible(&self) -> bool {
        self.needs.is_none_or(|tp| {
            std::path::Path::new("/sys/kernel/tracing/events/syscalls")
                .join(format!("sys_enter_{tp}"))
                .exists()
        })
    }
}

/// Every behaviour of the coverage table that a container can perform here. Scripts end with
/// `; true` so the shell forks the last command instead of replacing itself with it (the
/// command's parent is then the shell, as in an interactive session).
const CASES: &[Case] = &[
    // Execution
    case(
        "shell_in_container",
        "sh -c 'echo hi'; true",
        &[("exec.filename", "/bin/sh")],
    ),
    case(
        "package_manager_in_container",
        "ln -sf /bin/busybox /tmp/apk; /tmp/apk add curl; true",
        &[("process.command_line", "/tmp/apk add curl")],
    ),
    case(
        "network_tool_in_container",
        "wget -q -T 1 -O /dev/null http://127.0.0.1:1/; true",
        &[("exec.args.0", "wget")],
    ),
    case(
        "server_spawned_shell",
        "printf '#!/bin/sh\\nsh -c true\\n' > /tmp/nginx; chmod 755 /tmp/nginx; /tmp/nginx; true",
        &[("process.ancestors.0.exe", "/tmp/nginx")],
    ),
    case(
        "database_spawned_process",
        "printf '#!/bin/sh\\nsh -c true\\n' > /tmp/mysqld; chmod 755 /tmp/mysqld; /tmp/mysqld; true",
        &[("process.ancestors.0.exe", "/tmp/mysqld")],
    ),
    case(
        "netcat_remote_exec",
        "nc -l -p 47311 -e /bin/sh & p=$!; sleep 0.3; kill $p; true",
        &[("process.command_line", "-e /bin/sh")],
    ),
    case(
        "remote_copy_tool_in_container",
        "tftp -g -r x 127.0.0.1 2>/dev/null; true",
        &[("exec.args.0", "tftp")],
    ),
    case(
        "k8s_client_in_container",
        "ln -sf /bin/busybox /tmp/kubectl; /tmp/kubectl get secrets 2>/dev/null; true",
        &[("process.command_line", "get secrets")],
    ),
    case(
        "payload_decoded_in_container",
        "echo aGVsbG8K | base64 -d > /dev/null; true",
        &[("process.command_line", "base64 -d")],
    ),
    case(
        "recon_commands_in_container",
        "netstat -tln > /dev/null; true",
        &[("exec.args.0", "netstat")],
    ),
    case(
        "network_tool_under_package_install",
        "printf '#!/bin/sh\\nwget -q -T 1 -O /dev/null http://127.0.0.1:1/x.sh; true\\n' > /tmp/npm; chmod 755 /tmp/npm; /tmp/npm; true",
        &[("exec.args.0", "wget")],
    ),
    case(
        "user_management_in_container",
        "ln -sf /bin/busybox /tmp/useradd; /tmp/useradd -m eve 2>/dev/null; true",
        &[("exec.filename", "/tmp/useradd")],
    ),
    case(
        "debugfs_in_container",
        "ln -sf /bin/busybox /tmp/debugfs; /tmp/debugfs -w /dev/sda1 2>/dev/null; true",
        &[("exec.filename", "/tmp/debugfs")],
    ),
    case(
        "pkexec_without_arguments",
        "ln -sf /bin/busybox /tmp/pkexec; /usr/bin/monitor-trigger attack exec-noargs /tmp/pkexec 2>/dev/null; true",
        &[("exec.filename", "/tmp/pkexec")],
    ),
    case(
        "sudoedit_escalation_attempt",
        "ln -sf /bin/busybox /tmp/sudoedit; /tmp/sudoedit -s 'AAAA\\' 2>/dev/null; true",
        &[("exec.filename", "/tmp/sudoedit")],
    ),
    case(
        "crypto_miner_execution",
        "ln -sf /bin/busybox /tmp/xmrig; /tmp/xmrig -o stratum+tcp://127.0.0.1:3333 2>/dev/null; true",
        &[("process.command_line", "stratum+tcp://")],
    ),
    case(
        "exec_from_temp_dir",
        "cp /bin/busybox /tmp/payload; /tmp/payload true; true",
        &[("exec.filename", "/tmp/payload")],
    ),
    case(
        "container_drift_exec",
        "cp /bin/busybox /tmp/dropped; /tmp/dropped true; true",
        &[("exec.filename", "/tmp/dropped")],
    ),
    case(
        "fileless_execution",
        "/usr/bin/monitor-trigger memfd-exec > /dev/null; true",
        &[("exec.filename", "/fd/")],
    ),
    // Credential access and discovery
    case(
        "sensitive_file_read",
        "cat /etc/shadow > /dev/null; true",
        &[("file.path", "/etc/shadow")],
    ),
    case(
        "sensitive_file_read",
        "cat //usr/../etc/./gshadow > /dev/null; true",
        &[
            ("file.path", "/etc/gshadow"),
            ("process.command_line", "//usr/../etc/./gshadow"),
        ],
    ),
    case(
        "sensitive_file_read",
        "cd /tmp && cat ../etc/sudoers > /dev/null; true",
        &[
            ("file.path", "/etc/sudoers"),
            ("file.raw_path", "../etc/sudoers"),
        ],
    ),
    case(
        "secret_search",
        "grep -rl 'BEGIN PRIVATE' /etc 2>/dev/null; true",
        &[("process.command_line", "BEGIN PRIVATE")],
    ),
    case(
        "cloud_credentials_read",
        "cat /root/.aws/credentials > /dev/null; true",
        &[("file.path", "/root/.aws/credentials")],
    ),
    case(
        "proc_environ_read",
        "cat /proc/1/environ > /dev/null; true",
        &[("file.path", "/proc/1/environ")],
    ),
    case(
        "k8s_pki_read",
        "cat /etc/kubernetes/pki/ca.key > /dev/null; true",
        &[("file.path", "/etc/kubernetes/pki/ca.key")],
    ),
    case(
        "kernel_recon_file_read",
        "cat /proc/sys/kernel/randomize_va_space > /dev/null; true",
        &[("file.path", "/proc/sys/kernel/randomize_va_space")],
    ),
    case(
        "sensitive_file_read_via_io_uring",
        "/usr/bin/monitor-trigger uring-open /etc/shadow > /dev/null; true",
        &[("file.path", "/etc/shadow"), ("file.via", "io_uring")],
    ),
    // Persistence
    case(
        "shell_config_modified",
        "echo 'wget -q -O- http://127.0.0.1:1/x | sh' >> /etc/profile; true",
        &[("file.path", "/etc/profile")],
    ),
    case(
        "cron_job_modified",
        "echo '* * * * * /tmp/x' > /var/spool/cron/crontabs/root; true",
        &[("file.path", "/var/spool/cron/crontabs/root")],
    ),
    case(
        "ssh_authorized_keys_modified",
        "mkdir -p /root/.ssh; echo 'ssh-ed25519 AAAAC3 eve' >> /root/.ssh/authorized_keys; true",
        &[("file.path", "/root/.ssh/authorized_keys")],
    ),
    case(
        "init_script_modified",
        "mkdir -p /etc/init.d; echo '/tmp/x &' > /etc/init.d/evil; true",
        &[("file.path", "/etc/init.d/evil")],
    ),
    case(
        "dynamic_loader_modified",
        ": >> /lib64/ld-linux-x86-64.so.2; true",
        &[("file.path", "/lib64/ld-linux-x86-64.so.2")],
    ),
    case(
        "package_database_modified",
        "echo 'Package: hidden' >> /var/lib/dpkg/status; true",
        &[("file.path", "/var/lib/dpkg/status")],
    ),
    case(
        "write_below_binary_dir",
        "echo x > /bin/evil; true",
        &[("file.path", "/bin/evil")],
    ),
    case(
        "write_below_etc",
        "echo 'nameserver 127.0.0.1' > /etc/evil.conf; true",
        &[("file.path", "/etc/evil.conf")],
    ),
    // Defence evasion
    case(
        "shell_history_tampered",
        "echo ls > /root/.ash_history; rm /root/.ash_history; true",
        &[("file.path", "/root/.ash_history")],
    ),
    case(
        "log_file_cleared",
        ": > /var/log/app.log; true",
        &[("file.path", "/var/log/app.log")],
    ),
    case(
        "evidence_wiped",
        "echo x > /tmp/evidence; shred -u /tmp/evidence; true",
        &[("exec.args.0", "shred")],
    ),
    case(
        "hidden_file_created",
        "echo x > /tmp/.hidden; true",
        &[("file.path", "/tmp/.hidden")],
    ),
    case(
        "symlink_to_sensitive_file",
        "ln -sf /etc/shadow /tmp/s; true",
        &[("file.path", "/etc/shadow"), ("file.target", "/tmp/s")],
    ),
    case(
        "symlink_to_sensitive_file",
        "ln -f /etc/shadow /tmp/h 2>/dev/null; true",
        &[
            ("file.path", "/etc/shadow"),
            ("file.target", "/tmp/h"),
            ("kind", "link"),
        ],
    ),
    case(
        "process_renamed_in_container",
        "/usr/bin/monitor-trigger attack rename kworker > /dev/null; true",
        &[("privilege.name", "kworker")],
    ),
    case(
        "bpf_program_load_in_container",
        "/usr/bin/monitor-trigger attack bpf-load > /dev/null; true",
        &[("privilege.command", "BPF_PROG_LOAD")],
    ),
    case(
        "io_uring_in_container",
        "/usr/bin/monitor-trigger uring-open /etc/hostname > /dev/null; true",
        &[("privilege.syscall", "io_uring_setup")],
    ),
    case(
        "file_created_below_dev",
        "echo x > /dev/.cfg; true",
        &[("file.path", "/dev/.cfg")],
    ),
    // Privilege escalation and container escape
    case(
        "setuid_setgid_bit_set",
        "echo x > /tmp/su; chmod 4755 /tmp/su; true",
        &[("file.mode", "4755")],
    ),
    case(
        "setuid_binary_executed_in_container",
        "cp /bin/busybox /tmp/suid; chmod 4755 /tmp/suid; /usr/bin/monitor-trigger run-as 1000 /tmp/suid true; true",
        &[
            ("exec.filename", "/tmp/suid"),
            ("process.uid", "1000"),
            ("process.euid", "0"),
        ],
    ),
    case(
        "container_drift_chmod_exec",
        "echo x > /tmp/tool; chmod 755 /tmp/tool; true",
        &[("file.path", "/tmp/tool")],
    ),
    case(
        "privilege_change_to_root_in_container",
        "/usr/bin/monitor-trigger regain-root > /dev/null; true",
        &[("privilege.syscall", "setresuid")],
    ),
    case(
        "ptrace_attach",
        "/usr/bin/monitor-trigger ptrace > /dev/null; true",
        &[("privilege.request", "PTRACE_ATTACH")],
    ),
    case(
        "ptrace_traceme_in_container",
        "/usr/bin/monitor-trigger attack traceme > /dev/null; true",
        &[("privilege.request", "PTRACE_TRACEME")],
    ),
    case(
        "process_vm_write",
        "/usr/bin/monitor-trigger attack vm-write > /dev/null; true",
        &[("privilege.syscall", "process_vm_writev")],
    ),
    case(
        "proc_mem_access",
        "sleep 5 & p=$!; dd if=/proc/$p/mem of=/dev/null bs=1 count=1 2>/dev/null; kill $p; true",
        &[("file.path", "/mem")],
    ),
    case(
        "kernel_module_load",
        "/usr/bin/monitor-trigger attack module-load > /dev/null; true",
        &[("privilege.syscall", "finit_module")],
    )
    .needs("finit_module"),
    case(
        "mount_in_container",
        "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null; true",
        &[("privilege.fstype", "tmpfs")],
    ),
    case(
        "namespace_change_in_container",
        "unshare -m true 2>/dev/null; true",
        &[("privilege.syscall", "unshare")],
    ),
    case(
        "chroot_in_container",
        "chroot / true; true",
        &[("privilege.target", "/")],
    ),
    case(
        "userfaultfd_in_container",
        "/usr/bin/monitor-trigger attack userfaultfd > /dev/null; true",
        &[("privilege.syscall", "userfaultfd")],
    ),
    case(
        "perf_event_open_in_container",
        "/usr/bin/monitor-trigger attack perf-tracepoint > /dev/null; true",
        &[("privilege.request", "PERF_TYPE_TRACEPOINT")],
    ),
    case(
        "keyctl_in_container",
        "/usr/bin/monitor-trigger attack keyctl-describe > /dev/null; true",
        &[("privilege.request", "KEYCTL_DESCRIBE")],
    ),
    case(
        "cgroup_release_agent_write",
        "echo /tmp/x > /sys/fs/cgroup/release_agent 2>/dev/null; true",
        &[("file.path", "/sys/fs/cgroup/release_agent")],
    ),
    case(
        "kernel_control_file_write",
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>/dev/null; true",
        &[("file.path", "/proc/sys/kernel/core_pattern")],
    ),
    case(
        "runtime_socket_access_in_container",
        "cat /run/containerd/containerd.sock 2>/dev/null; true",
        &[("file.path", "/run/containerd/containerd.sock")],
    ),
    case(
        "block_device_access_in_container",
        "dd if=/dev/sda of=/dev/null bs=512 count=1 2>/dev/null; true",
        &[("file.path", "/dev/sda")],
    ),
    case(
        "kernel_memory_access",
        "dd if=/proc/kcore of=/dev/null bs=1 count=1 2>/dev/null; true",
        &[("file.path", "/proc/kcore")],
    ),
    case(
        "runc_binary_overwrite",
        "( : >> /proc/self/exe ) 2>/dev/null; true",
        &[("file.path", "/proc/")],
    ),
    case(
        "proc_root_traversal_in_container",
        "cat /proc/1/root/etc/hostname > /dev/null; true",
        &[("file.path", "/proc/1/root/etc/hostname")],
    ),
    // Lateral movement, command and control, impact
    case(
        "packet_socket_in_container",
        "/usr/bin/monitor-trigger attack packet-socket > /dev/null; true",
        &[("network.family", "packet")],
    ),
    case(
        "k8s_api_contact_from_container",
        "nc -w 1 127.0.0.1 6443 < /dev/null 2>/dev/null; true",
        &[("network.port", "6443")],
    ),
    case(
        "miner_pool_connection",
        "nc -w 1 127.0.0.1 3333 < /dev/null 2>/dev/null; true",
        &[("network.port", "3333")],
    ),
    // The same rules see what is submitted through io_uring (no syscall is made).
    case(
        "miner_pool_connection",
        "/usr/bin/monitor-trigger uring-connect 3334 > /dev/null 2>&1; true",
        &[("network.port", "3334"), ("network.via", "io_uring")],
    ),
    case(
        "write_below_etc",
        "/usr/bin/monitor-trigger uring-files /etc > /dev/null; true",
        &[("file.path", "/etc/uf"), ("file.via", "io_uring")],
    ),
    case(
        "ssh_nonstandard_port",
        "cp /usr/bin/monitor-trigger /tmp/ssh; /tmp/ssh net 47320 /tmp > /dev/null 2>&1; true",
        &[("network.port", "47320")],
    ),
    case(
        "listen_in_container",
        "nc -l -p 47330 & p=$!; sleep 0.3; kill $p; true",
        &[("tcp.sport", "47330")],
    ),
];

/// Whether the coverage cases perform the behaviour of `rule` (on this kernel).
pub(crate) fn performs(rule: &str) -> bool {
    CASES.iter().any(|c| c.rule == rule && c.possible())
}

/// The value at a dotted path (`process.ancestors.0.exe`) as text.
fn at(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[part],
        };
    }
    match cur {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Root, the runtime binaries, this process's turn at containerd, and a containerd of the
/// test's own with its CRI socket path; `None` when the test cannot run (it then says why).
fn runtime(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Containerd, String)> {
    if !require_root(test) || !containerd::available(test) {
        return None;
    }
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ctd = Containerd::start();
    let sock = ctd.socket.display().to_string();
    Some((guard, ctd, sock))
}

/// A pod with one container that sleeps (behaviours are run in it through ExecSync); returns
/// the container's id.
fn idle_container(ctd: &mut Containerd, pod: (&str, &str, &str), container: &str) -> String {
    let (name, ns, uid) = pod;
    let labels = pod_labels();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        container,
        &["/bin/sleep", "3600"],
    )
}

fn pod_labels() -> HashMap<String, String> {
    [("app", "coverage")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_covered_behaviour_raises_its_rule_in_a_real_container() {
    let Some((_g, mut ctd, sock)) =
        runtime("every_covered_behaviour_raises_its_rule_in_a_real_container")
    else {
        return;
    };
    let agent = Agent::start_with("run", &["--no-baselines", "--cri-socket", &sock]);
    let (name, ns, uid) = (
        "attacked-7d9c",
        "shop",
        "6a1f0c2e-0b3d-4c5e-9f70-112233445566",
    );
    let cid = idle_container(&mut ctd, (name, ns, uid), "app");
    for c in CASES {
        let (code, _, err) = ctd.exec_status(&cid, &["/bin/sh", "-c", c.script]);
        assert_eq!(code, 0, "{}: the script itself failed: {err}", c.rule);
    }
    // Wait until every case has its alert (or the time is up: the verdict below names what is
    // missing, with the container's alerts).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let so_far = agent.output_so_far();
        let done = CASES.iter().filter(|c| c.possible()).all(|c| {
            so_far.iter().any(|a| {
                a["container"]["id"] == cid
                    && a["rule"] == c.rule
                    && c.fields
                        .iter()
                        .all(|(path, want)| at(a, path).contains(want))
            })
        });
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let alerts = agent.stop().events;
    let mine: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["container"]["id"] == cid)
        .collect();
    let mut missing = Vec::new();
    for c in CASES {
        let of_rule: Vec<&&Value> = mine.iter().filter(|a| a["rule"] == c.rule).collect();
        if !c.possible() {
            assert!(
                of_rule.is_empty(),
                "{}: impossible here, yet {of_rule:#?}",
                c.rule
            );
            eprintln!(
                "NOTE {}: this kernel has no {:?} syscall; the behaviour cannot happen here",
                c.rule, c.needs
            );
            continue;
        }
        let matching = of_rule.iter().find(|a| {
            c.fields
                .iter()
                .all(|(path, want)| at(a, path).contains(want))
        });
        match matching {
            Some(a) => {
                assert_eq!(a["pod"]["name"], name, "{}: {a:#}", c.rule);
                assert_eq!(a["pod"]["namespace"], ns);
                assert_eq!(a["container"]["name"], "app");
                assert_eq!(a["metadata"]["scope"], "container");
            }
            None => missing.push(format!(
                "{}: want {:?}; its {} alerts have {:?}",
                c.rule,
                c.fields,
                of_rule.len(),
                of_rule
                    .iter()
                    .map(|a| c.fields.iter().map(|(p, _)| at(a, p)).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        missing.is_empty(),
        "behaviours without their alert:\n{}",
        missing.join("\n")
    );
    // Every default rule that is on and can be performed here is in the table: a rule added
    // without a case fails this test.
    let untested = default_rule_ids()
        .into_iter()
        .filter(|r| {
            !CASES.iter().any(|c| c.rule == r.as_str()) && !TESTED_ELSEWHERE.contains(&r.as_str())
        })
        .collect::<Vec<_>>();
    assert!(
        untested.is_empty(),
        "default rules without a case here: {untested:?}"
    );
    drop(ctd);
}

/// Default rules whose behaviour cannot be performed in this test's pod, with the test that
/// performs it instead.
const TESTED_ELSEWHERE: &[&str] = &[
    // Connects to the link-local metadata address: only inside a network namespace the test
    // owns (rules::rule_cloud_metadata_access).
    "cloud_metadata_access",
    // Needs a listener that the connect reaches and fd numbers the test controls
    // (rules::rule_reverse_shell, rules::rule_reverse_shell_across_fork).
    "reverse_shell",
    // Needs a service-account volume; read through it in the benign test below, by a shell in
    // rules::rule_service_account_token_read.
    "service_account_token_read",
    // Self-protection: aimed at the agent's own files and process (restart and faults tests).
    "monitor_files_tampered",
    "monitor_binary_executed",
    "monitor_agent_signalled",
];

/// Ids of the enabled default rules, as `monitor rules list` prints them.
pub(crate) fn default_rule_ids() -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["rules", "list", "--json"])
        .output()
        .expect("monitor rules list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("rules list json");
    v.as_array()
        .expect("array")
        .iter()
        .filter(|r| r["enabled"] != false)
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

/// Sends one HTTP request to 127.0.0.1:`port` and returns the status line.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            return out.lines().next().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "httpd on {port} did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A logrotate configuration rotating `log` (create mode, four copies, compressed elsewhere).
fn logrotate_conf(log: &str) -> String {
    format!("{log} {{\n  rotate 4\n  create 0640 root root\n  missingok\n  nocompress\n}}\n")
}

#[test]
fn benign_workloads_in_real_containers_and_on_the_host_raise_no_alert() {
    let Some((_g, mut ctd, sock)) =
        runtime("benign_workloads_in_real_containers_and_on_the_host_raise_no_alert")
    else {
        return;
    };
    let agent = Agent::start_with("run", &["--no-baselines", "--cri-socket", &sock]);
    let (name, ns, uid) = (
        "shop-web-5f7d",
        "shop",
        "1b2c3d4e-5f60-4718-9a0b-c1d2e3f40506",
    );
    let labels = pod_labels();
    let sandbox = ctd.run_pod(name, ns, uid, &labels);
    // The service-account volume, as kubelet projects it.
    let sa = scratch("serviceaccount");
    for (f, text) in [
        ("token", "eyJhbGciOiJSUzI1NiJ9.e30.sig"),
        ("ca.crt", "ca"),
        ("namespace", ns),
    ] {
        std::fs::write(sa.join(f), text).expect("sa file");
    }
    let sa_path = "/var/run/secrets/kubernetes.io/serviceaccount";
    let web = ctd.run_container_with_mounts(
        &sandbox,
        (name, ns, uid, &labels),
        "web",
        &["/bin/httpd", "-f", "-p", "47380", "-h", "/www"],
        &[(&sa, sa_path)],
    );
    let db = ctd.run_container(
        &sandbox,
        (name, ns, uid, &labels),
        "db",
        &["/bin/sleep", "3600"],
    );
    // A web server serving requests.
    for _ in 0..5 {
        let status = http_get(47380);
        assert!(status.contains("200"), "{status}");
    }
    // A client reading its service-account credentials the way client libraries do (a program
    // of its own, not a shell or a dumper).
    for f in ["token", "ca.crt", "namespace"] {
        let (code, out, err) = ctd.exec_status(
            &web,
            &[
                "/usr/bin/monitor-trigger",
                "read-file",
                &format!("{sa_path}/{f}"),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"result\""), "{out}");
    }
    // A database writing its files: create, insert in transactions, checkpoint.
    for sql in [
        "create table if not exists orders(id integer primary key, item text);",
        "begin; insert into orders(item) values ('a'); insert into orders(item) values ('b'); commit;",
        "pragma journal_mode=wal; insert into orders(item) values ('c'); pragma wal_checkpoint;",
    ] {
        let (code, _, err) = ctd.exec_status(&db, &["/usr/bin/sqlite3", "/tmp/shop.db", sql]);
        assert_eq!(code, 0, "sqlite3: {err}");
    }
    // A periodic job: a scheduler running its job binary on a timer.
    let (code, _, err) = ctd.exec_status(
        &db,
        &[
            "/usr/bin/monitor-trigger",
            "periodic",
            "3",
            "200",
            "/bin/date",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // Log rotation of the application's log.
    let (code, _, err) = ctd.exec_status(&db, &["/bin/cp", "/var/log/app.log", "/tmp/app.log"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctd.exec_status(
        &db,
        &[
            "/usr/bin/monitor-trigger",
            "write-file",
            "/tmp/logrotate.conf",
            &logrotate_conf("/var/log/app.log"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for _ in 0..2 {
        let (code, _, err) = ctd.exec_status(
            &db,
            &[
                "/usr/bin/logrotate",
                "-f",
                "-s",
                "/tmp/logrotate.state",
                "/tmp/logrotate.conf",
            ],
        );
        assert_eq!(code, 0, "logrotate: {err}");
    }

    // The same kinds of work on the host: a build, an install into a staging directory, the
    // database, log rotation and a periodic job, in a cgroup of the test's own.
    let host = TestCgroup::new("benign-host");
    let dir = work_dir("benign-host");
    std::fs::write(dir.join("app.log"), "started\n").expect("log");
    std::fs::write(
        dir.join("logrotate.conf"),
        logrotate_conf(&dir.join("app.log").display().to_string()),
    )
    .expect("conf");
    let script = "set -e; printf 'int main(void){return 0;}\\n' > a.c; cc -O1 -o prog a.c; ./prog; \
                  install -D -m 0755 prog stage/usr/bin/prog; install -D -m 0644 a.c stage/usr/share/doc/prog/a.c; \
                  sqlite3 shop.db 'create table t(x); insert into t values (1);'; \
                  logrotate -f -s lr.state logrotate.conf; logrotate -f -s lr.state logrotate.conf; \
                  for i in 1 2 3; do date > /dev/null; sleep 0.1; done";
    let out = host
        .command("/bin/sh")
        .args(["-c", script])
        .current_dir(&dir)
        .output()
        .expect("host work");
    assert!(
        out.status.success(),
        "host work: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A build and an install into a staging directory inside a container cgroup laid out as
    // kubelet does (the busybox image has no compiler): the agent sees a container. Each step
    // is its own program, as a build system runs them; the result is not run here (running a
    // binary built inside a running container is drift, by design).
    let build = FakeContainer::new("benign-build");
    let bdir = scratch("benign-build");
    std::fs::write(bdir.join("a.c"), "int main(void){return 0;}\n").expect("source");
    for step in [
        &["cc", "-O1", "-o", "prog", "a.c"][..],
        &["install", "-D", "-m", "0755", "prog", "stage/usr/bin/prog"],
        &[
            "install",
            "-D",
            "-m",
            "0644",
            "a.c",
            "stage/usr/share/doc/prog/a.c",
        ],
        &[
            "sqlite3",
            "shop.db",
            "create table t(x); insert into t values (1);",
        ],
    ] {
        let st = build
            .command(step[0])
            .args(&step[1..])
            .current_dir(&bdir)
            .status()
            .expect("build step");
        assert!(st.success(), "{step:?}");
    }
    // A marker the agent must have judged before the verdict: then everything before it was.
    let (code, _, _) = ctd.exec_status(&db, &["/bin/sh", "-c", "true"]);
    assert_eq!(code, 0);
    agent.wait_output("the marker shell", Duration::from_secs(20), |alerts| {
        alerts
            .iter()
            .any(|a| a["rule"] == "shell_in_container" && a["container"]["id"] == db)
    });
    let alerts = agent.stop().events;
    let noisy: Vec<&Value> = alerts
        .iter()
        .filter(|a| {
            let ours = a["container"]["id"] == web
                || a["container"]["id"] == db
                || a["container"]["id"] == build.id.as_str()
                || a["cgroup_id"] == host.id;
            let marker = a["rule"] == "shell_in_container" && a["container"]["id"] == db;
            // The host steps are children of this test binary, whose other tests connect to
            // loopback servers: a sequence that starts at such a connection of the harness is
            // about the harness (the fd-number match behind it is the known false positive of
            // `reverse_shell` noted in rules::benign_workloads_raise_no_alert).
            let harness = a["sequence"]["pid"] == std::process::id();
            ours && !marker && !harness
        })
        .collect();
    let by_rule: BTreeMap<&str, usize> = noisy.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a["rule"].as_str().unwrap_or("?")).or_default() += 1;
        m
    });
    assert!(
        noisy.is_empty(),
        "benign work raised alerts {by_rule:?}:\n{noisy:#?}"
    );
    drop(ctd);
}

/// The baseline rows of the coverage table, performed in a real container: after a workload
/// has learned its routine, one new program, one write to a new directory, one new
/// destination, one new listening port, one sensitive read and one privilege call are exactly
/// the anomalies, each under its `anomaly.<kind>` rule with the item in the alert.
#[test]
fn baseline_kinds_flag_what_a_real_container_never_did() {
    let test = "baseline_kinds_flag_what_a_real_container_never_did";
    if !require_root(test) {
        return;
    }
    // The agent learns every workload on the node: other tests' containers would get profiles.
    alone();
    let Some((_g, mut ctd, sock)) = runtime(test) else {
        return;
    };
    let state = scratch("coverage-baseline");
    let state_arg = state.display().to_string();
    let agent = Agent::start_with(
        "run",
        &[
            "--no-default-rules",
            "--rules",
            "/dev/null",
            "--cri-socket",
            &sock,
            "--baseline-dir",
            &state_arg,
            "--baseline-learn",
            "4s",
        ],
    );
    let (name, ns, uid) = (
        "ledger-6c8d",
        "shop",
        "2c3d4e5f-6071-4829-8a0b-1c2d3e4f5061",
    );
    let cid = idle_container(&mut ctd, (name, ns, uid), "ledger");
    let run = |cmd: &[&str]| {
        let _ = ctd.exec_status(&cid, cmd);
    };
    let routine = || {
        run(&["/bin/mkdir", "-p", "/srv/learned"]);
        run(&["/bin/sh", "-c", "echo data > /srv/learned/out"]);
        run(&["/bin/nc", "-w", "1", "127.0.0.1", "47411"]);
        run(&["/bin/cat", "/etc/hostname"]);
    };
    routine();
    routine();
    // Past the learning period (counted from the workload's first event): the duration itself
    // is what is tested, so this waits on the clock.
    std::thread::sleep(Duration::from_secs(5));
    routine();
    run(&["/bin/env"]);
    run(&[
        "/bin/sh",
        "-c",
        "mkdir -p /opt/fresh && echo data > /opt/fresh/out",
    ]);
    run(&["/bin/nc", "-w", "1", "127.0.0.1", "47412"]);
    run(&[
        "/bin/sh",
        "-c",
        "nc -l -p 8443 & p=$!; sleep 0.3; kill $p; true",
    ]);
    run(&["/bin/cat", "/etc/shadow"]);
    run(&["/usr/bin/monitor-trigger", "attack", "userfaultfd"]);
    routine();
    let want = [
        "exec",
        "write",
        "connect",
        "listen",
        "sensitive_read",
        "privilege",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let anomalies = |alerts: &[Value]| -> Vec<(String, String, String)> {
        alerts
            .iter()
            .filter(|a| a["source"] == "anomaly" && a["container"]["id"] == cid)
            .map(|a| (at(a, "anomaly.kind"), at(a, "anomaly.item"), at(a, "rule")))
            .collect()
    };
    while Instant::now() < deadline {
        let seen: BTreeSet<String> = anomalies(&agent.output_so_far())
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        if want.iter().all(|w| seen.contains(*w)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = agent.stop();
    let got = anomalies(&out.events);
    let find = |kind: &str, item: &str| {
        got.iter()
            .any(|(k, i, r)| k == kind && i.contains(item) && *r == format!("anomaly.{kind}"))
    };
    for (kind, item) in [
        ("exec", "/bin/env <- "),
        ("write", "/opt"),
        ("connect", ":47412"),
        ("listen", "8443"),
        ("sensitive_read", "/etc/shadow"),
        ("privilege", "userfaultfd"),
    ] {
        assert!(
            find(kind, item),
            "no {kind} anomaly with {item}: {got:#?}\n{:#?}",
            out.events
                .iter()
                .filter(|a| a["anomaly"]["kind"] == kind)
                .collect::<Vec<_>>()
        );
    }
    // The routine, repeated after learning, is not news.
    assert!(
        !got.iter()
            .any(|(_, i, _)| i.contains("/srv/learned") || i.contains(":47411")),
        "{got:#?}"
    );
    let one = out
        .events
        .iter()
        .find(|a| a["source"] == "anomaly" && a["container"]["id"] == cid)
        .expect("an anomaly");
    assert_eq!(one["pod"]["name"], name);
    assert_eq!(one["container"]["name"], "ledger");
    drop(ctd);
}

/// Kernel-side interest filtering, judged on the whole coverage table: an agent that filters
/// (the default) and one that captures everything (`capture.interest_filter: false`) watch the
/// same container perform every covered behaviour and must raise identical alerts about it.
#[test]
fn filtering_on_and_off_raise_identical_alerts_in_a_real_container() {
    let Some((_g, mut ctd, sock)) =
        runtime("filtering_on_and_off_raise_identical_alerts_in_a_real_container")
    else {
        return;
    };
    let start = |filter: bool| {
        let set = format!("capture.interest_filter={filter}");
        Agent::start_with(
            "run",
            &["--no-baselines", "--cri-socket", &sock, "--set", &set],
        )
    };
    let (on, off) = (start(true), start(false));
    let (name, ns, uid) = ("twin-4b1e", "shop", "3d4e5f60-7182-493a-8b0c-1d2e3f405162");
    let cid = idle_container(&mut ctd, (name, ns, uid), "app");
    for c in CASES {
        let _ = ctd.exec_status(&cid, &["/bin/sh", "-c", c.script]);
    }
    // Last: once both agents have raised this, they have judged everything before it.
    let _ = ctd.exec_status(
        &cid,
        &[
            "/bin/sh",
            "-c",
            "cp /bin/busybox /tmp/marker-end; /tmp/marker-end true; true",
        ],
    );
    let marker = |ev: &[Value]| {
        ev.iter().any(|a| {
            a["container"]["id"] == cid
                && a["exec"]["filename"] == "/tmp/marker-end"
                && a["rule"] == "container_drift_exec"
        })
    };
    let (on, off) = crate::interest::stop_after(on, off, marker);
    let mine = |ev: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = ev
            .iter()
            .filter(|a| a["container"]["id"] == cid)
            .filter_map(crate::interest::comparable)
            .collect();
        v.sort();
        v
    };
    let (a, b) = (mine(&on.events), mine(&off.events));
    crate::interest::assert_same_alerts(&a, &b);
    let fired: BTreeSet<String> = a
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["rule"].as_str().map(str::to_string))
        .collect();
    let unfired: Vec<&str> = CASES
        .iter()
        .filter(|c| c.possible() && !fired.contains(c.rule))
        .map(|c| c.rule)
        .collect();
    assert!(
        unfired.is_empty(),
        "covered rules that did not fire: {unfired:?}"
    );
    eprintln!(
        "interest equivalence in a real container: {} identical alerts; opens received {} (filtering) vs {} (everything)",
        a.len(),
        on.stats["received"]["open"],
        off.stats["received"]["open"]
    );
    drop(ctd);
}
