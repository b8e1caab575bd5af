//! Single attack steps that need a syscall no shell tool makes: each does the real call with
//! harmless arguments (its own child, its own keyring, loopback) and reports the result.
use std::ptr;

use crate::{c, die, report};

/// Forks a child that waits to be killed; returns its pid.
fn sleeping_child() -> i32 {
    // SAFETY: fork in a single-threaded helper; the child only pauses.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die("fork failed");
    }
    if pid == 0 {
        // SAFETY: the child waits for the signal that ends it.
        unsafe {
            libc::pause();
            libc::_exit(0)
        }
    }
    pid
}

fn reap(pid: i32) {
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, ptr::null_mut(), 0);
    }
}

/// Writes into a child's memory with process_vm_writev (code injection without ptrace).
fn vm_write() {
    // Allocated before the fork: the child has it at the same address.
    let target = Box::new(*b"original");
    let child = sleeping_child();
    let payload = *b"injected";
    let local = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // The child is a fork: the buffer is at the same address in it.
    let remote = libc::iovec {
        iov_base: target.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: iovecs we own, describing 8 bytes each.
    let r = unsafe { libc::process_vm_writev(child, &local, 1, &remote, 1, 0) };
    report("process_vm_writev", r as i64);
    reap(child);
}

/// A perf_event_attr of `PERF_TYPE_TRACEPOINT` for the current task (128 bytes, zeroed but the
/// type, size and config).
fn perf_tracepoint() {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&2u32.to_le_bytes());
    attr[4..8].copy_from_slice(&128u32.to_le_bytes());
    attr[8..16].copy_from_slice(&1u64.to_le_bytes());
    // SAFETY: perf_event_open with an attr buffer we own; a returned fd is closed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0i32,
            -1i32,
            -1i32,
            0u64,
        )
    };
    report("perf_event_open", r);
    if r >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(r as i32) };
    }
}

/// Runs one named step.
pub(crate) fn run(step: &str, arg: Option<&str>) {
    // SAFETY: each arm is one syscall with arguments we own; descriptors are closed.
    unsafe {
        match step {
            "vm-write" => vm_write(),
            "traceme" => {
                report("ptrace", libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0));
            }
            "userfaultfd" => {
                let r = report(
                    "userfaultfd",
                    libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC),
                );
                if r >= 0 {
                    libc::close(r as i32);
                }
            }
            "perf-tracepoint" => perf_tracepoint(),
            "keyctl-describe" => {
                let mut buf = [0u8; 256];
                // KEYCTL_DESCRIBE (6) of KEY_SPEC_SESSION_KEYRING (-3).
                report(
                    "keyctl",
                    libc::syscall(libc::SYS_keyctl, 6, -3i32, buf.as_mut_ptr(), buf.len()),
                );
            }
            "rename" => {
                let name = c(arg.unwrap_or_else(|| die("rename NAME")));
                report(
                    "prctl",
                    libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) as i64,
                );
            }
            "packet-socket" => {
                let s = report(
                    "socket",
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_RAW,
                        i32::from((libc::ETH_P_ALL as u16).to_be()),
                    ) as i64,
                );
                if s >= 0 {
                    libc::close(s as i32);
                }
            }
            "bpf-load" => {
                // BPF_PROG_LOAD with an empty attribute: refused, still an attempt.
                let attr = [0u8; 128];
                report("bpf", libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), 128));
            }
            "exec-noargs" => {
                let path = c(arg.unwrap_or_else(|| die("exec-noargs PATH")));
                let argv: [*const libc::c_char; 1] = [ptr::null()];
                let envp: [*const libc::c_char; 1] = [ptr::null()];
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                die(&format!("execve: {}", std::io::Error::last_os_error()));
            }
            "module-load" => {
                // finit_module of /dev/null: refused, still an attempt to load a module.
                let fd = libc::open(c("/dev/null").as_ptr(), libc::O_RDONLY);
                let params = c("");
                report(
                    "finit_module",
                    libc::syscall(libc::SYS_finit_module, fd, params.as_ptr(), 0),
                );
                libc::close(fd);
            }
            "udp-send" => {
                let port: u16 = arg
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| die("udp-send PORT"));
                let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as u16;
                sa.sin_port = port.to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
                report(
                    "sendto",
                    libc::sendto(
                        s,
                        b"x".as_ptr().cast(),
                        1,
                        0,
                        (&raw const sa).cast(),
                        size_of::<libc::sockaddr_in>() as u32,
                    ) as i64,
                );
                libc::close(s);
            }
            "kill-child" => {
                let child = sleeping_child();
                report("kill", i64::from(libc::kill(child, libc::SIGKILL)));
                libc::waitpid(child, ptr::null_mut(), 0);
            }
            other => die(&format!("unknown attack step {other:?}")),
        }
    }
}
