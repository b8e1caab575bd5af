//! A real containerd (Debian package) started by the test with its own root, state and socket,
//! CRI plugin on, host-network sandboxes, and a busybox image built locally and imported (no
//! registry). Everything it starts or mounts is stopped and removed on drop.
use std::{
    collections::HashMap,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopPodSandboxRequest,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::TempDir;

pub(crate) const IMAGE: &str = "docker.io/library/monitor-test-busybox:latest";

/// One containerd at a time: they share the shim socket directory and the cgroup tree.
pub(crate) static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) struct Containerd {
    pub dir: TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    pub rt: tokio::runtime::Runtime,
    sandboxes: Vec<String>,
    /// cgroup parents we created (removed on drop, in every hierarchy).
    cgroup_parents: Vec<String>,
    /// `kubepods` levels that existed before we started (never removed).
    preexisting: Vec<PathBuf>,
}

/// Every cgroup hierarchy root (v1 controllers, the unified v2 mount, or the v2 root).
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    roots
}

const KUBEPODS_LEVELS: [&str; 2] = ["kubepods/besteffort", "kubepods"];

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requires the runtime binaries; under CI their absence is a failure, elsewhere a skip.
pub(crate) fn available(test: &str) -> bool {
    let have = ["containerd", "ctr", "containerd-shim-runc-v2", "runc"]
        .iter()
        .all(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        && Path::new("/bin/busybox").exists();
    if have {
        return true;
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("MONITOR_REQUIRE_ROOT").is_some() {
        panic!(
            "{test}: containerd, runc and busybox-static are required (cargo xtask setup installs them)"
        );
    }
    eprintln!("SKIPPED {test}: containerd/runc/busybox-static not installed");
    false
}

/// Copies `prog` into `root` below `dir`, and every shared library it links (as `ldd` lists
/// them) to the same path inside `root`.
fn copy_with_libraries(prog: &Path, root: &Path, dir: &Path) {
    let name = prog.file_name().expect("program name");
    let dest = root
        .join(dir.strip_prefix("/").expect("absolute"))
        .join(name);
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::copy(prog, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", prog.display()));
    let out = Command::new("ldd").arg(prog).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let lib = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(lib) = lib {
            let to = root.join(&lib[1..]);
            if !to.exists() {
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
            }
        }
    }
}

/// Writes a `docker save` style archive of a busybox image and returns its path.
fn build_image(dir: &Path) -> PathBuf {
    let root = dir.join("image-rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
    // Every applet under its own name, as a distribution image has its tools.
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for tool in String::from_utf8_lossy(&list.stdout).lines() {
        if !tool.is_empty() && tool != "busybox" && !tool.contains('/') {
            symlink("busybox", bin.join(tool)).expect("symlink");
        }
    }
    for d in ["etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    // Host programs the tests run inside containers, with the libraries they link.
    for prog in [
        super::trigger().to_string(),
        "/usr/bin/sqlite3".to_string(),
        "/usr/sbin/logrotate".to_string(),
    ] {
        copy_with_libraries(Path::new(&prog), &root, Path::new("/usr/bin"));
    }
    // What a lived-in image holds: accounts, credentials, logs, package and cron state.
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\napp:x:1000:\n"),
        (
            "etc/shadow",
            "root:*:19000:0:99999:7:::\napp:!:19000:0:99999:7:::\n",
        ),
        ("etc/gshadow", "root:*::\napp:!::\n"),
        ("etc/sudoers", "root ALL=(ALL) ALL\n"),
        ("etc/profile", "export PATH=/bin:/usr/bin\n"),
        (
            "root/.aws/credentials",
            "[default]\naws_access_key_id = AKIAEXAMPLE\n",
        ),
        ("etc/kubernetes/pki/ca.key", "not a real key\n"),
        ("var/log/app.log", "started\n"),
        (
            "var/lib/dpkg/status",
            "Package: busybox\nStatus: install ok installed\n",
        ),
        ("var/spool/cron/crontabs/.keep", ""),
        ("www/index.html", "<h1>hello</h1>\n"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("seed file");
    }
    let img = dir.join("image");
    std::fs::create_dir_all(&img).expect("mkdir image");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(img.join("layer.tar"))
        .arg("."));
    let out = Command::new("sha256sum")
        .arg(img.join("layer.tar"))
        .output()
        .expect("sha256sum");
    let digest = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string();
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "3600"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    });
    std::fs::write(img.join("config.json"), config.to_string()).expect("config");
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [IMAGE], "Layers": ["layer.tar"]}]);
    std::fs::write(img.join("manifest.json"), manifest.to_string()).expect("manifest");
    let tar = dir.join("image.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&tar)
        .args(["manifest.json", "config.json", "layer.tar"]));
    tar
}

impl Containerd {
    pub(crate) fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let d = dir.path().to_path_buf();
        for sub in ["root", "state", "cni-bin", "cni-conf", "opt", "logs"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.toml"), config).expect("config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let preexisting = cgroup_roots()
            .iter()
            .flat_map(|r| KUBEPODS_LEVELS.iter().map(move |l| r.join(l)))
            .filter(|p| p.exists())
            .collect();
        let mut c = Containerd {
            dir,
            socket,
            child: None,
            rt,
            sandboxes: Vec::new(),
            cgroup_parents: Vec::new(),
            preexisting,
        };
        c.launch();
        let tar = build_image(c.dir.path());
        sh(Command::new("ctr")
            .arg("-a")
            .arg(&c.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&tar));
        c
    }

    /// Starts (or restarts) the daemon on the same root, state and socket.
    pub(crate) fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join(format!(
            "containerd-{}.log",
            Instant::now().elapsed().as_nanos()
        )))
        .expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists() && self.rt.block_on(self.cri_ready()) {
                break;
            }
            assert!(Instant::now() < deadline, "containerd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True once the CRI plugin answers Status with RuntimeReady (right after a (re)start it
    /// refuses requests with "server is not initialized yet").
    async fn cri_ready(&self) -> bool {
        let Ok(mut c) = self.client().await else {
            return false;
        };
        match c.status(StatusRequest { verbose: false }).await {
            Ok(r) => r.into_inner().status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "RuntimeReady" && c.status)
            }),
            Err(_) => false,
        }
    }

    /// Stops the daemon (by pid); containers keep running under their shims.
    pub(crate) fn stop_daemon(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    pub(crate) async fn client(
        &self,
    ) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
        let sock = self.socket.clone();
        let ch = Endpoint::from_static("http://cri.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await?;
        Ok(RuntimeServiceClient::new(ch))
    }

    fn sandbox_config(
        name: &str,
        namespace: &str,
        uid: &str,
        labels: &HashMap<String, String>,
    ) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // An empty hostname: required for host-network sandboxes here (see shared/TOOLCHAIN.md).
            hostname: String::new(),
            labels: labels.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs a pod sandbox; returns its id.
    pub(crate) fn run_pod(
        &mut self,
        name: &str,
        namespace: &str,
        uid: &str,
        labels: &HashMap<String, String>,
    ) -> String {
        self.cgroup_parents
            .push(format!("kubepods/besteffort/pod{uid}"));
        let config = Self::sandbox_config(name, namespace, uid, labels);
        let id = self.rt.block_on(async {
            let mut c = self.client().await.expect("client");
            c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id
        });
        self.sandboxes.push(id.clone());
        id
    }

    /// Creates and starts a container in a pod; returns its id. Labels are what kubelet sets.
    pub(crate) fn run_container(
        &mut self,
        sandbox: &str,
        pod: (&str, &str, &str, &HashMap<String, String>),
        name: &str,
        command: &[&str],
    ) -> String {
        self.run_container_with_mounts(sandbox, pod, name, command, &[])
    }

    /// As [`Containerd::run_container`], with host directories mounted read-only as kubelet
    /// mounts volumes (host path, container path).
    pub(crate) fn run_container_with_mounts(
        &mut self,
        sandbox: &str,
        pod: (&str, &str, &str, &HashMap<String, String>),
        name: &str,
        command: &[&str],
        mounts: &[(&Path, &str)],
    ) -> String {
        let (pod_name, ns, uid, pod_labels) = pod;
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", pod_name),
            ("io.kubernetes.pod.namespace", ns),
            ("io.kubernetes.pod.uid", uid),
            ("io.kubernetes.container.name", name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            mounts: mounts
                .iter()
                .map(|(host, path)| Mount {
                    container_path: (*path).to_string(),
                    host_path: host.display().to_string(),
                    readonly: true,
                    ..Default::default()
                })
                .collect(),
            labels,
            log_path: format!("{name}.log"),
            ..Default::default()
        };
        let mut sandbox_config = Self::sandbox_config(pod_name, ns, uid, pod_labels);
        sandbox_config.log_directory = self.dir.path().join("logs").display().to_string();
        self.rt.block_on(async {
            let mut c = self.client().await.expect("client");
            let id = c
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox.into(),
                    config: Some(config),
                    sandbox_config: Some(sandbox_config),
                })
                .await
                .expect("CreateContainer")
                .into_inner()
                .container_id;
            c.start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("StartContainer");
            id
        })
    }

    /// Runs a command inside a running container (CRI ExecSync); returns its exit code, stdout
    /// and stderr, whatever the code (attack steps are often refused, and still attempts).
    pub(crate) fn exec_status(&self, container: &str, cmd: &[&str]) -> (i32, String, String) {
        self.rt.block_on(async {
            let mut c = self.client().await.expect("client");
            let r = c
                .exec_sync(ExecSyncRequest {
                    container_id: container.into(),
                    cmd: cmd.iter().map(|s| s.to_string()).collect(),
                    timeout: 20,
                })
                .await
                .expect("ExecSync")
                .into_inner();
            (
                r.exit_code,
                String::from_utf8_lossy(&r.stdout).into_owned(),
                String::from_utf8_lossy(&r.stderr).into_owned(),
            )
        })
    }

    /// Runs a command inside a running container (CRI ExecSync) and returns its stdout; it must
    /// succeed.
    pub(crate) fn exec(&self, container: &str, cmd: &[&str]) -> String {
        let (code, out, err) = self.exec_status(container, cmd);
        assert_eq!(code, 0, "exec {cmd:?}: {err}");
        out
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_none() && !self.sandboxes.is_empty() {
            self.launch();
        }
        let sandboxes = std::mem::take(&mut self.sandboxes);
        self.rt.block_on(async {
            if let Ok(mut c) = self.client().await {
                for id in &sandboxes {
                    let _ = c
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = c
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                }
            }
        });
        self.stop_daemon();
        // Shims outlive the daemon by design: stop the ones serving our socket, by pid.
        let needle = self.dir.path().display().to_string();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.filter_map(Result::ok) {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.starts_with("/usr/bin/containerd-shim") && cmdline.contains(&needle) {
                    // SAFETY: killing a shim process of ours by pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        // Unmount whatever the daemon left below our directory (sandbox /dev/shm, rootfs).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&needle))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 of a path we mounted (through containerd), detached.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // The pod cgroups runc created for us, in every hierarchy (deepest first), then the
        // kubepods levels if they were not there before.
        for root in cgroup_roots() {
            for parent in &self.cgroup_parents {
                let p = root.join(parent);
                if let Ok(rd) = std::fs::read_dir(&p) {
                    for e in rd
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
                let _ = std::fs::remove_dir(&p);
            }
            for level in KUBEPODS_LEVELS {
                let p = root.join(level);
                if !self.preexisting.contains(&p) {
                    let _ = std::fs::remove_dir(&p);
                }
            }
        }
    }
}
