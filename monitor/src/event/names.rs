//! Turning raw numbers into readable values: socket addresses, errno, flag and request names.
use std::net::Ipv6Addr;

/// A decoded `struct sockaddr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SockAddr {
    pub(crate) family: String,
    pub(crate) address: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) unix_path: Option<String>,
}

/// Decodes a sockaddr as copied from user memory; `None` when empty.
/// Dotted-quad text of an IPv4 address, as `Ipv4Addr`'s `Display` writes it, without the
/// formatting machinery (a connect is a common event).
pub(crate) fn ipv4(a: [u8; 4]) -> String {
    let mut s = String::with_capacity(15);
    for (i, octet) in a.into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(itoa::Buffer::new().format(octet));
    }
    s
}

pub(crate) fn sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_le_bytes(b.get(0..2)?.try_into().ok()?);
    let port = || b.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    Some(match family as i32 {
        libc::AF_INET => SockAddr {
            family: "inet".into(),
            address: b
                .get(4..8)
                .and_then(|a| <[u8; 4]>::try_from(a).ok())
                .map(ipv4),
            port: port(),
            unix_path: None,
        },
        libc::AF_INET6 => SockAddr {
            family: "inet6".into(),
            address: b
                .get(8..24)
                .and_then(|a| <[u8; 16]>::try_from(a).ok())
                .map(|a| Ipv6Addr::from(a).to_string()),
            port: port(),
            unix_path: None,
        },
        libc::AF_UNIX => {
            let p = b.get(2..).unwrap_or_default();
            let path = match p.first() {
                // Abstract namespace: leading NUL, name may contain NULs; shown as @name.
                Some(0) if p.len() > 1 => Some(format!(
                    "@{}",
                    String::from_utf8_lossy(&p[1..]).trim_end_matches('\0')
                )),
                Some(_) => {
                    let end = p.iter().position(|&c| c == 0).unwrap_or(p.len());
                    Some(String::from_utf8_lossy(&p[..end]).into_owned())
                }
                None => None,
            };
            SockAddr {
                family: "unix".into(),
                address: None,
                port: None,
                unix_path: path,
            }
        }
        other => SockAddr {
            family: other.to_string(),
            address: None,
            port: None,
            unix_path: None,
        },
    })
}

pub(crate) fn tcp_state_name(s: u32) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// Name of a signal number (x86_64 and arm64 numbering), `SIGRTMIN+N` for real-time ones.
pub(crate) fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(sig) {
        Ok(n @ 1..=31) => NAMES[n].to_string(),
        Ok(n @ 32..=64) => format!("SIGRTMIN+{}", n - 32),
        _ => sig.to_string(),
    }
}

/// Who raised a signal, from its siginfo `si_code`.
pub(crate) fn signal_origin(code: i32) -> &'static str {
    match code {
        0 => "kill",
        -6 => "tkill",
        -1 => "queue",
        c if c > 0 => "kernel",
        _ => "other",
    }
}

/// The kernel's outcome of generating a signal.
pub(crate) fn signal_result(r: i32) -> &'static str {
    match r {
        0 => "delivered",
        1 => "ignored",
        2 => "already_pending",
        3 => "overflow",
        4 => "info_lost",
        _ => "unknown",
    }
}

/// errno name of a positive error number.
pub(crate) fn errno_name(e: i64) -> &'static str {
    match e as i32 {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "E?",
    }
}

fn names(v: u64, table: &[(u64, &'static str)]) -> Vec<&'static str> {
    let mut out = Vec::new();
    push_names(&mut out, v, table);
    out
}

/// Appends the names of the bits of `v` found in `table`.
fn push_names(out: &mut Vec<&'static str>, v: u64, table: &[(u64, &'static str)]) {
    for &(bit, n) in table {
        if bit != 0 && v & bit == bit {
            out.push(n);
        }
    }
}

/// Names of open(2) flags, access mode first.
pub(crate) fn open_flag_names(f: u64) -> Vec<&'static str> {
    // Sized once: the access mode and a few flags, with no regrowth (opens are most events).
    let mut out = Vec::with_capacity(6);
    out.push(match f & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    let t: [(u64, &str); 11] = [
        (libc::O_CREAT as u64, "O_CREAT"),
        (libc::O_EXCL as u64, "O_EXCL"),
        (libc::O_NOCTTY as u64, "O_NOCTTY"),
        (libc::O_TRUNC as u64, "O_TRUNC"),
        (libc::O_APPEND as u64, "O_APPEND"),
        (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
        (libc::O_DIRECTORY as u64, "O_DIRECTORY"),
        (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
        (libc::O_CLOEXEC as u64, "O_CLOEXEC"),
        (libc::O_PATH as u64, "O_PATH"),
        (
            libc::O_TMPFILE as u64 & !(libc::O_DIRECTORY as u64),
            "O_TMPFILE",
        ),
    ];
    push_names(&mut out, f, &t);
    out
}

pub(crate) fn ns_flag_names(f: u64) -> Vec<&'static str> {
    let t: [(u64, &str); 8] = [
        (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
        (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
        (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
        (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
        (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
        (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
        (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
        (0x80, "CLONE_NEWTIME"),
    ];
    names(f, &t)
}

pub(crate) fn mount_flag_names(f: u64) -> Vec<&'static str> {
    let t: [(u64, &str); 9] = [
        (libc::MS_RDONLY, "MS_RDONLY"),
        (libc::MS_NOSUID, "MS_NOSUID"),
        (libc::MS_NODEV, "MS_NODEV"),
        (libc::MS_NOEXEC, "MS_NOEXEC"),
        (libc::MS_REMOUNT, "MS_REMOUNT"),
        (libc::MS_BIND, "MS_BIND"),
        (libc::MS_MOVE, "MS_MOVE"),
        (libc::MS_REC, "MS_REC"),
        (libc::MS_PRIVATE, "MS_PRIVATE"),
    ];
    names(f, &t)
}

pub(crate) fn ptrace_request(r: i64) -> String {
    match r {
        0 => "PTRACE_TRACEME".into(),
        1..=3 => "PTRACE_PEEK".into(),
        4..=6 => "PTRACE_POKE".into(),
        7 => "PTRACE_CONT".into(),
        8 => "PTRACE_KILL".into(),
        16 => "PTRACE_ATTACH".into(),
        17 => "PTRACE_DETACH".into(),
        0x4206 => "PTRACE_SEIZE".into(),
        other => format!("PTRACE_{other}"),
    }
}

pub(crate) fn bpf_cmd(c: i64) -> String {
    match c {
        0 => "BPF_MAP_CREATE".into(),
        1 => "BPF_MAP_LOOKUP_ELEM".into(),
        2 => "BPF_MAP_UPDATE_ELEM".into(),
        5 => "BPF_PROG_LOAD".into(),
        6 => "BPF_OBJ_PIN".into(),
        8 => "BPF_PROG_ATTACH".into(),
        28 => "BPF_LINK_CREATE".into(),
        other => format!("BPF_CMD_{other}"),
    }
}

/// The last segment of a path.
fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Binaries that are many programs, chosen by the name they are run as (`argv[0]`), or by
/// their first argument when run under their own name (`busybox nc ...`).
const MULTI_CALL: [&str; 3] = ["busybox", "toybox", "busybox.static"];

/// The program an exec runs: the executable's file name, or the applet of a multi-call binary,
/// or, when a process re-executed itself through /proc/self/exe (as busybox's standalone shell
/// runs its applets), the name it gave itself in argv[0].
pub(crate) fn program_name<'a>(filename: &'a str, args: &'a [String]) -> &'a str {
    let file = base(filename);
    if filename == crate::process::SELF_EXE {
        return match args.first().map(|a| base(a)) {
            Some(a0) if MULTI_CALL.contains(&a0) => args.get(1).map_or(a0, |a1| base(a1)),
            Some(a0) if !a0.is_empty() => a0,
            _ => file,
        };
    }
    if !MULTI_CALL.contains(&file) {
        return file;
    }
    match args.first().map(|a| base(a)) {
        Some(a0) if MULTI_CALL.contains(&a0) => args.get(1).map_or(file, |a1| base(a1)),
        Some(a0) if !a0.is_empty() => a0,
        _ => file,
    }
}

/// Name of an address family (socket's first argument).
pub(crate) fn family_name(f: i64) -> String {
    match f as i32 {
        libc::AF_UNIX => "unix".into(),
        libc::AF_INET => "inet".into(),
        libc::AF_INET6 => "inet6".into(),
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        libc::AF_VSOCK => "vsock".into(),
        libc::AF_ALG => "alg".into(),
        libc::AF_XDP => "xdp".into(),
        other => other.to_string(),
    }
}

/// Name of a socket type (flags such as SOCK_CLOEXEC masked off).
pub(crate) fn socket_type_name(t: i64) -> &'static str {
    match (t as i32) & 0xf {
        libc::SOCK_STREAM => "SOCK_STREAM",
        libc::SOCK_DGRAM => "SOCK_DGRAM",
        libc::SOCK_RAW => "SOCK_RAW",
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET",
        libc::SOCK_RDM => "SOCK_RDM",
        10 => "SOCK_PACKET",
        _ => "SOCK_?",
    }
}

/// Name of a prctl(2) option, for the ones rules care about.
pub(crate) fn prctl_option(o: i64) -> String {
    match o {
        1 => "PR_SET_PDEATHSIG".into(),
        4 => "PR_SET_DUMPABLE".into(),
        8 => "PR_SET_KEEPCAPS".into(),
        15 => "PR_SET_NAME".into(),
        16 => "PR_GET_NAME".into(),
        22 => "PR_SET_SECCOMP".into(),
        24 => "PR_CAPBSET_DROP".into(),
        35 => "PR_SET_MM".into(),
        36 => "PR_SET_CHILD_SUBREAPER".into(),
        38 => "PR_SET_NO_NEW_PRIVS".into(),
        47 => "PR_CAP_AMBIENT".into(),
        0x59616d61 => "PR_SET_PTRACER".into(),
        other => format!("PR_{other}"),
    }
}

/// Name of a keyctl(2) operation.
pub(crate) fn keyctl_op(o: i64) -> String {
    match o {
        0 => "KEYCTL_GET_KEYRING_ID".into(),
        1 => "KEYCTL_JOIN_SESSION_KEYRING".into(),
        2 => "KEYCTL_UPDATE".into(),
        6 => "KEYCTL_DESCRIBE".into(),
        8 => "KEYCTL_SEARCH".into(),
        11 => "KEYCTL_READ".into(),
        17 => "KEYCTL_INSTANTIATE".into(),
        23 => "KEYCTL_DH_COMPUTE".into(),
        other => format!("KEYCTL_{other}"),
    }
}

/// Name of a perf event type (`perf_event_attr.type`).
pub(crate) fn perf_type(t: u32) -> String {
    match t {
        0 => "PERF_TYPE_HARDWARE".into(),
        1 => "PERF_TYPE_SOFTWARE".into(),
        2 => "PERF_TYPE_TRACEPOINT".into(),
        3 => "PERF_TYPE_HW_CACHE".into(),
        4 => "PERF_TYPE_RAW".into(),
        5 => "PERF_TYPE_BREAKPOINT".into(),
        other => format!("PERF_TYPE_{other}"),
    }
}

/// Names of io_uring_setup(2) flags.
pub(crate) fn uring_setup_flag_names(f: u64) -> Vec<&'static str> {
    let t: [(u64, &str); 6] = [
        (1, "IORING_SETUP_IOPOLL"),
        (2, "IORING_SETUP_SQPOLL"),
        (4, "IORING_SETUP_SQ_AFF"),
        (8, "IORING_SETUP_CQSIZE"),
        (0x20, "IORING_SETUP_ATTACH_WQ"),
        (0x40, "IORING_SETUP_R_DISABLED"),
    ];
    names(f, &t)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// The same text as the standard library's `Display`, for every value of each octet in
    /// each position.
    #[test]
    fn ipv4_text_is_the_standard_librarys() {
        for pos in 0..4 {
            for v in 0..=255u8 {
                let mut a = [10, 0, 200, 7];
                a[pos] = v;
                assert_eq!(ipv4(a), Ipv4Addr::from(a).to_string());
            }
        }
    }

    /// Every single flag, every access mode and a few combinations: the same names as the
    /// general table walk gives.
    #[test]
    fn open_flag_names_keep_their_order() {
        assert_eq!(open_flag_names(0x241), ["O_WRONLY", "O_CREAT", "O_TRUNC"]);
        assert_eq!(open_flag_names(0x80000), ["O_RDONLY", "O_CLOEXEC"]);
        assert_eq!(open_flag_names(3), ["O_ACCMODE"]);
        assert_eq!(
            open_flag_names(libc::O_TMPFILE as u64 | 2),
            ["O_RDWR", "O_DIRECTORY", "O_TMPFILE"]
        );
    }

    #[test]
    fn sockaddrs() {
        let v4 = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let a = sockaddr(&v4).expect("v4");
        assert_eq!(
            (a.family.as_str(), a.address.as_deref(), a.port),
            ("inet", Some("127.0.0.1"), Some(8080))
        );
        let mut v6 = vec![10, 0, 0, 80, 0, 0, 0, 0];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let a = sockaddr(&v6).expect("v6");
        assert_eq!((a.address.as_deref(), a.port), (Some("::1"), Some(80)));
        let a = sockaddr(b"\x01\x00/run/x.sock\0\0").expect("unix");
        assert_eq!(a.unix_path.as_deref(), Some("/run/x.sock"));
        let a = sockaddr(b"\x01\x00\0abstract").expect("abstract");
        assert_eq!(a.unix_path.as_deref(), Some("@abstract"));
        assert_eq!(sockaddr(&[2]), None);
        // Truncated inet: family known, no address.
        assert_eq!(sockaddr(&[2, 0]).expect("short").address, None);
    }

    #[test]
    fn flag_names() {
        let f = (libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC) as u64;
        assert_eq!(open_flag_names(f), vec!["O_WRONLY", "O_CREAT", "O_CLOEXEC"]);
        assert_eq!(
            ns_flag_names((libc::CLONE_NEWNET | libc::CLONE_NEWNS) as u64),
            vec!["CLONE_NEWNS", "CLONE_NEWNET"]
        );
        assert_eq!(errno_name(2), "ENOENT");
        assert_eq!(crate::process::join_path("/a/b", "../c/./d"), "/a/c/d");
        assert_eq!(tcp_state_name(10), "LISTEN");
    }

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn multi_call_binaries_are_named_by_their_applet() {
        assert_eq!(program_name("/usr/bin/curl", &args(&["curl", "x"])), "curl");
        // busybox's standalone shell re-executes itself with the applet as argv[0].
        assert_eq!(program_name("/bin/busybox", &args(&["wget", "-q"])), "wget");
        assert_eq!(
            program_name("/bin/busybox", &args(&["/bin/busybox", "nc", "-e"])),
            "nc"
        );
        assert_eq!(program_name("/bin/busybox", &args(&["busybox"])), "busybox");
        assert_eq!(program_name("/bin/busybox", &[]), "busybox");
        // A re-execution through /proc/self/exe is named by argv[0].
        assert_eq!(
            program_name("/proc/self/exe", &args(&["wget", "-q"])),
            "wget"
        );
        assert_eq!(
            program_name("/proc/self/exe", &args(&["runc", "init"])),
            "runc"
        );
        assert_eq!(program_name("/proc/self/exe", &[]), "exe");
        // A symlink named after the applet is its own name already.
        assert_eq!(program_name("/bin/nc", &args(&["nc"])), "nc");
    }
}
