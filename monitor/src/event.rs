//! Enriched events: a decoded record plus what the process table knows, as JSON.
use monitor_common::{
    EXEC_ARGS_TRUNCATED, EXEC_FILENAME_TRUNCATED, EventKind, Header, Syscall, SyscallBody,
};
use serde::Serialize;

use crate::{
    capture::decode::{Payload, RawEvent},
    enrich::Attribution,
    load::syscalls::call_name,
    process::{Ancestor, ProcSource, ProcessTable, Source},
};

/// One event as users, rules and tests see it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339 UTC, nanoseconds.
    pub time: String,
    pub kind: &'static str,
    pub node: String,
    pub process: ProcessView,
    /// cgroup2 id of the task (inode number of its cgroup directory).
    pub cgroup_id: u64,
    /// When it happened in /proc clock ticks since boot, comparable with process start times
    /// (sequence rules use it to tell whether a child was forked after the first event).
    #[serde(skip)]
    pub ticks: u64,
    /// `container`, `pod` and `metadata` (how complete they are).
    #[serde(flatten)]
    pub attribution: Attribution,
    #[serde(flatten)]
    pub detail: Detail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub tid: u32,
    /// Unique across pid reuse (and nodes): hash of boot id, pid and start time.
    pub id: String,
    pub ppid: u32,
    pub comm: String,
    pub exe: String,
    pub args: Vec<String>,
    pub command_line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Where exe/args came from: `exec` (seen), `procfs` (read at start-up or on a miss),
    /// `unknown` (not available).
    pub source: Source,
    pub ancestors: Vec<Ancestor>,
    /// Start time in /proc clock ticks since boot (0 if unknown); not output.
    #[serde(skip)]
    pub start_ticks: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    Exec(ExecDetail),
    Fork(ForkDetail),
    Exit(ExitDetail),
    File(FileDetail),
    Network(NetDetail),
    Tcp(TcpDetail),
    Privilege(PrivDetail),
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecDetail {
    pub filename: String,
    pub args: Vec<String>,
    pub args_truncated: bool,
    pub filename_truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForkDetail {
    pub child_pid: u32,
    pub child_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExitDetail {
    /// Exit status (0-255) when the process exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Terminating signal when it was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Raw wait status; absent when the kernel offset was unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// Result of a syscall: the return value and, on failure, the errno name.
#[derive(Debug, Clone, Serialize)]
pub struct CallResult {
    pub syscall: &'static str,
    pub result: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileDetail {
    #[serde(flatten)]
    pub call: CallResult,
    /// Absolute path when it could be resolved, else as passed.
    pub path: Option<String>,
    /// The path exactly as passed, when it differs from `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<String>,
    /// Second path: new name (rename, link), link location (symlink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flag_names: Vec<&'static str>,
    /// Permission bits, octal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_gid: Option<i64>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetDetail {
    #[serde(flatten)]
    pub call: CallResult,
    pub fd: i64,
    /// `inet`, `inet6`, `unix`, or the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path of a unix socket (`@name` for the abstract namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpDetail {
    pub old_state: &'static str,
    pub new_state: &'static str,
    pub family: String,
    pub protocol: u16,
    pub saddr: String,
    pub sport: u16,
    pub daddr: String,
    pub dport: u16,
    /// Kernel socket address: the same for every change of one connection.
    pub socket: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PrivDetail {
    #[serde(flatten)]
    pub call: Option<CallResult>,
    /// uid and euid before the call (setuid family, capset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_euid: Option<u32>,
    /// Ids asked for, in the call's argument order; -1 = unchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<i64>,
    /// Capability sets asked for (capset), as hex masks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_effective: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_permitted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_inheritable: Option<String>,
    /// ptrace request name and target pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<i64>,
    /// mount source, target, fstype; umount target; module parameters; memfd name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flag_names: Vec<&'static str>,
    /// setns/dup: fds involved; bpf: command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Node-wide facts used while enriching.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub node: String,
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, ns: turns kernel timestamps into wall-clock time.
    pub boot_to_wall_ns: i128,
}

impl NodeContext {
    pub fn detect(node: Option<String>) -> NodeContext {
        let node = node
            .or_else(|| std::env::var("NODE_NAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default();
        NodeContext {
            node,
            boot_to_wall_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into our timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// RFC 3339 UTC with nanoseconds from ns since the epoch.
pub fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn comm(h: &Header) -> String {
    let end = h.comm.iter().position(|&c| c == 0).unwrap_or(h.comm.len());
    String::from_utf8_lossy(&h.comm[..end]).into_owned()
}

/// Updates the process table with `ev` and returns the enriched event.
pub fn enrich<S: ProcSource>(
    ev: &RawEvent,
    table: &mut ProcessTable<S>,
    node: &NodeContext,
) -> Option<Event> {
    let h = &ev.header;
    if ev.kind.is_internal() {
        return None;
    }
    // Lifecycle events update the table first, so that an exec shows the new image.
    match &ev.payload {
        Payload::Exec {
            body,
            filename,
            argv,
        } => {
            table.on_exec(h.pid, h.start_ns, body.ppid, filename, argv.clone());
        }
        Payload::Fork(f) => table.on_fork(h.pid, h.start_ns, f.child_pid, f.child_start_ns),
        _ => {}
    }
    let p = table.get_or_load(h.pid, h.start_ns);
    let process = ProcessView {
        pid: h.pid,
        tid: h.tid,
        id: p.id.clone(),
        ppid: p.ppid,
        comm: comm(h),
        exe: p.exe.clone(),
        command_line: p.command_line.clone(),
        args: p.args.clone(),
        cwd: p.cwd.clone(),
        uid: h.uid,
        gid: h.gid,
        euid: h.euid,
        egid: h.egid,
        source: p.source,
        ancestors: Vec::new(),
        start_ticks: p.start_ticks,
    };
    let mut process = process;
    process.ancestors = table.ancestry(h.pid, crate::process::ANCESTRY_DEPTH);
    let detail = match &ev.payload {
        Payload::Exec {
            body,
            filename,
            argv,
        } => Detail::Exec(ExecDetail {
            filename: filename.clone(),
            args: argv.clone(),
            args_truncated: body.flags & EXEC_ARGS_TRUNCATED != 0,
            filename_truncated: body.flags & EXEC_FILENAME_TRUNCATED != 0,
        }),
        Payload::Fork(f) => Detail::Fork(ForkDetail {
            child_pid: f.child_pid,
            child_id: table.id_of(f.child_pid, table.ticks(f.child_start_ns)),
        }),
        Payload::Exit(x) => {
            let known = x.code_known != 0;
            let sig = x.exit_code & 0x7f;
            Detail::Exit(ExitDetail {
                code: (known && sig == 0).then_some((x.exit_code >> 8) & 0xff),
                signal: (known && sig != 0).then_some(sig),
                status: known.then_some(x.exit_code),
            })
        }
        Payload::TcpState(t) => Detail::Tcp(crate::decode_net::tcp_detail(t)),
        Payload::Cgroup { .. } => return None,
        Payload::Syscall {
            body,
            call,
            str1,
            str2,
            data,
        } => syscall_detail(
            ev.kind,
            body,
            *call,
            str1.as_deref(),
            str2.as_deref(),
            data,
            process.cwd.as_deref(),
            h.pid,
        ),
    };
    if let Payload::Exit(_) = ev.payload {
        table.on_exit(h.pid, h.start_ns, std::time::Instant::now());
    }
    Some(Event {
        time: rfc3339(i128::from(h.ktime_ns) + node.boot_to_wall_ns),
        kind: ev.kind.name(),
        node: node.node.clone(),
        process,
        cgroup_id: h.cgroup_id,
        ticks: table.ticks(h.ktime_ns),
        attribution: Attribution::host(),
        detail,
    })
}

fn result(call: Syscall, ret: i64) -> CallResult {
    CallResult {
        syscall: call_name(call),
        result: ret,
        // saturating: a malformed record may carry i64::MIN (found by the decode fuzzer).
        error: (ret < 0).then(|| crate::decode_net::errno_name(ret.saturating_neg())),
    }
}

const AT_FDCWD: i64 = -100;

/// Makes `path` absolute: relative to the cwd for AT_FDCWD, to the directory fd otherwise
/// (read from /proc while the process lives).
fn resolve(path: &str, dirfd: Option<i64>, cwd: Option<&str>, pid: u32) -> Option<String> {
    if path.starts_with('/') || path.is_empty() {
        return None;
    }
    let base = match dirfd {
        None | Some(AT_FDCWD) => cwd.map(str::to_string),
        Some(fd) => std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
    }?;
    Some(crate::decode_net::join_path(&base, path))
}

#[allow(clippy::too_many_arguments)]
fn syscall_detail(
    kind: EventKind,
    b: &SyscallBody,
    call: Syscall,
    s1: Option<&str>,
    s2: Option<&str>,
    data: &[u8],
    cwd: Option<&str>,
    pid: u32,
) -> Detail {
    use Syscall as S;
    let a = |i: usize| b.args[i] as i64;
    let r = result(call, b.ret);
    let truncated =
        b.flags & (monitor_common::SYS_STR1_TRUNCATED | monitor_common::SYS_STR2_TRUNCATED) != 0;
    // dirfd argument index of the first and second path, for the *at calls.
    let (dirfd1, dirfd2) = match call {
        S::Openat
        | S::Openat2
        | S::Unlinkat
        | S::Fchmodat
        | S::Fchmodat2
        | S::Fchownat
        | S::Mkdirat => (Some(a(0)), None),
        S::Renameat | S::Renameat2 | S::Linkat => (Some(a(0)), Some(a(2))),
        S::Symlinkat => (None, Some(a(1))),
        _ => (None, None),
    };
    let file =
        |path: Option<&str>, flags: Option<u64>, mode: Option<u64>, owner: Option<(i64, i64)>| {
            let (path, raw_path) = match path {
                Some(p) => match resolve(p, dirfd1, cwd, pid) {
                    Some(abs) => (Some(abs), Some(p.to_string())),
                    None => (Some(p.to_string()), None),
                },
                None => (None, None),
            };
            let target = match (call, s2) {
                // A symlink's first string is its content, not a path to resolve.
                (S::Symlink | S::Symlinkat, Some(t)) => {
                    Some(resolve(t, dirfd2, cwd, pid).unwrap_or_else(|| t.to_string()))
                }
                (_, Some(t)) => Some(resolve(t, dirfd2, cwd, pid).unwrap_or_else(|| t.to_string())),
                _ => None,
            };
            Detail::File(FileDetail {
                call: r.clone(),
                path,
                raw_path,
                target,
                flags,
                flag_names: flags
                    .map(crate::decode_net::open_flag_names)
                    .unwrap_or_default(),
                mode: mode.map(|m| format!("{:04o}", m & 0o7777)),
                owner_uid: owner.map(|o| o.0 as i32 as i64),
                owner_gid: owner.map(|o| o.1 as i32 as i64),
                truncated,
            })
        };
    let creates = |flags: u64| flags & (libc::O_CREAT as u64 | libc::O_TMPFILE as u64) != 0;
    match call {
        S::Open => file(
            s1,
            Some(b.args[1]),
            creates(b.args[1]).then_some(b.args[2]),
            None,
        ),
        S::Openat => file(
            s1,
            Some(b.args[2]),
            creates(b.args[2]).then_some(b.args[3]),
            None,
        ),
        S::Openat2 => {
            let how = |i: usize| {
                data.get(i * 8..i * 8 + 8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_le_bytes)
            };
            let flags = how(0);
            file(s1, flags, flags.filter(|f| creates(*f)).and(how(1)), None)
        }
        S::Creat => file(
            s1,
            Some((libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64),
            Some(b.args[1]),
            None,
        ),
        S::Unlink | S::Rmdir => file(s1, None, None, None),
        S::Unlinkat => file(s1, Some(b.args[2]), None, None),
        S::Rename | S::Renameat => file(s1, None, None, None),
        S::Renameat2 => file(s1, Some(b.args[4]), None, None),
        S::Chmod => file(s1, None, Some(b.args[1]), None),
        S::Fchmodat => file(s1, None, Some(b.args[2]), None),
        S::Fchmodat2 => file(s1, Some(b.args[3]), Some(b.args[2]), None),
        S::Chown | S::Lchown => file(s1, None, None, Some((a(1), a(2)))),
        S::Fchownat => file(s1, Some(b.args[4]), None, Some((a(2), a(3)))),
        S::Symlink | S::Symlinkat | S::Link => {
            let mut d = file(s1, None, None, None);
            if let Detail::File(f) = &mut d {
                // For symlinks the first string is the link's content: keep it as written.
                if matches!(call, S::Symlink | S::Symlinkat) {
                    f.path = s1.map(str::to_string);
                    f.raw_path = None;
                }
            }
            d
        }
        S::Linkat => file(s1, Some(b.args[4]), None, None),
        S::Mkdir => file(s1, None, Some(b.args[1]), None),
        S::Mkdirat => file(s1, None, Some(b.args[2]), None),
        S::Connect | S::Accept | S::Accept4 | S::Bind | S::Listen => {
            let addr = crate::decode_net::sockaddr(data);
            Detail::Network(NetDetail {
                call: r,
                // accept returns the new connection's fd.
                fd: if matches!(call, S::Accept | S::Accept4) {
                    b.ret
                } else {
                    a(0)
                },
                family: addr.as_ref().map(|x| x.family.clone()),
                address: addr.as_ref().and_then(|x| x.address.clone()),
                port: addr.as_ref().and_then(|x| x.port),
                unix_path: addr.as_ref().and_then(|x| x.unix_path.clone()),
                backlog: (call == S::Listen).then(|| a(1)),
            })
        }
        _ => Detail::Privilege(priv_detail(kind, b, call, s1, s2, data, r)),
    }
}

fn priv_detail(
    kind: EventKind,
    b: &SyscallBody,
    call: Syscall,
    s1: Option<&str>,
    s2: Option<&str>,
    data: &[u8],
    r: CallResult,
) -> PrivDetail {
    use Syscall as S;
    let a = |i: usize| b.args[i] as i64;
    let id = |i: usize| b.args[i] as u32 as i32 as i64;
    let mut d = PrivDetail {
        call: Some(r),
        ..PrivDetail::default()
    };
    if matches!(kind, EventKind::SetId | EventKind::Capset) {
        d.old_uid = Some(b.old_uid);
        d.old_euid = Some(b.old_euid);
    }
    match call {
        S::Setuid | S::Setgid | S::Setfsuid | S::Setfsgid => d.ids = vec![id(0)],
        S::Setreuid | S::Setregid => d.ids = vec![id(0), id(1)],
        S::Setresuid | S::Setresgid => d.ids = vec![id(0), id(1), id(2)],
        S::Capset => {
            let w = |i: usize| {
                data.get(i * 4..i * 4 + 4)
                    .and_then(|s| s.try_into().ok())
                    .map(u32::from_le_bytes)
            };
            // Two __user_cap_data_struct {effective, permitted, inheritable}: low then high words.
            let set = |i: usize| match (w(i), w(i + 3)) {
                (Some(lo), hi) => Some(format!(
                    "{:#x}",
                    u64::from(lo) | u64::from(hi.unwrap_or(0)) << 32
                )),
                _ => None,
            };
            d.cap_effective = set(0);
            d.cap_permitted = set(1);
            d.cap_inheritable = set(2);
        }
        S::Ptrace => {
            d.request = Some(crate::decode_net::ptrace_request(a(0)));
            d.target_pid = Some(a(1));
        }
        S::InitModule => d.source = s1.map(str::to_string),
        S::FinitModule => {
            d.fd = Some(a(0));
            d.source = s1.map(str::to_string);
        }
        S::Mount => {
            d.source = s1.map(str::to_string);
            d.target = s2.map(str::to_string);
            d.fstype = (!data.is_empty()).then(|| String::from_utf8_lossy(data).into_owned());
            d.flags = Some(b.args[3]);
            d.flag_names = crate::decode_net::mount_flag_names(b.args[3]);
        }
        S::Umount2 => {
            d.target = s1.map(str::to_string);
            d.flags = Some(b.args[1]);
        }
        S::Setns => {
            d.fd = Some(a(0));
            d.flags = Some(b.args[1]);
            d.flag_names = crate::decode_net::ns_flag_names(b.args[1]);
        }
        S::Unshare => {
            d.flags = Some(b.args[0]);
            d.flag_names = crate::decode_net::ns_flag_names(b.args[0]);
        }
        S::MemfdCreate => {
            d.name = s1.map(str::to_string);
            d.flags = Some(b.args[1]);
            d.fd = (b.ret >= 0).then_some(b.ret);
        }
        S::Bpf => d.command = Some(crate::decode_net::bpf_cmd(a(0))),
        S::Dup2 | S::Dup3 => {
            d.fd = Some(a(0));
            d.new_fd = Some(a(1));
        }
        _ => {}
    }
    d
}

#[cfg(test)]
mod tests {

    /// Fuzzer regression: a syscall result of i64::MIN once overflowed the errno negation.
    #[test]
    fn most_negative_result_is_not_an_overflow() {
        let r = result(Syscall::Openat, i64::MIN);
        assert_eq!(r.result, i64::MIN);
        assert!(r.error.is_some());
    }

    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        assert_eq!(
            resolve("a/b", Some(AT_FDCWD), Some("/tmp"), 1).as_deref(),
            Some("/tmp/a/b")
        );
        assert_eq!(resolve("/x", Some(AT_FDCWD), Some("/tmp"), 1), None);
        assert_eq!(resolve("x", None, None, 1), None);
    }
}
