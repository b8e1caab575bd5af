//! What the running kernel looks like to the programs: tracepoint field offsets (tracefs),
//! structure member offsets (BTF), and which hooked syscalls have the layout they expect.
use monitor_common::{Config, KernelOffsets, NO_OFFSET, TpOffsets};
use tracing::warn;

use super::{LoadError, ProbeStatus, btf::Btf, skip, syscalls, tracefs, tracefs::Tracefs};

pub(super) fn kernel_offsets(btf: &Btf) -> KernelOffsets {
    let get = |s: &str, m: &str| match btf.member_offset(s, m) {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "kernel field unavailable; events will lack it");
            NO_OFFSET
        }
    };
    KernelOffsets {
        task_tgid: get("task_struct", "tgid"),
        task_pid: get("task_struct", "pid"),
        task_real_parent: get("task_struct", "real_parent"),
        task_group_leader: get("task_struct", "group_leader"),
        task_start_boottime: get("task_struct", "start_boottime"),
        task_exit_code: get("task_struct", "exit_code"),
        task_mm: get("task_struct", "mm"),
        task_cred: get("task_struct", "cred"),
        mm_arg_start: get("mm_struct", "arg_start"),
        mm_arg_end: get("mm_struct", "arg_end"),
        cred_euid: get("cred", "euid"),
        cred_egid: get("cred", "egid"),
        ..io_uring_offsets(btf)
    }
}

/// Where the prepared arguments of the io_uring operations the programs report live. A kernel
/// without io_uring (or with other structures) leaves them unknown, and those operations are
/// then reported without their path or address.
fn io_uring_offsets(btf: &Btf) -> KernelOffsets {
    let get = |s: &str, m: &str| btf.member_offset(s, m).unwrap_or(NO_OFFSET);
    KernelOffsets {
        req_cmd: get("io_kiocb", "cmd"),
        req_cqe: get("io_kiocb", "cqe"),
        cqe_fd: get("io_cqe", "fd"),
        connect_addr_len: get("io_connect", "addr_len"),
        connect_addr: get("io_connect", "addr"),
        open_dfd: get("io_open", "dfd"),
        open_filename: get("io_open", "filename"),
        open_how: get("io_open", "how"),
        filename_name: get("filename", "name"),
        unlink_dfd: get("io_unlink", "dfd"),
        unlink_flags: get("io_unlink", "flags"),
        unlink_filename: get("io_unlink", "filename"),
        rename_old_dfd: get("io_rename", "old_dfd"),
        rename_new_dfd: get("io_rename", "new_dfd"),
        rename_oldpath: get("io_rename", "oldpath"),
        rename_newpath: get("io_rename", "newpath"),
        rename_flags: get("io_rename", "flags"),
        mkdir_dfd: get("io_mkdir", "dfd"),
        mkdir_mode: get("io_mkdir", "mode"),
        mkdir_filename: get("io_mkdir", "filename"),
        link_old_dfd: get("io_link", "old_dfd"),
        link_new_dfd: get("io_link", "new_dfd"),
        link_oldpath: get("io_link", "oldpath"),
        link_newpath: get("io_link", "newpath"),
        link_flags: get("io_link", "flags"),
        socket_domain: get("io_socket", "domain"),
        socket_type: get("io_socket", "type"),
        socket_protocol: get("io_socket", "protocol"),
        ..Config::UNSET.k
    }
}

/// Syscall tracepoint layout: `__syscall_nr`, then 8-byte argument slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SysLayout {
    pub(super) nr: u32,
    pub(super) args: u32,
}

/// An argument field of a sys_enter tracepoint: (name, offset, size).
type ArgField = (String, u32, u32);

fn sys_enter_layout(f: &tracefs::Format) -> Option<(SysLayout, Vec<ArgField>)> {
    let nr = f.offset("__syscall_nr")?;
    let mut args: Vec<ArgField> = f
        .fields
        .iter()
        .filter(|(n, _)| !n.starts_with("common_") && n.as_str() != "__syscall_nr")
        .map(|(n, fl)| (n.clone(), fl.offset, fl.size))
        .collect();
    args.sort_by_key(|a| a.1);
    let base = args.first().map(|a| a.1).unwrap_or(nr + 8);
    Some((SysLayout { nr, args: base }, args))
}

/// Bit `i` for each argument `i` of a sys_enter format that is a value rather than a pointer
/// (registers past the call's arguments hold whatever was left there: never part of a key).
fn value_args(f: &tracefs::Format, args: &[ArgField]) -> u8 {
    args.iter()
        .enumerate()
        .take(6)
        .filter(|(_, (name, _, _))| f.fields.get(name).is_some_and(|fl| !fl.decl.contains('*')))
        .fold(0u8, |m, (i, _)| m | (1 << i))
}

/// Checks that a sys_enter format has its arguments in consecutive 8-byte slots from `base`.
fn args_are_slots(args: &[ArgField], base: u32) -> bool {
    args.len() <= 6
        && args
            .iter()
            .enumerate()
            .all(|(i, (_, off, size))| *off == base + 8 * i as u32 && *size == 8)
}

pub(super) fn tp_offsets(
    tfs: &Tracefs,
    probes: &mut Vec<ProbeStatus>,
) -> Result<TpOffsets, LoadError> {
    let mut tp = Config::UNSET.tp;
    // The reference layout of syscall tracepoints, from openat (present on every architecture).
    let enter = tfs.format("syscalls", "sys_enter_openat")?;
    let (layout, _) = sys_enter_layout(&enter)
        .ok_or_else(|| LoadError::Missing("syscalls/sys_enter_openat: __syscall_nr".into()))?;
    tp.sys_enter_nr = layout.nr;
    tp.sys_enter_args = layout.args;
    let exit = tfs.format("syscalls", "sys_exit_openat")?;
    tp.sys_exit_nr = exit.field("__syscall_nr")?.offset;
    tp.sys_exit_ret = exit.field("ret")?.offset;

    match tfs.format("sched", "sched_process_exec") {
        Ok(f) => {
            tp.exec_filename = f.field("filename")?.offset;
            tp.exec_old_pid = f.offset("old_pid").unwrap_or(NO_OFFSET);
        }
        Err(e) => probes.push(skip("tracepoint/sched/sched_process_exec", e.to_string())),
    }
    if let Ok(f) = tfs.format("sched", "sched_process_exit") {
        tp.exit_group_dead = f.offset("group_dead").unwrap_or(NO_OFFSET);
    }
    if let Ok(f) = tfs.format("sock", "inet_sock_set_state") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.sk_skaddr = o("skaddr");
        tp.sk_oldstate = o("oldstate");
        tp.sk_newstate = o("newstate");
        tp.sk_sport = o("sport");
        tp.sk_dport = o("dport");
        tp.sk_family = o("family");
        tp.sk_protocol = o("protocol");
        tp.sk_saddr = o("saddr");
        tp.sk_daddr = o("daddr");
        tp.sk_saddr_v6 = o("saddr_v6");
        tp.sk_daddr_v6 = o("daddr_v6");
    }
    if let Ok(f) = tfs.format("signal", "signal_generate") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.sig_sig = o("sig");
        tp.sig_code = o("code");
        tp.sig_pid = o("pid");
        tp.sig_group = o("group");
        tp.sig_result = o("result");
    }
    if let Ok(f) = tfs.format("io_uring", "io_uring_submit_req") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.uring_req = o("req");
        tp.uring_opcode = o("opcode");
    }
    if let Ok(f) = tfs.format("cgroup", "cgroup_mkdir") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.cg_root = o("root");
        tp.cg_id = o("id");
        tp.cg_path = o("path");
    }
    Ok(tp)
}

/// The hooks whose tracepoints exist here with the layout the programs expect.
pub(super) fn usable_syscalls(
    tfs: &Tracefs,
    reference: SysLayout,
    probes: &mut Vec<ProbeStatus>,
) -> Vec<syscalls::Hook> {
    let mut usable = Vec::new();
    for h in syscalls::hooks() {
        let enter = format!("sys_enter_{}", h.tracepoint);
        let exit = format!("sys_exit_{}", h.tracepoint);
        let label = format!("tracepoint/syscalls/{}", h.tracepoint);
        if !tfs.exists("syscalls", &enter) || !tfs.exists("syscalls", &exit) {
            probes.push(skip(
                &label,
                "tracepoint does not exist on this kernel (syscall not built in)".into(),
            ));
            continue;
        }
        let format = tfs.format("syscalls", &enter).ok();
        let same = format
            .as_ref()
            .and_then(sys_enter_layout)
            .filter(|(l, args)| l.nr == reference.nr && args_are_slots(args, reference.args));
        let (Some(format), Some((_, args))) = (format, same) else {
            probes.push(skip(&label, "unexpected sys_enter layout".into()));
            continue;
        };
        let mut h = h;
        h.desc.value_args = value_args(&format, &args);
        usable.push(h);
    }
    usable
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn syscall_layout_check() {
        let text = include_str!("../../tests/fixtures/tracefs/sys_enter_openat.format");
        let f = tracefs::Format::parse("syscalls/sys_enter_openat", text, Path::new("x"))
            .expect("parse");
        let (layout, args) = sys_enter_layout(&f).expect("layout");
        assert_eq!(layout, SysLayout { nr: 8, args: 16 });
        assert!(args_are_slots(&args, 16));
        assert!(!args_are_slots(&args, 24));
        // dfd, flags and mode are values; filename is a pointer; there is no fifth argument.
        assert_eq!(value_args(&f, &args), 0b1101);
    }
}
