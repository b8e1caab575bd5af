//! `monitor-trigger`: performs named system actions with exact, known arguments, so that tests,
//! benchmarks and operators can check what the monitor reports. It only touches paths it is
//! given, loopback, and namespaces the caller created.
//!
//! Usage: monitor-trigger ACTION ARGS..., actions listed in `main`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line helper: it reports each call as a JSON line on stdout and fails on stderr"
)]
mod attacks;
mod load;
mod uring;

use std::{ffi::CString, process::exit};

use load::{bench, fork_storm, rate};

fn c(s: &str) -> CString {
    match CString::new(s) {
        Ok(v) => v,
        Err(_) => die(&format!("path with NUL: {s:?}")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("monitor-trigger: {msg}");
    exit(2)
}

/// Runs a raw call and reports its result as a JSON line on stdout.
fn report(name: &str, r: i64) -> i64 {
    let err = if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    };
    println!("{{\"call\":\"{name}\",\"result\":{r},\"errno\":{err}}}");
    r
}

fn file(dir: &str) {
    let f = c(&format!("{dir}/f"));
    let g = c(&format!("{dir}/g"));
    let d = c(&format!("{dir}/d"));
    // SAFETY: plain syscalls on NUL-terminated paths we own.
    unsafe {
        let fd = report(
            "openat",
            libc::openat(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o640,
            ) as i64,
        );
        if fd >= 0 {
            libc::close(fd as i32);
        }
        report(
            "mkdirat",
            libc::mkdirat(libc::AT_FDCWD, d.as_ptr(), 0o750) as i64,
        );
        report(
            "fchmodat",
            libc::fchmodat(libc::AT_FDCWD, f.as_ptr(), 0o600, 0) as i64,
        );
        report(
            "fchownat",
            libc::fchownat(libc::AT_FDCWD, f.as_ptr(), 1234, 5678, 0) as i64,
        );
        report(
            "renameat",
            libc::renameat(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, g.as_ptr()) as i64,
        );
        let target = c("g");
        let s = c(&format!("{dir}/s"));
        report(
            "symlinkat",
            libc::symlinkat(target.as_ptr(), libc::AT_FDCWD, s.as_ptr()) as i64,
        );
        let h = c(&format!("{dir}/h"));
        report(
            "linkat",
            libc::linkat(libc::AT_FDCWD, g.as_ptr(), libc::AT_FDCWD, h.as_ptr(), 0) as i64,
        );
        report(
            "unlinkat",
            libc::unlinkat(libc::AT_FDCWD, h.as_ptr(), 0) as i64,
        );
        report(
            "unlinkat_dir",
            libc::unlinkat(libc::AT_FDCWD, d.as_ptr(), libc::AT_REMOVEDIR) as i64,
        );
        let missing = c(&format!("{dir}/missing"));
        report(
            "openat_missing",
            libc::openat(libc::AT_FDCWD, missing.as_ptr(), libc::O_RDONLY, 0) as i64,
        );
    }
}

/// Brings `lo` up (a new network namespace starts with it down).
fn loopback_up() {
    // SAFETY: ioctl on a socket with an ifreq we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as i16;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &mut req);
        }
        libc::close(s);
    }
}

fn tcp_pair(family: i32, port: u16) {
    // SAFETY: sockets and sockaddrs we own, sizes from the types.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let len = if family == libc::AF_INET {
            let a = &mut *(&raw mut ss).cast::<libc::sockaddr_in>();
            a.sin_family = libc::AF_INET as u16;
            a.sin_port = port.to_be();
            a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            size_of::<libc::sockaddr_in>()
        } else {
            let a = &mut *(&raw mut ss).cast::<libc::sockaddr_in6>();
            a.sin6_family = libc::AF_INET6 as u16;
            a.sin6_port = port.to_be();
            a.sin6_addr.s6_addr[15] = 1;
            size_of::<libc::sockaddr_in6>()
        } as u32;
        let sa = (&raw const ss).cast::<libc::sockaddr>();
        let l = libc::socket(family, libc::SOCK_STREAM, 0);
        let one: i32 = 1;
        libc::setsockopt(
            l,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            4,
        );
        report("bind", libc::bind(l, sa, len) as i64);
        report("listen", libc::listen(l, 16) as i64);
        let cl = libc::socket(family, libc::SOCK_STREAM, 0);
        report("connect", libc::connect(cl, sa, len) as i64);
        let mut peer: libc::sockaddr_storage = std::mem::zeroed();
        let mut plen = size_of::<libc::sockaddr_storage>() as u32;
        let a = report(
            "accept4",
            libc::accept4(l, (&raw mut peer).cast(), &mut plen, libc::SOCK_CLOEXEC) as i64,
        );
        if a >= 0 {
            libc::close(a as i32);
        }
        libc::close(cl);
        libc::close(l);
    }
}

fn net(port: u16, dir: &str) {
    loopback_up();
    tcp_pair(libc::AF_INET, port);
    tcp_pair(libc::AF_INET6, port + 1);
    // SAFETY: a unix socket bound to a path under `dir`.
    unsafe {
        let path = format!("{dir}/sock");
        let mut a: libc::sockaddr_un = std::mem::zeroed();
        a.sun_family = libc::AF_UNIX as u16;
        for (i, b) in path.bytes().take(a.sun_path.len() - 1).enumerate() {
            a.sun_path[i] = b as libc::c_char;
        }
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        report(
            "bind_unix",
            libc::bind(
                s,
                (&raw const a).cast(),
                size_of::<libc::sockaddr_un>() as u32,
            ) as i64,
        );
        libc::close(s);
    }
}

fn privileged(dir: &str) {
    // SAFETY: raw syscalls with arguments we own; run inside namespaces the caller created.
    unsafe {
        // capset with the current sets: a no-op change that still goes through the call.
        let mut hdr = [0x2008_0522u32, 0]; // _LINUX_CAPABILITY_VERSION_3, this process
        let mut data = [0u32; 6];
        libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr());
        report(
            "capset",
            libc::syscall(libc::SYS_capset, hdr.as_mut_ptr(), data.as_ptr()),
        );
        // ptrace attach to a child of ours.
        let child = libc::fork();
        if child == 0 {
            libc::pause();
            libc::_exit(0);
        }
        report("ptrace", libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0));
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        libc::ptrace(libc::PTRACE_DETACH, child, 0, 0);
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut st, 0);
        // mount and umount of a tmpfs in our private mount namespace.
        let m = c(&format!("{dir}/mnt"));
        libc::mkdir(m.as_ptr(), 0o700);
        let (src, fs) = (c("trigger-tmpfs"), c("tmpfs"));
        report(
            "mount",
            libc::mount(
                src.as_ptr(),
                m.as_ptr(),
                fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ) as i64,
        );
        report("umount2", libc::umount2(m.as_ptr(), 0) as i64);
        report("unshare", libc::unshare(libc::CLONE_NEWUTS) as i64);
        let ns = c("/proc/self/ns/uts");
        let nsfd = libc::open(ns.as_ptr(), libc::O_RDONLY);
        report("setns", libc::setns(nsfd, libc::CLONE_NEWUTS) as i64);
        let name = c("trigger-memfd");
        report(
            "memfd_create",
            libc::syscall(libc::SYS_memfd_create, name.as_ptr(), 0),
        );
        // BPF_PROG_LOAD with an empty attribute: rejected, but the call is made.
        let attr = [0u8; 128];
        report("bpf", libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), 128));
        let params = c("trigger=1");
        report(
            "init_module",
            libc::syscall(libc::SYS_init_module, attr.as_ptr(), 0, params.as_ptr()),
        );
        let null = c("/dev/null");
        let fd = libc::open(null.as_ptr(), libc::O_WRONLY);
        report("dup3", libc::dup3(fd, 2, 0) as i64);
        report("setgid", libc::setgid(4321) as i64);
        report("setresuid", libc::setresuid(4321, 4321, 4321) as i64);
    }
}

fn unlink_flood(count: u64, path: &str) {
    // A path of its own per call (`<path>-<n>`): identical calls would be folded in the kernel
    // as repeats, and these are meant to be seen (and counted) one by one.
    let mut buf: Vec<u8> = Vec::with_capacity(path.len() + 24);
    for n in 0..count {
        buf.clear();
        buf.extend_from_slice(path.as_bytes());
        buf.push(b'-');
        buf.extend_from_slice(n.to_string().as_bytes());
        buf.push(0);
        // SAFETY: unlink of a NUL-terminated path that does not exist: only the syscall matters.
        unsafe { libc::unlinkat(libc::AT_FDCWD, buf.as_ptr().cast(), 0) };
    }
}

/// Runs /bin/true from an anonymous memory file: nothing on disk (fexecve).
fn memfd_exec() {
    let prog = std::fs::read("/bin/true").unwrap_or_else(|e| die(&format!("read /bin/true: {e}")));
    let name = c("trigger-payload");
    // SAFETY: memfd, write, execveat with NUL-terminated arguments we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_memfd_create, name.as_ptr(), 0) as i32;
        if fd < 0 || libc::write(fd, prog.as_ptr().cast(), prog.len()) != prog.len() as isize {
            die("memfd_create/write failed");
        }
        let empty = c("");
        let arg0 = c("payload");
        let argv = [arg0.as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        libc::syscall(
            libc::SYS_execveat,
            fd,
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    die("execveat failed");
}

/// Drops to uid 1000 keeping saved uid 0, then takes root back (the saved-set-uid path).
fn regain_root() {
    // SAFETY: plain credential syscalls.
    unsafe {
        report("setresuid_drop", libc::setresuid(1000, 1000, 0) as i64);
        report("setresuid_regain", libc::setresuid(0, 0, 0) as i64);
    }
}

fn ptrace_child() {
    // SAFETY: fork, ptrace of our own child, kill and reap it by pid.
    unsafe {
        let child = libc::fork();
        if child == 0 {
            libc::pause();
            libc::_exit(0);
        }
        report("ptrace", libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0));
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        libc::kill(child, libc::SIGKILL);
        libc::ptrace(libc::PTRACE_DETACH, child, 0, 0);
        libc::waitpid(child, &mut st, 0);
    }
}

fn sockaddr_in(addr: &str, port: u16) -> libc::sockaddr_in {
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .unwrap_or_else(|_| die("ADDR must be an IPv4 address"));
    // SAFETY: sockaddr_in is plain data.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as u16;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
    a
}

/// One TCP connect attempt (used inside a network namespace the caller created).
fn connect(addr: &str, port: u16) {
    let a = sockaddr_in(addr, port);
    // SAFETY: socket/connect with a sockaddr we own.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        report(
            "connect",
            libc::connect(
                s,
                (&raw const a).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            ) as i64,
        );
        libc::close(s);
    }
}

/// A reverse shell's shape on loopback: connect to a listener of ours, put the socket on stdin
/// and stdout, exec a shell that exits at once. With `fork`, as `nc -e` does it: the connecting
/// process forks, and the child redirects and execs while the parent waits.
fn reverse_shell(port: u16, fork: bool) {
    loopback_up();
    let a = sockaddr_in("127.0.0.1", port);
    let len = size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: sockets, dup2 and exec with arguments we own.
    unsafe {
        let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        libc::bind(l, (&raw const a).cast(), len);
        libc::listen(l, 1);
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        report(
            "connect",
            libc::connect(s, (&raw const a).cast(), len) as i64,
        );
        libc::close(l);
        if fork {
            let child = libc::fork();
            if child < 0 {
                die("fork failed");
            }
            if child > 0 {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                std::process::exit(i32::from(status != 0));
            }
        }
        report("dup2_stdin", libc::dup2(s, 0) as i64);
        report("dup2_stdout", libc::dup2(s, 1) as i64);
        let sh = c("/bin/sh");
        let a1 = c("-c");
        let a2 = c("exit 0");
        let argv = [sh.as_ptr(), a1.as_ptr(), a2.as_ptr(), std::ptr::null()];
        libc::execv(sh.as_ptr(), argv.as_ptr());
    }
    die("exec /bin/sh failed");
}

/// COUNT unlinks of `PATH-<n>`, one every DELAY microseconds: a steady stream of distinct
/// events (identical ones would be folded in the kernel).
fn unlink_slow(count: u64, path: &str, delay_us: u64) {
    for n in 0..count {
        let p = c(&format!("{path}-{n}"));
        // SAFETY: unlink of a path that does not exist.
        unsafe { libc::unlinkat(libc::AT_FDCWD, p.as_ptr(), 0) };
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
    }
}

/// Runs `/bin/true` as pid P, then steers the kernel (ns_last_pid of our pid namespace) so that
/// `/bin/echo reused` gets the same pid P. Prints both pids as JSON.
fn pid_reuse() {
    let run = |prog: &str, args: &[&str]| -> u32 {
        let child = std::process::Command::new(prog)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("spawn {prog}: {e}")));
        let pid = child.id();
        let _ = child.wait_with_output();
        pid
    };
    for _ in 0..50 {
        let first = run("/bin/true", &[]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        if std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", first - 1)).is_err() {
            die("cannot write /proc/sys/kernel/ns_last_pid (needs root)");
        }
        let second = run("/bin/echo", &["reused"]);
        if second == first {
            println!("{{\"pid\":{first}}}");
            return;
        }
    }
    die("the pid was never reused (a busy machine took it each time)");
}

/// Reads a file the way a client library reads its credentials (open, read, close).
fn read_file(path: &str) {
    match std::fs::read(path) {
        Ok(b) => {
            report("read", b.len() as i64);
        }
        Err(e) => die(&format!("read {path}: {e}")),
    }
}

/// Opens `path` read-only and closes it again, as fast as it can, for `millis`; prints how many
/// times as JSON (a flood of identical, rule-matching events).
fn open_flood(path: &str, millis: u64) {
    let p = c(path);
    let start = std::time::Instant::now();
    let mut opens: u64 = 0;
    while start.elapsed().as_millis() < u128::from(millis) {
        for _ in 0..1000 {
            // SAFETY: a NUL-terminated path we own; the descriptor is closed at once.
            let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
            if fd < 0 {
                die(&format!("open {path} failed"));
            }
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
        }
        opens += 1000;
    }
    println!("{{\"opens\":{opens}}}");
}

/// Writes `text` to `path` (a configuration file of a benign job).
fn write_file(path: &str, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        die(&format!("write {path}: {e}"));
    }
    report("write", text.len() as i64);
}

/// Drops to `uid` (and the same gid, no supplementary groups) and executes `cmd`: how a
/// non-root workload runs a program (a setuid one, say).
fn run_as(uid: u32, cmd: &[String]) -> ! {
    let Some(prog) = cmd.first() else {
        die("run-as UID PROGRAM [ARGS...]");
    };
    let argv: Vec<std::ffi::CString> = cmd.iter().map(|a| c(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: credential calls, then execv with NUL-terminated strings we own.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            die(&format!(
                "dropping to {uid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        libc::execv(c(prog).as_ptr(), ptrs.as_ptr());
    }
    die(&format!("exec {prog}: {}", std::io::Error::last_os_error()))
}

/// A scheduler: runs `cmd` `times` times, `millis` apart, each as a child it waits for.
fn periodic(times: u32, millis: u64, cmd: &[String]) {
    let Some((prog, rest)) = cmd.split_first() else {
        die("periodic TIMES MILLIS PROGRAM [ARGS...]");
    };
    for _ in 0..times {
        match std::process::Command::new(prog).args(rest).status() {
            Ok(st) => {
                report("job", i64::from(st.code().unwrap_or(-1)));
            }
            Err(e) => die(&format!("run {prog}: {e}")),
        }
        std::thread::sleep(std::time::Duration::from_millis(millis));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| die("missing argument; see the usage in the source"))
    };
    match a(0) {
        "file" => file(a(1)),
        "net" => net(
            a(1).parse()
                .unwrap_or_else(|_| die("PORT must be a number")),
            a(2),
        ),
        "priv" => privileged(a(1)),
        "unlink-flood" => unlink_flood(
            a(1).parse()
                .unwrap_or_else(|_| die("COUNT must be a number")),
            a(2),
        ),
        "unlink-slow" => unlink_slow(
            a(1).parse()
                .unwrap_or_else(|_| die("COUNT must be a number")),
            a(2),
            a(3).parse()
                .unwrap_or_else(|_| die("DELAY_US must be a number")),
        ),
        "memfd-exec" => memfd_exec(),
        "attack" => attacks::run(a(1), args.get(2).map(String::as_str)),
        "read-file" => read_file(a(1)),
        "open-flood" => open_flood(
            a(1),
            a(2).parse()
                .unwrap_or_else(|_| die("MILLIS must be a number")),
        ),
        "run-as" => run_as(
            a(1).parse().unwrap_or_else(|_| die("UID must be a number")),
            &args[2..],
        ),
        "write-file" => write_file(a(1), a(2)),
        "periodic" => periodic(
            a(1).parse()
                .unwrap_or_else(|_| die("TIMES must be a number")),
            a(2).parse()
                .unwrap_or_else(|_| die("MILLIS must be a number")),
            &args[3..],
        ),
        "uring-open" => uring::open(a(1)),
        "uring-files" => uring::files(a(1)),
        "uring-connect" => uring::connect(
            a(1).parse()
                .unwrap_or_else(|_| die("PORT must be a number")),
        ),
        "bench" => bench(
            a(1),
            a(2).parse()
                .unwrap_or_else(|_| die("MILLIS must be a number")),
        ),
        "rate" => rate(
            a(1).parse()
                .unwrap_or_else(|_| die("RATE must be a number")),
            a(2).parse()
                .unwrap_or_else(|_| die("MILLIS must be a number")),
            a(3),
            args.get(4)
                .map(|m| {
                    m.parse()
                        .unwrap_or_else(|_| die("MATCH_EVERY must be a number"))
                })
                .unwrap_or(0),
        ),
        "regain-root" => regain_root(),
        "fork-storm" => fork_storm(
            a(1).parse()
                .unwrap_or_else(|_| die("RATE must be a number")),
            a(2).parse()
                .unwrap_or_else(|_| die("MILLIS must be a number")),
        ),
        "pid-reuse" => pid_reuse(),
        "ptrace" => ptrace_child(),
        "connect" => connect(
            a(1),
            a(2).parse()
                .unwrap_or_else(|_| die("PORT must be a number")),
        ),
        "reverse-shell" => reverse_shell(
            a(1).parse()
                .unwrap_or_else(|_| die("PORT must be a number")),
            false,
        ),
        "reverse-shell-fork" => reverse_shell(
            a(1).parse()
                .unwrap_or_else(|_| die("PORT must be a number")),
            true,
        ),
        "init-module" => {
            let params = c("trigger=1");
            // SAFETY: init_module with an empty image: rejected, but the call is made.
            report("init_module", unsafe {
                libc::syscall(libc::SYS_init_module, params.as_ptr(), 0, params.as_ptr())
            });
        }
        other => die(&format!(
            "unknown action {other}: file DIR | net PORT DIR | priv DIR | unlink-flood COUNT PATH | \
             unlink-slow COUNT PATH DELAY_US | memfd-exec | regain-root | ptrace | connect ADDR PORT | \
             reverse-shell PORT | reverse-shell-fork PORT | init-module | fork-storm RATE MILLIS | pid-reuse"
        )),
    }
}
