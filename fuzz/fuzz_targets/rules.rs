//! Rule files: any text must load into a rule set or a list of errors with file and line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        monitor::fuzzing::rules(text);
    }
});
