//! Configuration files, YAML and TOML: any text gives a validated configuration or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        monitor::fuzzing::config(text, first & 1 == 1);
    }
});
