//! The hooked syscalls: for each, its tracepoint name, its number on the running architecture
//! (from libc, so it is right for the target we are built for) and its capture recipe.
use monitor_common::{EventKind, NO_ARG, Syscall, SyscallDesc, data_mode, filter};

/// One hooked syscall.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// Name of the `syscalls/sys_enter_<name>` / `sys_exit_<name>` tracepoints.
    pub tracepoint: &'static str,
    /// Syscall number on this architecture.
    pub nr: u32,
    pub desc: SyscallDesc,
}

/// Bytes of `struct open_how` (openat2).
const OPEN_HOW_LEN: u16 = 24;
/// Bytes of two `struct __user_cap_data_struct` (capability sets, version 3).
const CAP_DATA_LEN: u16 = 24;
/// Longest file system type name captured for mount.
const FSTYPE_LEN: u16 = 64;

const fn d(kind: EventKind, call: Syscall) -> SyscallDesc {
    SyscallDesc {
        kind: kind as u32,
        call: call as u16,
        str1_arg: NO_ARG,
        str2_arg: NO_ARG,
        data_arg: NO_ARG,
        len_arg: NO_ARG,
        data_mode: data_mode::NONE,
        filter: filter::NONE,
        fixed_len: 0,
        save_creds: 0,
        _pad: [0; 3],
    }
}
const fn s1(mut x: SyscallDesc, a: u8) -> SyscallDesc {
    x.str1_arg = a;
    x
}
const fn s2(mut x: SyscallDesc, a: u8, b: u8) -> SyscallDesc {
    x.str1_arg = a;
    x.str2_arg = b;
    x
}
const fn data(mut x: SyscallDesc, mode: u8, arg: u8, len_arg: u8, fixed: u16) -> SyscallDesc {
    x.data_mode = mode;
    x.data_arg = arg;
    x.len_arg = len_arg;
    x.fixed_len = fixed;
    x
}
const fn creds(mut x: SyscallDesc) -> SyscallDesc {
    x.save_creds = 1;
    x
}
const fn stdio(mut x: SyscallDesc) -> SyscallDesc {
    x.filter = filter::NEWFD_STDIO;
    x
}

macro_rules! hook {
    ($tp:literal, $nr:expr, $desc:expr) => {
        Hook {
            tracepoint: $tp,
            nr: $nr as u32,
            desc: $desc,
        }
    };
}

use EventKind as K;
use Syscall as S;

/// Every hooked syscall available on this architecture.
pub fn hooks() -> Vec<Hook> {
    let mut v = vec![
        hook!("openat", libc::SYS_openat, s1(d(K::Open, S::Openat), 1)),
        hook!(
            "openat2",
            libc::SYS_openat2,
            data(
                s1(d(K::Open, S::Openat2), 1),
                data_mode::FIXED,
                2,
                NO_ARG,
                OPEN_HOW_LEN
            )
        ),
        hook!(
            "unlinkat",
            libc::SYS_unlinkat,
            s1(d(K::Unlink, S::Unlinkat), 1)
        ),
        hook!(
            "renameat",
            libc::SYS_renameat,
            s2(d(K::Rename, S::Renameat), 1, 3)
        ),
        hook!(
            "renameat2",
            libc::SYS_renameat2,
            s2(d(K::Rename, S::Renameat2), 1, 3)
        ),
        hook!(
            "fchmodat",
            libc::SYS_fchmodat,
            s1(d(K::Chmod, S::Fchmodat), 1)
        ),
        hook!(
            "fchmodat2",
            libc::SYS_fchmodat2,
            s1(d(K::Chmod, S::Fchmodat2), 1)
        ),
        hook!(
            "fchownat",
            libc::SYS_fchownat,
            s1(d(K::Chown, S::Fchownat), 1)
        ),
        hook!(
            "symlinkat",
            libc::SYS_symlinkat,
            s2(d(K::Symlink, S::Symlinkat), 0, 2)
        ),
        hook!("linkat", libc::SYS_linkat, s2(d(K::Link, S::Linkat), 1, 3)),
        hook!("mkdirat", libc::SYS_mkdirat, s1(d(K::Mkdir, S::Mkdirat), 1)),
        hook!(
            "connect",
            libc::SYS_connect,
            data(d(K::Connect, S::Connect), data_mode::LEN_IN_ARG, 1, 2, 0)
        ),
        hook!(
            "accept",
            libc::SYS_accept,
            data(d(K::Accept, S::Accept), data_mode::LEN_IN_USER_PTR, 1, 2, 0)
        ),
        hook!(
            "accept4",
            libc::SYS_accept4,
            data(
                d(K::Accept, S::Accept4),
                data_mode::LEN_IN_USER_PTR,
                1,
                2,
                0
            )
        ),
        hook!(
            "bind",
            libc::SYS_bind,
            data(d(K::Bind, S::Bind), data_mode::LEN_IN_ARG, 1, 2, 0)
        ),
        hook!("listen", libc::SYS_listen, d(K::Listen, S::Listen)),
        hook!("setuid", libc::SYS_setuid, creds(d(K::SetId, S::Setuid))),
        hook!("setgid", libc::SYS_setgid, creds(d(K::SetId, S::Setgid))),
        hook!(
            "setreuid",
            libc::SYS_setreuid,
            creds(d(K::SetId, S::Setreuid))
        ),
        hook!(
            "setregid",
            libc::SYS_setregid,
            creds(d(K::SetId, S::Setregid))
        ),
        hook!(
            "setresuid",
            libc::SYS_setresuid,
            creds(d(K::SetId, S::Setresuid))
        ),
        hook!(
            "setresgid",
            libc::SYS_setresgid,
            creds(d(K::SetId, S::Setresgid))
        ),
        hook!(
            "setfsuid",
            libc::SYS_setfsuid,
            creds(d(K::SetId, S::Setfsuid))
        ),
        hook!(
            "setfsgid",
            libc::SYS_setfsgid,
            creds(d(K::SetId, S::Setfsgid))
        ),
        hook!(
            "capset",
            libc::SYS_capset,
            creds(data(
                d(K::Capset, S::Capset),
                data_mode::FIXED,
                1,
                NO_ARG,
                CAP_DATA_LEN
            ))
        ),
        hook!("ptrace", libc::SYS_ptrace, d(K::Ptrace, S::Ptrace)),
        hook!(
            "init_module",
            libc::SYS_init_module,
            s1(d(K::ModuleLoad, S::InitModule), 2)
        ),
        hook!(
            "finit_module",
            libc::SYS_finit_module,
            s1(d(K::ModuleLoad, S::FinitModule), 1)
        ),
        hook!(
            "mount",
            libc::SYS_mount,
            data(
                s2(d(K::Mount, S::Mount), 0, 1),
                data_mode::STRING,
                2,
                NO_ARG,
                FSTYPE_LEN
            )
        ),
        // umount2(2) is SYSCALL_DEFINE2(umount, ...): its tracepoints are named `umount`.
        hook!("umount", libc::SYS_umount2, s1(d(K::Umount, S::Umount2), 0)),
        hook!("setns", libc::SYS_setns, d(K::Setns, S::Setns)),
        hook!("unshare", libc::SYS_unshare, d(K::Unshare, S::Unshare)),
        hook!(
            "memfd_create",
            libc::SYS_memfd_create,
            s1(d(K::MemfdCreate, S::MemfdCreate), 0)
        ),
        hook!("bpf", libc::SYS_bpf, d(K::Bpf, S::Bpf)),
        hook!("dup3", libc::SYS_dup3, stdio(d(K::Dup, S::Dup3))),
    ];
    // Legacy syscalls that newer architectures (aarch64, riscv64) never had.
    #[cfg(target_arch = "x86_64")]
    v.extend([
        hook!("open", libc::SYS_open, s1(d(K::Open, S::Open), 0)),
        hook!("creat", libc::SYS_creat, s1(d(K::Open, S::Creat), 0)),
        hook!("unlink", libc::SYS_unlink, s1(d(K::Unlink, S::Unlink), 0)),
        hook!("rmdir", libc::SYS_rmdir, s1(d(K::Unlink, S::Rmdir), 0)),
        hook!(
            "rename",
            libc::SYS_rename,
            s2(d(K::Rename, S::Rename), 0, 1)
        ),
        hook!("chmod", libc::SYS_chmod, s1(d(K::Chmod, S::Chmod), 0)),
        hook!("chown", libc::SYS_chown, s1(d(K::Chown, S::Chown), 0)),
        hook!("lchown", libc::SYS_lchown, s1(d(K::Chown, S::Lchown), 0)),
        hook!(
            "symlink",
            libc::SYS_symlink,
            s2(d(K::Symlink, S::Symlink), 0, 1)
        ),
        hook!("link", libc::SYS_link, s2(d(K::Link, S::Link), 0, 1)),
        hook!("mkdir", libc::SYS_mkdir, s1(d(K::Mkdir, S::Mkdir), 0)),
        hook!("dup2", libc::SYS_dup2, stdio(d(K::Dup, S::Dup2))),
    ]);
    v
}

/// Looks up a call by our number.
pub fn call_from_u16(v: u16) -> Option<Syscall> {
    ALL_CALLS.iter().copied().find(|c| *c as u16 == v)
}

/// Every [`Syscall`] value.
pub const ALL_CALLS: [Syscall; 47] = [
    S::Open,
    S::Openat,
    S::Openat2,
    S::Creat,
    S::Unlink,
    S::Unlinkat,
    S::Rmdir,
    S::Rename,
    S::Renameat,
    S::Renameat2,
    S::Chmod,
    S::Fchmodat,
    S::Fchmodat2,
    S::Chown,
    S::Lchown,
    S::Fchownat,
    S::Symlink,
    S::Symlinkat,
    S::Link,
    S::Linkat,
    S::Mkdir,
    S::Mkdirat,
    S::Connect,
    S::Accept,
    S::Accept4,
    S::Bind,
    S::Listen,
    S::Setuid,
    S::Setgid,
    S::Setreuid,
    S::Setregid,
    S::Setresuid,
    S::Setresgid,
    S::Setfsuid,
    S::Setfsgid,
    S::Capset,
    S::Ptrace,
    S::InitModule,
    S::FinitModule,
    S::Mount,
    S::Umount2,
    S::Setns,
    S::Unshare,
    S::MemfdCreate,
    S::Bpf,
    S::Dup2,
    S::Dup3,
];

/// The syscall's own name, as in man pages.
pub fn call_name(c: Syscall) -> &'static str {
    match c {
        S::Open => "open",
        S::Openat => "openat",
        S::Openat2 => "openat2",
        S::Creat => "creat",
        S::Unlink => "unlink",
        S::Unlinkat => "unlinkat",
        S::Rmdir => "rmdir",
        S::Rename => "rename",
        S::Renameat => "renameat",
        S::Renameat2 => "renameat2",
        S::Chmod => "chmod",
        S::Fchmodat => "fchmodat",
        S::Fchmodat2 => "fchmodat2",
        S::Chown => "chown",
        S::Lchown => "lchown",
        S::Fchownat => "fchownat",
        S::Symlink => "symlink",
        S::Symlinkat => "symlinkat",
        S::Link => "link",
        S::Linkat => "linkat",
        S::Mkdir => "mkdir",
        S::Mkdirat => "mkdirat",
        S::Connect => "connect",
        S::Accept => "accept",
        S::Accept4 => "accept4",
        S::Bind => "bind",
        S::Listen => "listen",
        S::Setuid => "setuid",
        S::Setgid => "setgid",
        S::Setreuid => "setreuid",
        S::Setregid => "setregid",
        S::Setresuid => "setresuid",
        S::Setresgid => "setresgid",
        S::Setfsuid => "setfsuid",
        S::Setfsgid => "setfsgid",
        S::Capset => "capset",
        S::Ptrace => "ptrace",
        S::InitModule => "init_module",
        S::FinitModule => "finit_module",
        S::Mount => "mount",
        S::Umount2 => "umount2",
        S::Setns => "setns",
        S::Unshare => "unshare",
        S::MemfdCreate => "memfd_create",
        S::Bpf => "bpf",
        S::Dup2 => "dup2",
        S::Dup3 => "dup3",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn numbers_and_calls_are_unique_and_consistent() {
        let hooks = hooks();
        let mut nrs = HashSet::new();
        let mut calls = HashSet::new();
        for h in &hooks {
            assert!(
                h.nr < monitor_common::MAX_SYSCALL_NR,
                "{} nr {}",
                h.tracepoint,
                h.nr
            );
            assert!(nrs.insert(h.nr), "duplicate nr for {}", h.tracepoint);
            assert!(
                calls.insert(h.desc.call),
                "duplicate call for {}",
                h.tracepoint
            );
            let call = call_from_u16(h.desc.call).expect("known call");
            // The tracepoint is named after the syscall (umount2's is `umount`).
            assert!(
                call_name(call).starts_with(h.tracepoint),
                "{} vs {:?}",
                h.tracepoint,
                call
            );
            assert!(monitor_common::EventKind::from_u32(h.desc.kind).is_some());
        }
        let mut names = HashSet::new();
        for c in ALL_CALLS {
            assert!(names.insert(call_name(c)));
            assert_eq!(call_from_u16(c as u16), Some(c));
        }
    }
}
