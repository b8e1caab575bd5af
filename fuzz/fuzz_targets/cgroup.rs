//! cgroup paths and /proc/<pid>/cgroup files: any text parses or is rejected, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    monitor::fuzzing::cgroup(&String::from_utf8_lossy(data));
});
