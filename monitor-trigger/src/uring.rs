//! File and network operations submitted through io_uring, with raw syscalls and no library:
//! `io_uring_setup`, the rings mapped from its descriptor, one submission entry at a time and
//! `io_uring_enter` to run it. None of these operations makes the syscall it stands for, which
//! is the point: they check that the monitor sees what syscall tracepoints cannot.
use std::{ffi::CString, ptr};

use crate::{c, die};

const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_ENTER_GETEVENTS: u32 = 1;

use monitor_common::uring_op::{
    CONNECT as OP_CONNECT, LINKAT as OP_LINKAT, MKDIRAT as OP_MKDIRAT, OPENAT as OP_OPENAT,
    RENAMEAT as OP_RENAMEAT, SOCKET as OP_SOCKET, SYMLINKAT as OP_SYMLINKAT,
    UNLINKAT as OP_UNLINKAT,
};

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// `struct io_uring_sqe`, 64 bytes.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    file_index: i32,
    addr3: u64,
    pad: u64,
}
const _: () = assert!(size_of::<Sqe>() == 64);

/// One ring with a single submission in flight at a time.
struct Ring {
    fd: i32,
    sq: *mut u8,
    cq: *mut u8,
    sqes: *mut Sqe,
    p: Params,
}

fn map(fd: i32, len: usize, off: i64) -> *mut u8 {
    // SAFETY: a shared mapping of the ring descriptor at the offsets the kernel defines.
    let m = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            off,
        )
    };
    if m == libc::MAP_FAILED {
        die(&format!(
            "mmap of the io_uring ring: {}",
            std::io::Error::last_os_error()
        ));
    }
    m.cast()
}

impl Ring {
    fn new() -> Ring {
        let mut p = Params::default();
        // SAFETY: io_uring_setup with a params struct we own.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8u32, &raw mut p) } as i32;
        crate::report("io_uring_setup", i64::from(fd));
        if fd < 0 {
            die("io_uring_setup failed (kernel without io_uring, or disabled by sysctl)");
        }
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * 16;
        let sq = map(fd, sq_len, IORING_OFF_SQ_RING);
        let cq = map(fd, cq_len, IORING_OFF_CQ_RING);
        let sqes = map(
            fd,
            p.sq_entries as usize * size_of::<Sqe>(),
            IORING_OFF_SQES,
        )
        .cast();
        Ring {
            fd,
            sq,
            cq,
            sqes,
            p,
        }
    }

    /// Submits `sqe`, waits for its completion and returns its result.
    fn run(&mut self, name: &str, sqe: Sqe) -> i64 {
        // SAFETY: offsets and sizes come from the kernel's params; one entry in flight, so the
        // indexes never wrap onto an entry the kernel still reads. The atomics order the writes
        // of the entry before the tail the kernel reads.
        unsafe {
            let at = |base: *mut u8, off: u32| base.add(off as usize).cast::<u32>();
            let tail_p = at(self.sq, self.p.sq_off.tail);
            let mask = *at(self.sq, self.p.sq_off.ring_mask);
            let tail = ptr::read_volatile(tail_p);
            let idx = tail & mask;
            self.sqes.add(idx as usize).write(sqe);
            at(self.sq, self.p.sq_off.array)
                .add(idx as usize)
                .write(idx);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            ptr::write_volatile(tail_p, tail.wrapping_add(1));
            let r = libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd,
                1u32,
                1u32,
                IORING_ENTER_GETEVENTS,
                ptr::null::<u8>(),
                0usize,
            );
            if r < 0 {
                die(&format!(
                    "io_uring_enter: {}",
                    std::io::Error::last_os_error()
                ));
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let head_p = at(self.cq, self.p.cq_off.head);
            let cmask = *at(self.cq, self.p.cq_off.ring_mask);
            let head = ptr::read_volatile(head_p);
            let cqe = self
                .cq
                .add(self.p.cq_off.cqes as usize + (head & cmask) as usize * 16);
            let res = cqe.add(8).cast::<i32>().read();
            ptr::write_volatile(head_p, head.wrapping_add(1));
            // The result of an io_uring operation is a negative errno, not -1 and errno.
            println!(
                "{{\"call\":\"io_uring:{name}\",\"result\":{res},\"errno\":{}}}",
                if res < 0 { -res } else { 0 }
            );
            i64::from(res)
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: our own descriptor; the mappings go with the process.
        unsafe { libc::close(self.fd) };
    }
}

fn path_sqe(opcode: u8, dfd: i32, path: &CString) -> Sqe {
    Sqe {
        opcode,
        fd: dfd,
        addr: path.as_ptr() as u64,
        ..Sqe::default()
    }
}

/// Opens `path` read-only through io_uring, and reads nothing from it.
pub(crate) fn open(path: &str) {
    let mut ring = Ring::new();
    let p = c(path);
    let fd = ring.run(
        "openat",
        Sqe {
            op_flags: libc::O_RDONLY as u32,
            ..path_sqe(OP_OPENAT, libc::AT_FDCWD, &p)
        },
    );
    if fd >= 0 {
        // SAFETY: the descriptor the ring opened for us.
        unsafe { libc::close(fd as i32) };
    }
}

/// Creates, links, renames and removes files below `dir` through io_uring.
pub(crate) fn files(dir: &str) {
    let mut ring = Ring::new();
    let f = c(&format!("{dir}/uf"));
    let g = c(&format!("{dir}/ug"));
    let d = c(&format!("{dir}/ud"));
    let h = c(&format!("{dir}/uh"));
    let s = c(&format!("{dir}/us"));
    let fd = ring.run(
        "openat",
        Sqe {
            op_flags: (libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC) as u32,
            len: 0o640,
            ..path_sqe(OP_OPENAT, libc::AT_FDCWD, &f)
        },
    );
    if fd >= 0 {
        // SAFETY: the descriptor the ring opened for us.
        unsafe { libc::close(fd as i32) };
    }
    ring.run(
        "mkdirat",
        Sqe {
            len: 0o750,
            ..path_sqe(OP_MKDIRAT, libc::AT_FDCWD, &d)
        },
    );
    ring.run(
        "renameat",
        Sqe {
            len: libc::AT_FDCWD as u32,
            off: g.as_ptr() as u64,
            ..path_sqe(OP_RENAMEAT, libc::AT_FDCWD, &f)
        },
    );
    ring.run(
        "linkat",
        Sqe {
            len: libc::AT_FDCWD as u32,
            off: h.as_ptr() as u64,
            ..path_sqe(OP_LINKAT, libc::AT_FDCWD, &g)
        },
    );
    let target = c("ug");
    ring.run(
        "symlinkat",
        Sqe {
            addr: target.as_ptr() as u64,
            off: s.as_ptr() as u64,
            ..path_sqe(OP_SYMLINKAT, libc::AT_FDCWD, &target)
        },
    );
    for (name, p, flags) in [
        ("unlinkat", &h, 0),
        ("unlinkat", &s, 0),
        ("unlinkat", &g, 0),
        ("unlinkat", &d, libc::AT_REMOVEDIR),
    ] {
        ring.run(
            name,
            Sqe {
                op_flags: flags as u32,
                ..path_sqe(OP_UNLINKAT, libc::AT_FDCWD, p)
            },
        );
    }
}

/// Creates a TCP socket and connects it to 127.0.0.1:`port` through io_uring.
pub(crate) fn connect(port: u16) {
    let mut ring = Ring::new();
    let fd = ring.run(
        "socket",
        Sqe {
            opcode: OP_SOCKET,
            fd: libc::AF_INET,
            off: libc::SOCK_STREAM as u64,
            len: 0,
            ..Sqe::default()
        },
    );
    if fd < 0 {
        die("socket through io_uring failed");
    }
    // SAFETY: a sockaddr_in we own, zeroed then filled.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    ring.run(
        "connect",
        Sqe {
            opcode: OP_CONNECT,
            fd: fd as i32,
            addr: (&raw const sa) as u64,
            off: size_of::<libc::sockaddr_in>() as u64,
            ..Sqe::default()
        },
    );
    // SAFETY: the socket the ring made for us.
    unsafe { libc::close(fd as i32) };
}
