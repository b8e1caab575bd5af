//! The hooked syscalls available on the architecture we are built for: the table itself is in
//! `monitor-common` (one row per call), this only pairs each row with its number here.
use monitor_common::{Syscall, SyscallDesc};

/// One hooked syscall.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hook {
    /// Name of the `syscalls/sys_enter_<name>` / `sys_exit_<name>` tracepoints.
    pub(crate) tracepoint: &'static str,
    /// Syscall number on this architecture.
    pub(crate) nr: u32,
    /// The capture recipe the kernel programs follow.
    pub(crate) desc: SyscallDesc,
}

/// Every hooked syscall this architecture has.
pub(crate) fn hooks() -> impl Iterator<Item = Hook> {
    Syscall::ALL.into_iter().filter_map(|c| {
        Some(Hook {
            tracepoint: c.tracepoint(),
            nr: c.nr()?,
            desc: c.desc(),
        })
    })
}
