//! The contract between the kernel programs (`monitor-ebpf`) and the agent (`monitor`).
//!
//! Every record the kernel writes to the ring buffer is `Header`, then a kind-specific fixed
//! body, then a variable-length tail of strings and bytes whose lengths the body gives. All types
//! are `#[repr(C)]`, fixed-width, with explicit padding and compile-time size checks, so the two
//! sides cannot drift apart silently.
#![no_std]

/// Ring buffer carrying every event record.
pub const EVENTS_MAP: &str = "EVENTS";
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
/// cgroup2 id -> records of that cgroup dropped because the ring buffer was full (LRU bound).
pub const DROPS_BY_CGROUP_MAP: &str = "DROPS_BY_CGROUP";
/// Entries of [`DROPS_BY_CGROUP_MAP`]: the cgroups that lost events most recently.
pub const DROPS_BY_CGROUP_ENTRIES: u32 = 1024;
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

/// Event kinds. Numbers are grouped in ranges by family and never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Exec = 100,
    Fork = 101,
    Exit = 102,
    Open = 200,
    Unlink = 201,
    Rename = 202,
    Chmod = 203,
    Chown = 204,
    Symlink = 205,
    Link = 206,
    Mkdir = 207,
    Connect = 300,
    Accept = 301,
    Bind = 302,
    Listen = 303,
    TcpState = 304,
    SetId = 400,
    Capset = 401,
    Ptrace = 402,
    ModuleLoad = 403,
    Mount = 404,
    Umount = 405,
    Setns = 406,
    Unshare = 407,
    MemfdCreate = 408,
    Bpf = 409,
    Dup = 410,
    /// A cgroup2 directory was created (internal: feeds container attribution, never output).
    CgroupMkdir = 500,
    /// A cgroup2 directory was removed (internal, like [`EventKind::CgroupMkdir`]).
    CgroupRmdir = 501,
}

/// Number of counter slots in [`STATS_MAP`].
pub const KIND_SLOTS: u32 = 32;

/// Dense counter slot of a raw kind number; unknown numbers map to the last slot.
#[inline(always)]
pub const fn kind_slot(v: u32) -> u32 {
    // Each family range gets a fixed base; families have at most 11 members.
    let s = match v / 100 {
        1 => v.wrapping_sub(100),
        2 => 3 + v.wrapping_sub(200),
        3 => 11 + v.wrapping_sub(300),
        4 => 16 + v.wrapping_sub(400),
        5 => 27 + v.wrapping_sub(500),
        _ => KIND_SLOTS - 1,
    };
    if s < KIND_SLOTS { s } else { KIND_SLOTS - 1 }
}

impl EventKind {
    /// Every kind, in slot order.
    pub const ALL: [EventKind; 29] = [
        EventKind::Exec,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Open,
        EventKind::Unlink,
        EventKind::Rename,
        EventKind::Chmod,
        EventKind::Chown,
        EventKind::Symlink,
        EventKind::Link,
        EventKind::Mkdir,
        EventKind::Connect,
        EventKind::Accept,
        EventKind::Bind,
        EventKind::Listen,
        EventKind::TcpState,
        EventKind::SetId,
        EventKind::Capset,
        EventKind::Ptrace,
        EventKind::ModuleLoad,
        EventKind::Mount,
        EventKind::Umount,
        EventKind::Setns,
        EventKind::Unshare,
        EventKind::MemfdCreate,
        EventKind::Bpf,
        EventKind::Dup,
        EventKind::CgroupMkdir,
        EventKind::CgroupRmdir,
    ];

    /// Parses the number found in a record header.
    pub const fn from_u32(v: u32) -> Option<EventKind> {
        Some(match v {
            100 => EventKind::Exec,
            101 => EventKind::Fork,
            102 => EventKind::Exit,
            200 => EventKind::Open,
            201 => EventKind::Unlink,
            202 => EventKind::Rename,
            203 => EventKind::Chmod,
            204 => EventKind::Chown,
            205 => EventKind::Symlink,
            206 => EventKind::Link,
            207 => EventKind::Mkdir,
            300 => EventKind::Connect,
            301 => EventKind::Accept,
            302 => EventKind::Bind,
            303 => EventKind::Listen,
            304 => EventKind::TcpState,
            400 => EventKind::SetId,
            401 => EventKind::Capset,
            402 => EventKind::Ptrace,
            403 => EventKind::ModuleLoad,
            404 => EventKind::Mount,
            405 => EventKind::Umount,
            406 => EventKind::Setns,
            407 => EventKind::Unshare,
            408 => EventKind::MemfdCreate,
            409 => EventKind::Bpf,
            410 => EventKind::Dup,
            500 => EventKind::CgroupMkdir,
            501 => EventKind::CgroupRmdir,
            _ => return None,
        })
    }

    /// Dense index of the kind's counters in [`STATS_MAP`] (always below [`KIND_SLOTS`]).
    pub const fn slot(self) -> u32 {
        kind_slot(self as u32)
    }

    /// Stable lower-case name used in JSON output and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Open => "open",
            EventKind::Unlink => "unlink",
            EventKind::Rename => "rename",
            EventKind::Chmod => "chmod",
            EventKind::Chown => "chown",
            EventKind::Symlink => "symlink",
            EventKind::Link => "link",
            EventKind::Mkdir => "mkdir",
            EventKind::Connect => "connect",
            EventKind::Accept => "accept",
            EventKind::Bind => "bind",
            EventKind::Listen => "listen",
            EventKind::TcpState => "tcp_state",
            EventKind::SetId => "setid",
            EventKind::Capset => "capset",
            EventKind::Ptrace => "ptrace",
            EventKind::ModuleLoad => "module_load",
            EventKind::Mount => "mount",
            EventKind::Umount => "umount",
            EventKind::Setns => "setns",
            EventKind::Unshare => "unshare",
            EventKind::MemfdCreate => "memfd_create",
            EventKind::Bpf => "bpf",
            EventKind::Dup => "dup",
            EventKind::CgroupMkdir => "cgroup_mkdir",
            EventKind::CgroupRmdir => "cgroup_rmdir",
        }
    }

    /// Records the agent consumes itself: counted like every kind, but never output, filtered
    /// on or matched by rules.
    pub const fn is_internal(self) -> bool {
        matches!(self, EventKind::CgroupMkdir | EventKind::CgroupRmdir)
    }
}

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
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
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
pub const EXEC_FILENAME_TRUNCATED: u32 = 1;
pub const EXEC_ARGS_TRUNCATED: u32 = 2;
pub const EXEC_ARGS_UNREADABLE: u32 = 4;

/// Fork body ([`EventKind::Fork`]): the header is the parent; no tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkBody {
    pub child_pid: u32,
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
    pub str1_len: u16,
    pub str2_len: u16,
    pub data_len: u16,
    /// [`SYS_STR1_TRUNCATED`] etc.
    pub flags: u32,
    /// uid before the call (privilege kinds), else equal to the header's.
    pub old_uid: u32,
    pub old_euid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SyscallBody>() == 80);
pub const SYS_STR1_TRUNCATED: u32 = 1;
pub const SYS_STR2_TRUNCATED: u32 = 2;
pub const SYS_STR1_UNREADABLE: u32 = 4;
pub const SYS_STR2_UNREADABLE: u32 = 8;
pub const SYS_DATA_UNREADABLE: u32 = 16;

/// TCP state change body ([`EventKind::TcpState`]) from `sock/inet_sock_set_state`; no tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStateBody {
    /// Kernel address of the socket: ties the changes of one connection together.
    pub skaddr: u64,
    pub oldstate: u32,
    pub newstate: u32,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: [u8; 16],
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
    pub path_len: u32,
    /// [`CGROUP_PATH_TRUNCATED`].
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<CgroupBody>() == 16);
pub const CGROUP_PATH_TRUNCATED: u32 = 1;

/// Our architecture-independent syscall numbers (what [`SyscallBody::call`] holds).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    Open = 1,
    Openat = 2,
    Openat2 = 3,
    Creat = 4,
    Unlink = 5,
    Unlinkat = 6,
    Rmdir = 7,
    Rename = 8,
    Renameat = 9,
    Renameat2 = 10,
    Chmod = 11,
    Fchmodat = 12,
    Fchmodat2 = 13,
    Chown = 14,
    Lchown = 15,
    Fchownat = 16,
    Symlink = 17,
    Symlinkat = 18,
    Link = 19,
    Linkat = 20,
    Mkdir = 21,
    Mkdirat = 22,
    Connect = 30,
    Accept = 31,
    Accept4 = 32,
    Bind = 33,
    Listen = 34,
    Setuid = 40,
    Setgid = 41,
    Setreuid = 42,
    Setregid = 43,
    Setresuid = 44,
    Setresgid = 45,
    Setfsuid = 46,
    Setfsgid = 47,
    Capset = 48,
    Ptrace = 49,
    InitModule = 50,
    FinitModule = 51,
    Mount = 52,
    Umount2 = 53,
    Setns = 54,
    Unshare = 55,
    MemfdCreate = 56,
    Bpf = 57,
    Dup2 = 58,
    Dup3 = 59,
}

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
}

/// Kernel-side filters applied at sys_enter, before anything is saved.
pub mod filter {
    pub const NONE: u8 = 0;
    /// Only when argument 1 (newfd) is 0, 1 or 2 (dup2/dup3 onto stdio).
    pub const NEWFD_STDIO: u8 = 1;
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
    pub str2_arg: u8,
    pub data_arg: u8,
    pub len_arg: u8,
    /// [`data_mode`] value.
    pub data_mode: u8,
    /// [`filter`] value.
    pub filter: u8,
    pub fixed_len: u16,
    /// 1 to save the caller's uid/euid at enter (privilege kinds).
    pub save_creds: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<SyscallDesc>() == 20);

/// Arguments saved at sys_enter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stash {
    pub args: [u64; 6],
    pub nr: u32,
    pub old_uid: u32,
    pub old_euid: u32,
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
}
const _: () = assert!(core::mem::size_of::<KindStats>() == 16);

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
}
/// Entries of [`MISC_MAP`].
pub const MISC_SLOTS: u32 = 4;

/// Tracepoint field offsets, read from tracefs by the agent at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    /// `syscalls/sys_enter_*`: offset of `__syscall_nr` and of the first argument.
    pub sys_enter_nr: u32,
    pub sys_enter_args: u32,
    /// `syscalls/sys_exit_*`: offset of `__syscall_nr` and `ret`.
    pub sys_exit_nr: u32,
    pub sys_exit_ret: u32,
    /// `sched/sched_process_exec`: `__data_loc char[] filename` and `old_pid`.
    pub exec_filename: u32,
    pub exec_old_pid: u32,
    /// `sched/sched_process_exit`: `group_dead` ([`NO_OFFSET`] on kernels without it).
    pub exit_group_dead: u32,
    /// `sock/inet_sock_set_state` fields.
    pub sk_skaddr: u32,
    pub sk_oldstate: u32,
    pub sk_newstate: u32,
    pub sk_sport: u32,
    pub sk_dport: u32,
    pub sk_family: u32,
    pub sk_protocol: u32,
    pub sk_saddr: u32,
    pub sk_daddr: u32,
    pub sk_saddr_v6: u32,
    pub sk_daddr_v6: u32,
    /// `cgroup/cgroup_mkdir` and `cgroup_rmdir` (one event class): `root` (hierarchy id; 0 is
    /// cgroup2), `id`, `__data_loc path`.
    pub cg_root: u32,
    pub cg_id: u32,
    pub cg_path: u32,
}

/// Kernel structure member offsets, read from BTF by the agent at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_mm: u32,
    pub task_cred: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
}

/// Load-time configuration of the kernel programs (the [`CONFIG_GLOBAL`] global).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// tgid of the agent: its own activity is dropped in the kernel.
    pub agent_tgid: u32,
    /// 1: capture only tasks whose cgroup2 id is in [`CGROUP_FILTER_MAP`].
    pub cgroup_filter: u32,
    /// Bit N set: report TCP transitions into state N (TCP_ESTABLISHED = 1 ... TCP_CLOSING = 11).
    pub tcp_state_mask: u32,
    /// Wake the reader only once this many bytes are pending (0: on every record). Waking on
    /// every record costs an IPI and a context switch per event; the reader also drains on a
    /// short timer, which bounds the latency of records that do not cross the threshold.
    pub wakeup_bytes: u32,
    pub tp: TpOffsets,
    pub k: KernelOffsets,
}

impl Config {
    /// A configuration with every offset unknown and nothing filtered.
    pub const UNSET: Config = Config {
        agent_tgid: 0,
        cgroup_filter: 0,
        tcp_state_mask: 0,
        wakeup_bytes: 0,
        tp: TpOffsets {
            sys_enter_nr: NO_OFFSET,
            sys_enter_args: NO_OFFSET,
            sys_exit_nr: NO_OFFSET,
            sys_exit_ret: NO_OFFSET,
            exec_filename: NO_OFFSET,
            exec_old_pid: NO_OFFSET,
            exit_group_dead: NO_OFFSET,
            sk_skaddr: NO_OFFSET,
            sk_oldstate: NO_OFFSET,
            sk_newstate: NO_OFFSET,
            sk_sport: NO_OFFSET,
            sk_dport: NO_OFFSET,
            sk_family: NO_OFFSET,
            sk_protocol: NO_OFFSET,
            sk_saddr: NO_OFFSET,
            sk_daddr: NO_OFFSET,
            sk_saddr_v6: NO_OFFSET,
            sk_daddr_v6: NO_OFFSET,
            cg_root: NO_OFFSET,
            cg_id: NO_OFFSET,
            cg_path: NO_OFFSET,
        },
        k: KernelOffsets {
            task_tgid: NO_OFFSET,
            task_pid: NO_OFFSET,
            task_real_parent: NO_OFFSET,
            task_group_leader: NO_OFFSET,
            task_start_boottime: NO_OFFSET,
            task_exit_code: NO_OFFSET,
            task_mm: NO_OFFSET,
            task_cred: NO_OFFSET,
            mm_arg_start: NO_OFFSET,
            mm_arg_end: NO_OFFSET,
            cred_euid: NO_OFFSET,
            cred_egid: NO_OFFSET,
        },
    };
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are #[repr(C)], Copy, built only of integers and integer arrays, with
    // explicit padding fields, so every bit pattern is valid and there are no implicit holes.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SyscallDesc {}
    unsafe impl aya::Pod for super::KindStats {}
    unsafe impl aya::Pod for super::Stash {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_unique() {
        let mut seen = [false; KIND_SLOTS as usize];
        for k in EventKind::ALL {
            let s = k.slot() as usize;
            assert!(s < KIND_SLOTS as usize, "{k:?} slot {s}");
            assert!(!seen[s], "{k:?} shares slot {s}");
            seen[s] = true;
            assert_eq!(EventKind::from_u32(k as u32), Some(k));
        }
    }
}
