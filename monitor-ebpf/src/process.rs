//! Process lifecycle: exec, fork, exit.
use aya_ebpf::{
    helpers::generated::bpf_probe_read_user,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use monitor_common::{
    EXEC_ARGS_TRUNCATED, EXEC_ARGS_UNREADABLE, EXEC_FILENAME_TRUNCATED, EventKind, ExecBody,
    ExitBody, ForkBody, Header, MAX_ARGS, NO_OFFSET,
};

use crate::{
    event::{current, emit, fill_header, read_data_loc_str, read_kernel, scratch, task},
    maps::{STASH, conf},
};

const HDR: usize = core::mem::size_of::<Header>();

/// `sched/sched_process_exec`: after a successful exec. Uses the tracefs fields `filename`
/// (`__data_loc char[]`) and `old_pid`; argv is read from the new mm's `arg_start..arg_end`
/// (offsets from BTF), which is in place and resident at this point.
#[tracepoint]
pub(crate) fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Option<()> {
    const BODY: usize = core::mem::size_of::<ExecBody>();
    let cur = current()?;
    let buf = scratch()?;
    fill_header(buf, EventKind::Exec as u32, &cur);
    let task = task();
    let mut flags = 0u32;

    let parent: u64 = read_kernel(task, conf!(k.task_real_parent)).unwrap_or(0);
    let ppid: u32 = read_kernel(parent, conf!(k.task_tgid)).unwrap_or(0);
    let old_pid_off = conf!(tp.exec_old_pid);
    let old_pid = if old_pid_off == NO_OFFSET {
        0
    } else {
        // SAFETY: offset read from this tracepoint's format.
        unsafe { ctx.read_at::<u32>(old_pid_off as usize) }.unwrap_or(0)
    };

    // SAFETY: buf has room for header + body + two MAX_PATH/MAX_ARGS blocks.
    let tail = unsafe { buf.add(HDR + BODY) };
    let (flen, cut) = read_data_loc_str(ctx, conf!(tp.exec_filename), tail);
    if cut {
        flags |= EXEC_FILENAME_TRUNCATED;
    }

    let mut alen: usize = 0;
    let mm: u64 = read_kernel(task, conf!(k.task_mm)).unwrap_or(0);
    let start: u64 = read_kernel(mm, conf!(k.mm_arg_start)).unwrap_or(0);
    let end: u64 = read_kernel(mm, conf!(k.mm_arg_end)).unwrap_or(0);
    if start != 0 && end > start {
        let mut want = (end - start) as usize;
        if want > MAX_ARGS {
            want = MAX_ARGS;
            flags |= EXEC_ARGS_TRUNCATED;
        }
        // SAFETY: tail + flen + MAX_ARGS stays inside the scratch buffer.
        let r =
            unsafe { bpf_probe_read_user(tail.add(flen).cast(), want as u32, start as *const _) };
        if r == 0 {
            alen = want;
        } else {
            flags |= EXEC_ARGS_UNREADABLE;
        }
    } else {
        flags |= EXEC_ARGS_UNREADABLE;
    }

    let body = ExecBody {
        ppid,
        filename_len: flen as u16,
        args_len: alen as u16,
        flags,
        old_pid,
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<ExecBody>().write_unaligned(body) };
    emit(buf, HDR + BODY + flen + alen, EventKind::Exec as u32);
    Some(())
}

/// Raw tracepoint `sched_process_fork(struct task_struct *parent, struct task_struct *child)`:
/// a new process (thread creations are skipped: child tgid != child pid). The child's tgid, pid
/// and start time come from BTF offsets. It fires before the child can run, so the fork record
/// precedes every record of the child in the ring buffer.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub(crate) fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Option<()> {
    const BODY: usize = core::mem::size_of::<ForkBody>();
    let child: u64 = ctx.arg(1);
    let child_tgid: u32 = read_kernel(child, conf!(k.task_tgid))?;
    let child_pid: u32 = read_kernel(child, conf!(k.task_pid))?;
    if child_tgid != child_pid {
        return None;
    }
    let cur = current()?;
    let child_start_ns: u64 = read_kernel(child, conf!(k.task_start_boottime)).unwrap_or(0);
    let buf = scratch()?;
    fill_header(buf, EventKind::Fork as u32, &cur);
    let body = ForkBody {
        child_pid: child_tgid,
        _pad: 0,
        child_start_ns,
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<ForkBody>().write_unaligned(body) };
    emit(buf, HDR + BODY, EventKind::Fork as u32);
    Some(())
}

/// `sched/sched_process_exit`: fires for every exiting thread. Uses the tracefs field
/// `group_dead` (when the kernel has it) to report only the end of the whole process; the exit
/// status is task->exit_code (BTF offset), set by do_exit before this tracepoint.
#[tracepoint]
pub(crate) fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Option<()> {
    const BODY: usize = core::mem::size_of::<ExitBody>();
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() };
    // A thread killed inside a hooked syscall never reaches sys_exit: forget its arguments.
    let _ = STASH.remove(pid_tgid);
    let gd_off = conf!(tp.exit_group_dead);
    let group_dead = if gd_off == NO_OFFSET {
        (pid_tgid >> 32) as u32 == pid_tgid as u32
    } else {
        // SAFETY: offset read from this tracepoint's format.
        unsafe { ctx.read_at::<u8>(gd_off as usize) }.unwrap_or(0) != 0
    };
    if !group_dead {
        return None;
    }
    let cur = current()?;
    let buf = scratch()?;
    fill_header(buf, EventKind::Exit as u32, &cur);
    let code: Option<i32> = read_kernel(task(), conf!(k.task_exit_code));
    let body = ExitBody {
        exit_code: code.unwrap_or(0),
        code_known: code.is_some() as u32,
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<ExitBody>().write_unaligned(body) };
    emit(buf, HDR + BODY, EventKind::Exit as u32);
    Some(())
}
