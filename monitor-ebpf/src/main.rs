//! Kernel programs of the monitor. Only tracepoints and raw tracepoints are used: they are the
//! hook types every supported kernel offers (see ../shared/TOOLCHAIN.md). Field offsets come from
//! the running kernel (tracefs formats and BTF) through the load-time `CONFIG` global.
#![no_std]
#![no_main]
// BPF atomic add for exact per-CPU counters: core has no BPF lowering of fetch_add.
#![feature(asm_experimental_arch)]

mod cgroup;
mod event;
mod maps;
mod net;
mod process;
mod syscall;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
