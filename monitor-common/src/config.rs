//! Load-time configuration of the kernel programs: tracepoint field and kernel structure
//! offsets found by the agent, and what to filter.
use crate::NO_OFFSET;

/// Tracepoint field offsets, read from tracefs by the agent at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    /// `syscalls/sys_enter_*`: offset of `__syscall_nr` and of the first argument.
    pub sys_enter_nr: u32,
    /// Offset of the first argument in `sys_enter_*`.
    pub sys_enter_args: u32,
    /// `syscalls/sys_exit_*`: offset of `__syscall_nr` and `ret`.
    pub sys_exit_nr: u32,
    /// Offset of `ret` in `sys_exit_*`.
    pub sys_exit_ret: u32,
    /// `sched/sched_process_exec`: `__data_loc char[] filename` and `old_pid`.
    pub exec_filename: u32,
    /// `old_pid` of `sched_process_exec`.
    pub exec_old_pid: u32,
    /// `sched/sched_process_exit`: `group_dead` ([`NO_OFFSET`] on kernels without it).
    pub exit_group_dead: u32,
    /// `sock/inet_sock_set_state` fields.
    pub sk_skaddr: u32,
    /// `oldstate`.
    pub sk_oldstate: u32,
    /// `newstate`.
    pub sk_newstate: u32,
    /// `sport`.
    pub sk_sport: u32,
    /// `dport`.
    pub sk_dport: u32,
    /// `family`.
    pub sk_family: u32,
    /// `protocol`.
    pub sk_protocol: u32,
    /// `saddr` (IPv4).
    pub sk_saddr: u32,
    /// `daddr` (IPv4).
    pub sk_daddr: u32,
    /// `saddr_v6`.
    pub sk_saddr_v6: u32,
    /// `daddr_v6`.
    pub sk_daddr_v6: u32,
    /// `cgroup/cgroup_mkdir` and `cgroup_rmdir` (one event class): `root` (hierarchy id; 0 is
    /// cgroup2), `id`, `__data_loc path`.
    pub cg_root: u32,
    /// `id` of the cgroup event.
    pub cg_id: u32,
    /// `__data_loc path` of the cgroup event.
    pub cg_path: u32,
    /// `signal/signal_generate`: `sig`.
    pub sig_sig: u32,
    /// `code` (the siginfo `si_code`: who sent it).
    pub sig_code: u32,
    /// `pid` of the target task.
    pub sig_pid: u32,
    /// `group`: 1 when sent to the whole thread group.
    pub sig_group: u32,
    /// `result`: delivered, ignored, already pending, ...
    pub sig_result: u32,
    /// `io_uring/io_uring_submit_req`: `req` (the kernel's `struct io_kiocb *`).
    pub uring_req: u32,
    /// `opcode` of the submitted operation.
    pub uring_opcode: u32,
}

/// Kernel structure member offsets, read from BTF by the agent at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// `task_struct.group_leader`.
    pub task_group_leader: u32,
    /// `task_struct.start_boottime`.
    pub task_start_boottime: u32,
    /// `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `task_struct.cred`.
    pub task_cred: u32,
    /// `mm_struct.arg_start`.
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`.
    pub mm_arg_end: u32,
    /// `cred.euid`.
    pub cred_euid: u32,
    /// `cred.egid`.
    pub cred_egid: u32,
    /// `io_kiocb.cmd`: the operation's prepared arguments (`struct io_open`, ...).
    pub req_cmd: u32,
    /// `io_kiocb.cqe`, whose `fd` member holds the submission's descriptor.
    pub req_cqe: u32,
    /// `io_cqe.fd`.
    pub cqe_fd: u32,
    /// `io_connect.addr_len`.
    pub connect_addr_len: u32,
    /// `io_connect.addr`: the address as the submitter passed it (user memory).
    pub connect_addr: u32,
    /// `io_open.dfd`.
    pub open_dfd: u32,
    /// `io_open.filename` (`struct filename *`).
    pub open_filename: u32,
    /// `io_open.how` (`struct open_how`: flags, mode, resolve).
    pub open_how: u32,
    /// `filename.name`: the kernel copy of a path.
    pub filename_name: u32,
    /// `io_unlink.dfd`.
    pub unlink_dfd: u32,
    /// `io_unlink.flags`.
    pub unlink_flags: u32,
    /// `io_unlink.filename`.
    pub unlink_filename: u32,
    /// `io_rename.old_dfd`.
    pub rename_old_dfd: u32,
    /// `io_rename.new_dfd`.
    pub rename_new_dfd: u32,
    /// `io_rename.oldpath`.
    pub rename_oldpath: u32,
    /// `io_rename.newpath`.
    pub rename_newpath: u32,
    /// `io_rename.flags`.
    pub rename_flags: u32,
    /// `io_mkdir.dfd`.
    pub mkdir_dfd: u32,
    /// `io_mkdir.mode`.
    pub mkdir_mode: u32,
    /// `io_mkdir.filename`.
    pub mkdir_filename: u32,
    /// `io_link.old_dfd` (symlinkat and linkat).
    pub link_old_dfd: u32,
    /// `io_link.new_dfd`.
    pub link_new_dfd: u32,
    /// `io_link.oldpath`.
    pub link_oldpath: u32,
    /// `io_link.newpath`.
    pub link_newpath: u32,
    /// `io_link.flags`.
    pub link_flags: u32,
    /// `io_socket.domain`.
    pub socket_domain: u32,
    /// `io_socket.type`.
    pub socket_type: u32,
    /// `io_socket.protocol`.
    pub socket_protocol: u32,
}

/// Load-time configuration of the kernel programs (the [`CONFIG_GLOBAL`] global).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// 1: capture only tasks whose cgroup2 id is in [`CGROUP_FILTER_MAP`].
    pub cgroup_filter: u32,
    /// Wake the reader only once this many bytes are pending (0: on every record). Waking on
    /// every record costs an IPI and a context switch per event; the reader also drains on a
    /// short timer, which bounds the latency of records that do not cross the threshold.
    pub wakeup_bytes: u32,
    /// Ring buffers the records are sharded over, one per pipeline worker (1 to
    /// [`crate::MAX_RINGS`]; 0 reads as 1).
    pub rings: u32,
    /// Tracepoint field offsets.
    pub tp: TpOffsets,
    /// Kernel structure member offsets.
    pub k: KernelOffsets,
}

impl Config {
    /// A configuration with every offset unknown and nothing filtered.
    pub const UNSET: Config = Config {
        cgroup_filter: 0,
        wakeup_bytes: 0,
        rings: 1,
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
            sig_sig: NO_OFFSET,
            sig_code: NO_OFFSET,
            sig_pid: NO_OFFSET,
            sig_group: NO_OFFSET,
            sig_result: NO_OFFSET,
            uring_req: NO_OFFSET,
            uring_opcode: NO_OFFSET,
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
            req_cmd: NO_OFFSET,
            req_cqe: NO_OFFSET,
            cqe_fd: NO_OFFSET,
            connect_addr_len: NO_OFFSET,
            connect_addr: NO_OFFSET,
            open_dfd: NO_OFFSET,
            open_filename: NO_OFFSET,
            open_how: NO_OFFSET,
            filename_name: NO_OFFSET,
            unlink_dfd: NO_OFFSET,
            unlink_flags: NO_OFFSET,
            unlink_filename: NO_OFFSET,
            rename_old_dfd: NO_OFFSET,
            rename_new_dfd: NO_OFFSET,
            rename_oldpath: NO_OFFSET,
            rename_newpath: NO_OFFSET,
            rename_flags: NO_OFFSET,
            mkdir_dfd: NO_OFFSET,
            mkdir_mode: NO_OFFSET,
            mkdir_filename: NO_OFFSET,
            link_old_dfd: NO_OFFSET,
            link_new_dfd: NO_OFFSET,
            link_oldpath: NO_OFFSET,
            link_newpath: NO_OFFSET,
            link_flags: NO_OFFSET,
            socket_domain: NO_OFFSET,
            socket_type: NO_OFFSET,
            socket_protocol: NO_OFFSET,
        },
    };
}
