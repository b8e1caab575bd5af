//! `monitor`: the command-line entry point. It parses the arguments and hands over to the
//! library's `cli` room, which runs the agent or a subcommand.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    monitor::cli::run(monitor::cli::Cli::parse())
}
