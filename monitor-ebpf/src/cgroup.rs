//! cgroup2 directory creation and removal: the id and path of every cgroup, so that the agent
//! can tell which container a task ran in even when the task and its cgroup are gone before the
//! agent looks (containers that live for milliseconds), and forget it once it is gone.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{CGROUP_PATH_TRUNCATED, CgroupBody, EventKind, Header, NO_OFFSET};

use crate::{
    event::{Current, emit, fill_header, read_data_loc_str, scratch},
    maps::conf,
};

const HDR: usize = core::mem::size_of::<Header>();

/// `cgroup/cgroup_mkdir`: fields `root` (hierarchy id), `id` and `__data_loc char[] path`.
/// Only the cgroup2 hierarchy (id 0) is reported, whoever created the directory: the agent's
/// cgroup filter selects the events of tasks, not the directories their runtime creates.
#[tracepoint]
pub(crate) fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup(&ctx, EventKind::CgroupMkdir as u32);
    0
}

/// `cgroup/cgroup_rmdir`: same event class and fields as `cgroup_mkdir`.
#[tracepoint]
pub(crate) fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup(&ctx, EventKind::CgroupRmdir as u32);
    0
}

#[inline(always)]
fn try_cgroup(ctx: &TracePointContext, kind: u32) -> Option<()> {
    const BODY: usize = core::mem::size_of::<CgroupBody>();
    let (root_off, id_off, path_off) = (conf!(tp.cg_root), conf!(tp.cg_id), conf!(tp.cg_path));
    if root_off == NO_OFFSET || id_off == NO_OFFSET || path_off == NO_OFFSET {
        return None;
    }
    // SAFETY: offsets read from this tracepoint's format.
    let root: i32 = unsafe { ctx.read_at::<i32>(root_off as usize) }.ok()?;
    if root != 0 {
        return None;
    }
    // SAFETY: as above.
    let id: u64 = unsafe { ctx.read_at::<u64>(id_off as usize) }.ok()?;
    let buf = scratch()?;
    fill_header(buf, kind, &Current::unfiltered());
    // SAFETY: buf has room for header + body + MAX_PATH bytes.
    let tail = unsafe { buf.add(HDR + BODY) };
    let (len, cut) = read_data_loc_str(ctx, path_off, tail);
    let body = CgroupBody {
        id,
        path_len: len as u32,
        flags: if cut { CGROUP_PATH_TRUNCATED } else { 0 },
    };
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<CgroupBody>().write_unaligned(body) };
    emit(buf, HDR + BODY + len, kind);
    Some(())
}
