//! The detail section of file, network, TCP and privilege events: arguments turned into
//! paths, addresses, flag and request names.
use std::net::Ipv6Addr;

use monitor_common::{EventKind, SignalBody, Syscall, SyscallBody, TcpStateBody};

use super::{
    CallResult, Detail, FileDetail, NetDetail, PrivDetail, SignalDetail, TcpDetail,
    names::{
        bpf_cmd, errno_name, family_name, keyctl_op, mount_flag_names, ns_flag_names,
        open_flag_names, perf_type, prctl_option, ptrace_request, signal_name, signal_origin,
        signal_result, sockaddr, socket_type_name, tcp_state_name, uring_setup_flag_names,
    },
};
use crate::process::join_path;

/// The detail of a signal sent to the agent.
pub(super) fn signal_detail(b: &SignalBody) -> SignalDetail {
    SignalDetail {
        number: b.sig,
        name: signal_name(b.sig),
        origin: signal_origin(b.code),
        target_pid: b.target_pid,
        group: b.group != 0,
        result: signal_result(b.result),
    }
}

/// The detail of a TCP state change.
pub(super) fn tcp_detail(t: &TcpStateBody) -> TcpDetail {
    let v6 = t.family as i32 == libc::AF_INET6;
    let addr = |a: &[u8; 16]| {
        if v6 {
            Ipv6Addr::from(*a).to_string()
        } else {
            super::names::ipv4([a[0], a[1], a[2], a[3]])
        }
    };
    TcpDetail {
        old_state: tcp_state_name(t.oldstate),
        new_state: tcp_state_name(t.newstate),
        family: if v6 {
            "inet6".into()
        } else if t.family as i32 == libc::AF_INET {
            "inet".into()
        } else {
            t.family.to_string()
        },
        protocol: t.protocol,
        saddr: addr(&t.saddr),
        sport: t.sport,
        daddr: addr(&t.daddr),
        dport: t.dport,
        socket: format!("{:#x}", t.skaddr),
    }
}

/// A decoded syscall record: the parts the detail is made of.
pub(super) struct SyscallRecord<'a> {
    pub(super) kind: EventKind,
    pub(super) body: &'a SyscallBody,
    pub(super) call: Syscall,
    pub(super) s1: Option<&'a str>,
    pub(super) s2: Option<&'a str>,
    pub(super) data: &'a [u8],
}

/// Where the relative paths of a process resolve: its working directory, and its open
/// directory descriptors (asked of the process table's source while the process lives).
pub(super) struct PathBase<'a> {
    pub(super) cwd: Option<&'a str>,
    pub(super) dir_fd: &'a dyn Fn(i64) -> Option<String>,
}

fn result(call: Syscall, body: &SyscallBody) -> CallResult {
    let ret = body.ret;
    CallResult {
        syscall: call.name(),
        result: ret,
        // saturating: a malformed record may carry i64::MIN (found by the decode fuzzer).
        error: (ret < 0).then(|| errno_name(ret.saturating_neg())),
        via: (body.flags & monitor_common::SYS_VIA_IO_URING != 0).then_some("io_uring"),
    }
}

const AT_FDCWD: i64 = -100;

impl PathBase<'_> {
    /// Makes `path` absolute: relative to the cwd for AT_FDCWD, to the directory fd otherwise;
    /// `None` when it already is absolute or its base is unknown.
    fn resolve(&self, path: &str, dirfd: Option<i64>) -> Option<String> {
        if path.starts_with('/') {
            // `/etc/../etc/shadow` and `//etc/./shadow` name /etc/shadow: a rule about the
            // file must not be passed by by spelling its path another way.
            // Every odd spelling has `/.` or `//` in it: most paths are ruled out by one scan.
            let odd = (path.contains("/.") || path.contains("//"))
                && (path.contains("//") || path.split('/').any(|seg| seg == "." || seg == ".."));
            return odd.then(|| join_path("/", path));
        }
        if path.is_empty() {
            return None;
        }
        let base = match dirfd {
            None | Some(AT_FDCWD) => self.cwd.map(str::to_string),
            Some(fd) => (self.dir_fd)(fd),
        }?;
        Some(join_path(&base, path))
    }
}

/// The detail of a file, network or privilege syscall.
pub(super) fn syscall_detail(r: &SyscallRecord<'_>, base: &PathBase<'_>) -> Detail {
    use Syscall as S;
    match r.call {
        S::Connect | S::Accept | S::Accept4 | S::Bind | S::Listen | S::Socket | S::Sendto => {
            net_detail(r)
        }
        _ if matches!(
            r.kind,
            EventKind::Open
                | EventKind::Unlink
                | EventKind::Rename
                | EventKind::Chmod
                | EventKind::Chown
                | EventKind::Symlink
                | EventKind::Link
                | EventKind::Mkdir
                | EventKind::Chdir
        ) =>
        {
            Detail::File(file_detail(r, base))
        }
        _ => Detail::Privilege(Box::new(priv_detail(r))),
    }
}

/// Flags, mode and owner arguments of a file call, by call.
struct FileArgs {
    flags: Option<u64>,
    mode: Option<u64>,
    owner: Option<(i64, i64)>,
}

fn file_args(r: &SyscallRecord<'_>) -> FileArgs {
    use Syscall as S;
    let b = r.body;
    let a = |i: usize| b.args[i] as i64;
    let creates = |flags: u64| flags & (libc::O_CREAT as u64 | libc::O_TMPFILE as u64) != 0;
    let fa = |flags: Option<u64>, mode: Option<u64>| FileArgs {
        flags,
        mode,
        owner: None,
    };
    match r.call {
        S::Open => fa(Some(b.args[1]), creates(b.args[1]).then_some(b.args[2])),
        S::Openat => fa(Some(b.args[2]), creates(b.args[2]).then_some(b.args[3])),
        S::Openat2 => {
            let how = |i: usize| {
                r.data
                    .get(i * 8..i * 8 + 8)
                    .and_then(|s| s.try_into().ok())
                    .map(u64::from_le_bytes)
            };
            let flags = how(0);
            fa(flags, flags.filter(|f| creates(*f)).and(how(1)))
        }
        S::Creat => fa(
            Some((libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64),
            Some(b.args[1]),
        ),
        S::Unlinkat => fa(Some(b.args[2]), None),
        S::Renameat2 | S::Linkat => fa(Some(b.args[4]), None),
        S::Chmod | S::Mkdir => fa(None, Some(b.args[1])),
        S::Fchmodat | S::Mkdirat => fa(None, Some(b.args[2])),
        S::Fchmodat2 => fa(Some(b.args[3]), Some(b.args[2])),
        S::Chown | S::Lchown => FileArgs {
            owner: Some((a(1), a(2))),
            ..fa(None, None)
        },
        S::Fchownat => FileArgs {
            owner: Some((a(2), a(3))),
            ..fa(Some(b.args[4]), None)
        },
        _ => fa(None, None),
    }
}

fn file_detail(r: &SyscallRecord<'_>, base: &PathBase<'_>) -> FileDetail {
    use Syscall as S;
    let b = r.body;
    // A descriptor is an `int`: the kernel reads the low 32 bits of its register, whose upper
    // half callers may leave unextended (AT_FDCWD arrives as 0xffffff9c from static busybox).
    let fd = |i: usize| i64::from(b.args[i] as u32 as i32);
    // dirfd argument of the first and second path, for the *at calls.
    let (dirfd1, dirfd2) = match r.call {
        S::Openat
        | S::Openat2
        | S::Unlinkat
        | S::Fchmodat
        | S::Fchmodat2
        | S::Fchownat
        | S::Mkdirat => (Some(fd(0)), None),
        S::Renameat | S::Renameat2 | S::Linkat => (Some(fd(0)), Some(fd(2))),
        S::Symlinkat => (None, Some(fd(1))),
        _ => (None, None),
    };
    // A symlink's first string is its content, not a path: kept as written.
    let symlink = matches!(r.call, S::Symlink | S::Symlinkat);
    let (path, raw_path) = match r.s1 {
        Some(p) if !symlink => match base.resolve(p, dirfd1) {
            Some(abs) => (Some(abs), Some(p.to_string())),
            None => (Some(p.to_string()), None),
        },
        other => (other.map(str::to_string), None),
    };
    // fchdir names its directory by descriptor.
    let path = if r.call == S::Fchdir {
        (base.dir_fd)(fd(0))
    } else {
        path
    };
    let target =
        r.s2.map(|t| base.resolve(t, dirfd2).unwrap_or_else(|| t.to_string()));
    let args = file_args(r);
    FileDetail {
        call: result(r.call, b),
        path,
        raw_path,
        target,
        flags: args.flags,
        flag_names: args.flags.map(open_flag_names).unwrap_or_default(),
        mode: args.mode.map(|m| format!("{:04o}", m & 0o7777)),
        owner_uid: args.owner.map(|o| i64::from(o.0 as i32)),
        owner_gid: args.owner.map(|o| i64::from(o.1 as i32)),
        truncated: b.flags
            & (monitor_common::SYS_STR1_TRUNCATED | monitor_common::SYS_STR2_TRUNCATED)
            != 0,
    }
}

fn net_detail(r: &SyscallRecord<'_>) -> Detail {
    use Syscall as S;
    let b = r.body;
    let addr = sockaddr(r.data);
    if r.call == S::Socket {
        return Detail::Network(NetDetail {
            call: result(r.call, b),
            // Submitted through io_uring, the descriptor is not known yet.
            fd: if b.flags & monitor_common::SYS_VIA_IO_URING != 0 {
                -1
            } else {
                b.ret
            },
            family: Some(family_name(b.args[0] as i64)),
            address: None,
            port: None,
            unix_path: None,
            backlog: None,
            socket_type: Some(socket_type_name(b.args[1] as i64)),
            protocol: Some(b.args[2] as i64),
        });
    }
    Detail::Network(NetDetail {
        call: result(r.call, b),
        // accept returns the new connection's fd.
        fd: if matches!(r.call, S::Accept | S::Accept4) {
            b.ret
        } else {
            b.args[0] as i64
        },
        family: addr.as_ref().map(|x| x.family.clone()),
        address: addr.as_ref().and_then(|x| x.address.clone()),
        port: addr.as_ref().and_then(|x| x.port),
        unix_path: addr.as_ref().and_then(|x| x.unix_path.clone()),
        backlog: (r.call == S::Listen).then(|| b.args[1] as i64),
        socket_type: None,
        protocol: None,
    })
}

fn priv_detail(r: &SyscallRecord<'_>) -> PrivDetail {
    use Syscall as S;
    let (kind, b, call, s1, s2, data) = (r.kind, r.body, r.call, r.s1, r.s2, r.data);
    let a = |i: usize| b.args[i] as i64;
    let id = |i: usize| b.args[i] as u32 as i32 as i64;
    let mut d = PrivDetail {
        call: Some(result(call, b)),
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
            d.request = Some(ptrace_request(a(0)));
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
            d.flag_names = mount_flag_names(b.args[3]);
        }
        S::Umount2 => {
            d.target = s1.map(str::to_string);
            d.flags = Some(b.args[1]);
        }
        S::Setns => {
            d.fd = Some(a(0));
            d.flags = Some(b.args[1]);
            d.flag_names = ns_flag_names(b.args[1]);
        }
        S::Unshare => {
            d.flags = Some(b.args[0]);
            d.flag_names = ns_flag_names(b.args[0]);
        }
        S::MemfdCreate => {
            d.name = s1.map(str::to_string);
            d.flags = Some(b.args[1]);
            d.fd = (b.ret >= 0).then_some(b.ret);
        }
        S::Bpf => d.command = Some(bpf_cmd(a(0))),
        S::Kill => {
            d.target_pid = Some(id(0));
            d.signal = Some(signal_name(a(1) as i32));
        }
        S::Tkill => {
            d.target_pid = Some(id(0));
            d.signal = Some(signal_name(a(1) as i32));
        }
        S::Tgkill => {
            d.target_pid = Some(id(0));
            d.signal = Some(signal_name(a(2) as i32));
        }
        S::ProcessVmReadv | S::ProcessVmWritev => d.target_pid = Some(id(0)),
        S::Prctl => {
            d.request = Some(prctl_option(a(0)));
            d.name = (!data.is_empty()).then(|| {
                let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
                String::from_utf8_lossy(&data[..end]).into_owned()
            });
        }
        S::Chroot => d.target = s1.map(str::to_string),
        S::PivotRoot => {
            d.target = s1.map(str::to_string);
            d.source = s2.map(str::to_string);
        }
        S::Userfaultfd => {
            d.flags = Some(b.args[0]);
            d.fd = (b.ret >= 0).then_some(b.ret);
        }
        S::PerfEventOpen => {
            d.request = data
                .get(0..4)
                .and_then(|s| s.try_into().ok())
                .map(|w| perf_type(u32::from_le_bytes(w)));
            d.target_pid = Some(id(1));
        }
        S::Keyctl => d.request = Some(keyctl_op(a(0))),
        S::IoUringSetup => {
            let flags = data
                .get(8..12)
                .and_then(|s| s.try_into().ok())
                .map(|w| u64::from(u32::from_le_bytes(w)));
            d.flags = flags;
            d.flag_names = flags.map(uring_setup_flag_names).unwrap_or_default();
            d.fd = (b.ret >= 0).then_some(b.ret);
        }
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
        let body = SyscallBody {
            ret: i64::MIN,
            ..SyscallBody::default()
        };
        let r = result(Syscall::Openat, &body);
        assert_eq!(r.result, i64::MIN);
        assert!(r.error.is_some());
    }

    use super::*;

    #[test]
    fn an_unextended_at_fdcwd_is_still_the_working_directory() {
        let body = SyscallBody {
            ret: 3,
            args: [0xffff_ff9c, 0, 0, 0, 0, 0],
            call: Syscall::Openat as u16,
            ..SyscallBody::default()
        };
        let r = SyscallRecord {
            kind: EventKind::Open,
            body: &body,
            call: Syscall::Openat,
            s1: Some("../etc/hostname"),
            s2: None,
            data: &[],
        };
        let no_fd = |_: i64| None;
        let base = PathBase {
            cwd: Some("/tmp"),
            dir_fd: &no_fd,
        };
        let d = file_detail(&r, &base);
        assert_eq!(d.path.as_deref(), Some("/etc/hostname"));
        assert_eq!(d.raw_path.as_deref(), Some("../etc/hostname"));
    }

    #[test]
    fn relative_paths_resolve_against_cwd_or_the_directory_fd() {
        let dir_fd = |fd: i64| (fd == 7).then(|| "/srv/d".to_string());
        let base = PathBase {
            cwd: Some("/tmp"),
            dir_fd: &dir_fd,
        };
        assert_eq!(
            base.resolve("a/b", Some(AT_FDCWD)).as_deref(),
            Some("/tmp/a/b")
        );
        assert_eq!(base.resolve("a", Some(7)).as_deref(), Some("/srv/d/a"));
        assert_eq!(base.resolve("a", Some(8)), None);
        assert_eq!(base.resolve("/x", Some(AT_FDCWD)), None);
        // Absolute paths are folded too, so that no spelling passes a path rule by.
        assert_eq!(
            base.resolve("/etc/../etc/./shadow", Some(AT_FDCWD))
                .as_deref(),
            Some("/etc/shadow")
        );
        assert_eq!(
            base.resolve("//etc//shadow", None).as_deref(),
            Some("/etc/shadow")
        );
        let none = PathBase {
            cwd: None,
            dir_fd: &dir_fd,
        };
        assert_eq!(none.resolve("x", None), None);
    }
}
