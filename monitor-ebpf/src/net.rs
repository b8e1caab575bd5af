//! TCP state changes from `sock/inet_sock_set_state`.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{EventKind, Header, NO_OFFSET, TcpStateBody, interest};

use crate::{
    event::{count_filtered, current, emit, fill_header, scratch},
    maps::{INTEREST, conf},
};

const HDR: usize = core::mem::size_of::<Header>();
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// `sock/inet_sock_set_state`: uses `skaddr`, `oldstate`, `newstate`, `sport`, `dport`,
/// `family`, `protocol`, `saddr`, `daddr`, `saddr_v6`, `daddr_v6` (tracefs offsets). Only
/// transitions into the states the agent asks for (`INTEREST[SLOT_TCP_STATES]`, derived from the
/// loaded rules and baselines) are reported; the others are counted as filtered. Transitions driven by
/// packets run in softirq context, where the current task is not the socket's owner; those
/// records carry whatever task was interrupted and are marked so by user space.
#[tracepoint]
pub(crate) fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_state(&ctx);
    0
}

#[inline(always)]
fn field<T: Copy + Default>(ctx: &TracePointContext, off: u32) -> T {
    if off == NO_OFFSET {
        return T::default();
    }
    // SAFETY: offset read from this tracepoint's format.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

fn try_state(ctx: &TracePointContext) -> Option<()> {
    const BODY: usize = core::mem::size_of::<TcpStateBody>();
    if conf!(tp.sk_newstate) == NO_OFFSET {
        return None;
    }
    let newstate: i32 = field(ctx, conf!(tp.sk_newstate));
    let mask = INTEREST
        .get(interest::SLOT_TCP_STATES)
        .copied()
        .unwrap_or(u32::MAX);
    if !(0..32).contains(&newstate) || (mask >> newstate) & 1 == 0 {
        count_filtered(EventKind::TcpState as u32);
        return None;
    }
    let cur = current()?;
    let buf = scratch()?;
    fill_header(buf, EventKind::TcpState as u32, &cur);
    let family: u16 = field(ctx, conf!(tp.sk_family));
    let mut body = TcpStateBody {
        skaddr: field(ctx, conf!(tp.sk_skaddr)),
        oldstate: field::<i32>(ctx, conf!(tp.sk_oldstate)) as u32,
        newstate: newstate as u32,
        sport: field(ctx, conf!(tp.sk_sport)),
        dport: field(ctx, conf!(tp.sk_dport)),
        family,
        protocol: field(ctx, conf!(tp.sk_protocol)),
        saddr: [0; 16],
        daddr: [0; 16],
    };
    if family == AF_INET {
        let s: [u8; 4] = field(ctx, conf!(tp.sk_saddr));
        let d: [u8; 4] = field(ctx, conf!(tp.sk_daddr));
        body.saddr[..4].copy_from_slice(&s);
        body.daddr[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        body.saddr = field(ctx, conf!(tp.sk_saddr_v6));
        body.daddr = field(ctx, conf!(tp.sk_daddr_v6));
    }
    // SAFETY: body slot right after the header inside the scratch buffer.
    unsafe { buf.add(HDR).cast::<TcpStateBody>().write_unaligned(body) };
    emit(buf, HDR + BODY, EventKind::TcpState as u32);
    Some(())
}
