//! Kernel programs of the monitor. Only tracepoints and raw tracepoints are used: they are the
//! hook types every supported kernel offers (see ../shared/TOOLCHAIN.md). Field offsets come from
//! the running kernel (tracefs formats and BTF) through the load-time `CONFIG` global.
//!
//! The programs exist only for the BPF target. Built for the host (as `cargo clippy --workspace`
//! does), the crate is an empty program, so the workspace checks as one.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// BPF atomic add for exact per-CPU counters: core has no BPF lowering of fetch_add.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod cgroup;
#[cfg(target_arch = "bpf")]
mod event;
#[cfg(target_arch = "bpf")]
mod floor;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod net;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod signal;
#[cfg(target_arch = "bpf")]
mod syscall;
#[cfg(target_arch = "bpf")]
mod uring;

/// Not a program for this target: the kernel programs are built for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
