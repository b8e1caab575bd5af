//! The mechanism floor, for the bench only: programs that return at once, attached by the
//! loader's floor mode to exactly the tracepoints the agent uses. What a workload pays with
//! them is the price of the hooks themselves; the agent's price above that is its own work.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

#[tracepoint]
pub(crate) fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub(crate) fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}
