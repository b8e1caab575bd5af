//! Reading process details from /proc.
use std::{fs, path::PathBuf};

use super::{ProcInfo, ProcSource, Source};

/// /proc of the host (or another mount of it, e.g. /host/proc in a container).
#[derive(Debug, Clone)]
pub(crate) struct Procfs {
    pub(crate) root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs {
            root: PathBuf::from("/proc"),
        }
    }
}

/// The kernel's boot id: processes are told apart across reboots by it.
pub(crate) fn boot_id() -> String {
    host_file("sys/kernel/random/boot_id")
}

/// The kernel's host name (the node name when no other is given).
pub(crate) fn hostname() -> String {
    host_file("sys/kernel/hostname")
}

/// The running kernel's release.
pub(crate) fn kernel_release() -> String {
    host_file("sys/kernel/osrelease")
}

/// The agent's own `/proc/self/status` (its capability sets), if readable.
pub(crate) fn self_status() -> Option<String> {
    fs::read_to_string("/proc/self/status").ok()
}

/// A one-line file under /proc, trimmed; empty when unreadable.
fn host_file(rel: &str) -> String {
    fs::read_to_string(PathBuf::from("/proc").join(rel))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parses the fields of /proc/<pid>/stat we need: (ppid, starttime ticks). `comm` may hold
/// spaces and parentheses, so fields are counted from the last ')'.
pub(crate) fn parse_stat(s: &str) -> Option<(u32, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After comm: state(0) ppid(1) ... starttime is field 22 overall, index 19 here.
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Splits a NUL-separated argv block.
pub(crate) fn split_cmdline(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

impl ProcSource for Procfs {
    fn read(&self, pid: u32) -> Option<ProcInfo> {
        let dir = self.root.join(pid.to_string());
        let stat = fs::read_to_string(dir.join("stat")).ok()?;
        let (ppid, start_ticks) = parse_stat(&stat)?;
        let exe = fs::read_link(dir.join("exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args = fs::read(dir.join("cmdline"))
            .map(|b| split_cmdline(&b))
            .unwrap_or_default();
        Some(ProcInfo {
            pid,
            ppid,
            parent_start: 0,
            start_ticks,
            exe: exe.into(),
            args: args.into(),
            command_line: "".into(),
            id: "".into(),
            cwd: self.cwd(pid).map(Into::into),
            exited: None,
            source: Source::Procfs,
        })
    }

    fn cwd(&self, pid: u32) -> Option<String> {
        fs::read_link(self.root.join(pid.to_string()).join("cwd"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn fd_path(&self, pid: u32, fd: i64) -> Option<String> {
        fs::read_link(
            self.root
                .join(pid.to_string())
                .join("fd")
                .join(fd.to_string()),
        )
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
    }

    fn all_pids(&self) -> Vec<u32> {
        fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        let s =
            "1234 (a) b (c)) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        assert_eq!(parse_stat(s), Some((77, 98765)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn reads_this_process() {
        let p = Procfs::default()
            .read(std::process::id())
            .expect("own /proc entry");
        assert!(p.start_ticks > 0);
        assert!(!p.exe.is_empty());
        assert_eq!(split_cmdline(b"a\0\0b\0"), vec!["a", "", "b"]);
    }
}
