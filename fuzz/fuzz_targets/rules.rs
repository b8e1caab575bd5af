//! Rule files: any text must load into a rule set or a list of errors with file and line; a
//! loaded set must compile and evaluate an event without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::rules::{RuleSource, load};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [RuleSource::Text {
        name: "fuzz.yaml".into(),
        text: text.into(),
    }];
    match load(&sources) {
        Ok(set) => {
            let _ = set.len();
        }
        Err(errors) => {
            for e in errors {
                let _ = e.to_string();
            }
        }
    }
});
