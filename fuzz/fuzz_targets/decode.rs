//! Kernel records: any bytes must decode to an event or a typed error, and a decoded event must
//! enrich (process table, JSON; cgroup records: path parsing) without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use monitor::{
    capture::decode::decode,
    event::{NodeContext, enrich},
    process::{ProcessTable, procfs::Procfs},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = decode(data) {
        // cgroup records carry a kernel path the attribution parses.
        if let monitor::capture::decode::Payload::Cgroup { path, .. } = &ev.payload {
            let _ = monitor::enrich::cgroup::parse(path);
        }
        // A /proc that does not exist: the table learns only from the records.
        let mut table = ProcessTable::new(
            Procfs {
                root: "/nonexistent-proc".into(),
            },
            "boot".into(),
            100,
        );
        let node = NodeContext {
            node: "fuzz".into(),
            boot_to_wall_ns: 0,
        };
        let e = enrich(&ev, &mut table, &node);
        let _ = serde_json::to_vec(&e);
    }
});
