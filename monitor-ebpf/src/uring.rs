//! Operations submitted through io_uring (`io_uring/io_uring_submit_req`).
//!
//! A process can open, create, remove and rename files, create sockets and connect without
//! making the matching syscalls: it writes submission entries into a ring shared with the
//! kernel. Syscall tracepoints never see those operations. This program reads the operation the
//! kernel has just prepared (`struct io_kiocb` and its per-opcode arguments, whose offsets the
//! agent finds in BTF) and writes the same record the mirrored syscall would produce, flagged
//! [`SYS_VIA_IO_URING`], so every rule about opens or connects also sees io_uring ones.
//!
//! The record is written at submission: the result is not known yet (`ret` 0). Paths are the
//! kernel's own copies (`struct filename`), so a process cannot change them after the fact.
use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::tracepoint, programs::TracePointContext,
};
use monitor_common::{
    EventKind, Header, MAX_DATA, MAX_PATH, NO_OFFSET, SYS_DATA_UNREADABLE, SYS_STR1_TRUNCATED,
    SYS_STR1_UNREADABLE, SYS_STR2_TRUNCATED, SYS_STR2_UNREADABLE, SYS_VIA_IO_URING, Syscall,
    SyscallBody,
};

use crate::{
    event::{current, emit, fill_header, place_str, read_kernel, scratch},
    maps::conf,
};

const HDR: usize = core::mem::size_of::<Header>();
const BODY: usize = core::mem::size_of::<SyscallBody>();

use monitor_common::uring_op::{
    CONNECT as OP_CONNECT, LINKAT as OP_LINKAT, MKDIRAT as OP_MKDIRAT, OPENAT as OP_OPENAT,
    OPENAT2 as OP_OPENAT2, RENAMEAT as OP_RENAMEAT, SOCKET as OP_SOCKET, SYMLINKAT as OP_SYMLINKAT,
    UNLINKAT as OP_UNLINKAT,
};

#[tracepoint]
pub(crate) fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx);
    0
}

/// `base + a + b` in kernel memory, or `None` when an offset is unknown.
#[inline(always)]
fn at(base: u64, a: u32, b: u32) -> Option<u64> {
    if a == NO_OFFSET || b == NO_OFFSET || base == 0 {
        return None;
    }
    Some(base + a as u64 + b as u64)
}

/// An `int` member of the operation's arguments, sign-extended as a syscall argument would be.
#[inline(always)]
fn cmd_i32(cmd: u64, off: u32) -> u64 {
    read_kernel::<i32>(cmd, off)
        .map(|v| v as i64 as u64)
        .unwrap_or(0)
}

/// Copies the kernel path of a `struct filename *` member into `dst` (MAX_PATH bytes of room).
/// Returns (bytes without NUL, truncated, unreadable).
#[inline(always)]
fn read_filename(cmd: u64, member: u32, dst: *mut u8) -> (usize, bool, bool) {
    let Some(fname) = read_kernel::<u64>(cmd, member) else {
        return (0, false, true);
    };
    let Some(name) = read_kernel::<u64>(fname, conf!(k.filename_name)) else {
        return (0, false, true);
    };
    if name == 0 {
        return (0, false, true);
    }
    // SAFETY: the helper checks the kernel address; dst has MAX_PATH bytes of room.
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), MAX_PATH as u32, name as *const _) };
    if n <= 0 {
        return (0, false, true);
    }
    let mut len = (n - 1) as usize;
    if len >= MAX_PATH {
        len = MAX_PATH - 1;
    }
    (len, n as usize >= MAX_PATH, false)
}

/// What one reported operation mirrors: the event kind, the syscall, and where its one or two
/// paths are (offsets inside the operation's arguments).
struct Mirror {
    kind: EventKind,
    call: Syscall,
    path1: u32,
    path2: u32,
}

#[inline(always)]
fn mirror(op: u8) -> Option<Mirror> {
    let m = |kind, call, path1, path2| {
        Some(Mirror {
            kind,
            call,
            path1,
            path2,
        })
    };
    match op {
        OP_OPENAT | OP_OPENAT2 => m(
            EventKind::Open,
            Syscall::Openat,
            conf!(k.open_filename),
            NO_OFFSET,
        ),
        OP_CONNECT => m(EventKind::Connect, Syscall::Connect, NO_OFFSET, NO_OFFSET),
        OP_UNLINKAT => m(
            EventKind::Unlink,
            Syscall::Unlinkat,
            conf!(k.unlink_filename),
            NO_OFFSET,
        ),
        OP_RENAMEAT => m(
            EventKind::Rename,
            Syscall::Renameat2,
            conf!(k.rename_oldpath),
            conf!(k.rename_newpath),
        ),
        OP_MKDIRAT => m(
            EventKind::Mkdir,
            Syscall::Mkdirat,
            conf!(k.mkdir_filename),
            NO_OFFSET,
        ),
        OP_SYMLINKAT => m(
            EventKind::Symlink,
            Syscall::Symlinkat,
            conf!(k.link_oldpath),
            conf!(k.link_newpath),
        ),
        OP_LINKAT => m(
            EventKind::Link,
            Syscall::Linkat,
            conf!(k.link_oldpath),
            conf!(k.link_newpath),
        ),
        OP_SOCKET => m(EventKind::Socket, Syscall::Socket, NO_OFFSET, NO_OFFSET),
        _ => None,
    }
}

/// The arguments the mirrored syscall would have had (paths are in the tail instead).
#[inline(always)]
fn mirrored_args(op: u8, req: u64, cmd: u64) -> [u64; 6] {
    let mut a = [0u64; 6];
    match op {
        OP_OPENAT | OP_OPENAT2 => {
            // openat(dfd, path, flags, mode)
            a[0] = cmd_i32(cmd, conf!(k.open_dfd));
            let how = conf!(k.open_how);
            a[2] = read_kernel::<u64>(cmd, how).unwrap_or(0);
            if how != NO_OFFSET {
                a[3] = read_kernel::<u64>(cmd, how + 8).unwrap_or(0);
            }
        }
        OP_CONNECT => {
            // connect(fd, addr, addrlen): the fd the submission named.
            if let Some(p) = at(req, conf!(k.req_cqe), conf!(k.cqe_fd)) {
                a[0] = read_kernel::<i32>(p, 0)
                    .map(|v| v as i64 as u64)
                    .unwrap_or(u64::MAX);
            }
            a[2] = cmd_i32(cmd, conf!(k.connect_addr_len));
        }
        OP_UNLINKAT => {
            // unlinkat(dfd, path, flags)
            a[0] = cmd_i32(cmd, conf!(k.unlink_dfd));
            a[2] = cmd_i32(cmd, conf!(k.unlink_flags));
        }
        OP_RENAMEAT => {
            // renameat2(olddfd, old, newdfd, new, flags)
            a[0] = cmd_i32(cmd, conf!(k.rename_old_dfd));
            a[2] = cmd_i32(cmd, conf!(k.rename_new_dfd));
            a[4] = cmd_i32(cmd, conf!(k.rename_flags));
        }
        OP_MKDIRAT => {
            // mkdirat(dfd, path, mode)
            a[0] = cmd_i32(cmd, conf!(k.mkdir_dfd));
            a[2] = read_kernel::<u16>(cmd, conf!(k.mkdir_mode)).unwrap_or(0) as u64;
        }
        OP_SYMLINKAT => {
            // symlinkat(target, newdfd, linkpath)
            a[1] = cmd_i32(cmd, conf!(k.link_new_dfd));
        }
        OP_LINKAT => {
            // linkat(olddfd, old, newdfd, new, flags)
            a[0] = cmd_i32(cmd, conf!(k.link_old_dfd));
            a[2] = cmd_i32(cmd, conf!(k.link_new_dfd));
            a[4] = cmd_i32(cmd, conf!(k.link_flags));
        }
        OP_SOCKET => {
            // socket(domain, type, protocol)
            a[0] = cmd_i32(cmd, conf!(k.socket_domain));
            a[1] = cmd_i32(cmd, conf!(k.socket_type));
            a[2] = cmd_i32(cmd, conf!(k.socket_protocol));
        }
        _ => {}
    }
    a
}

fn try_submit(ctx: &TracePointContext) -> Option<()> {
    let op_off = conf!(tp.uring_opcode);
    let req_off = conf!(tp.uring_req);
    if op_off == NO_OFFSET || req_off == NO_OFFSET {
        return None;
    }
    // SAFETY: offsets read from this tracepoint's format.
    let op = unsafe { ctx.read_at::<u8>(op_off as usize) }.ok()?;
    let m = mirror(op)?;
    let cur = current()?;
    // SAFETY: as above.
    let req = unsafe { ctx.read_at::<u64>(req_off as usize) }.ok()?;
    let cmd = at(req, conf!(k.req_cmd), 0).unwrap_or(0);
    let buf = scratch()?;
    let kind = m.kind as u32;
    fill_header(buf, kind, &cur);
    let mut flags = SYS_VIA_IO_URING;

    // SAFETY: every offset below stays inside the SCRATCH_SIZE buffer: HDR + BODY + 2 strings of
    // at most MAX_PATH - 1 bytes + MAX_DATA.
    let tail = unsafe { buf.add(HDR + BODY) };
    let len1 = if m.path1 != NO_OFFSET {
        place_str(
            read_filename(cmd, m.path1, tail),
            SYS_STR1_TRUNCATED,
            SYS_STR1_UNREADABLE,
            &mut flags,
        )
    } else {
        0
    };
    // SAFETY: see above.
    let tail2 = unsafe { tail.add(len1) };
    let len2 = if m.path2 != NO_OFFSET {
        place_str(
            read_filename(cmd, m.path2, tail2),
            SYS_STR2_TRUNCATED,
            SYS_STR2_UNREADABLE,
            &mut flags,
        )
    } else {
        0
    };
    let args = mirrored_args(op, req, cmd);
    let mut dlen = 0usize;
    if op == OP_CONNECT {
        // The kernel's copy of the address, made when the operation was prepared.
        let mut want = args[2] as usize;
        if want > MAX_DATA {
            want = MAX_DATA;
        }
        // SAFETY: see above.
        let tail3 = unsafe { tail2.add(len2) };
        // The address as the submitter wrote it, read in its context right after the kernel
        // prepared the operation from it. (The kernel's own copy lives in the request's
        // async data, whose layout differs between kernels: reading it gave garbage on 6.18.)
        let copied = read_kernel::<u64>(cmd, conf!(k.connect_addr)).is_some_and(|src| {
            want > 0
                && src != 0
                // SAFETY: the helper checks the user address; tail3 has MAX_DATA bytes.
                && unsafe {
                    aya_ebpf::helpers::generated::bpf_probe_read_user(
                        tail3.cast(),
                        want as u32,
                        src as *const _,
                    )
                } == 0
        });
        if copied {
            dlen = want;
        } else {
            flags |= SYS_DATA_UNREADABLE;
        }
    }
    // SAFETY: the header was filled above.
    let (uid, euid) = unsafe { ((*buf.cast::<Header>()).uid, (*buf.cast::<Header>()).euid) };
    let body = SyscallBody {
        ret: 0,
        args,
        call: m.call as u16,
        str1_len: len1 as u16,
        str2_len: len2 as u16,
        data_len: dlen as u16,
        flags,
        old_uid: uid,
        old_euid: euid,
        folded: 0,
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<SyscallBody>().write_unaligned(body) };
    emit(buf, HDR + BODY + len1 + len2 + dlen, kind);
    Some(())
}
