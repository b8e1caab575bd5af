//! Which pipeline worker owns a record.
//!
//! Records are sharded by cgroup, in the kernel: each worker reads its own ring buffer, and the
//! programs write a record to the ring of the worker that owns its cgroup
//! ([`monitor_common::shard`]). The events of a process, and of every process of a container,
//! so stay in order on one worker, which owns their attribution, their held events and their
//! sequence order. The records the process table learns from (fork, exec, exit, chdir) go to
//! every ring ([`monitor_common::replicated`]): an event's ancestry crosses cgroups (a
//! container's processes descend from the runtime's, on the host), so every worker's table
//! follows every process, and only the owner turns the record into an event.
use monitor_common::{CgroupBody, EventKind, Header};

use super::decode::{Payload, RawEvent};

/// Where a record goes, read from its header (and a cgroup record's body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peek {
    /// None: not a record the decoder will take (it says why on the owner, worker 0).
    pub(crate) kind: Option<EventKind>,
    /// The cgroup the record belongs to: for a cgroup's creation or removal the cgroup itself
    /// (its worker attributes that cgroup's events), else the task's.
    pub(crate) cgroup: u64,
}

fn read<T: Copy>(buf: &[u8], off: usize) -> Option<T> {
    if buf.len() < off + size_of::<T>() {
        return None;
    }
    // SAFETY: bounds checked above; T is a repr(C) integer-only type, valid for any bytes.
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast::<T>()) })
}

/// Reads where `rec` goes; never fails (a record too short to say goes to worker 0, whose
/// decoder counts it).
pub(crate) fn peek(rec: &[u8]) -> Peek {
    let Some(h) = read::<Header>(rec, 0) else {
        return Peek {
            kind: None,
            cgroup: 0,
        };
    };
    let kind = EventKind::from_u32(h.kind);
    // As the kernel program does when it picks the ring (a cgroup record too short for its
    // body falls back to the task's cgroup; the decoder rejects it anyway).
    let body = read::<CgroupBody>(rec, size_of::<Header>()).map_or(h.cgroup_id, |b| b.id);
    Peek {
        kind,
        cgroup: monitor_common::record_cgroup(h.kind, h.cgroup_id, body),
    }
}

impl Peek {
    /// Where a decoded record goes: the same answer as [`peek`] on its bytes.
    pub(crate) fn of(ev: &RawEvent) -> Peek {
        Peek {
            kind: Some(ev.kind),
            cgroup: match &ev.payload {
                Payload::Cgroup { body, .. } => body.id,
                _ => ev.header.cgroup_id,
            },
        }
    }

    /// The worker, of `workers`, that owns the record: the one whose ring the kernel wrote it
    /// to (a copy of a replicated record also reaches the others).
    pub(crate) fn owner(&self, workers: usize) -> usize {
        match self.kind {
            None => 0,
            Some(_) => monitor_common::shard(self.cgroup, workers as u32) as usize,
        }
    }

    /// Whether every worker's process table sees the record.
    pub(crate) fn replicated(&self) -> bool {
        self.kind
            .is_some_and(|k| monitor_common::replicated(k as u32))
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{ExitBody, ForkBody, Syscall, SyscallBody};

    use super::*;
    use crate::capture::decode::{decode, encode::record};

    fn header(kind: EventKind, pid: u32, cgroup_id: u64) -> Header {
        Header {
            kind: kind as u32,
            pid,
            tid: pid,
            cgroup_id,
            ..Header::default()
        }
    }

    fn open(pid: u32, cgroup: u64, seq: u64) -> Vec<u8> {
        let path = format!("/f/{seq}");
        let body = SyscallBody {
            call: Syscall::Openat as u16,
            str1_len: path.len() as u16,
            ..SyscallBody::default()
        };
        record(
            header(EventKind::Open, pid, cgroup),
            &body,
            &[path.as_bytes(), &[], &[]],
        )
    }

    /// What the kernel programs write to each ring (`submit` in monitor-ebpf): a record to its
    /// cgroup's ring, a replicated one to every ring, read from the record's own bytes.
    fn kernel_split(recs: &[Vec<u8>], rings: u32) -> Vec<Vec<RawEvent>> {
        let mut out = vec![Vec::new(); rings as usize];
        for r in recs {
            let h = read::<Header>(r, 0).expect("header");
            let body = read::<CgroupBody>(r, size_of::<Header>()).map_or(0, |b| b.id);
            let own = monitor_common::shard(
                monitor_common::record_cgroup(h.kind, h.cgroup_id, body),
                rings,
            );
            for (i, ring) in out.iter_mut().enumerate() {
                if i as u32 == own || monitor_common::replicated(h.kind) {
                    ring.push(decode(r).expect("decodes"));
                }
            }
        }
        out
    }

    fn owner(ev: &RawEvent, workers: usize) -> usize {
        Peek::of(ev).owner(workers)
    }

    #[test]
    fn one_worker_owns_everything() {
        for i in 0..100u64 {
            let r = open((i % 7) as u32, i * 7919, i);
            assert_eq!(peek(&r).owner(1), 0);
        }
    }

    #[test]
    fn each_worker_owns_what_the_kernel_wrote_to_its_ring_and_lifecycle_reaches_all() {
        let workers = 3;
        let mut recs = Vec::new();
        for i in 0..3000u64 {
            let cgroup = 1000 + i % 40;
            let pid = (cgroup * 10 + i % 3) as u32;
            recs.push(open(pid, cgroup, i));
            if i % 10 == 0 {
                let fork = ForkBody {
                    child_pid: pid + 1,
                    _pad: 0,
                    child_start_ns: i,
                };
                recs.push(record(header(EventKind::Fork, pid, cgroup), &fork, &[]));
                let exit = ExitBody::default();
                recs.push(record(header(EventKind::Exit, pid + 1, cgroup), &exit, &[]));
            }
        }
        // A cgroup's creation goes where its tasks' events go, not to its creator's worker.
        let mkdir = record(
            header(EventKind::CgroupMkdir, 1, 1),
            &CgroupBody {
                id: 1005,
                ..CgroupBody::default()
            },
            &[b"kubepods/x"],
        );
        assert_eq!(
            peek(&mkdir).owner(workers),
            peek(&open(1, 1005, 0)).owner(workers)
        );
        let decoded = decode(&mkdir).expect("decodes");
        assert_eq!(Peek::of(&decoded), peek(&mkdir));
        recs.push(mkdir);
        // A record too short for a header goes to worker 0, whose decoder reports it.
        assert_eq!(peek(&[1, 2, 3]).owner(workers), 0);
        let evs: Vec<RawEvent> = recs.iter().map(|r| decode(r).expect("decodes")).collect();
        let life = |e: &&RawEvent| matches!(e.kind, EventKind::Fork | EventKind::Exit);
        let rings = kernel_split(&recs, workers as u32);
        for (w, ring) in rings.iter().enumerate() {
            // Owned events: exactly the cgroups hashed here, in their original order.
            let owned: Vec<&RawEvent> = ring.iter().filter(|e| owner(e, workers) == w).collect();
            let want: Vec<&RawEvent> = evs.iter().filter(|e| owner(e, workers) == w).collect();
            assert!(want.len() > 300, "40 cgroups spread over every worker");
            assert_eq!(owned, want);
            // Lifecycle: every worker sees all of it, in order.
            let got_life: Vec<&RawEvent> = ring.iter().filter(life).collect();
            let all_life: Vec<&RawEvent> = evs.iter().filter(life).collect();
            assert_eq!(got_life, all_life);
            // Nothing else of another worker's.
            assert!(ring.iter().all(|e| owner(e, workers) == w || life(&e)));
            for e in ring {
                assert_eq!(Peek::of(e).replicated(), life(&e), "{:?}", e.kind);
            }
        }
    }

    #[test]
    fn a_broken_replicated_record_is_counted_once() {
        let workers = 3;
        let fork = ForkBody {
            child_pid: 2,
            _pad: 0,
            child_start_ns: 1,
        };
        let whole = record(header(EventKind::Fork, 1, 77), &fork, &[]);
        let cut = whole.get(..size_of::<Header>() + 4).expect("long enough");
        let metrics = crate::telemetry::Metrics::new();
        // Every ring got a copy; each worker decodes its own.
        for w in 0..workers {
            assert!(crate::capture::decode_counted(cut, &metrics, w, workers).is_none());
        }
        use prometheus::core::Collector as _;
        let counted: u64 = metrics
            .decode_errors
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum();
        assert_eq!(counted, 1, "counted by its owner only");
    }
}
