//! Building and emitting records: header, filters, counters.
use aya_ebpf::{
    EbpfContext,
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_ringbuf_output,
    },
    maps::RingBuf,
    programs::TracePointContext,
};
use monitor_common::{
    AGENT_FOLD_MS, AGENT_PAUSED, AGENT_TGID, COMM_LEN, CgroupBody, FoldKey, FoldState, Header,
    MAX_PATH, MAX_RINGS, Misc, NO_OFFSET, SCRATCH_SIZE, SyscallBody, kind_slot, record_cgroup,
    replicated, shard,
};

use crate::maps::{
    AGENT, CGROUP_FILTER, DROPS_BY_CGROUP, EVENTS, FOLD, MISC, SCRATCH, STATS, conf, ring,
};

/// The agent's tgid, as the running agent last wrote it (0 before any agent has).
#[inline(always)]
pub(crate) fn agent_tgid() -> u32 {
    AGENT.get(AGENT_TGID).copied().unwrap_or(0)
}

/// Identity of the current task, taken once per program run.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    pub pid_tgid: u64,
    pub cgroup_id: u64,
}

impl Current {
    #[inline(always)]
    pub(crate) fn tgid(&self) -> u32 {
        (self.pid_tgid >> 32) as u32
    }

    /// The current task, whatever the filters say (for records about the system, such as a
    /// cgroup created by a runtime, rather than about the task).
    #[inline(always)]
    pub(crate) fn unfiltered() -> Current {
        // SAFETY: helpers without arguments.
        unsafe {
            Current {
                pid_tgid: bpf_get_current_pid_tgid(),
                cgroup_id: bpf_get_current_cgroup_id(),
            }
        }
    }
}

/// Returns the current task unless the kernel-side filters drop it (the agent itself, or a
/// cgroup outside the configured set).
#[inline(always)]
pub(crate) fn current() -> Option<Current> {
    // SAFETY: helpers without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    if (pid_tgid >> 32) as u32 == agent_tgid() {
        return None;
    }
    // SAFETY: as above.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if conf!(cgroup_filter) != 0 {
        // SAFETY: the value is a u8 we only test for presence.
        unsafe { CGROUP_FILTER.get(cgroup_id) }?;
    }
    Some(Current {
        pid_tgid,
        cgroup_id,
    })
}

/// Copies the `__data_loc char[]` tracepoint field at `loc_off` into `dst` (MAX_PATH bytes of
/// room). Returns the string's length without its NUL (below MAX_PATH) and whether it was cut;
/// (0, false) if the offset is unknown or the read fails.
#[inline(always)]
pub(crate) fn read_data_loc_str(
    ctx: &TracePointContext,
    loc_off: u32,
    dst: *mut u8,
) -> (usize, bool) {
    if loc_off == NO_OFFSET {
        return (0, false);
    }
    // SAFETY: offset read from this tracepoint's format.
    let loc: u32 = unsafe { ctx.read_at::<u32>(loc_off as usize) }.unwrap_or(0);
    let src = ctx.as_ptr() as usize + (loc & 0xffff) as usize;
    // SAFETY: the helper bounds-checks both sides; dst has MAX_PATH bytes of room.
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), MAX_PATH as u32, src as *const _) };
    if n <= 0 {
        return (0, false);
    }
    let len = (n - 1) as usize;
    // The mask keeps the length provably below MAX_PATH (a power of two) for the verifier.
    (len & (MAX_PATH - 1), n as usize >= MAX_PATH)
}

/// Reads a `T` at `base + off` in kernel memory; `None` if the offset is unknown or the read
/// fails.
#[inline(always)]
pub(crate) fn read_kernel<T: Copy>(base: u64, off: u32) -> Option<T> {
    if off == NO_OFFSET || base == 0 {
        return None;
    }
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel checks the source address; dst is our own stack slot.
    let r = unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
            (base + off as u64) as *const _,
        )
    };
    if r == 0 {
        // SAFETY: the helper filled all size_of::<T>() bytes.
        Some(unsafe { v.assume_init() })
    } else {
        None
    }
}

/// The length to place a string read into a record with (below MAX_PATH), recording in
/// `flags` whether it was cut (`truncated`) or could not be read (`unreadable`).
#[inline(always)]
pub(crate) fn place_str(
    (len, cut, failed): (usize, bool, bool),
    truncated: u32,
    unreadable: u32,
    flags: &mut u32,
) -> usize {
    if cut {
        *flags |= truncated;
    }
    if failed {
        *flags |= unreadable;
    }
    if len >= MAX_PATH { MAX_PATH - 1 } else { len }
}

/// The current task_struct pointer.
#[inline(always)]
pub(crate) fn task() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_task() }
}

/// The effective uid and gid of the current task (from task->cred).
#[inline(always)]
pub(crate) fn current_euid_egid(task: u64) -> Option<(u32, u32)> {
    let cred: u64 = read_kernel(task, conf!(k.task_cred))?;
    let euid: u32 = read_kernel(cred, conf!(k.cred_euid))?;
    let egid: u32 = read_kernel(cred, conf!(k.cred_egid))?;
    Some((euid, egid))
}

/// The per-CPU buffer records are built in.
#[inline(always)]
pub(crate) fn scratch() -> Option<*mut u8> {
    match SCRATCH.get_ptr_mut(0) {
        Some(p) => Some(p.cast()),
        None => {
            count_misc(Misc::ScratchMiss);
            None
        }
    }
}

/// Fills the common header at the start of `buf` for the current task.
#[inline(always)]
pub(crate) fn fill_header(buf: *mut u8, kind: u32, cur: &Current) {
    let h = buf.cast::<Header>();
    let task = task();
    // SAFETY: helpers without pointer arguments.
    let (uid_gid, now) = unsafe { (bpf_get_current_uid_gid(), bpf_ktime_get_boot_ns()) };
    let uid = uid_gid as u32;
    let gid = (uid_gid >> 32) as u32;
    let (euid, egid) = current_euid_egid(task).unwrap_or((uid, gid));
    let leader: u64 = read_kernel(task, conf!(k.task_group_leader)).unwrap_or(0);
    let start_ns: u64 = read_kernel(leader, conf!(k.task_start_boottime)).unwrap_or(0);
    // SAFETY: `buf` is the scratch map value, larger than a Header and 8-byte aligned.
    unsafe {
        (*h).kind = kind;
        (*h).len = 0;
        (*h).ktime_ns = now;
        (*h).cgroup_id = cur.cgroup_id;
        (*h).start_ns = start_ns;
        (*h).pid = cur.tgid();
        (*h).tid = cur.pid_tgid as u32;
        (*h).uid = uid;
        (*h).gid = gid;
        (*h).euid = euid;
        (*h).egid = egid;
        let comm = (&raw mut (*h).comm).cast();
        if bpf_get_current_comm(comm, COMM_LEN as u32) != 0 {
            (*h).comm = [0; COMM_LEN];
        }
    }
}

/// Writes the first `len` bytes of `buf` to the ring buffer(s) and counts the outcome; a
/// ring's reader is woken once enough bytes are pending in it.
#[inline(always)]
pub(crate) fn emit(buf: *mut u8, len: usize, kind: u32) {
    submit(buf, len, kind, false);
}

/// As [`emit`], but wakes the reader at once (records the agent may not live long to read).
#[inline(always)]
pub(crate) fn emit_now(buf: *mut u8, len: usize, kind: u32) {
    submit(buf, len, kind, true);
}

/// Writes `data` to `ring`, waking its reader when `now` or once enough bytes are pending;
/// returns 1 when the record did not fit, else 0. Without a branch on the outcome: `submit`
/// writes to several rings, and a branch per ring would multiply the paths the verifier walks.
#[inline(always)]
fn output(ring: &RingBuf, data: &[u8], now: bool) -> u64 {
    // BPF_RB_AVAIL_DATA = 0; BPF_RB_NO_WAKEUP = 1; BPF_RB_FORCE_WAKEUP = 2.
    let threshold = conf!(wakeup_bytes) as u64;
    let flags = if now {
        2
    } else if threshold == 0 {
        0
    } else {
        // 1, plus 1 when at least `threshold` bytes are pending (both far below 2^63).
        1 + (threshold.wrapping_sub(1).wrapping_sub(ring.query(0)) >> 63)
    };
    write(ring, data, flags)
}

/// Writes `data` to `ring` with the helper's `flags`; 1 when it did not fit, else 0.
#[inline(always)]
fn write(ring: &RingBuf, data: &[u8], flags: u64) -> u64 {
    // SAFETY: `RingBuf` is a transparent wrapper of its map definition, which is what the
    // helper takes; `data` is valid for its length.
    let ret = unsafe {
        bpf_ringbuf_output(
            (ring as *const RingBuf).cast_mut().cast(),
            data.as_ptr().cast_mut().cast(),
            data.len() as u64,
            flags,
        )
    };
    // Negative on failure: the sign bit.
    (ret as u64) >> 63
}

/// 1 when `x` is 0, else 0, computed without a branch.
#[inline(always)]
fn is_zero(x: u64) -> u64 {
    ((x | x.wrapping_neg()) >> 63) ^ 1
}

#[inline(always)]
fn submit(buf: *mut u8, len: usize, kind: u32, now: bool) {
    // A stopping agent pauses capture to read the ring to its end: nothing is written or
    // counted meanwhile, so its final counts are exact.
    if AGENT.get(AGENT_PAUSED).copied().unwrap_or(0) != 0 {
        return;
    }
    // Records are always shorter than the scratch buffer; the mask tells the verifier so.
    let len = len & (SCRATCH_SIZE - 1);
    // SAFETY: the scratch value is SCRATCH_SIZE bytes long.
    unsafe { (*buf.cast::<Header>()).len = len as u32 };
    // SAFETY: `len` bytes of the scratch value are initialised by the caller.
    let data = unsafe { core::slice::from_raw_parts(buf as *const u8, len) };
    // SAFETY: the header was filled by the caller; a cgroup record's body follows it, and the
    // scratch value is longer than both whatever the record.
    let (task_cgroup, body_cgroup) = unsafe {
        (
            (*buf.cast::<Header>()).cgroup_id,
            (*buf.add(size_of::<Header>()).cast::<CgroupBody>()).id,
        )
    };
    let rings = conf!(rings).clamp(1, MAX_RINGS);
    let failed = if rings == 1 {
        output(&EVENTS, data, now)
    } else {
        // The owner's ring, and every ring for a lifecycle record. `own` is never compared
        // in a branch: a verifier that learnt its value on one path could not merge that path
        // with the others, and the paths would multiply with the rings.
        let own = u64::from(shard(record_cgroup(kind, task_cgroup, body_cgroup), rings));
        let every = u64::from(replicated(kind));
        let (mut own_failed, mut replica_failed) = (0u64, 0u64);
        for i in 0..MAX_RINGS {
            if i >= rings {
                break;
            }
            let mine = is_zero(u64::from(i) ^ own);
            if mine != 0 {
                own_failed = output(ring(i), data, now);
            } else if every != 0 {
                // Copies wake no one: the owner's record does, and a ring that only gets
                // copies is read on the reader's short timer; order within a ring is kept
                // either way.
                replica_failed += write(ring(i), data, if now { 2 } else { 1 });
            }
        }
        if replica_failed != 0 {
            add_misc(Misc::ReplicaDrop, replica_failed);
        }
        own_failed
    };
    let ok = failed == 0;
    if let Some(s) = STATS.get_ptr_mut(kind_slot(kind)) {
        // SAFETY: the map value is a KindStats of u64 counters; atomics keep counts exact
        // even if another program runs on this CPU in between.
        let field = unsafe {
            if ok {
                &raw mut (*s).submitted
            } else {
                &raw mut (*s).dropped
            }
        };
        atomic_inc(field);
    }
    if !ok {
        count_cgroup_drop(task_cgroup);
    }
}

/// Counts a dropped record against its cgroup (first drop inserts; a lost insert race retries).
#[inline(always)]
fn count_cgroup_drop(cgroup: u64) {
    for _ in 0..2 {
        if let Some(p) = DROPS_BY_CGROUP.get_ptr_mut(cgroup) {
            atomic_inc(p);
            return;
        }
        // BPF_NOEXIST = 1: only the first CPU creates the entry.
        if DROPS_BY_CGROUP.insert(cgroup, 1, 1).is_ok() {
            return;
        }
    }
}

/// Bytes of a record's tail (its strings and data) that make its fold key; longer tails also
/// differ by their length.
const FOLD_TAIL_BYTES: usize = 256;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Mixes `v` into the fold hash `h`.
#[inline(always)]
pub(crate) fn fold_mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(FNV_PRIME)
}

/// The start of a fold hash.
#[inline(always)]
pub(crate) fn fold_seed() -> u64 {
    FNV_OFFSET
}

/// Folds a syscall record built in `buf` (header, body, `tail_len` bytes of tail) that is
/// identical to one of the same process sent within the fold window: `None` when it is folded
/// (counted, not to be sent), else the number of records folded into it since the last one
/// was sent. `key` is the hash of what identifies the call besides its tail (call, outcome,
/// non-pointer arguments).
#[inline(always)]
pub(crate) fn fold(buf: *mut u8, kind: u32, key: u64, tail_len: usize) -> Option<u32> {
    let window_ms = AGENT.get(AGENT_FOLD_MS).copied().unwrap_or(0);
    // Only records that name what they act on (a path, an address) are folded: without one,
    // two calls on different objects that reuse a descriptor number would look the same.
    if window_ms == 0 || tail_len == 0 {
        return Some(0);
    }
    let h = buf.cast::<Header>();
    // SAFETY: the caller filled the header at the start of the scratch value.
    let (pid, now) = unsafe { ((*h).pid, (*h).ktime_ns) };
    let n = if tail_len < FOLD_TAIL_BYTES {
        tail_len
    } else {
        FOLD_TAIL_BYTES
    };
    let mut hash = fold_mix(key, tail_len as u64);
    // SAFETY: the tail starts right after the header and body, inside the scratch value.
    let tail =
        unsafe { buf.add(core::mem::size_of::<Header>() + core::mem::size_of::<SyscallBody>()) };
    for i in 0..FOLD_TAIL_BYTES / 8 {
        let at = i * 8;
        if at >= n {
            break;
        }
        // SAFETY: at < FOLD_TAIL_BYTES, far inside the SCRATCH_SIZE value.
        let mut w = unsafe { tail.add(at).cast::<u64>().read_unaligned() };
        let rest = n - at;
        if rest < 8 {
            // Bytes past the tail are left over from earlier records.
            w &= (1u64 << (rest * 8)) - 1;
        }
        hash = fold_mix(hash, w);
    }
    let k = FoldKey { pid, kind, hash };
    match FOLD.get_ptr_mut(k) {
        Some(st) => {
            // SAFETY: live map value of type FoldState.
            let sent = unsafe { (*st).sent_ns };
            if now.wrapping_sub(sent) < u64::from(window_ms) * 1_000_000 {
                // SAFETY: as above; the atomic add keeps concurrent CPUs' counts.
                atomic_inc(unsafe { &raw mut (*st).folded });
                if let Some(s) = STATS.get_ptr_mut(kind_slot(kind)) {
                    // SAFETY: live per-CPU map value of type KindStats.
                    atomic_inc(unsafe { &raw mut (*s).folded });
                }
                return None;
            }
            // SAFETY: as above. A record folded on another CPU between these two lines is
            // carried by the next window's record instead.
            let folded = unsafe {
                let f = (*st).folded;
                (*st).folded = 0;
                (*st).sent_ns = now;
                f
            };
            Some(if folded > u64::from(u32::MAX) {
                u32::MAX
            } else {
                folded as u32
            })
        }
        None => {
            let _ = FOLD.insert(
                k,
                FoldState {
                    sent_ns: now,
                    folded: 0,
                },
                0,
            );
            Some(0)
        }
    }
}

/// Counts a call of `kind` left out because nothing loaded needs it (not a drop).
#[inline(always)]
pub(crate) fn count_filtered(kind: u32) {
    if let Some(s) = STATS.get_ptr_mut(kind_slot(kind)) {
        // SAFETY: live per-CPU map value of type KindStats.
        atomic_inc(unsafe { &raw mut (*s).filtered });
    }
}

/// Counts a kernel-side condition in the MISC map.
#[inline(always)]
pub(crate) fn count_misc(which: Misc) {
    add_misc(which, 1);
}

/// Adds `n` to a [`Misc`] counter.
#[inline(always)]
fn add_misc(which: Misc, n: u64) {
    if let Some(p) = MISC.get_ptr_mut(which as u32) {
        atomic_add(p, n);
    }
}

/// Adds one to a counter with a BPF atomic add (core's atomics have no BPF lowering).
#[inline(always)]
fn atomic_inc(p: *mut u64) {
    atomic_add(p, 1);
}

#[inline(always)]
fn atomic_add(p: *mut u64, n: u64) {
    // SAFETY: callers pass a pointer into a live, 8-byte aligned map value.
    unsafe {
        core::arch::asm!("lock *(u64 *)({p} + 0) += {n}", p = in(reg) p, n = in(reg) n);
    }
}
