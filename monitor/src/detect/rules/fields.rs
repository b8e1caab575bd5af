//! The fields rules can test, with their types and how each is read from an [`Event`].
use std::{borrow::Cow, collections::HashMap, sync::OnceLock};

use crate::event::{Detail, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Int,
    Bool,
    /// A list of strings: string operators match when any element does.
    List,
}

impl Ty {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
            Ty::List => "list",
        }
    }
}

/// A field's value on one event; `None` when the event does not have it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    None,
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    List(Vec<Cow<'a, str>>),
    /// A list of names held by the event (flag names): no copy per test.
    Names(&'a [&'static str]),
    /// A list of strings held by the event (argv): no copy per test.
    Strings(&'a [String]),
}

pub(crate) struct FieldDef {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    pub(crate) doc: &'static str,
    pub(crate) get: for<'a> fn(&'a Event) -> Val<'a>,
}

/// A resolved field reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Static(usize),
    PodLabel(String),
    ContainerLabel(String),
}

fn s(v: &str) -> Val<'_> {
    Val::Str(Cow::Borrowed(v))
}
fn os(v: Option<&str>) -> Val<'_> {
    v.map(s).unwrap_or(Val::None)
}
fn oi(v: Option<i64>) -> Val<'static> {
    v.map(Val::Int).unwrap_or(Val::None)
}
fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}
fn list<'a>(v: impl Iterator<Item = &'a str>) -> Val<'a> {
    Val::List(v.map(Cow::Borrowed).collect())
}

macro_rules! detail {
    ($e:expr, $variant:ident, |$d:ident| $body:expr) => {
        match &$e.detail {
            Detail::$variant($d) => $body,
            _ => Val::None,
        }
    };
}

/// Whether an open asks for write access or creates/truncates.
pub(crate) fn opens_for_write(flags: &[&str]) -> bool {
    flags.iter().any(|f| {
        matches!(
            *f,
            "O_WRONLY" | "O_RDWR" | "O_CREAT" | "O_TRUNC" | "O_APPEND"
        )
    })
}

fn mode_bits(m: Option<&str>) -> Option<u32> {
    m.and_then(|m| u32::from_str_radix(m, 8).ok())
}

/// Every static field.
pub(crate) static FIELDS: &[FieldDef] = &[
    FieldDef {
        name: "kind",
        ty: Ty::Str,
        doc: "event kind (exec, open, connect, ...)",
        get: |e| s(e.kind),
    },
    FieldDef {
        name: "node",
        ty: Ty::Str,
        doc: "node name",
        get: |e| s(&e.node),
    },
    FieldDef {
        name: "syscall",
        ty: Ty::Str,
        doc: "syscall of a file, network or privilege event",
        get: |e| match &e.detail {
            Detail::File(d) => s(d.call.syscall),
            Detail::Network(d) => s(d.call.syscall),
            Detail::Privilege(d) => os(d.call.as_ref().map(|c| c.syscall)),
            _ => Val::None,
        },
    },
    FieldDef {
        name: "via",
        ty: Ty::Str,
        doc: "io_uring when the operation was submitted through an io_uring ring instead of a syscall",
        get: |e| match &e.detail {
            Detail::File(d) => os(d.call.via),
            Detail::Network(d) => os(d.call.via),
            _ => Val::None,
        },
    },
    FieldDef {
        name: "result",
        ty: Ty::Int,
        doc: "syscall return value",
        get: |e| match &e.detail {
            Detail::File(d) => Val::Int(d.call.result),
            Detail::Network(d) => Val::Int(d.call.result),
            Detail::Privilege(d) => oi(d.call.as_ref().map(|c| c.result)),
            _ => Val::None,
        },
    },
    FieldDef {
        name: "process.pid",
        ty: Ty::Int,
        doc: "process id (host)",
        get: |e| Val::Int(e.process.pid.into()),
    },
    FieldDef {
        name: "process.ppid",
        ty: Ty::Int,
        doc: "parent process id",
        get: |e| Val::Int(e.process.ppid.into()),
    },
    FieldDef {
        name: "process.uid",
        ty: Ty::Int,
        doc: "real uid",
        get: |e| Val::Int(e.process.uid.into()),
    },
    FieldDef {
        name: "process.euid",
        ty: Ty::Int,
        doc: "effective uid",
        get: |e| Val::Int(e.process.euid.into()),
    },
    FieldDef {
        name: "process.gid",
        ty: Ty::Int,
        doc: "real gid",
        get: |e| Val::Int(e.process.gid.into()),
    },
    FieldDef {
        name: "process.name",
        ty: Ty::Str,
        doc: "comm (thread name, 15 chars)",
        get: |e| s(&e.process.comm),
    },
    FieldDef {
        name: "process.exe",
        ty: Ty::Str,
        doc: "executable path",
        get: |e| s(&e.process.exe),
    },
    FieldDef {
        name: "process.exe_name",
        ty: Ty::Str,
        doc: "executable file name",
        get: |e| s(base(&e.process.exe)),
    },
    FieldDef {
        name: "process.command_line",
        ty: Ty::Str,
        doc: "command line, space-joined",
        get: |e| s(&e.process.command_line),
    },
    FieldDef {
        name: "process.args",
        ty: Ty::List,
        doc: "argv",
        get: |e| Val::Strings(&e.process.args),
    },
    FieldDef {
        name: "process.cwd",
        ty: Ty::Str,
        doc: "working directory",
        get: |e| os(e.process.cwd.as_deref()),
    },
    FieldDef {
        name: "process.parent.exe",
        ty: Ty::Str,
        doc: "parent's executable",
        get: |e| os(e.process.ancestors.first().map(|a| &*a.exe)),
    },
    FieldDef {
        name: "process.parent.name",
        ty: Ty::Str,
        doc: "parent's executable file name",
        get: |e| os(e.process.ancestors.first().map(|a| base(&a.exe))),
    },
    FieldDef {
        name: "process.ancestors.exe",
        ty: Ty::List,
        doc: "executables of all known ancestors",
        get: |e| list(e.process.ancestors.iter().map(|a| &*a.exe)),
    },
    FieldDef {
        name: "process.ancestors.name",
        ty: Ty::List,
        doc: "file names of ancestors' executables",
        get: |e| list(e.process.ancestors.iter().map(|a| base(&a.exe))),
    },
    FieldDef {
        name: "exec.filename",
        ty: Ty::Str,
        doc: "path given to exec",
        get: |e| detail!(e, Exec, |d| s(&d.filename)),
    },
    FieldDef {
        name: "exec.name",
        ty: Ty::Str,
        doc: "program run: the file name of the exec'd path, or for a multi-call binary (busybox, toybox) the applet argv names",
        get: |e| {
            detail!(e, Exec, |d| s(crate::event::program_name(
                &d.filename,
                &d.args
            )))
        },
    },
    FieldDef {
        name: "exec.args",
        ty: Ty::List,
        doc: "argv of the exec (absent when the program was started with no arguments at all)",
        get: |e| {
            detail!(e, Exec, |d| if d.args.is_empty() {
                Val::None
            } else {
                Val::Strings(&d.args)
            })
        },
    },
    FieldDef {
        name: "exit.code",
        ty: Ty::Int,
        doc: "exit status",
        get: |e| detail!(e, Exit, |d| oi(d.code.map(i64::from))),
    },
    FieldDef {
        name: "exit.signal",
        ty: Ty::Int,
        doc: "terminating signal",
        get: |e| detail!(e, Exit, |d| oi(d.signal.map(i64::from))),
    },
    FieldDef {
        name: "file.path",
        ty: Ty::Str,
        doc: "path (absolute where resolvable)",
        get: |e| detail!(e, File, |d| os(d.path.as_deref())),
    },
    FieldDef {
        name: "file.name",
        ty: Ty::Str,
        doc: "file name of file.path",
        get: |e| detail!(e, File, |d| os(d.path.as_deref().map(base))),
    },
    FieldDef {
        name: "file.target",
        ty: Ty::Str,
        doc: "second path: new name (rename, link), link (symlink)",
        get: |e| detail!(e, File, |d| os(d.target.as_deref())),
    },
    FieldDef {
        name: "file.flags",
        ty: Ty::List,
        doc: "open flags (O_WRONLY, O_CREAT, ...)",
        get: |e| detail!(e, File, |d| Val::Names(&d.flag_names)),
    },
    FieldDef {
        name: "file.write",
        ty: Ty::Bool,
        doc: "opened for writing, creating, truncating or appending",
        get: |e| {
            detail!(e, File, |d| Val::Bool(
                e.kind == "open" && opens_for_write(&d.flag_names)
            ))
        },
    },
    FieldDef {
        name: "file.mode",
        ty: Ty::Str,
        doc: "permission bits, octal (chmod, mkdir, open with O_CREAT)",
        get: |e| detail!(e, File, |d| os(d.mode.as_deref())),
    },
    FieldDef {
        name: "file.setuid",
        ty: Ty::Bool,
        doc: "mode sets the setuid bit",
        get: |e| {
            detail!(e, File, |d| Val::Bool(
                mode_bits(d.mode.as_deref()).is_some_and(|m| m & 0o4000 != 0)
            ))
        },
    },
    FieldDef {
        name: "file.setgid",
        ty: Ty::Bool,
        doc: "mode sets the setgid bit",
        get: |e| {
            detail!(e, File, |d| Val::Bool(
                mode_bits(d.mode.as_deref()).is_some_and(|m| m & 0o2000 != 0)
            ))
        },
    },
    FieldDef {
        name: "file.result",
        ty: Ty::Int,
        doc: "syscall result",
        get: |e| detail!(e, File, |d| Val::Int(d.call.result)),
    },
    FieldDef {
        name: "network.address",
        ty: Ty::Str,
        doc: "IP address (connect: remote, bind: local, accept: peer)",
        get: |e| detail!(e, Network, |d| os(d.address.as_deref())),
    },
    FieldDef {
        name: "network.port",
        ty: Ty::Int,
        doc: "port",
        get: |e| detail!(e, Network, |d| oi(d.port.map(i64::from))),
    },
    FieldDef {
        name: "network.family",
        ty: Ty::Str,
        doc: "inet, inet6, unix",
        get: |e| detail!(e, Network, |d| os(d.family.as_deref())),
    },
    FieldDef {
        name: "network.unix_path",
        ty: Ty::Str,
        doc: "unix socket path",
        get: |e| detail!(e, Network, |d| os(d.unix_path.as_deref())),
    },
    FieldDef {
        name: "network.type",
        ty: Ty::Str,
        doc: "socket type of a new socket (SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, ...)",
        get: |e| detail!(e, Network, |d| os(d.socket_type)),
    },
    FieldDef {
        name: "network.protocol",
        ty: Ty::Int,
        doc: "protocol number of a new socket",
        get: |e| detail!(e, Network, |d| oi(d.protocol)),
    },
    FieldDef {
        name: "network.fd",
        ty: Ty::Int,
        doc: "socket fd (accept: the new connection)",
        get: |e| detail!(e, Network, |d| Val::Int(d.fd)),
    },
    FieldDef {
        name: "network.result",
        ty: Ty::Int,
        doc: "syscall result",
        get: |e| detail!(e, Network, |d| Val::Int(d.call.result)),
    },
    FieldDef {
        name: "tcp.new_state",
        ty: Ty::Str,
        doc: "TCP state entered",
        get: |e| detail!(e, Tcp, |d| s(d.new_state)),
    },
    FieldDef {
        name: "tcp.daddr",
        ty: Ty::Str,
        doc: "remote address",
        get: |e| detail!(e, Tcp, |d| s(&d.daddr)),
    },
    FieldDef {
        name: "tcp.dport",
        ty: Ty::Int,
        doc: "remote port",
        get: |e| detail!(e, Tcp, |d| Val::Int(d.dport.into())),
    },
    FieldDef {
        name: "tcp.sport",
        ty: Ty::Int,
        doc: "local port",
        get: |e| detail!(e, Tcp, |d| Val::Int(d.sport.into())),
    },
    FieldDef {
        name: "privilege.result",
        ty: Ty::Int,
        doc: "syscall result",
        get: |e| detail!(e, Privilege, |d| oi(d.call.as_ref().map(|c| c.result))),
    },
    FieldDef {
        name: "privilege.old_uid",
        ty: Ty::Int,
        doc: "uid before a setuid-family call",
        get: |e| detail!(e, Privilege, |d| oi(d.old_uid.map(i64::from))),
    },
    FieldDef {
        name: "privilege.old_euid",
        ty: Ty::Int,
        doc: "euid before a setuid-family call",
        get: |e| detail!(e, Privilege, |d| oi(d.old_euid.map(i64::from))),
    },
    FieldDef {
        name: "privilege.request",
        ty: Ty::Str,
        doc: "ptrace request, prctl option, keyctl operation, perf event type",
        get: |e| detail!(e, Privilege, |d| os(d.request.as_deref())),
    },
    FieldDef {
        name: "privilege.target_pid",
        ty: Ty::Int,
        doc: "target process of ptrace, kill, process_vm_readv/writev, perf_event_open (caller's pid namespace)",
        get: |e| detail!(e, Privilege, |d| oi(d.target_pid)),
    },
    FieldDef {
        name: "privilege.source",
        ty: Ty::Str,
        doc: "mount source, module parameters, pivot_root's old root",
        get: |e| detail!(e, Privilege, |d| os(d.source.as_deref())),
    },
    FieldDef {
        name: "privilege.target",
        ty: Ty::Str,
        doc: "mount point, new root of chroot and pivot_root",
        get: |e| detail!(e, Privilege, |d| os(d.target.as_deref())),
    },
    FieldDef {
        name: "privilege.fstype",
        ty: Ty::Str,
        doc: "mounted file system type",
        get: |e| detail!(e, Privilege, |d| os(d.fstype.as_deref())),
    },
    FieldDef {
        name: "privilege.name",
        ty: Ty::Str,
        doc: "memfd name, new process name (prctl PR_SET_NAME)",
        get: |e| detail!(e, Privilege, |d| os(d.name.as_deref())),
    },
    FieldDef {
        name: "privilege.flags",
        ty: Ty::List,
        doc: "flag names (CLONE_NEW*, MS_*, IORING_SETUP_*)",
        get: |e| detail!(e, Privilege, |d| Val::Names(&d.flag_names)),
    },
    FieldDef {
        name: "privilege.fd",
        ty: Ty::Int,
        doc: "fd argument (dup: old fd, setns: namespace fd)",
        get: |e| detail!(e, Privilege, |d| oi(d.fd)),
    },
    FieldDef {
        name: "privilege.new_fd",
        ty: Ty::Int,
        doc: "dup target fd",
        get: |e| detail!(e, Privilege, |d| oi(d.new_fd)),
    },
    FieldDef {
        name: "privilege.command",
        ty: Ty::Str,
        doc: "bpf command",
        get: |e| detail!(e, Privilege, |d| os(d.command.as_deref())),
    },
    FieldDef {
        name: "privilege.signal",
        ty: Ty::Str,
        doc: "signal sent by kill, tkill or tgkill (SIGKILL, ...)",
        get: |e| detail!(e, Privilege, |d| os(d.signal.as_deref())),
    },
    FieldDef {
        name: "signal.number",
        ty: Ty::Int,
        doc: "number of a signal sent to the agent",
        get: |e| detail!(e, Signal, |d| Val::Int(d.number.into())),
    },
    FieldDef {
        name: "signal.name",
        ty: Ty::Str,
        doc: "name of a signal sent to the agent (SIGTERM, SIGKILL, ...)",
        get: |e| detail!(e, Signal, |d| s(&d.name)),
    },
    FieldDef {
        name: "signal.origin",
        ty: Ty::Str,
        doc: "how the signal was raised: kill, tkill, queue (by a process), kernel, other",
        get: |e| detail!(e, Signal, |d| s(d.origin)),
    },
    FieldDef {
        name: "signal.target_pid",
        ty: Ty::Int,
        doc: "the agent's task the signal was sent to",
        get: |e| detail!(e, Signal, |d| Val::Int(d.target_pid.into())),
    },
    FieldDef {
        name: "container.id",
        ty: Ty::Str,
        doc: "container id (absent on the host)",
        get: |e| os(e.attribution.container.as_ref().map(|c| &*c.id)),
    },
    FieldDef {
        name: "container.name",
        ty: Ty::Str,
        doc: "container name",
        get: |e| {
            os(e.attribution
                .container
                .as_ref()
                .and_then(|c| c.meta.as_ref())
                .map(|m| m.name.as_str()))
        },
    },
    FieldDef {
        name: "container.image",
        ty: Ty::Str,
        doc: "image",
        get: |e| {
            os(e.attribution
                .container
                .as_ref()
                .and_then(|c| c.meta.as_ref())
                .map(|m| m.image.as_str()))
        },
    },
    FieldDef {
        name: "pod.name",
        ty: Ty::Str,
        doc: "pod name",
        get: |e| os(e.attribution.pod.as_ref().map(|p| p.name.as_str())),
    },
    FieldDef {
        name: "pod.namespace",
        ty: Ty::Str,
        doc: "pod namespace",
        get: |e| os(e.attribution.pod.as_ref().map(|p| p.namespace.as_str())),
    },
    FieldDef {
        name: "pod.uid",
        ty: Ty::Str,
        doc: "pod uid (from the runtime, else from the kubelet's cgroup path)",
        get: |e| match &e.attribution.pod {
            Some(p) => s(&p.uid),
            None => os(e
                .attribution
                .container
                .as_ref()
                .and_then(|c| c.pod_uid_from_cgroup.as_deref())),
        },
    },
    FieldDef {
        name: "workload.kind",
        ty: Ty::Str,
        doc: "owning workload kind",
        get: |e| {
            os(e.attribution
                .pod
                .as_ref()
                .and_then(|p| p.workload.as_ref())
                .map(|w| w.kind))
        },
    },
    FieldDef {
        name: "workload.name",
        ty: Ty::Str,
        doc: "owning workload name",
        get: |e| {
            os(e.attribution
                .pod
                .as_ref()
                .and_then(|p| p.workload.as_ref())
                .map(|w| w.name.as_str()))
        },
    },
];

fn index() -> &'static HashMap<&'static str, usize> {
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    INDEX.get_or_init(|| {
        FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name, i))
            .collect()
    })
}

/// Resolves a field name (including `pod.label[KEY]` and `container.label[KEY]`).
pub(crate) fn lookup(name: &str) -> Option<(Field, Ty)> {
    if let Some(i) = index().get(name) {
        return Some((Field::Static(*i), FIELDS[*i].ty));
    }
    let label = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(']'))
            .map(str::to_string)
    };
    if let Some(k) = label("pod.label[") {
        return Some((Field::PodLabel(k), Ty::Str));
    }
    label("container.label[").map(|k| (Field::ContainerLabel(k), Ty::Str))
}

/// Reads a field from an event.
pub(crate) fn get<'a>(f: &Field, e: &'a Event) -> Val<'a> {
    match f {
        Field::Static(i) => (FIELDS[*i].get)(e),
        Field::PodLabel(k) => os(e
            .attribution
            .pod
            .as_ref()
            .and_then(|p| p.labels.get(k))
            .map(String::as_str)),
        Field::ContainerLabel(k) => os(e
            .attribution
            .container
            .as_ref()
            .and_then(|c| c.meta.as_ref())
            .and_then(|m| m.labels.get(k))
            .map(String::as_str)),
    }
}

/// The value as text, for output templates and sequence correlation.
pub(crate) fn render(v: &Val<'_>) -> Option<String> {
    match v {
        Val::None => None,
        Val::Str(s) => Some(s.to_string()),
        Val::Int(i) => Some(i.to_string()),
        Val::Bool(b) => Some(b.to_string()),
        Val::List(l) => Some(l.join(" ")),
        Val::Names(l) => Some(l.join(" ")),
        Val::Strings(l) => Some(l.join(" ")),
    }
}

/// Close field names, for "did you mean" hints.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    let last = name.rsplit('.').next().unwrap_or(name);
    FIELDS
        .iter()
        .map(|f| f.name)
        .find(|f| f.ends_with(&format!(".{last}")) || f.rsplit('.').next() == Some(last))
}
