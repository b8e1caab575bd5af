//! `monitor`: the command-line entry point. It parses the arguments and hands over to the
//! library's `cli` room, which runs the agent or a subcommand.
use clap::Parser as _;

/// mimalloc: per-thread heaps (the pipeline's workers allocate and free without contending)
/// and free pages returned to the system on their own after a storm.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    monitor::cli::tune_heap();
    monitor::cli::run(monitor::cli::Cli::parse())
}
