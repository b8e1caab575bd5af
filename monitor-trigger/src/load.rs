//! Load generators for benchmarks and soak runs: syscall micro-loops, paced file events and
//! process storms, each bounded in time.
use super::{c, die, sockaddr_in};

/// Runs one micro-operation in a loop for `millis` and prints `{"op":..,"ops":N,"secs":S}`.
/// Operations: getpid (not hooked: the floor), openclose (a tmpfs file), forkexec (/bin/true),
/// tcp (connect + accept + close on loopback).
pub(crate) fn bench(op: &str, millis: u64) {
    if op == "server" {
        return server(millis);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let start = std::time::Instant::now();
    let mut ops: u64 = 0;
    let path = c(&format!("/dev/shm/monitor-bench-{}", std::process::id()));
    let truebin = c("/bin/true");
    // SAFETY: syscalls with arguments we own; children are reaped by pid.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600);
        libc::close(fd);
        let a = sockaddr_in("127.0.0.1", 0);
        let len = size_of::<libc::sockaddr_in>() as u32;
        let l = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        libc::bind(l, (&raw const a).cast(), len);
        libc::listen(l, 128);
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut blen = len;
        libc::getsockname(l, (&raw mut bound).cast(), &mut blen);
        while std::time::Instant::now() < deadline {
            for _ in 0..64 {
                match op {
                    "getpid" => {
                        libc::syscall(libc::SYS_getpid);
                    }
                    "openclose" => {
                        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                        libc::close(fd);
                    }
                    "forkexec" => {
                        let pid = libc::fork();
                        if pid == 0 {
                            let argv = [truebin.as_ptr(), std::ptr::null()];
                            libc::execv(truebin.as_ptr(), argv.as_ptr());
                            libc::_exit(127);
                        }
                        let mut st = 0;
                        libc::waitpid(pid, &mut st, 0);
                    }
                    "tcp" => {
                        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                        libc::connect(s, (&raw const bound).cast(), len);
                        let c2 = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                        libc::close(c2);
                        libc::close(s);
                    }
                    other => die(&format!("unknown bench op {other}")),
                }
                ops += 1;
                if op == "forkexec" {
                    break;
                }
            }
        }
        libc::close(l);
        libc::unlink(path.as_ptr());
    }
    println!(
        "{{\"op\":\"{op}\",\"ops\":{ops},\"secs\":{}}}",
        start.elapsed().as_secs_f64()
    );
}

/// Calls `step` `rate` times a second for `millis`, in small bursts, calling `between` after
/// each; returns how many steps ran and the seconds taken.
fn paced(
    rate: u64,
    millis: u64,
    mut step: impl FnMut() -> bool,
    mut between: impl FnMut(),
) -> (u64, f64) {
    let start = std::time::Instant::now();
    let mut done: u64 = 0;
    loop {
        let elapsed = start.elapsed();
        if elapsed.as_millis() as u64 >= millis {
            break;
        }
        let due = rate * elapsed.as_micros() as u64 / 1_000_000;
        while done < due {
            if !step() {
                break;
            }
            done += 1;
        }
        between();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    (done, start.elapsed().as_secs_f64())
}

/// Generates `rate` events per second for `millis`; prints how many. Each is an unlink of a
/// path of its own below `path` (`<path>-<n>`, absent), so that none is folded in the kernel as
/// a repeat: the agent sees every one. With `match_every` > 0, every that-many-th is instead a
/// read of a missing file below /root/.ssh/ (one of 64 names), which the default rules alert
/// on (`sensitive_file_read`), the way a credential search would look.
pub(crate) fn rate(rate: u64, millis: u64, path: &str, match_every: u64) {
    let mut buf: Vec<u8> = Vec::with_capacity(path.len() + 24);
    let mut n: u64 = 0;
    let mut matching: u64 = 0;
    let (done, secs) = paced(
        rate,
        millis,
        || {
            n += 1;
            buf.clear();
            if match_every > 0 && n.is_multiple_of(match_every) {
                matching += 1;
                buf.extend_from_slice(format!("/root/.ssh/monitor-bench-{}", n % 64).as_bytes());
                buf.push(0);
                // SAFETY: a NUL-terminated path we own; a read-only open of a missing file.
                let fd = unsafe { libc::open(buf.as_ptr().cast(), libc::O_RDONLY) };
                if fd >= 0 {
                    // SAFETY: our own descriptor.
                    unsafe { libc::close(fd) };
                }
                return true;
            }
            buf.extend_from_slice(path.as_bytes());
            buf.push(b'-');
            buf.extend_from_slice(n.to_string().as_bytes());
            buf.push(0);
            // SAFETY: unlink of a NUL-terminated path that does not exist.
            unsafe { libc::unlinkat(libc::AT_FDCWD, buf.as_ptr().cast(), 0) };
            true
        },
        || {},
    );
    println!("{{\"generated\":{done},\"matching\":{matching},\"secs\":{secs}}}");
}

/// Forks short-lived children (each exits at once) at `rate` per second for `millis`; prints
/// how many as JSON. Reaps them as it goes so the pid space is not exhausted.
pub(crate) fn fork_storm(rate: u64, millis: u64) {
    let (done, _) = paced(
        rate,
        millis,
        // SAFETY: the child only calls _exit.
        || match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            -1 => false,
            _ => true,
        },
        // SAFETY: reaping our own exited children without blocking.
        || while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {},
    );
    // SAFETY: as above, blocking for the last ones.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
    println!("{{\"forked\":{done}}}");
}

/// A network server under load, on loopback: a thread per connection echoes 128-byte
/// requests; four clients each connect, make 50 request/response exchanges and close, for
/// `millis`. Reports the requests served. Mostly unhooked calls (read, write), with a connect,
/// an accept and the TCP state changes of every connection: the shape of a busy service.
fn server(millis: u64) {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
        sync::atomic::{AtomicU64, Ordering},
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| die(&format!("local_addr: {e}")));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 128];
                while conn.read_exact(&mut buf).is_ok() {
                    if conn.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let served = AtomicU64::new(0);
    let start = std::time::Instant::now();
    let deadline = start + std::time::Duration::from_millis(millis);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut buf = [7u8; 128];
                while std::time::Instant::now() < deadline {
                    let Ok(mut c) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = c.set_nodelay(true);
                    for _ in 0..50 {
                        if c.write_all(&buf).is_err() || c.read_exact(&mut buf).is_err() {
                            break;
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    println!(
        "{{\"op\":\"server\",\"ops\":{},\"secs\":{}}}",
        served.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}
