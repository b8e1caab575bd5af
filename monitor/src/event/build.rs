//! Building an [`Event`] from a decoded record: the process table is updated by lifecycle
//! records first, then asked for the process details and ancestry.
use std::sync::Arc;

use monitor_common::{EXEC_ARGS_TRUNCATED, EXEC_FILENAME_TRUNCATED, Header};

use super::{
    Attribution, Detail, Event, ExecDetail, ExitDetail, ForkDetail, NodeContext, ProcessView,
    detail::{PathBase, SyscallRecord, signal_detail, syscall_detail, tcp_detail},
    node::rfc3339,
};
use crate::{
    capture::decode::{Payload, RawEvent},
    process::{ANCESTRY_DEPTH, ProcSource, ProcessTable},
};

/// Slots of the command-name cache (a power of two).
const COMM_SLOTS: usize = 64;

/// One cache slot: a command name's header bytes and its text.
type CommSlot = Option<([u8; 16], Arc<str>)>;

thread_local! {
    /// Command names seen lately, by their 16 header bytes, direct-mapped: a node runs few
    /// distinct names and every event carries one, so an event shares the string of an earlier
    /// one instead of validating and copying its own.
    static COMMS: std::cell::RefCell<[CommSlot; COMM_SLOTS]> =
        const { std::cell::RefCell::new([const { None }; COMM_SLOTS]) };
}

fn comm(h: &Header) -> Arc<str> {
    let key = h.comm;
    let [a, b] = [0, 8].map(|at| {
        u64::from_le_bytes(std::array::from_fn(|i| {
            key.get(at + i).copied().unwrap_or(0)
        }))
    });
    // The top six bits of a multiplicative hash: 0..64.
    let slot = ((a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize;
    COMMS
        .with_borrow_mut(|cache| {
            let entry = cache.get_mut(slot)?;
            if let Some((k, s)) = entry
                && *k == key
            {
                return Some(s.clone());
            }
            let end = key.iter().position(|&c| c == 0).unwrap_or(key.len());
            let s: Arc<str> =
                crate::capture::decode::lossy(key.get(..end).unwrap_or_default()).into();
            *entry = Some((key, s.clone()));
            Some(s)
        })
        .unwrap_or_default()
}

/// Updates the process table with `ev` and returns the event, attributed to the host until
/// `enrich` says otherwise; `None` for the agent's internal records.
pub(crate) fn build<S: ProcSource>(
    ev: &RawEvent,
    table: &mut ProcessTable<S>,
    node: &NodeContext,
) -> Option<Event> {
    let h = &ev.header;
    if ev.kind.is_internal() {
        return None;
    }
    // Lifecycle events update the table first, so that an exec shows the new image.
    born(ev, table);
    let process = process_view(h, table);
    let detail = detail_of(ev, &process, table)?;
    // The working directory follows chdir and fchdir, so later relative paths resolve.
    if let Detail::File(f) = &detail
        && ev.kind == monitor_common::EventKind::Chdir
        && f.call.result == 0
        && f.call.via.is_none()
        && let Some(dir) = &f.path
    {
        table.on_chdir(h.pid, h.start_ns, dir);
    }
    if let Payload::Exit(_) = ev.payload {
        table.on_exit(h.pid, h.start_ns, std::time::Instant::now());
    }
    Some(Event {
        time: rfc3339(i128::from(h.ktime_ns) + node.boot_to_wall_ns),
        kind: ev.kind.name(),
        node: node.node.clone(),
        process,
        cgroup_id: h.cgroup_id,
        ticks: table.ticks(h.ktime_ns),
        folded: match &ev.payload {
            Payload::Syscall { body, .. } => u64::from(body.folded),
            _ => 0,
        },
        attribution: Attribution::host(),
        detail,
    })
}

/// What the process table learns from a record that another pipeline worker turns into an
/// event (see [`crate::capture::route`]): the same table changes as [`build`] makes, no event.
pub(crate) fn learn<S: ProcSource>(ev: &RawEvent, table: &mut ProcessTable<S>, node: &NodeContext) {
    let h = &ev.header;
    born(ev, table);
    match &ev.payload {
        Payload::Exit(_) => table.on_exit(h.pid, h.start_ns, std::time::Instant::now()),
        // The directory is resolved as the owner resolves it.
        _ if ev.kind == monitor_common::EventKind::Chdir => {
            let _ = build(ev, table, node);
        }
        _ => {}
    }
}

/// What an exec or a fork tells the table (a new image, a new process).
fn born<S: ProcSource>(ev: &RawEvent, table: &mut ProcessTable<S>) {
    let h = &ev.header;
    match &ev.payload {
        Payload::Exec {
            body,
            filename,
            argv,
        } => table.on_exec(h.pid, h.start_ns, body.ppid, filename, argv.clone()),
        Payload::Fork(f) => table.on_fork(h.pid, h.start_ns, f.child_pid, f.child_start_ns),
        _ => {}
    }
}

/// What the table knows of the record's process, with the header's credentials.
fn process_view<S: ProcSource>(h: &Header, table: &mut ProcessTable<S>) -> ProcessView {
    let p = table.get_or_load(h.pid, h.start_ns);
    let mut process = ProcessView {
        pid: h.pid,
        tid: h.tid,
        id: p.id.clone(),
        ppid: p.ppid,
        comm: comm(h),
        exe: p.exe.clone(),
        command_line: p.command_line.clone(),
        args: p.args.clone(),
        cwd: p.cwd.clone(),
        uid: h.uid,
        gid: h.gid,
        euid: h.euid,
        egid: h.egid,
        source: p.source,
        ancestors: Vec::new(),
        start_ticks: p.start_ticks,
    };
    process.ancestors = table.ancestry(h.pid, ANCESTRY_DEPTH);
    process
}

fn detail_of<S: ProcSource>(
    ev: &RawEvent,
    process: &ProcessView,
    table: &ProcessTable<S>,
) -> Option<Detail> {
    Some(match &ev.payload {
        Payload::Exec {
            body,
            filename,
            argv,
        } => Detail::Exec(ExecDetail {
            // Relative filenames (`./x`) were resolved against the cwd by the table; a
            // re-execution through /proc/self/exe stays as the kernel saw it (its program is
            // named by argv[0], see `exec.name`).
            filename: if filename.starts_with('/') {
                filename.clone()
            } else {
                process.exe.to_string()
            },
            args: argv.clone(),
            args_truncated: body.flags & EXEC_ARGS_TRUNCATED != 0,
            filename_truncated: body.flags & EXEC_FILENAME_TRUNCATED != 0,
        }),
        Payload::Fork(f) => Detail::Fork(ForkDetail {
            child_pid: f.child_pid,
            child_id: table.id_of(f.child_pid, table.ticks(f.child_start_ns)),
        }),
        Payload::Exit(x) => {
            let known = x.code_known != 0;
            let sig = x.exit_code & 0x7f;
            Detail::Exit(ExitDetail {
                code: (known && sig == 0).then_some((x.exit_code >> 8) & 0xff),
                signal: (known && sig != 0).then_some(sig),
                status: known.then_some(x.exit_code),
            })
        }
        Payload::TcpState(t) => Detail::Tcp(tcp_detail(t)),
        Payload::Signal(b) => Detail::Signal(signal_detail(b)),
        Payload::Cgroup { .. } => return None,
        Payload::Syscall {
            body,
            call,
            str1,
            str2,
            data,
        } => {
            let record = SyscallRecord {
                kind: ev.kind,
                body,
                call: *call,
                s1: str1.as_deref(),
                s2: str2.as_deref(),
                data,
            };
            let pid = process.pid;
            let dir_fd = |fd: i64| table.source().fd_path(pid, fd);
            let base = PathBase {
                cwd: process.cwd.as_deref(),
                dir_fd: &dir_fd,
            };
            syscall_detail(&record, &base)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8]) -> Header {
        let mut h = Header::default();
        h.comm[..name.len()].copy_from_slice(name);
        h
    }

    /// The cached name is the header's text up to its NUL, whatever was cached before in the
    /// same slot; the same bytes share one string.
    #[test]
    fn command_names_are_the_headers_text_shared() {
        let names: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("worker-{i}").into_bytes())
            .chain([
                b"sixteen-bytes-ab".to_vec(),
                b"bad\xffname".to_vec(),
                Vec::new(),
            ])
            .collect();
        for round in 0..2 {
            for n in &names {
                let got = comm(&header(n));
                assert_eq!(&*got, &*String::from_utf8_lossy(n), "round {round}");
            }
        }
        let a = comm(&header(b"nginx"));
        assert!(Arc::ptr_eq(&a, &comm(&header(b"nginx"))));
        // Bytes after the NUL are part of the key: never a wrong name.
        let mut h = header(b"sh");
        h.comm[5] = b'x';
        assert_eq!(&*comm(&h), "sh");
    }
}
