//! The agent run as a kubelet runs the DaemonSet's pod: from the rendered manifests
//! (`kubectl kustomize`, not a hand copy) and the image `cargo xtask image` built, a runc
//! bundle with the image as a read-only root filesystem, the DaemonSet's volumes mounted with
//! their read-only flags, the host's pid namespace, private mount, cgroup, uts, ipc and network
//! namespaces, exactly the listed capabilities, its env and args, and its resource limits.
//!
//! Host paths the test must not touch on the machine (the state and alert directories, bpffs,
//! the CRI socket's directory) are given by the test instead: a kubelet would mount the node's.
//! Everything else (BTF, tracefs, the cgroup tree) is the real host path.
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::TempDir;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The image archive `cargo xtask image` writes.
pub(crate) fn image_archive() -> PathBuf {
    repo()
        .join("target/image")
        .join(format!("monitor-{}.oci.tar", env!("CARGO_PKG_VERSION")))
}

/// The manifests an overlay renders to, and the two objects the pod is made of.
pub(crate) struct Rendered {
    pub daemonset: Value,
    pub configmaps: Vec<Value>,
}

/// `kubectl kustomize` of an overlay of `deploy/`.
pub(crate) fn render(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("deploy/overlays").join(overlay))
        .output()
        .expect("kubectl kustomize");
    assert!(
        out.status.success(),
        "kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// The documents of a multi-document YAML text.
pub(crate) fn docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

impl Rendered {
    pub(crate) fn overlay(name: &str) -> Rendered {
        let docs = docs(&render(name));
        let daemonset = docs
            .iter()
            .find(|d| d["kind"] == "DaemonSet")
            .cloned()
            .expect("a DaemonSet");
        let configmaps = docs
            .into_iter()
            .filter(|d| d["kind"] == "ConfigMap")
            .collect();
        Rendered {
            daemonset,
            configmaps,
        }
    }

    pub(crate) fn container(&mut self) -> &mut Value {
        &mut self.daemonset["spec"]["template"]["spec"]["containers"][0]
    }
}

/// The image, unpacked once per test run: its root filesystem and its config.
struct Image {
    rootfs: PathBuf,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
}

/// The strings of a JSON array, collected (a missing or non-array value is empty).
pub(crate) fn strings<C: FromIterator<String> + Default>(v: &Value) -> C {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let archive = image_archive();
        assert!(
            archive.exists(),
            "{} missing: `cargo xtask image` builds it (cargo xtask test does, before the tests)",
            archive.display()
        );
        let dir = repo().join("target/tmp/pod-image");
        let _ = std::fs::remove_dir_all(&dir);
        let oci = dir.join("oci");
        std::fs::create_dir_all(&oci).expect("mkdir");
        sh(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&oci));
        let blob = |digest: &str| {
            oci.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let read = |p: PathBuf| -> Value {
            serde_json::from_slice(&std::fs::read(&p).expect("blob")).expect("blob JSON")
        };
        let index = read(oci.join("index.json"));
        let manifest = read(blob(
            index["manifests"][0]["digest"].as_str().expect("digest"),
        ));
        let config = read(blob(manifest["config"]["digest"].as_str().expect("config")));
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
        for layer in manifest["layers"].as_array().expect("layers") {
            let digest = layer["digest"].as_str().expect("layer digest");
            sh(Command::new("tar")
                .arg("-xf")
                .arg(blob(digest))
                .arg("-C")
                .arg(&rootfs));
        }
        // The image must hold the agent under test, not an older build: it is newer than
        // every source of the agent. (Byte equality with the test's binary would be too strict:
        // cargo unifies dependency features differently with `-p` or a test filter.)
        let built = std::fs::metadata(&archive)
            .and_then(|m| m.modified())
            .expect("image mtime");
        let newest = newest_source(&repo());
        assert!(
            built >= newest.1,
            "{} is older than {}: rebuild it with `cargo xtask image`",
            archive.display(),
            newest.0.display()
        );
        let inside = std::fs::read(rootfs.join("usr/local/bin/monitor")).expect("agent in image");
        assert!(inside.len() > 1 << 20, "the image's agent binary is there");
        Image {
            rootfs,
            entrypoint: strings(&config["config"]["Entrypoint"]),
            cmd: strings(&config["config"]["Cmd"]),
            env: strings(&config["config"]["Env"]),
        }
    })
}

/// The most recently changed source of the agent (its crates' `src` and the default rules).
fn newest_source(repo: &Path) -> (PathBuf, std::time::SystemTime) {
    let mut newest = (repo.to_path_buf(), std::time::SystemTime::UNIX_EPOCH);
    let mut stack: Vec<PathBuf> = [
        "monitor/src",
        "monitor-common/src",
        "monitor-ebpf/src",
        "monitor/rules",
    ]
    .iter()
    .map(|d| repo.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = meta.modified()
                && m > newest.1
            {
                newest = (e.path(), m);
            }
        }
    }
    newest
}

/// Capability names as the kernel knows them (`BPF` -> `CAP_BPF`), and whether this machine's
/// own bounding set has them (a sandbox may lack one; runc cannot grant what it lacks).
fn bounding_has(cap: &str) -> bool {
    let bit = match cap {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "DAC_READ_SEARCH" => 2,
        "KILL" => 5,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        _ => return true,
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << bit) != 0)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The pod's network namespace, with a veth pair to the host: the pod's port is reached at
/// its address, as a kubelet's CNI would make it reachable.
struct Netns {
    name: String,
    host_if: String,
    pod_ip: String,
}

impl Netns {
    fn create() -> Netns {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let name = format!("monitor-pod-{tag}");
        let host_if = format!("mp{tag}h");
        let pod_if = format!("mp{tag}p");
        let net = 200 + (std::process::id() + n) % 50;
        let octet = (n % 60) * 4;
        let host_ip = format!("10.213.{net}.{}", octet + 1);
        let pod_ip = format!("10.213.{net}.{}", octet + 2);
        sh(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            pod_ip: pod_ip.clone(),
        };
        sh(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &pod_if, "netns", &name,
        ]));
        sh(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]));
        sh(Command::new("ip").args(["link", "set", &host_if, "up"]));
        let in_ns = |args: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &name, "ip"]).args(args);
            sh(&mut c);
        };
        in_ns(&["addr", "add", &format!("{pod_ip}/30"), "dev", &pod_if]);
        in_ns(&["link", "set", &pod_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A running pod of the DaemonSet.
pub(crate) struct Pod {
    id: String,
    dir: TempDir,
    net: Netns,
    pid: u32,
    /// The pod's HTTP port (the container's first port).
    port: u16,
    running: bool,
}

/// The CRI mount options of a volume mount: a recursive private bind, read-only when asked.
fn bind(destination: &str, source: &Path, read_only: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if read_only { "ro" } else { "rw" });
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": options,
    })
}

/// What a kubelet checks of a hostPath volume before it starts the pod.
fn host_path(path: &Path, kind: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    match kind {
        "DirectoryOrCreate" => std::fs::create_dir_all(path).map_err(|e| e.to_string()),
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(format!("hostPath {} is not a directory", path.display())),
        },
        "Socket" => {
            use std::os::unix::fs::FileTypeExt;
            match meta {
                Ok(m) if m.file_type().is_socket() => Ok(()),
                _ => Err(format!("hostPath {} is not a socket", path.display())),
            }
        }
        _ => Ok(()),
    }
}

/// The ConfigMap volume's files, as the kubelet projects them.
fn project_configmap(volume: &Value, maps: &[Value], dir: &Path) -> Result<PathBuf, String> {
    let name = volume["configMap"]["name"].as_str().unwrap_or("");
    let cm = maps
        .iter()
        .find(|m| m["metadata"]["name"] == name)
        .ok_or_else(|| format!("ConfigMap {name} is not rendered"))?;
    let out = dir.join(format!("configmap-{name}"));
    let items = volume["configMap"]["items"].as_array().cloned();
    let pairs: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or("").to_string(),
                    i["path"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        None => cm["data"]
            .as_object()
            .map(|m| m.keys().map(|k| (k.clone(), k.clone())).collect())
            .unwrap_or_default(),
    };
    for (key, path) in pairs {
        let text = cm["data"][&key]
            .as_str()
            .ok_or_else(|| format!("ConfigMap {name} has no key {key}"))?;
        let file = out.join(&path);
        std::fs::create_dir_all(file.parent().expect("parent")).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn quantity_bytes(q: &str) -> Option<u64> {
    let (num, mult) = [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn cpu_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0) as u64),
    }
}

impl Pod {
    /// Starts the DaemonSet's pod. `host` maps host paths of its volumes to what the test
    /// provides instead. An error is what a kubelet would refuse (a missing host path).
    pub(crate) fn start(r: &Rendered, host: &HashMap<&str, PathBuf>) -> Result<Pod, String> {
        let img = image();
        let dir = TempDir::new("pod");
        let pod = &r.daemonset["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        // Volumes to mounts.
        let mut mounts = default_mounts();
        for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let name = m["name"].as_str().unwrap_or("");
            let v = pod["volumes"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == name))
                .ok_or_else(|| format!("volumeMount {name} has no volume"))?;
            let dest = m["mountPath"].as_str().unwrap_or("");
            let ro = m["readOnly"] == true;
            if v.get("configMap").is_some() {
                let src = project_configmap(v, &r.configmaps, dir.path())?;
                // ConfigMap volumes are always read-only.
                mounts.push(bind(dest, &src, true));
            } else if let Some(hp) = v.get("hostPath") {
                let path = hp["path"].as_str().unwrap_or("");
                let src = host
                    .get(path)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(path));
                host_path(&src, hp["type"].as_str().unwrap_or(""))?;
                mounts.push(bind(dest, &src, ro));
            } else {
                return Err(format!(
                    "volume {name}: only configMap and hostPath are run"
                ));
            }
        }
        // Process: the image's entrypoint, the DaemonSet's args (they replace the image's Cmd).
        let mut args = match c.get("command") {
            Some(cmd) => strings(cmd),
            None => img.entrypoint.clone(),
        };
        args.extend(match c.get("args") {
            Some(a) => strings(a),
            None => img.cmd.clone(),
        });
        let mut env = img.env.clone();
        for e in c["env"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap_or("");
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName" {
                "harness-node".to_string()
            } else {
                return Err(format!("env {name}: unsupported valueFrom"));
            };
            env.push(format!("{name}={value}"));
        }
        let mut caps: Vec<String> = Vec::new();
        let drop_all = strings::<Vec<String>>(&sc["capabilities"]["drop"])
            .iter()
            .any(|d| d == "ALL");
        if !drop_all {
            return Err("the harness runs containers that drop ALL capabilities".into());
        }
        for cap in strings::<Vec<String>>(&sc["capabilities"]["add"]) {
            if bounding_has(&cap) {
                caps.push(format!("CAP_{cap}"));
            } else {
                eprintln!(
                    "note: this machine's bounding set lacks CAP_{cap}: the pod runs without it"
                );
            }
        }
        let net = Netns::create();
        let mut namespaces = vec![
            json!({"type": "mount"}),
            json!({"type": "uts"}),
            json!({"type": "ipc"}),
            json!({"type": "cgroup"}),
            json!({"type": "network", "path": net.path()}),
        ];
        if pod["hostPID"] != true {
            namespaces.push(json!({"type": "pid"}));
        }
        let limits = &c["resources"]["limits"];
        let mut resources = json!({});
        if let Some(b) = limits["memory"].as_str().and_then(quantity_bytes) {
            resources["memory"] = json!({ "limit": b });
        }
        if let Some(m) = limits["cpu"].as_str().and_then(cpu_millis) {
            resources["cpu"] = json!({ "quota": m * 100, "period": 100_000 });
        }
        let id = format!(
            "monitor-harness-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {
                    "uid": sc["runAsUser"].as_u64().unwrap_or(0),
                    "gid": sc["runAsGroup"].as_u64().unwrap_or(0),
                },
                "args": args,
                "env": env,
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps,
                    "inheritable": [], "ambient": [],
                },
                "noNewPrivileges": sc["allowPrivilegeEscalation"] == false,
            },
            "root": {
                "path": &img.rootfs,
                "readonly": sc["readOnlyRootFilesystem"] == true,
            },
            "hostname": "monitor-harness-pod",
            "mounts": mounts,
            "linux": {
                "namespaces": namespaces,
                "resources": resources,
                "cgroupsPath": format!("/{id}"),
                "maskedPaths": [
                    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                    "/proc/scsi", "/sys/firmware",
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
                ],
            },
        });
        // Each pod gets its own copy of the image's root, as each container gets its own
        // snapshot: mount points the runtime creates in one do not leak into the next.
        let rootfs = dir.path().join("rootfs");
        sh(Command::new("cp").arg("-a").arg(&img.rootfs).arg(&rootfs));
        spec["root"]["path"] = json!(rootfs);
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        std::fs::write(bundle.join("config.json"), spec.to_string()).expect("config.json");
        let port = c["ports"][0]["containerPort"].as_u64().unwrap_or(0) as u16;
        let state = dir.path().join("runc");
        let out = std::fs::File::create(dir.path().join("stdout")).expect("stdout");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("stderr");
        let pidfile = dir.path().join("pid");
        let st = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg("--pid-file")
            .arg(&pidfile)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .expect("runc run");
        let mut p = Pod {
            id,
            dir,
            net,
            pid: 0,
            port,
            running: true,
        };
        if !st.success() {
            p.running = false;
            return Err(format!("runc run failed: {}", p.log()));
        }
        p.pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| "runc wrote no pid".to_string())?;
        Ok(p)
    }

    /// The agent's host pid (hostPID: the same in and out of the pod).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// What the agent wrote on stdout and stderr (its alerts on stdout, its log on stderr).
    pub(crate) fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stderr"), read("stdout"))
    }

    fn alive(&self) -> bool {
        self.pid != 0
            && Path::new(&format!("/proc/{}", self.pid)).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .unwrap_or_default()
                .contains(") Z ")
    }

    /// An HTTP GET to the pod's port at the pod's address: (status, body).
    pub(crate) fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect_timeout(
            &format!("{}:{}", self.net.pod_ip, self.port).parse().ok()?,
            Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Waits as the startup probe does (GET /readyz until 200); an error carries the agent's
    /// log when it exited instead.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.alive() {
                return Err(self.log());
            }
            if matches!(self.get("/readyz"), Some((200, _))) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready in {timeout:?}: {}", self.log()))
    }

    /// Waits for the agent to exit by itself; its log.
    pub(crate) fn wait_exit(&self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.alive() {
                return Ok(self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("still running after {timeout:?}: {}", self.log()))
    }

    /// Stops the pod as a kubelet does: SIGTERM through the runtime, SIGKILL after the grace
    /// period. Returns how long the agent took to exit.
    pub(crate) fn stop(&mut self, grace: Duration) -> Duration {
        let sent = Instant::now();
        let _ = self.runc(&["kill", &self.id.clone(), "TERM"]);
        while self.alive() && sent.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = sent.elapsed();
        if self.alive() {
            let _ = self.runc(&["kill", &self.id.clone(), "KILL"]);
        }
        let _ = self.runc(&["delete", "--force", &self.id.clone()]);
        self.running = false;
        took
    }

    fn runc(&self, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
        Command::new("runc")
            .arg("--root")
            .arg(self.dir.path().join("runc"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if self.running {
            let _ = self.runc(&["kill", &self.id.clone(), "KILL"]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.runc(&["delete", "--force", &self.id.clone()]);
    }
}

/// The mounts a CRI runtime gives every container.
fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}
