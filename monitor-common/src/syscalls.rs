//! The hooked syscalls, declared once in a table: our architecture-independent number, the
//! man-page name, the tracepoint name, the running architecture's number (from libc, user space
//! only), the event kind and the capture recipe all come from the same row.
use crate::{EventKind, NO_ARG, SyscallDesc, data_mode, filter};

/// Bytes of `struct open_how` (openat2).
const OPEN_HOW_LEN: u16 = 24;
/// Bytes of two `struct __user_cap_data_struct` (capability sets, version 3).
const CAP_DATA_LEN: u16 = 24;
/// Longest file system type name captured for mount.
const FSTYPE_LEN: u16 = 64;

/// A capture recipe under construction: which arguments are strings, which is a data block.
#[derive(Clone, Copy)]
struct Recipe(SyscallDesc);

impl Recipe {
    /// Nothing but the raw arguments.
    const fn plain() -> Recipe {
        Recipe(SyscallDesc {
            kind: 0,
            call: 0,
            str1_arg: NO_ARG,
            str2_arg: NO_ARG,
            data_arg: NO_ARG,
            len_arg: NO_ARG,
            data_mode: data_mode::NONE,
            filter: filter::NONE,
            fixed_len: 0,
            save_creds: 0,
            interest: crate::interest::ALL,
            flags_arg: NO_ARG,
            value_args: 0,
        })
    }
    /// Argument `a` holds the `open(2)` flags, which tell read-only opens from writing ones.
    const fn open_flags(mut self, a: u8) -> Recipe {
        self.0.flags_arg = a;
        self
    }
    /// Argument `a` is a path.
    const fn s1(mut self, a: u8) -> Recipe {
        self.0.str1_arg = a;
        self
    }
    /// Arguments `a` and `b` are paths.
    const fn s2(mut self, a: u8, b: u8) -> Recipe {
        self.0.str1_arg = a;
        self.0.str2_arg = b;
        self
    }
    /// A data block read as `mode` says from argument `arg`.
    const fn data(mut self, mode: u8, arg: u8, len_arg: u8, fixed: u16) -> Recipe {
        self.0.data_mode = mode;
        self.0.data_arg = arg;
        self.0.len_arg = len_arg;
        self.0.fixed_len = fixed;
        self
    }
    /// Save the caller's uid/euid at enter.
    const fn creds(mut self) -> Recipe {
        self.0.save_creds = 1;
        self
    }
    /// Only when the new descriptor is 0, 1 or 2.
    const fn stdio(mut self) -> Recipe {
        self.0.filter = filter::NEWFD_STDIO;
        self
    }
    /// Only when argument 4 holds a destination address.
    const fn addressed(mut self) -> Recipe {
        self.0.filter = filter::ADDR_ARG4;
        self
    }
}

/// Declares [`Syscall`] and its lookups from one row per call:
/// `Variant = ours, "name", "tracepoint", libc_number [if "arch"], Kind, recipe;`.
macro_rules! syscalls {
    ($( $variant:ident = $num:literal, $name:literal, $tp:literal, $nr:ident
        $(if $arch:literal)?, $kind:ident, $recipe:expr; )*) => {
        /// Our architecture-independent syscall numbers (what [`crate::SyscallBody::call`] holds).
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Syscall {
            $(
                #[doc = concat!("`", $name, "(2)`")]
                $variant = $num,
            )*
        }

        impl Syscall {
            /// Every call, in number order.
            pub const ALL: [Syscall; [$($num),*].len()] = [$(Syscall::$variant),*];

            /// Looks up a call by our number.
            pub const fn from_u16(v: u16) -> Option<Syscall> {
                match v {
                    $( $num => Some(Syscall::$variant), )*
                    _ => None,
                }
            }

            /// The syscall's own name, as in man pages.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Syscall::$variant => $name, )*
                }
            }

            /// Name of its `syscalls/sys_enter_<name>` / `sys_exit_<name>` tracepoints.
            pub const fn tracepoint(self) -> &'static str {
                match self {
                    $( Syscall::$variant => $tp, )*
                }
            }

            /// The event kind its records have.
            pub const fn kind(self) -> EventKind {
                match self {
                    $( Syscall::$variant => EventKind::$kind, )*
                }
            }

            /// The capture recipe the kernel programs follow for it.
            pub const fn desc(self) -> SyscallDesc {
                let mut d = match self {
                    $( Syscall::$variant => $recipe.0, )*
                };
                d.kind = self.kind() as u32;
                d.call = self as u16;
                d
            }

            /// Its number on the architecture we are built for; `None` where the architecture
            /// never had it (aarch64 and riscv64 lack the legacy path calls).
            #[cfg(feature = "user")]
            pub const fn nr(self) -> Option<u32> {
                #[allow(
                    unreachable_patterns,
                    reason = "on x86_64 every call has a number and the fallback is unreachable"
                )]
                match self {
                    $(
                        $( #[cfg(target_arch = $arch)] )?
                        Syscall::$variant => Some(libc::$nr as u32),
                    )*
                    _ => None,
                }
            }
        }
    };
}

/// Bytes of `struct io_uring_params` read at setup: sq_entries, cq_entries, flags.
const URING_PARAMS_LEN: u16 = 12;
/// Bytes of `struct perf_event_attr` read: type, size.
const PERF_ATTR_LEN: u16 = 8;

use data_mode::{FIXED, LEN_IN_ARG, LEN_IN_USER_PTR, PRCTL_NAME, STRING};

syscalls! {
    Open = 1, "open", "open", SYS_open if "x86_64", Open, Recipe::plain().s1(0).open_flags(1);
    Openat = 2, "openat", "openat", SYS_openat, Open, Recipe::plain().s1(1).open_flags(2);
    Openat2 = 3, "openat2", "openat2", SYS_openat2, Open,
        Recipe::plain().s1(1).data(FIXED, 2, NO_ARG, OPEN_HOW_LEN);
    Creat = 4, "creat", "creat", SYS_creat if "x86_64", Open, Recipe::plain().s1(0);
    Unlink = 5, "unlink", "unlink", SYS_unlink if "x86_64", Unlink, Recipe::plain().s1(0);
    Unlinkat = 6, "unlinkat", "unlinkat", SYS_unlinkat, Unlink, Recipe::plain().s1(1);
    Rmdir = 7, "rmdir", "rmdir", SYS_rmdir if "x86_64", Unlink, Recipe::plain().s1(0);
    Rename = 8, "rename", "rename", SYS_rename if "x86_64", Rename, Recipe::plain().s2(0, 1);
    Renameat = 9, "renameat", "renameat", SYS_renameat, Rename, Recipe::plain().s2(1, 3);
    Renameat2 = 10, "renameat2", "renameat2", SYS_renameat2, Rename, Recipe::plain().s2(1, 3);
    Chmod = 11, "chmod", "chmod", SYS_chmod if "x86_64", Chmod, Recipe::plain().s1(0);
    Fchmodat = 12, "fchmodat", "fchmodat", SYS_fchmodat, Chmod, Recipe::plain().s1(1);
    Fchmodat2 = 13, "fchmodat2", "fchmodat2", SYS_fchmodat2, Chmod, Recipe::plain().s1(1);
    Chown = 14, "chown", "chown", SYS_chown if "x86_64", Chown, Recipe::plain().s1(0);
    Lchown = 15, "lchown", "lchown", SYS_lchown if "x86_64", Chown, Recipe::plain().s1(0);
    Fchownat = 16, "fchownat", "fchownat", SYS_fchownat, Chown, Recipe::plain().s1(1);
    Symlink = 17, "symlink", "symlink", SYS_symlink if "x86_64", Symlink, Recipe::plain().s2(0, 1);
    Symlinkat = 18, "symlinkat", "symlinkat", SYS_symlinkat, Symlink, Recipe::plain().s2(0, 2);
    Link = 19, "link", "link", SYS_link if "x86_64", Link, Recipe::plain().s2(0, 1);
    Linkat = 20, "linkat", "linkat", SYS_linkat, Link, Recipe::plain().s2(1, 3);
    Mkdir = 21, "mkdir", "mkdir", SYS_mkdir if "x86_64", Mkdir, Recipe::plain().s1(0);
    Mkdirat = 22, "mkdirat", "mkdirat", SYS_mkdirat, Mkdir, Recipe::plain().s1(1);
    Connect = 30, "connect", "connect", SYS_connect, Connect,
        Recipe::plain().data(LEN_IN_ARG, 1, 2, 0);
    Accept = 31, "accept", "accept", SYS_accept, Accept,
        Recipe::plain().data(LEN_IN_USER_PTR, 1, 2, 0);
    Accept4 = 32, "accept4", "accept4", SYS_accept4, Accept,
        Recipe::plain().data(LEN_IN_USER_PTR, 1, 2, 0);
    Bind = 33, "bind", "bind", SYS_bind, Bind, Recipe::plain().data(LEN_IN_ARG, 1, 2, 0);
    Listen = 34, "listen", "listen", SYS_listen, Listen, Recipe::plain();
    Setuid = 40, "setuid", "setuid", SYS_setuid, SetId, Recipe::plain().creds();
    Setgid = 41, "setgid", "setgid", SYS_setgid, SetId, Recipe::plain().creds();
    Setreuid = 42, "setreuid", "setreuid", SYS_setreuid, SetId, Recipe::plain().creds();
    Setregid = 43, "setregid", "setregid", SYS_setregid, SetId, Recipe::plain().creds();
    Setresuid = 44, "setresuid", "setresuid", SYS_setresuid, SetId, Recipe::plain().creds();
    Setresgid = 45, "setresgid", "setresgid", SYS_setresgid, SetId, Recipe::plain().creds();
    Setfsuid = 46, "setfsuid", "setfsuid", SYS_setfsuid, SetId, Recipe::plain().creds();
    Setfsgid = 47, "setfsgid", "setfsgid", SYS_setfsgid, SetId, Recipe::plain().creds();
    Capset = 48, "capset", "capset", SYS_capset, Capset,
        Recipe::plain().data(FIXED, 1, NO_ARG, CAP_DATA_LEN).creds();
    Ptrace = 49, "ptrace", "ptrace", SYS_ptrace, Ptrace, Recipe::plain();
    InitModule = 50, "init_module", "init_module", SYS_init_module, ModuleLoad,
        Recipe::plain().s1(2);
    FinitModule = 51, "finit_module", "finit_module", SYS_finit_module, ModuleLoad,
        Recipe::plain().s1(1);
    Mount = 52, "mount", "mount", SYS_mount, Mount,
        Recipe::plain().s2(0, 1).data(STRING, 2, NO_ARG, FSTYPE_LEN);
    // umount2(2) is SYSCALL_DEFINE2(umount, ...): its tracepoints are named `umount`.
    Umount2 = 53, "umount2", "umount", SYS_umount2, Umount, Recipe::plain().s1(0);
    Setns = 54, "setns", "setns", SYS_setns, Setns, Recipe::plain();
    Unshare = 55, "unshare", "unshare", SYS_unshare, Unshare, Recipe::plain();
    MemfdCreate = 56, "memfd_create", "memfd_create", SYS_memfd_create, MemfdCreate,
        Recipe::plain().s1(0);
    Bpf = 57, "bpf", "bpf", SYS_bpf, Bpf, Recipe::plain();
    Dup2 = 58, "dup2", "dup2", SYS_dup2 if "x86_64", Dup, Recipe::plain().stdio();
    Dup3 = 59, "dup3", "dup3", SYS_dup3, Dup, Recipe::plain().stdio();
    Socket = 35, "socket", "socket", SYS_socket, Socket, Recipe::plain();
    Sendto = 36, "sendto", "sendto", SYS_sendto, SendTo,
        Recipe::plain().data(LEN_IN_ARG, 4, 5, 0).addressed();
    Kill = 60, "kill", "kill", SYS_kill, Kill, Recipe::plain();
    Tkill = 61, "tkill", "tkill", SYS_tkill, Kill, Recipe::plain();
    Tgkill = 62, "tgkill", "tgkill", SYS_tgkill, Kill, Recipe::plain();
    ProcessVmReadv = 63, "process_vm_readv", "process_vm_readv", SYS_process_vm_readv,
        ProcessVm, Recipe::plain();
    ProcessVmWritev = 64, "process_vm_writev", "process_vm_writev", SYS_process_vm_writev,
        ProcessVm, Recipe::plain();
    Prctl = 65, "prctl", "prctl", SYS_prctl, Prctl,
        Recipe::plain().data(PRCTL_NAME, 1, NO_ARG, 16);
    Chroot = 66, "chroot", "chroot", SYS_chroot, Chroot, Recipe::plain().s1(0);
    PivotRoot = 67, "pivot_root", "pivot_root", SYS_pivot_root, Chroot, Recipe::plain().s2(0, 1);
    Userfaultfd = 68, "userfaultfd", "userfaultfd", SYS_userfaultfd, Userfaultfd, Recipe::plain();
    PerfEventOpen = 69, "perf_event_open", "perf_event_open", SYS_perf_event_open,
        PerfEventOpen, Recipe::plain().data(FIXED, 0, NO_ARG, PERF_ATTR_LEN);
    Keyctl = 70, "keyctl", "keyctl", SYS_keyctl, Keyctl, Recipe::plain();
    IoUringSetup = 71, "io_uring_setup", "io_uring_setup", SYS_io_uring_setup, IoUring,
        Recipe::plain().data(FIXED, 1, NO_ARG, URING_PARAMS_LEN);
    Chdir = 72, "chdir", "chdir", SYS_chdir, Chdir, Recipe::plain().s1(0);
    Fchdir = 73, "fchdir", "fchdir", SYS_fchdir, Chdir, Recipe::plain();
}

#[cfg(all(test, feature = "user"))]
mod tests {
    extern crate std;
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn numbers_names_and_recipes_are_consistent() {
        let mut nrs = HashSet::new();
        let mut names = HashSet::new();
        for c in Syscall::ALL {
            assert_eq!(Syscall::from_u16(c as u16), Some(c));
            assert!(names.insert(c.name()), "{c:?}");
            // The tracepoint is named after the syscall (umount2's is `umount`).
            assert!(c.name().starts_with(c.tracepoint()), "{c:?}");
            let d = c.desc();
            assert_eq!(d.call, c as u16);
            assert_eq!(EventKind::from_u32(d.kind), Some(c.kind()));
            if let Some(nr) = c.nr() {
                assert!(nr < crate::MAX_SYSCALL_NR, "{c:?} nr {nr}");
                assert!(nrs.insert(nr), "duplicate nr for {c:?}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(nrs.len(), Syscall::ALL.len());
    }
}
