//! The event model: one enriched event as users, rules and tests see it.
use std::sync::Arc;

use serde::Serialize;

use super::Attribution;
use crate::process::{Ancestor, Source};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One event as users, rules and tests see it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    /// RFC 3339 UTC, nanoseconds.
    pub(crate) time: String,
    pub(crate) kind: &'static str,
    pub(crate) node: String,
    pub(crate) process: ProcessView,
    /// cgroup2 id of the task (inode number of its cgroup directory).
    pub(crate) cgroup_id: u64,
    /// When it happened in /proc clock ticks since boot, comparable with process start times
    /// (sequence rules use it to tell whether a child was forked after the first event).
    #[serde(skip)]
    pub(crate) ticks: u64,
    /// Identical events of this process folded into this one in the kernel since the last one
    /// was sent (`capture.fold_window`): it stands for `1 + folded` events.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) folded: u64,
    /// `container`, `pod` and `metadata` (how complete they are).
    #[serde(flatten)]
    pub(crate) attribution: Attribution,
    #[serde(flatten)]
    pub(crate) detail: Detail,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProcessView {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    /// Unique across pid reuse (and nodes): hash of boot id, pid and start time.
    pub(crate) id: Arc<str>,
    pub(crate) ppid: u32,
    /// Shared with other events of the same name (see `build`): copying it copies no string.
    pub(crate) comm: Arc<str>,
    // Shared with the process table: copying an event copies no strings.
    pub(crate) exe: Arc<str>,
    pub(crate) args: Arc<[String]>,
    pub(crate) command_line: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<Arc<str>>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) euid: u32,
    pub(crate) egid: u32,
    /// Where exe/args came from: `exec` (seen), `procfs` (read at start-up or on a miss),
    /// `unknown` (not available).
    pub(crate) source: Source,
    pub(crate) ancestors: Vec<Ancestor>,
    /// Start time in /proc clock ticks since boot (0 if unknown); not output.
    #[serde(skip)]
    pub(crate) start_ticks: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Detail {
    Exec(ExecDetail),
    Fork(ForkDetail),
    Exit(ExitDetail),
    File(FileDetail),
    Network(NetDetail),
    Tcp(TcpDetail),
    // Boxed: the largest detail (424 bytes) and a rare one; unboxed it sized every event.
    Privilege(Box<PrivDetail>),
    Signal(SignalDetail),
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExecDetail {
    pub(crate) filename: String,
    pub(crate) args: Vec<String>,
    pub(crate) args_truncated: bool,
    pub(crate) filename_truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForkDetail {
    pub(crate) child_pid: u32,
    pub(crate) child_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExitDetail {
    /// Exit status (0-255) when the process exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<i32>,
    /// Terminating signal when it was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<i32>,
    /// Raw wait status; absent when the kernel offset was unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<i32>,
}

/// Result of a syscall: the return value and, on failure, the errno name.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallResult {
    pub(crate) syscall: &'static str,
    pub(crate) result: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<&'static str>,
    /// `io_uring` when the operation was submitted through an io_uring ring rather than made as
    /// a syscall (then `result` is 0: the record is written at submission).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) via: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileDetail {
    #[serde(flatten)]
    pub(crate) call: CallResult,
    /// Absolute path when it could be resolved, else as passed.
    pub(crate) path: Option<String>,
    /// The path exactly as passed, when it differs from `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) raw_path: Option<String>,
    /// Second path: new name (rename, link), link location (symlink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flags: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) flag_names: Vec<&'static str>,
    /// Permission bits, octal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner_uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner_gid: Option<i64>,
    pub(crate) truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct NetDetail {
    #[serde(flatten)]
    pub(crate) call: CallResult,
    pub(crate) fd: i64,
    /// `inet`, `inet6`, `unix`, or the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u16>,
    /// Path of a unix socket (`@name` for the abstract namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unix_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) backlog: Option<i64>,
    /// socket(2): the socket type (SOCK_STREAM, SOCK_RAW, ...) and protocol number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) socket_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TcpDetail {
    pub(crate) old_state: &'static str,
    pub(crate) new_state: &'static str,
    pub(crate) family: String,
    pub(crate) protocol: u16,
    pub(crate) saddr: String,
    pub(crate) sport: u16,
    pub(crate) daddr: String,
    pub(crate) dport: u16,
    /// Kernel socket address: the same for every change of one connection.
    pub(crate) socket: String,
}

/// A signal sent to the agent; the event's process is the sender.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SignalDetail {
    pub(crate) number: i32,
    /// `SIGTERM`, `SIGKILL`, ...
    pub(crate) name: String,
    /// `kill`, `tkill`, `queue` (sent by a process), `kernel`, `other`.
    pub(crate) origin: &'static str,
    /// The agent's task the signal was sent to.
    pub(crate) target_pid: u32,
    /// Sent to the whole process rather than one thread.
    pub(crate) group: bool,
    /// `delivered`, `ignored`, `already_pending`, ...
    pub(crate) result: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PrivDetail {
    #[serde(flatten)]
    pub(crate) call: Option<CallResult>,
    /// uid and euid before the call (setuid family, capset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) old_euid: Option<u32>,
    /// Ids asked for, in the call's argument order; -1 = unchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ids: Vec<i64>,
    /// Capability sets asked for (capset), as hex masks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cap_effective: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cap_permitted: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cap_inheritable: Option<String>,
    /// ptrace request name and target pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target_pid: Option<i64>,
    /// mount source, target, fstype; umount target; module parameters; memfd name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fstype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flags: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) flag_names: Vec<&'static str>,
    /// setns/dup: fds involved; bpf: command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) new_fd: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<String>,
    /// kill/tkill/tgkill: the signal sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) signal: Option<String>,
}
