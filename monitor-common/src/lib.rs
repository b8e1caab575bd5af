//! The contract between the kernel programs (`monitor-ebpf`) and the agent (`monitor`).
//!
//! Every record the kernel writes to the ring buffer is `Header`, then a kind-specific fixed
//! body, then a variable-length tail of strings and bytes whose lengths the body gives. All types
//! are `#[repr(C)]`, fixed-width, with explicit padding and compile-time size checks, so the two
//! sides cannot drift apart silently.
#![no_std]

mod config;
mod kinds;
mod syscalls;

pub use config::{Config, KernelOffsets, TpOffsets};
pub use kinds::{EventKind, KIND_SLOTS, kind_slot};
pub use syscalls::Syscall;

/// Ring buffer carrying every event record (with one pipeline worker), or the records of
/// worker 0 (see [`RING_MAPS`]).
pub const EVENTS_MAP: &str = "EVENTS";
/// Most ring buffers the records can be sharded over: one per pipeline worker, read by that
/// worker alone.
pub const MAX_RINGS: u32 = 8;
/// The ring buffers, one per pipeline worker: worker `i` reads `RING_MAPS[i]`. The programs
/// write a record to the ring of the worker that owns its cgroup ([`shard`]), and the records
/// every worker's process table learns from ([`replicated`]) to every ring in use.
pub const RING_MAPS: [&str; MAX_RINGS as usize] = [
    EVENTS_MAP, "EVENTS_1", "EVENTS_2", "EVENTS_3", "EVENTS_4", "EVENTS_5", "EVENTS_6", "EVENTS_7",
];

/// The worker (and ring), of `rings`, that owns the records of cgroup `cgroup`. The kernel
/// programs and the agent compute it with this one function. Fibonacci hashing: consecutive
/// cgroup ids (inode numbers) spread over the rings.
#[inline(always)]
pub fn shard(cgroup: u64, rings: u32) -> u32 {
    if rings <= 1 {
        return 0;
    }
    let h = cgroup.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (h % u64::from(rings)) as u32
}

/// Whether records of `kind` (an [`EventKind`] number) go to every ring: the ones the process
/// table learns from (fork, exec, exit, chdir). A process's ancestry crosses cgroups (a
/// container's processes descend from the runtime's, on the host), so every worker's table
/// follows every process, and only the owner turns the record into an event.
#[inline(always)]
pub fn replicated(kind: u32) -> bool {
    kind == EventKind::Fork as u32
        || kind == EventKind::Exec as u32
        || kind == EventKind::Exit as u32
        || kind == EventKind::Chdir as u32
}

/// The cgroup a record belongs to, for [`shard`]: for a cgroup's creation or removal the
/// cgroup itself (its worker attributes that cgroup's events), else the task's.
#[inline(always)]
pub fn record_cgroup(kind: u32, task_cgroup: u64, body_cgroup: u64) -> u64 {
    if kind == EventKind::CgroupMkdir as u32 || kind == EventKind::CgroupRmdir as u32 {
        body_cgroup
    } else {
        task_cgroup
    }
}
/// Per-CPU counters, one [`KindStats`] per event kind slot (see [`EventKind::slot`]).
pub const STATS_MAP: &str = "STATS";
/// Per-CPU counters of kernel-side conditions that are not ring-buffer drops ([`Misc`]).
pub const MISC_MAP: &str = "MISC";
/// Syscall number -> [`SyscallDesc`]; filled by the agent with the running arch's numbers.
pub const SYSCALLS_MAP: &str = "SYSCALLS";
/// Syscall arguments saved at `sys_enter` until `sys_exit`, keyed by pid_tgid.
pub const STASH_MAP: &str = "STASH";
/// cgroup2 ids to capture when [`Config::cgroup_filter`] is on.
pub const CGROUP_FILTER_MAP: &str = "CGROUP_FILTER";
/// Path prefixes whose opens the loaded rules and baselines need (LPM trie of [`PathKey`] ->
/// [`interest::PATH_READ`] | [`interest::PATH_WRITE`]).
pub const OPEN_PATHS_MAP: &str = "OPEN_PATHS";
/// Capacity of [`OPEN_PATHS_MAP`].
pub const OPEN_PATHS_ENTRIES: u32 = 4096;
/// Interest settings that are not per syscall ([`interest::SLOT_TCP_STATES`], ...).
pub const INTEREST_MAP: &str = "INTEREST";
/// Per-CPU buffer the path of an open is compared from (too large for the stack).
pub const PATH_KEY_MAP: &str = "PATH_KEY";
/// cgroup2 id -> records of that cgroup dropped because the ring buffer was full (LRU bound).
pub const DROPS_BY_CGROUP_MAP: &str = "DROPS_BY_CGROUP";
/// Entries of [`DROPS_BY_CGROUP_MAP`]: the cgroups that lost events most recently.
pub const DROPS_BY_CGROUP_ENTRIES: u32 = 1024;
/// `u32` slots written by the running agent: [`AGENT_TGID`] and [`AGENT_PAUSED`]. A map rather
/// than load-time configuration, because pinned programs outlive the agent that loaded them
/// and are adopted by the next one, which writes its own values here.
pub const AGENT_MAP: &str = "AGENT";
/// Slot of [`AGENT_MAP`]: the agent's tgid. Its own activity is dropped in the kernel, and
/// signals sent to it are reported.
pub const AGENT_TGID: u32 = 0;
/// Slot of [`AGENT_MAP`]: non-zero while capture is paused (nothing is written or counted).
pub const AGENT_PAUSED: u32 = 1;
/// Slot of [`AGENT_MAP`]: the fold window in milliseconds (0: every record is sent). Within a
/// window, a syscall record identical to one already sent (same process, kind, call, outcome,
/// flags and captured strings or address) is counted in [`FOLD_MAP`] instead of sent; the next
/// one sent after the window carries the count ([`SyscallBody::folded`]).
pub const AGENT_FOLD_MS: u32 = 2;
/// Entries of [`AGENT_MAP`].
pub const AGENT_SLOTS: u32 = 3;
/// [`FoldKey`] -> [`FoldState`]: identical syscall records folded in the kernel (LRU bound).
pub const FOLD_MAP: &str = "FOLD";
/// Entries of [`FOLD_MAP`]: distinct records remembered at once; the least recently seen go
/// first (their next occurrence is simply sent).
pub const FOLD_ENTRIES: u32 = 16384;
/// Name of the load-time global holding [`Config`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// Entries of [`SYSCALLS_MAP`]; syscall numbers at or above this are never hooked.
pub const MAX_SYSCALL_NR: u32 = 512;
/// Longest path or string captured (bytes, including the terminating NUL), as PATH_MAX.
pub const MAX_PATH: usize = 4096;
/// Longest argv block captured at exec (bytes); longer command lines are cut and flagged.
pub const MAX_ARGS: usize = 4096;
/// Longest binary payload (socket address, capability data, short strings) of a syscall event.
pub const MAX_DATA: usize = 128;
/// Size of the per-CPU scratch buffer records are built in; larger than any record.
pub const SCRATCH_SIZE: usize = 16384;
/// Length of `comm`, as the kernel's TASK_COMM_LEN.
pub const COMM_LEN: usize = 16;
/// Marks an offset that the running kernel does not have.
pub const NO_OFFSET: u32 = u32::MAX;
/// Marks an argument index that is not used.
pub const NO_ARG: u8 = 0xff;

/// Fields every record starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`EventKind`] number.
    pub kind: u32,
    /// Total length of the record in bytes (header, body and tail).
    pub len: u32,
    /// When the event happened, CLOCK_BOOTTIME nanoseconds.
    pub ktime_ns: u64,
    /// cgroup2 id of the task (the cgroup directory's inode number).
    pub cgroup_id: u64,
    /// Start time of the process (thread group leader), CLOCK_BOOTTIME ns; 0 if unknown.
    pub start_ns: u64,
    /// Process id (tgid) as seen from the initial pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Task name (`comm`), NUL-padded.
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<Header>() == 72);

/// Exec body ([`EventKind::Exec`]); tail: filename bytes, then the NUL-separated argv block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecBody {
    /// Parent process id (real_parent's tgid).
    pub ppid: u32,
    /// Bytes of filename in the tail (no NUL).
    pub filename_len: u16,
    /// Bytes of argv block in the tail.
    pub args_len: u16,
    /// [`EXEC_FILENAME_TRUNCATED`] | [`EXEC_ARGS_TRUNCATED`] | [`EXEC_ARGS_UNREADABLE`].
    pub flags: u32,
    /// Pid the task had before exec (differs when a non-leader thread execs).
    pub old_pid: u32,
}
const _: () = assert!(core::mem::size_of::<ExecBody>() == 16);
/// The filename was longer than the kernel program reads.
pub const EXEC_FILENAME_TRUNCATED: u32 = 1;
/// The argv block was longer than [`MAX_ARGS`].
pub const EXEC_ARGS_TRUNCATED: u32 = 2;
/// The argv block could not be read (no `mm`, or a fault).
pub const EXEC_ARGS_UNREADABLE: u32 = 4;

/// Fork body ([`EventKind::Fork`]): the header is the parent; no tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkBody {
    /// Process id of the child.
    pub child_pid: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// Child's start time, CLOCK_BOOTTIME ns.
    pub child_start_ns: u64,
}
const _: () = assert!(core::mem::size_of::<ForkBody>() == 16);

/// Exit body ([`EventKind::Exit`]): emitted when the last thread of a process exits; no tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitBody {
    /// The kernel's exit_code: wait(2) status (exit status << 8 | terminating signal).
    pub exit_code: i32,
    /// 1 if exit_code was read, 0 if the kernel offset is unknown.
    pub code_known: u32,
}
const _: () = assert!(core::mem::size_of::<ExitBody>() == 8);

/// Body of every syscall-based event (file, network, privilege kinds).
///
/// Tail: `str1_len` bytes, `str2_len` bytes, then `data_len` bytes. Which argument each string
/// or data block came from is given by the syscall's [`SyscallDesc`]; the raw arguments are kept
/// so that flags, modes, fds and ids reach user space unchanged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallBody {
    /// Return value of the call.
    pub ret: i64,
    /// Raw arguments of the call as seen at sys_enter.
    pub args: [u64; 6],
    /// [`Syscall`] number (ours, architecture independent).
    pub call: u16,
    /// Bytes of the first string in the tail.
    pub str1_len: u16,
    /// Bytes of the second string in the tail.
    pub str2_len: u16,
    /// Bytes of the data block in the tail.
    pub data_len: u16,
    /// [`SYS_STR1_TRUNCATED`] etc.
    pub flags: u32,
    /// uid before the call (privilege kinds), else equal to the header's.
    pub old_uid: u32,
    /// Effective uid before the call.
    pub old_euid: u32,
    /// Identical records folded in the kernel since the last one of this key was sent (see
    /// [`AGENT_FOLD_MS`]); this record stands for them too.
    pub folded: u32,
}
const _: () = assert!(core::mem::size_of::<SyscallBody>() == 80);

/// What makes two syscall records identical for folding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldKey {
    /// Process (tgid).
    pub pid: u32,
    /// [`EventKind`] number.
    pub kind: u32,
    /// Hash of the call, its outcome, its flags and the captured strings and data.
    pub hash: u64,
}
const _: () = assert!(core::mem::size_of::<FoldKey>() == 16);

/// The fold window of one [`FoldKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldState {
    /// When the last record of the key was sent (CLOCK_BOOTTIME ns): the window's start.
    pub sent_ns: u64,
    /// Records folded since.
    pub folded: u64,
}
const _: () = assert!(core::mem::size_of::<FoldState>() == 16);
/// The first string was cut at [`MAX_PATH`].
pub const SYS_STR1_TRUNCATED: u32 = 1;
/// The second string was cut at [`MAX_PATH`].
pub const SYS_STR2_TRUNCATED: u32 = 2;
/// The first string could not be read from user memory.
pub const SYS_STR1_UNREADABLE: u32 = 4;
/// The second string could not be read from user memory.
pub const SYS_STR2_UNREADABLE: u32 = 8;
/// The data block could not be read from user memory.
pub const SYS_DATA_UNREADABLE: u32 = 16;
/// The operation was submitted through an io_uring ring, not made as a syscall: the record is
/// written at submission, so `ret` is 0 (the result is not known yet), and the strings are the
/// kernel's own copies.
pub const SYS_VIA_IO_URING: u32 = 32;

/// TCP state change body ([`EventKind::TcpState`]) from `sock/inet_sock_set_state`; no tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStateBody {
    /// Kernel address of the socket: ties the changes of one connection together.
    pub skaddr: u64,
    /// TCP state before the change.
    pub oldstate: u32,
    /// TCP state after the change.
    pub newstate: u32,
    /// Source port, host order.
    pub sport: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// Address family (AF_INET, AF_INET6).
    pub family: u16,
    /// IP protocol (IPPROTO_TCP).
    pub protocol: u16,
    /// Source address (IPv4 in the first 4 bytes, or IPv6).
    pub saddr: [u8; 16],
    /// Destination address, as `saddr`.
    pub daddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<TcpStateBody>() == 56);

/// cgroup creation and removal body ([`EventKind::CgroupMkdir`], [`EventKind::CgroupRmdir`])
/// from `cgroup/cgroup_mkdir` and `cgroup/cgroup_rmdir`, cgroup2 hierarchy only; tail: `path_len` bytes of the path below the cgroup2 root (`/kubepods/...`).
/// The header describes the task that created the directory (a runtime, not the container).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupBody {
    /// cgroup2 id of the new directory: what `bpf_get_current_cgroup_id()` will return for
    /// tasks inside it.
    pub id: u64,
    /// Bytes of the path in the tail.
    pub path_len: u32,
    /// [`CGROUP_PATH_TRUNCATED`].
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<CgroupBody>() == 16);
/// The cgroup path was cut at [`MAX_PATH`].
pub const CGROUP_PATH_TRUNCATED: u32 = 1;

/// Signal body ([`EventKind::Signal`]) from `signal/signal_generate`: a signal sent to the
/// agent; the header describes the sender. No tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalBody {
    /// Signal number.
    pub sig: i32,
    /// siginfo `si_code` (0 `SI_USER`: kill(2); -6 `SI_TKILL`: tgkill(2); > 0: the kernel).
    pub code: i32,
    /// Target task id.
    pub target_pid: u32,
    /// 1 when sent to the whole thread group.
    pub group: u32,
    /// The kernel's result: 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 info lost.
    pub result: i32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SignalBody>() == 24);

/// How the data block of a syscall event is read.
pub mod data_mode {
    /// No data block.
    pub const NONE: u8 = 0;
    /// Pointer in `data_arg`, length in the argument `len_arg` (connect, bind).
    pub const LEN_IN_ARG: u8 = 1;
    /// Pointer in `data_arg`, length in a user `int` pointed to by `len_arg`, read at exit
    /// (accept's peer address).
    pub const LEN_IN_USER_PTR: u8 = 2;
    /// Pointer in `data_arg`, `fixed_len` bytes (capset data).
    pub const FIXED: u8 = 3;
    /// NUL-terminated user string in `data_arg`, at most `fixed_len` bytes (mount's fstype).
    pub const STRING: u8 = 4;
    /// As [`STRING`], but only when argument 0 is `PR_SET_NAME` (prctl's new process name).
    pub const PRCTL_NAME: u8 = 5;
    /// `prctl(2)` option that renames the calling thread.
    pub const PR_SET_NAME: u64 = 15;
}

/// What the loaded rules, baselines and trace filters can use of a syscall, derived by the
/// agent ([`SyscallDesc::interest`]). Checked at `sys_enter` before anything is read or saved;
/// what it rules out is counted as filtered ([`KindStats::filtered`]), never as a drop.
///
/// For opens the byte holds two 2-bit modes, one for read-only opens ([`interest::READ_SHIFT`])
/// and one for opens that write, create, truncate or append ([`interest::WRITE_SHIFT`]); for
/// every other call only [`interest::NONE`] in the low bits matters.
pub mod interest {
    /// Every call is captured.
    pub const ALL: u8 = 0;
    /// No call is captured (no consumer needs the kind).
    pub const NONE: u8 = 1;
    /// Captured only when the path's longest prefix in the path map has this access's bit.
    pub const BY_PATH: u8 = 2;
    /// Bits of the read-only mode.
    pub const READ_SHIFT: u8 = 0;
    /// Bits of the write mode.
    pub const WRITE_SHIFT: u8 = 2;
    /// Mask of one mode.
    pub const MODE_MASK: u8 = 3;
    /// Path map value bit: read-only opens below this prefix are wanted.
    pub const PATH_READ: u8 = 1;
    /// Path map value bit: writing opens below this prefix are wanted.
    pub const PATH_WRITE: u8 = 2;
    /// `open(2)` flags that make an open a write besides the access mode: `O_CREAT`, `O_TRUNC`,
    /// `O_APPEND`. The access mode (`flags & 3`) writes when it is `O_WRONLY` (1) or `O_RDWR`
    /// (2), as the agent's `file.write` has it.
    pub const WRITE_FLAGS: u64 = 0o100 | 0o1000 | 0o2000;

    /// Whether `open(2)` flags ask for writing, creating, truncating or appending: the one
    /// definition the kernel filter and the agent's `file.write` share.
    #[inline(always)]
    pub const fn opens_for_write(flags: u64) -> bool {
        let acc = flags & 3;
        acc == 1 || acc == 2 || flags & WRITE_FLAGS != 0
    }
    /// Bytes of a path the kernel compares against the path map (longer paths are compared
    /// on their first `PATH_KEY_LEN - 1` bytes, which can only keep more).
    pub const PATH_KEY_LEN: usize = 256;
    /// Slot of [`crate::INTEREST_MAP`]: bit N set reports TCP transitions into state N.
    pub const SLOT_TCP_STATES: u32 = 0;
    /// First of the eight slots of [`crate::INTEREST_MAP`] that hold a 256-bit set: bit B set
    /// when some path prefix of read-only opens has B as its second byte (or is too short to
    /// have one), so an absolute path whose second byte is not in the set matches no prefix.
    pub const SLOT_SECOND_BYTE_READ: u32 = 1;
    /// The same set for the prefixes of writing opens (eight slots).
    pub const SLOT_SECOND_BYTE_WRITE: u32 = 9;
    /// Entries of [`crate::INTEREST_MAP`].
    pub const SLOTS: u32 = 17;
}

/// A key of [`OPEN_PATHS_MAP`] (an LPM trie over path bytes): `prefix_len` is in bits.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKey {
    /// Bits of `data` that count.
    pub prefix_len: u32,
    /// The path bytes, without a NUL.
    pub data: [u8; interest::PATH_KEY_LEN],
}
const _: () = assert!(core::mem::size_of::<PathKey>() == 4 + interest::PATH_KEY_LEN);

/// `enum io_uring_op` values (include/uapi/linux/io_uring.h, stable ABI) of the operations the
/// kernel programs report, shared with the test helper that submits them.
pub mod uring_op {
    /// IORING_OP_CONNECT.
    pub const CONNECT: u8 = 16;
    /// IORING_OP_OPENAT.
    pub const OPENAT: u8 = 18;
    /// IORING_OP_OPENAT2.
    pub const OPENAT2: u8 = 28;
    /// IORING_OP_RENAMEAT.
    pub const RENAMEAT: u8 = 35;
    /// IORING_OP_UNLINKAT.
    pub const UNLINKAT: u8 = 36;
    /// IORING_OP_MKDIRAT.
    pub const MKDIRAT: u8 = 37;
    /// IORING_OP_SYMLINKAT.
    pub const SYMLINKAT: u8 = 38;
    /// IORING_OP_LINKAT.
    pub const LINKAT: u8 = 39;
    /// IORING_OP_SOCKET.
    pub const SOCKET: u8 = 45;
}

/// Kernel-side filters applied at sys_enter, before anything is saved.
pub mod filter {
    /// Every call is captured.
    pub const NONE: u8 = 0;
    /// Only when argument 1 (newfd) is 0, 1 or 2 (dup2/dup3 onto stdio).
    pub const NEWFD_STDIO: u8 = 1;
    /// Only when argument 4 (a destination address) is given (sendto to an explicit address;
    /// sends on a connected socket were seen at connect).
    pub const ADDR_ARG4: u8 = 2;
}

/// Per-syscall capture recipe: which arguments are strings, which is a data block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallDesc {
    /// [`EventKind`] number; 0 means "not hooked".
    pub kind: u32,
    /// [`Syscall`] number.
    pub call: u16,
    /// Argument index of the first path/string, or [`NO_ARG`].
    pub str1_arg: u8,
    /// Argument index of the second path/string, or [`NO_ARG`].
    pub str2_arg: u8,
    /// Argument index of the data block pointer, or [`NO_ARG`].
    pub data_arg: u8,
    /// Argument index of the data block length, or [`NO_ARG`].
    pub len_arg: u8,
    /// [`data_mode`] value.
    pub data_mode: u8,
    /// [`filter`] value.
    pub filter: u8,
    /// Length of a [`data_mode::FIXED`] block, or the longest [`data_mode::STRING`].
    pub fixed_len: u16,
    /// 1 to save the caller's uid/euid at enter (privilege kinds).
    pub save_creds: u8,
    /// What the loaded rules and baselines need of this call ([`interest`]); written by the
    /// agent at load and on every rule reload, so 0 (everything) is the safe default.
    pub interest: u8,
    /// Argument index of the `open` flags (read-only opens are told apart at enter), or
    /// [`NO_ARG`] for calls that always write or are not opens.
    pub flags_arg: u8,
    /// Bit `i` set: argument `i` exists and is a value, not a pointer (from the call's
    /// tracepoint format, written at load): what identifies a call for folding besides the
    /// strings and data read through its pointers. 0 in the static table.
    pub value_args: u8,
}
const _: () = assert!(core::mem::size_of::<SyscallDesc>() == 20);

/// Arguments saved at sys_enter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stash {
    /// Raw arguments of the call.
    pub args: [u64; 6],
    /// Syscall number on the running architecture.
    pub nr: u32,
    /// Real uid before the call.
    pub old_uid: u32,
    /// Effective uid before the call.
    pub old_euid: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Stash>() == 64);

/// Per-kind kernel counters (summed over CPUs by the agent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Records written to the ring buffer.
    pub submitted: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Calls left out on purpose because nothing loaded can use them ([`interest`]).
    pub filtered: u64,
    /// Records not sent because an identical one was sent within the fold window
    /// ([`AGENT_FOLD_MS`]); the next one sent carries their count.
    pub folded: u64,
}
const _: () = assert!(core::mem::size_of::<KindStats>() == 32);

/// Indexes of [`MISC_MAP`]: kernel-side conditions worth counting that are not drops.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misc {
    /// sys_exit without a saved sys_enter (attached mid-call, or the save failed).
    StashMiss = 0,
    /// Saving the arguments at sys_enter failed (stash map full).
    StashFull = 1,
    /// The per-CPU scratch buffer was unavailable.
    ScratchMiss = 2,
    /// A copy of a lifecycle record ([`replicated`]) did not fit in another worker's ring:
    /// that worker's process table misses it (the owner's copy is counted as the event).
    ReplicaDrop = 3,
}
/// Entries of [`MISC_MAP`].
pub const MISC_SLOTS: u32 = 4;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are #[repr(C)], Copy, built only of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid and there are no implicit holes.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SyscallDesc {}
    unsafe impl aya::Pod for super::KindStats {}
    unsafe impl aya::Pod for super::Stash {}
    unsafe impl aya::Pod for super::FoldKey {}
    unsafe impl aya::Pod for super::FoldState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring of a cgroup is Fibonacci hashing as computed independently (Python:
    /// `((c * 0x9E3779B97F4A7C15) % 2**64 >> 32) % n`): the agent and the kernel programs share
    /// this function, and a change to it would move every cgroup to another worker.
    #[test]
    fn shards_are_fibonacci_hashing() {
        for (cgroup, rings, want) in [
            (100u64, 2u32, 1u32),
            (101, 2, 1),
            (102, 2, 0),
            (4_026_531_835, 3, 0),
            (12_345, 8, 3),
            (1, 8, 1),
            ((1 << 63) + 5, 5, 2),
        ] {
            assert_eq!(shard(cgroup, rings), want, "cgroup {cgroup} of {rings}");
        }
        assert_eq!(shard(12_345, 1), 0);
        assert_eq!(shard(12_345, 0), 0);
    }

    #[test]
    fn lifecycle_records_are_replicated_and_cgroup_records_follow_their_cgroup() {
        for k in EventKind::ALL {
            let want = matches!(
                k,
                EventKind::Fork | EventKind::Exec | EventKind::Exit | EventKind::Chdir
            );
            assert_eq!(replicated(k as u32), want, "{k:?}");
        }
        assert_eq!(record_cgroup(EventKind::CgroupMkdir as u32, 1, 77), 77);
        assert_eq!(record_cgroup(EventKind::CgroupRmdir as u32, 1, 77), 77);
        assert_eq!(record_cgroup(EventKind::Open as u32, 1, 77), 1);
    }
}
