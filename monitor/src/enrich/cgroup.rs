//! cgroup path -> container: which runtime, which container id, which pod uid.
//!
//! Formats covered (cgroupfs and systemd drivers, cgroup v1, hybrid and v2):
//! - kubelet + cgroupfs: `/kubepods/<qos>/pod<uid>/<id>` (guaranteed pods have no qos level)
//! - kubelet + systemd: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
//!   <prefix>-<id>.scope` with prefix `cri-containerd`, `crio`, `docker`
//! - Docker: `/docker/<id>`, `/system.slice/docker-<id>.scope`
//! - Podman: `/libpod_parent/libpod-<id>`, `/machine.slice/libpod-<id>.scope[/container]`
//! - containerd outside Kubernetes: `/<namespace>/<id>` (nerdctl, ctr)
//!
//! Runtime helper scopes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are not
//! containers: their processes belong to the host.
use serde::Serialize;

/// A container runtime, as far as the cgroup path tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A kubelet cgroupfs path: a CRI runtime, not named by the path.
    Cri,
    Unknown,
}

impl Runtime {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Cri => "cri",
            Runtime::Unknown => "unknown",
        }
    }
}

/// What a cgroup path says about the container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ContainerRef {
    pub(crate) id: String,
    pub(crate) runtime: Runtime,
    /// Pod uid with dashes, when the path is a kubelet one.
    pub(crate) pod_uid: Option<String>,
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Pod uid from `pod<uid>` or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
fn pod_uid(seg: &str) -> Option<String> {
    let s = seg.strip_suffix(".slice").unwrap_or(seg);
    let i = s.rfind("pod")?;
    let uid = &s[i + 3..];
    let ok = uid.len() == 36
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| uid.replace('_', "-"))
}

/// The container a cgroup path belongs to, or `None` for host cgroups.
pub(crate) fn parse(path: &str) -> Option<ContainerRef> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // kubepods may sit below another level (kind: /kubelet/kubepods/..., k3s in Docker).
    let in_kubepods = segs
        .iter()
        .any(|s| s.starts_with("kubepods") || s.starts_with("kubelet-kubepods"));
    let pod = segs.iter().rev().find_map(|s| pod_uid(s));
    // The innermost segment naming a container wins; nested cgroups below it (podman's
    // `/container`, systemd sub-scopes) still belong to it.
    for (i, seg) in segs.iter().enumerate().rev() {
        let name = seg.strip_suffix(".scope").unwrap_or(seg);
        if name.contains("-conmon-") {
            return None;
        }
        let (runtime, id) = if let Some(id) = name.strip_prefix("cri-containerd-") {
            (Runtime::Containerd, id)
        } else if let Some(id) = name.strip_prefix("crio-") {
            (Runtime::CriO, id)
        } else if let Some(id) = name.strip_prefix("docker-") {
            (Runtime::Docker, id)
        } else if let Some(id) = name.strip_prefix("libpod-") {
            (Runtime::Podman, id)
        } else if is_id(name) {
            let parent = if i > 0 { segs[i - 1] } else { "" };
            let rt = if in_kubepods {
                Runtime::Cri
            } else if parent == "docker" {
                Runtime::Docker
            } else if parent == "libpod_parent" {
                Runtime::Podman
            } else {
                Runtime::Unknown
            };
            (rt, name)
        } else {
            continue;
        };
        if is_id(id) {
            return Some(ContainerRef {
                id: id.to_string(),
                runtime,
                pod_uid: if in_kubepods { pod.clone() } else { None },
            });
        }
    }
    None
}

/// One line of /proc/<pid>/cgroup: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    pub(crate) hierarchy: u32,
    pub(crate) controllers: String,
    pub(crate) path: String,
}

/// Parses /proc/<pid>/cgroup. Malformed lines are skipped.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            Some(ProcCgroup {
                hierarchy: it.next()?.parse().ok()?,
                controllers: it.next()?.to_string(),
                path: it.next()?.to_string(),
            })
        })
        .collect()
}

/// The container of a process from its /proc/<pid>/cgroup: the cgroup2 line first, then the
/// v1 hierarchies (hybrid and v1 hosts, where the runtime may not use cgroup2 at all).
pub(crate) fn container_of_process(lines: &[ProcCgroup]) -> Option<ContainerRef> {
    let v2 = lines.iter().filter(|l| l.hierarchy == 0);
    let v1 = lines.iter().filter(|l| l.hierarchy != 0);
    v2.chain(v1).find_map(|l| parse(&l.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "5f1b3c1e-8a2d-4c1f-9e7b-2a6d0c3e4f5a";

    /// Real-world shapes, one per runtime and driver (fixtures/cgroup_paths.txt).
    #[test]
    fn fixtures_of_every_runtime_and_driver() {
        let text = include_str!("../../tests/fixtures/cgroup_paths.txt");
        let mut n = 0;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let mut f = line.split_whitespace();
            let (path, runtime, pod) = (
                f.next().expect("path"),
                f.next().expect("runtime"),
                f.next().expect("pod"),
            );
            let got = parse(path);
            if runtime == "host" {
                assert_eq!(got, None, "{path}");
            } else {
                let got = got.unwrap_or_else(|| panic!("no container in {path}"));
                assert_eq!(got.id, ID, "{path}");
                assert_eq!(got.runtime.name(), runtime, "{path}");
                assert_eq!(
                    got.pod_uid.as_deref(),
                    if pod == "-" { None } else { Some(UID) },
                    "{path}"
                );
            }
            n += 1;
        }
        assert!(n >= 20, "fixture file has {n} cases");
    }

    #[test]
    fn proc_cgroup_prefers_v2_then_v1() {
        let hybrid = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
        );
        let lines = parse_proc_cgroup(&hybrid);
        assert_eq!(lines.len(), 3);
        let c = container_of_process(&lines).expect("container from v1");
        assert_eq!((c.id.as_str(), c.runtime), (ID, Runtime::Cri));
        assert_eq!(
            container_of_process(&parse_proc_cgroup("0::/user.slice/session-1.scope\n")),
            None
        );
        assert_eq!(parse_proc_cgroup("garbage\n0::/x\n").len(), 1);
    }

    /// An agent in a pod has its own cgroup namespace (cgroup v2): other pods' paths in
    /// /proc/<pid>/cgroup are relative to it and start with `..`.
    #[test]
    fn paths_seen_from_inside_a_cgroup_namespace() {
        let path = format!(
            "/../../kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let c = parse(&path).expect("container");
        assert_eq!((c.id.as_str(), c.runtime), (ID, Runtime::Containerd));
        assert_eq!(c.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn rejects_look_alikes() {
        assert_eq!(parse(&format!("/docker/{}", &ID[..63])), None);
        assert_eq!(parse(&format!("/docker/{}", ID.to_uppercase())), None);
        assert_eq!(parse("/"), None);
        assert_eq!(parse(""), None);
    }
}
