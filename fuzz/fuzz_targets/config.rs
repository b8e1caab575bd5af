//! Configuration files, YAML and TOML: any text gives a validated configuration or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::config::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match Config::from_text(text, first & 1 == 1) {
        Ok(c) => {
            let _ = c.to_yaml();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
