//! File, network and privilege syscalls, table-driven.
//!
//! One `sys_enter` program is attached to the `syscalls/sys_enter_<name>` tracepoint of every
//! hooked syscall, one `sys_exit` program to the matching `sys_exit_<name>`. The SYSCALLS map
//! (filled by the agent with the running architecture's numbers) says, per syscall number, which
//! event kind it produces and which arguments are strings or a data block. Arguments are saved at
//! enter; strings and data are read at exit, when the kernel has already faulted the user pages
//! in and the result of the call is known.
use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_user, bpf_probe_read_user_str,
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    EventKind, Header, MAX_DATA, MAX_PATH, MAX_SYSCALL_NR, Misc, NO_ARG, NO_OFFSET, PathKey,
    SYS_DATA_UNREADABLE, SYS_STR1_TRUNCATED, SYS_STR1_UNREADABLE, SYS_STR2_TRUNCATED,
    SYS_STR2_UNREADABLE, Stash, SyscallBody, SyscallDesc, data_mode, filter, interest,
};

use crate::{
    event::{
        Current, count_filtered, count_misc, current, current_euid_egid, emit, fill_header, fold,
        fold_mix, fold_seed, place_str, scratch, task,
    },
    maps::{INTEREST, OPEN_PATHS, PATH_KEY, STASH, SYSCALLS, conf},
};

const HDR: usize = core::mem::size_of::<Header>();
const BODY: usize = core::mem::size_of::<SyscallBody>();

#[inline(always)]
fn desc_for(ctx: &TracePointContext, nr_off: u32) -> Option<(u32, &'static SyscallDesc)> {
    if nr_off == NO_OFFSET {
        return None;
    }
    let nr = if nr_off == STD_NR {
        // SAFETY: the format puts `__syscall_nr` (an int) at this constant offset; a direct
        // load of the tracepoint record, which the verifier bounds-checks, instead of a helper.
        unsafe {
            core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(STD_NR as usize).cast::<i32>())
        }
    } else {
        // SAFETY: `__syscall_nr` offset read from this tracepoint's format.
        unsafe { ctx.read_at::<i32>(nr_off as usize) }.ok()?
    };
    if nr < 0 || nr as u32 >= MAX_SYSCALL_NR {
        return None;
    }
    let desc = SYSCALLS.get(nr as u32)?;
    if desc.kind == 0 {
        return None;
    }
    Some((nr as u32, desc))
}

#[inline(always)]
fn arg(args: &[u64; 6], i: u8) -> u64 {
    match i {
        0 => args[0],
        1 => args[1],
        2 => args[2],
        3 => args[3],
        4 => args[4],
        5 => args[5],
        _ => 0,
    }
}

#[inline(always)]
fn passes_enter_filter(desc: &SyscallDesc, args: &[u64; 6]) -> bool {
    match desc.filter {
        filter::NEWFD_STDIO => args[1] <= 2,
        filter::ADDR_ARG4 => args[4] != 0,
        _ => true,
    }
}

/// `syscalls/sys_enter_*`: uses `__syscall_nr` and the six argument slots (offsets from the
/// tracefs format, identical for every syscall tracepoint).
#[tracepoint]
pub(crate) fn sys_enter(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx);
    0
}

/// Where every syscall tracepoint format of the supported kernels puts `__syscall_nr`; other
/// layouts (read from tracefs all the same) take the helper path.
const STD_NR: u32 = 8;

/// Reads argument `i` of a `sys_enter` record whose arguments start at `base`.
#[inline(always)]
fn enter_arg(ctx: &TracePointContext, base: usize, i: u8) -> Option<u64> {
    if i >= 6 {
        return None;
    }
    // SAFETY: six 8-byte argument slots follow `base` in every sys_enter format.
    unsafe { ctx.read_at::<u64>(base + 8 * i as usize) }.ok()
}

/// The six argument slots of a `sys_enter` record whose arguments start at `base` (0 when
/// unreadable).
#[inline(always)]
fn enter_args(ctx: &TracePointContext, base: usize) -> [u64; 6] {
    // SAFETY: six 8-byte argument slots follow `base` in every sys_enter format.
    unsafe {
        [
            ctx.read_at::<u64>(base).unwrap_or(0),
            ctx.read_at::<u64>(base + 8).unwrap_or(0),
            ctx.read_at::<u64>(base + 16).unwrap_or(0),
            ctx.read_at::<u64>(base + 24).unwrap_or(0),
            ctx.read_at::<u64>(base + 32).unwrap_or(0),
            ctx.read_at::<u64>(base + 40).unwrap_or(0),
        ]
    }
}

/// Whether the loaded rules, baselines and filters can use this call, judged from its
/// descriptor's interest byte and, for opens, the access asked for and the path. Anything that
/// cannot be judged (an unreadable path or flags) is kept: filtering may only ever leave out
/// what nothing can match.
#[inline(always)]
fn wanted(ctx: &TracePointContext, base: usize, desc: &SyscallDesc) -> bool {
    let ib = desc.interest;
    if ib == interest::ALL {
        return true;
    }
    if desc.kind != EventKind::Open as u32 {
        return ib & interest::MODE_MASK != interest::NONE;
    }
    // Which accesses this open asks for: read-only, writing, or (flags not at hand) either.
    let (reads, writes) = if desc.flags_arg == NO_ARG {
        (true, true)
    } else {
        match enter_arg(ctx, base, desc.flags_arg) {
            Some(f) if interest::opens_for_write(f) => (false, true),
            Some(_) => (true, false),
            None => return true,
        }
    };
    let read_mode = (ib >> interest::READ_SHIFT) & interest::MODE_MASK;
    let write_mode = (ib >> interest::WRITE_SHIFT) & interest::MODE_MASK;
    if (reads && read_mode == interest::ALL) || (writes && write_mode == interest::ALL) {
        return true;
    }
    let mut bits = 0u8;
    if reads && read_mode == interest::BY_PATH {
        bits |= interest::PATH_READ;
    }
    if writes && write_mode == interest::BY_PATH {
        bits |= interest::PATH_WRITE;
    }
    if bits == 0 {
        return false;
    }
    match enter_arg(ctx, base, desc.str1_arg) {
        Some(src) => path_wanted(src, bits),
        None => true,
    }
}

/// Whether the open's path has a prefix in the path map with one of `bits`.
#[inline(always)]
fn path_wanted(src: u64, bits: u8) -> bool {
    if src == 0 {
        return true;
    }
    let Some(key) = PATH_KEY.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: `key` points at this CPU's PathKey value, PATH_KEY_LEN data bytes long; the
    // helper checks the user pointer and writes at most that many bytes.
    let n = unsafe {
        bpf_probe_read_user_str(
            (&raw mut (*key).data).cast(),
            interest::PATH_KEY_LEN as u32,
            src as *const _,
        )
    };
    // Unreadable, empty or relative: the agent resolves relative paths against the cwd or
    // the directory fd, which the kernel does not, so they are kept.
    // SAFETY: the helper wrote at least the first byte when it returned more than 1.
    if n <= 1 || unsafe { (*key).data[0] } != b'/' {
        return true;
    }
    let len = ((n - 1) as u32) & (interest::PATH_KEY_LEN as u32 - 1);
    // `/etc/../etc/shadow`, `/usr/../etc/./shadow` and `//etc/shadow` name a wanted file under
    // another spelling: the agent folds them, the prefix checks below cannot, so they are kept.
    // SAFETY: `key` is this CPU's PathKey, valid for the whole program run.
    if odd_spelling(unsafe { &(*key).data }, len as usize) {
        return true;
    }
    // Most opens are below directories no prefix of their access starts like (/usr, /lib,
    // /sys, /dev): the byte after the leading slash rules them out without a trie lookup.
    // SAFETY: the helper wrote at least two bytes when it returned more than 1.
    let second = unsafe { (*key).data[1] } as u32;
    let in_set = |base: u32| {
        let word = INTEREST
            .get(base + (second >> 5))
            .copied()
            .unwrap_or(u32::MAX);
        (word >> (second & 31)) & 1 != 0
    };
    let read_may = bits & interest::PATH_READ != 0 && in_set(interest::SLOT_SECOND_BYTE_READ);
    let write_may = bits & interest::PATH_WRITE != 0 && in_set(interest::SLOT_SECOND_BYTE_WRITE);
    if !read_may && !write_may {
        return false;
    }
    // SAFETY: as above; the key is packed, so the length is written unaligned.
    unsafe { (&raw mut (*key).prefix_len).write_unaligned(len * 8) };
    // SAFETY: PathKey has the layout of the trie's key (a packed u32 and the data bytes).
    let k = unsafe { &*key.cast::<aya_ebpf::maps::lpm_trie::Key<[u8; interest::PATH_KEY_LEN]>>() };
    matches!(OPEN_PATHS.get(k), Some(v) if *v & bits != 0)
}

/// Whether the first `len` bytes of a path have an empty, `.` or `..` segment (`//`, `/./`,
/// `/../`, or `/.` / `/..` at the end). Hidden names (`/.cargo`) are ordinary segments.
#[inline(always)]
fn odd_spelling(data: &[u8; interest::PATH_KEY_LEN], len: usize) -> bool {
    let at = |i: usize| {
        if i < len && i < interest::PATH_KEY_LEN {
            data[i]
        } else {
            0
        }
    };
    let mut i = 1;
    while i < interest::PATH_KEY_LEN {
        if i >= len {
            return false;
        }
        if data[i - 1] == b'/' {
            let c = data[i];
            if c == b'/' {
                return true;
            }
            if c == b'.' {
                let n = at(i + 1);
                if n == 0 || n == b'/' || (n == b'.' && matches!(at(i + 2), 0 | b'/')) {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

const _: () = assert!(core::mem::size_of::<PathKey>() == 4 + interest::PATH_KEY_LEN);

fn try_enter(ctx: &TracePointContext) -> Option<()> {
    let (nr, desc) = desc_for(ctx, conf!(tp.sys_enter_nr))?;
    let base = conf!(tp.sys_enter_args);
    if base == NO_OFFSET {
        return None;
    }
    let base = base as usize;
    if !wanted(ctx, base, desc) {
        count_filtered(desc.kind);
        return None;
    }
    let cur = current()?;
    let mut s = Stash {
        nr,
        args: enter_args(ctx, base),
        ..Stash::default()
    };
    if !passes_enter_filter(desc, &s.args) {
        return None;
    }
    if desc.save_creds != 0 {
        // SAFETY: helper without arguments.
        let uid = unsafe { bpf_get_current_uid_gid() } as u32;
        s.old_uid = uid;
        s.old_euid = current_euid_egid(task()).map(|(e, _)| e).unwrap_or(uid);
    }
    if STASH.insert(cur.pid_tgid, s, 0).is_err() {
        count_misc(Misc::StashFull);
    }
    Some(())
}

/// `syscalls/sys_exit_*`: uses `__syscall_nr` and `ret` (offsets from the tracefs format).
#[tracepoint]
pub(crate) fn sys_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

/// Reads a user string into `dst`; returns (bytes without NUL, truncated, unreadable).
#[inline(always)]
fn read_str(dst: *mut u8, src: u64) -> (usize, bool, bool) {
    if src == 0 {
        return (0, false, true);
    }
    // SAFETY: the helper checks `src`; `dst` has MAX_PATH bytes of room in the scratch buffer.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), MAX_PATH as u32, src as *const _) };
    if n <= 0 {
        return (0, false, true);
    }
    let mut len = (n - 1) as usize;
    if len >= MAX_PATH {
        len = MAX_PATH - 1;
    }
    (len, n as usize >= MAX_PATH, false)
}

fn try_exit(ctx: &TracePointContext) -> Option<()> {
    let (nr, desc) = desc_for(ctx, conf!(tp.sys_exit_nr))?;
    // A kind nothing needs was left out at enter: no entry to look for.
    if desc.kind != EventKind::Open as u32 && desc.interest & interest::MODE_MASK == interest::NONE
    {
        return None;
    }
    // An entry exists only if the enter side captured this call, and it checked the agent and
    // cgroup filters then: the exit side looks it up first and needs no filter of its own.
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let saved = match STASH.get_ptr(pid_tgid) {
        // SAFETY: live map value of type Stash; copied out before removal.
        Some(p) => unsafe { *p },
        None => {
            // Enter-side filters (the agent itself, other cgroups, the descriptor's filter and
            // interest) legitimately leave no entry; anything else is a miss.
            if desc.filter == filter::NONE && desc.interest == interest::ALL && current().is_some()
            {
                count_misc(Misc::StashMiss);
            }
            return None;
        }
    };
    let _ = STASH.remove(pid_tgid);
    if saved.nr != nr {
        count_misc(Misc::StashMiss);
        return None;
    }
    let cur = Current {
        pid_tgid,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    };
    let ret_off = conf!(tp.sys_exit_ret);
    if ret_off == NO_OFFSET {
        return None;
    }
    // SAFETY: `ret` offset read from this tracepoint's format.
    let ret = unsafe { ctx.read_at::<i64>(ret_off as usize) }.unwrap_or(0);
    let kind = desc.kind;
    let buf = scratch()?;
    fill_header(buf, kind, &cur);
    let args = saved.args;
    let mut flags = 0u32;

    // SAFETY: every offset below stays inside the SCRATCH_SIZE buffer: HDR + BODY + 2 strings of
    // at most MAX_PATH - 1 bytes + MAX_DATA.
    let tail = unsafe { buf.add(HDR + BODY) };
    let len1 = if desc.str1_arg != NO_ARG {
        place_str(
            read_str(tail, arg(&args, desc.str1_arg)),
            SYS_STR1_TRUNCATED,
            SYS_STR1_UNREADABLE,
            &mut flags,
        )
    } else {
        0
    };
    // SAFETY: see above.
    let tail2 = unsafe { tail.add(len1) };
    let len2 = if desc.str2_arg != NO_ARG {
        place_str(
            read_str(tail2, arg(&args, desc.str2_arg)),
            SYS_STR2_TRUNCATED,
            SYS_STR2_UNREADABLE,
            &mut flags,
        )
    } else {
        0
    };
    // SAFETY: see above.
    let tail3 = unsafe { tail2.add(len2) };
    let dlen = read_data(desc, &args, ret, tail3);
    if dlen.is_none() {
        flags |= SYS_DATA_UNREADABLE;
    }
    let mut dlen = dlen.unwrap_or(0);
    if dlen > MAX_DATA {
        dlen = MAX_DATA;
    }

    let (old_uid, old_euid) = if desc.save_creds != 0 {
        (saved.old_uid, saved.old_euid)
    } else {
        // SAFETY: the header was filled above.
        unsafe { ((*buf.cast::<Header>()).uid, (*buf.cast::<Header>()).euid) }
    };
    let tail_len = len1 + len2 + dlen;
    let Some(folded) = fold(buf, kind, fold_key(desc, &args, ret, flags), tail_len) else {
        return Some(());
    };
    let body = SyscallBody {
        ret,
        args,
        call: desc.call,
        str1_len: len1 as u16,
        str2_len: len2 as u16,
        data_len: dlen as u16,
        flags,
        old_uid,
        old_euid,
        folded,
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<SyscallBody>().write_unaligned(body) };
    emit(buf, HDR + BODY + tail_len, kind);
    Some(())
}

/// What identifies a call for folding besides its tail: the call, its outcome (an error, or
/// success whatever the returned fd or count), its capture flags and every argument that is a
/// value (flags, modes, fds, ids, signals; `value_args`, from the call's tracepoint format):
/// the contents behind its pointers are in the tail.
#[inline(always)]
fn fold_key(desc: &SyscallDesc, args: &[u64; 6], ret: i64, flags: u32) -> u64 {
    let outcome = if ret < 0 { ret as u64 } else { 0 };
    let mut h = fold_mix(fold_seed(), u64::from(desc.call));
    h = fold_mix(h, outcome);
    h = fold_mix(h, u64::from(flags));
    for (i, a) in args.iter().enumerate() {
        let value = desc.value_args & (1 << i) != 0;
        h = fold_mix(h, if value { *a } else { 0 });
    }
    h
}

/// Reads the data block the descriptor asks for; `Some(0)` when there is none, `None` when it
/// could not be read.
#[inline(always)]
fn read_data(desc: &SyscallDesc, args: &[u64; 6], ret: i64, dst: *mut u8) -> Option<usize> {
    let src = arg(args, desc.data_arg);
    let want: u64 = match desc.data_mode {
        data_mode::NONE => return Some(0),
        data_mode::LEN_IN_ARG => arg(args, desc.len_arg),
        data_mode::LEN_IN_USER_PTR => {
            // The kernel wrote the peer address only on success, and only if asked.
            let lenp = arg(args, desc.len_arg);
            if ret < 0 || src == 0 || lenp == 0 {
                return Some(0);
            }
            let mut l: u32 = 0;
            // SAFETY: the helper checks the user pointer; dst is a local.
            let r = unsafe { bpf_probe_read_user((&raw mut l).cast(), 4, lenp as *const _) };
            if r != 0 {
                return None;
            }
            l as u64
        }
        data_mode::FIXED => desc.fixed_len as u64,
        data_mode::STRING | data_mode::PRCTL_NAME => {
            if src == 0
                || (desc.data_mode == data_mode::PRCTL_NAME && args[0] != data_mode::PR_SET_NAME)
            {
                return Some(0);
            }
            let max = if (desc.fixed_len as usize) < MAX_DATA {
                desc.fixed_len as u32
            } else {
                MAX_DATA as u32
            };
            // SAFETY: the helper checks `src`; dst has MAX_DATA bytes of room.
            let n = unsafe { bpf_probe_read_user_str(dst.cast(), max, src as *const _) };
            if n <= 0 {
                return None;
            }
            return Some((n - 1) as usize);
        }
        _ => return Some(0),
    };
    if src == 0 || want == 0 {
        return Some(0);
    }
    let mut want = want as usize;
    if want > MAX_DATA {
        want = MAX_DATA;
    }
    // SAFETY: the helper checks `src`; dst has MAX_DATA bytes of room.
    let r = unsafe { bpf_probe_read_user(dst.cast(), want as u32, src as *const _) };
    if r != 0 { None } else { Some(want) }
}
