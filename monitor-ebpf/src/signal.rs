//! Signals sent to the agent (`signal/signal_generate`): who stopped, paused or killed it. The
//! record is written and the reader woken at once, since the agent may be gone a moment later;
//! if it is, the next agent to adopt the pinned programs reads it.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{EventKind, Header, NO_OFFSET, SignalBody};

use crate::{
    event::{Current, agent_tgid, emit_now, fill_header, scratch},
    maps::conf,
};

const HDR: usize = core::mem::size_of::<Header>();
/// Signals that carry no intent against the agent: a child's state, urgent socket data, a
/// terminal size change.
const BENIGN: [i32; 3] = [17, 23, 28];

#[tracepoint]
pub(crate) fn signal_generate(ctx: TracePointContext) -> u32 {
    let _ = try_signal(&ctx);
    0
}

#[inline(always)]
fn read_i32(ctx: &TracePointContext, off: u32) -> Option<i32> {
    if off == NO_OFFSET {
        return None;
    }
    // SAFETY: offsets read from this tracepoint's format.
    unsafe { ctx.read_at::<i32>(off as usize) }.ok()
}

#[inline(always)]
fn try_signal(ctx: &TracePointContext) -> Option<()> {
    let agent = agent_tgid();
    if agent == 0 {
        return None;
    }
    let target = read_i32(ctx, conf!(tp.sig_pid))? as u32;
    if target != agent {
        return None;
    }
    let cur = Current::unfiltered();
    // The agent's own signals (a timer, SIGPIPE on a closed socket) are not news.
    if cur.tgid() == agent {
        return None;
    }
    let sig = read_i32(ctx, conf!(tp.sig_sig))?;
    if BENIGN.contains(&sig) {
        return None;
    }
    let body = SignalBody {
        sig,
        code: read_i32(ctx, conf!(tp.sig_code)).unwrap_or(0),
        target_pid: target,
        group: read_i32(ctx, conf!(tp.sig_group)).unwrap_or(0) as u32,
        result: read_i32(ctx, conf!(tp.sig_result)).unwrap_or(0),
        _pad: 0,
    };
    let buf = scratch()?;
    let kind = EventKind::Signal as u32;
    fill_header(buf, kind, &cur);
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<SignalBody>().write_unaligned(body) };
    emit_now(buf, HDR + core::mem::size_of::<SignalBody>(), kind);
    Some(())
}
