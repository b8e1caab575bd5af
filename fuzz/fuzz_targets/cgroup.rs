//! cgroup paths and /proc/<pid>/cgroup files: any text parses or is rejected, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::enrich::cgroup::{container_of_process, parse, parse_proc_cgroup};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(&text);
    let _ = container_of_process(&parse_proc_cgroup(&text));
});
