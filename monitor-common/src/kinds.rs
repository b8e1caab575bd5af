//! Event kinds, declared once in a table: the enum, `ALL`, the number and name lookups and the
//! internal flag are all generated from the same rows.

/// Declares [`EventKind`] and everything derived from it from one row per kind:
/// `Variant = number, "name", internal;` (internal: `true` for kinds the agent consumes itself).
macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $num:literal, $name:literal, $internal:literal; )*) => {
        /// Event kinds. Numbers are grouped in ranges by family and never reused.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $( $(#[$doc])* $variant = $num, )*
        }

        impl EventKind {
            /// Every kind, in slot order.
            pub const ALL: [EventKind; [$($num),*].len()] = [$(EventKind::$variant),*];

            /// Parses the number found in a record header.
            pub const fn from_u32(v: u32) -> Option<EventKind> {
                match v {
                    $( $num => Some(EventKind::$variant), )*
                    _ => None,
                }
            }

            /// Stable lower-case name used in JSON output and metric labels.
            pub const fn name(self) -> &'static str {
                match self {
                    $( EventKind::$variant => $name, )*
                }
            }

            /// Records the agent consumes itself: counted like every kind, but never output,
            /// filtered on or matched by rules.
            pub const fn is_internal(self) -> bool {
                match self {
                    $( EventKind::$variant => $internal, )*
                }
            }
        }
    };
}

event_kinds! {
    /// A process replaced its image (`sched/sched_process_exec`).
    Exec = 100, "exec", false;
    /// A process was created (`sched/sched_process_fork`, threads skipped).
    Fork = 101, "fork", false;
    /// The last thread of a process exited (`sched/sched_process_exit`).
    Exit = 102, "exit", false;
    /// A file was opened (open, openat, openat2, creat).
    Open = 200, "open", false;
    /// A file or directory was removed (unlink, unlinkat, rmdir).
    Unlink = 201, "unlink", false;
    /// A file was renamed.
    Rename = 202, "rename", false;
    /// Permission bits changed.
    Chmod = 203, "chmod", false;
    /// Ownership changed.
    Chown = 204, "chown", false;
    /// A symbolic link was created.
    Symlink = 205, "symlink", false;
    /// A hard link was created.
    Link = 206, "link", false;
    /// A directory was created.
    Mkdir = 207, "mkdir", false;
    /// An outgoing connection was attempted.
    Connect = 300, "connect", false;
    /// A connection was accepted.
    Accept = 301, "accept", false;
    /// A socket was bound to an address.
    Bind = 302, "bind", false;
    /// A socket started listening.
    Listen = 303, "listen", false;
    /// A TCP connection changed state (`sock/inet_sock_set_state`).
    TcpState = 304, "tcp_state", false;
    /// A socket was created (family, type, protocol).
    Socket = 305, "socket", false;
    /// A datagram was sent to an explicit address (sendto with a destination).
    SendTo = 306, "send_to", false;
    /// A process changed its user or group ids.
    SetId = 400, "setid", false;
    /// A process changed its capabilities.
    Capset = 401, "capset", false;
    /// ptrace(2).
    Ptrace = 402, "ptrace", false;
    /// A kernel module was loaded.
    ModuleLoad = 403, "module_load", false;
    /// A file system was mounted.
    Mount = 404, "mount", false;
    /// A file system was unmounted.
    Umount = 405, "umount", false;
    /// A process joined a namespace.
    Setns = 406, "setns", false;
    /// A process left a namespace for a new one.
    Unshare = 407, "unshare", false;
    /// An anonymous memory file was created (fileless execution).
    MemfdCreate = 408, "memfd_create", false;
    /// bpf(2).
    Bpf = 409, "bpf", false;
    /// A descriptor was duplicated onto standard input, output or error.
    Dup = 410, "dup", false;
    /// A signal was sent to another process (kill, tkill, tgkill).
    Kill = 411, "kill", false;
    /// Another process's memory was read or written (process_vm_readv/writev).
    ProcessVm = 412, "process_vm", false;
    /// prctl(2): process name changes, dumpability, seccomp and capability settings.
    Prctl = 413, "prctl", false;
    /// The root directory changed (chroot, pivot_root).
    Chroot = 414, "chroot", false;
    /// A userfaultfd was created (a kernel-exploit primitive).
    Userfaultfd = 415, "userfaultfd", false;
    /// perf_event_open(2).
    PerfEventOpen = 416, "perf_event_open", false;
    /// keyctl(2): kernel keyring operations.
    Keyctl = 417, "keyctl", false;
    /// An io_uring instance was set up, or an operation without a file or network kind of its
    /// own was submitted through one.
    IoUring = 418, "io_uring", false;
    /// The working directory changed (chdir, fchdir).
    Chdir = 419, "chdir", false;
    /// A cgroup2 directory was created (internal: feeds container attribution, never output).
    CgroupMkdir = 500, "cgroup_mkdir", true;
    /// A cgroup2 directory was removed (internal, like [`EventKind::CgroupMkdir`]).
    CgroupRmdir = 501, "cgroup_rmdir", true;
    /// A signal was sent to the agent by another process (`signal/signal_generate`).
    Signal = 600, "signal", false;
}

/// Number of counter slots in the stats map.
pub const KIND_SLOTS: u32 = 64;

/// Dense counter slot of a raw kind number; unknown numbers map to the last slot.
#[inline(always)]
pub const fn kind_slot(v: u32) -> u32 {
    // Each family range gets a fixed base and room: process 4, file 12, network 8,
    // privilege 24, cgroup 4, signal 4; a number past its family's room maps to the last slot.
    let (base, room, first) = match v / 100 {
        1 => (0, 4, 100),
        2 => (4, 12, 200),
        3 => (16, 8, 300),
        4 => (24, 24, 400),
        5 => (48, 4, 500),
        6 => (52, 4, 600),
        _ => return KIND_SLOTS - 1,
    };
    let off = v.wrapping_sub(first);
    if off < room {
        base + off
    } else {
        KIND_SLOTS - 1
    }
}

impl EventKind {
    /// Dense index of the kind's counters in the stats map (always below [`KIND_SLOTS`]).
    pub const fn slot(self) -> u32 {
        kind_slot(self as u32)
    }

    /// The kind with this name, internal kinds excluded (they cannot be asked for).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| !k.is_internal() && k.name() == name)
    }
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

    #[test]
    fn names_are_unique_and_internal_kinds_have_none_to_ask_for() {
        for k in EventKind::ALL {
            let found = EventKind::from_name(k.name());
            assert_eq!(found, (!k.is_internal()).then_some(k), "{k:?}");
        }
        assert_eq!(EventKind::from_name("nope"), None);
    }
}
