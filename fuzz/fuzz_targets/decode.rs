//! Kernel records: any bytes must decode to an event or a typed error, and a decoded event must
//! build (process table, JSON; cgroup records: path parsing) without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| monitor::fuzzing::record(data));
