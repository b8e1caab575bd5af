//! Which pipeline worker a record goes to, and the batches records travel in.
//!
//! Records are sharded by cgroup: the events of a process, and of every process of a container,
//! stay in ring order on one worker, which owns their attribution, their held events and their
//! sequence order. The records the process table learns from (fork, exec, exit, chdir) go to
//! every worker: an event's ancestry crosses cgroups (a container's processes descend from the
//! runtime's, on the host), so every worker's table follows every process, and only the owner
//! turns the record into an event.
//!
//! The reader routes on the record's header alone and copies the bytes into its worker's
//! batch: decoding, and every allocation it makes, happens on the worker that uses it.
use std::sync::{Arc, Mutex, PoisonError};

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
    let cgroup = match kind {
        Some(EventKind::CgroupMkdir | EventKind::CgroupRmdir) => {
            read::<CgroupBody>(rec, size_of::<Header>()).map_or(h.cgroup_id, |b| b.id)
        }
        _ => h.cgroup_id,
    };
    Peek { kind, cgroup }
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

    /// The worker, of `workers`, that owns the record.
    pub(crate) fn owner(&self, workers: usize) -> usize {
        if workers <= 1 || self.kind.is_none() {
            return 0;
        }
        // Fibonacci hashing: consecutive cgroup ids (inode numbers) spread over the workers.
        let h = self.cgroup.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 32) % workers as u64) as usize
    }

    /// Whether every worker's process table must see the record.
    pub(crate) fn replicated(&self) -> bool {
        matches!(
            self.kind,
            Some(EventKind::Fork | EventKind::Exec | EventKind::Exit | EventKind::Chdir)
        )
    }
}

/// Records copied out of the ring into one buffer: what the reader hands a worker.
#[derive(Debug, Default)]
pub(crate) struct RawBatch {
    bytes: Vec<u8>,
    /// Where each record ends in `bytes`.
    ends: Vec<usize>,
}

impl RawBatch {
    /// Room for `records` records of about 128 bytes.
    pub(crate) fn with_capacity(records: usize) -> RawBatch {
        RawBatch {
            bytes: Vec::with_capacity(records * 128),
            ends: Vec::with_capacity(records),
        }
    }

    pub(crate) fn push(&mut self, rec: &[u8]) {
        self.bytes.extend_from_slice(rec);
        self.ends.push(self.bytes.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The records, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().filter_map(move |&end| {
            let r = self.bytes.get(start..end);
            start = end;
            r
        })
    }
}

/// Emptied batches on their way back from the workers to the reader. A fresh batch per hand-off
/// costs the reader an allocation that grows as records come, page faults on the new memory and,
/// for the worker, a free of another thread's memory; the profile put these near a tenth of the
/// pool's samples in the bench, though reusing batches raised no throughput figure measurably
/// on this machine (its run-to-run spread is larger). Reuse also keeps the reader's memory flat.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recycle(Arc<Mutex<Vec<RawBatch>>>);

/// Emptied batches kept for reuse at most (a few per worker is enough for the reader never to
/// allocate; more would hold memory a quiet node does not need).
const RECYCLED: usize = 16;

impl Recycle {
    /// An empty batch: a returned one when there is one.
    pub(crate) fn take(&self) -> RawBatch {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| RawBatch::with_capacity(super::BATCH))
    }

    /// Returns a batch whose records are done with.
    pub(crate) fn give(&self, mut batch: RawBatch) {
        batch.bytes.clear();
        batch.ends.clear();
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < RECYCLED {
            kept.push(batch);
        }
    }
}

/// Appends `rec` to its owner's batch and, when replicated, to every other batch.
pub(crate) fn push(batches: &mut [RawBatch], rec: &[u8]) -> Peek {
    let p = peek(rec);
    let n = batches.len();
    let own = p.owner(n);
    for (i, b) in batches.iter_mut().enumerate() {
        if i == own || (n > 1 && p.replicated()) {
            b.push(rec);
        }
    }
    p
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

    fn split(recs: &[Vec<u8>], workers: usize) -> Vec<Vec<RawEvent>> {
        let mut batches: Vec<RawBatch> = (0..workers).map(|_| RawBatch::default()).collect();
        for r in recs {
            push(&mut batches, r);
        }
        batches
            .iter()
            .map(|b| b.iter().map(|r| decode(r).expect("decodes")).collect())
            .collect()
    }

    fn owner(ev: &RawEvent, workers: usize) -> usize {
        Peek::of(ev).owner(workers)
    }

    #[test]
    fn one_worker_gets_everything_in_order() {
        let recs: Vec<Vec<u8>> = (0..100u64)
            .map(|i| open((i % 7) as u32, i % 5, i))
            .collect();
        let want: Vec<RawEvent> = recs.iter().map(|r| decode(r).expect("decodes")).collect();
        assert_eq!(split(&recs, 1), vec![want]);
    }

    #[test]
    fn a_cgroup_stays_on_one_worker_in_order_and_lifecycle_reaches_all() {
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
        // A record too short for a header goes to worker 0, whose decoder reports it.
        assert_eq!(peek(&[1, 2, 3]).owner(workers), 0);
        let evs: Vec<RawEvent> = recs.iter().map(|r| decode(r).expect("decodes")).collect();
        let life = |e: &&RawEvent| matches!(e.kind, EventKind::Fork | EventKind::Exit);
        let out = split(&recs, workers);
        for (w, batch) in out.iter().enumerate() {
            // Owned events: exactly the cgroups hashed here, in their original order.
            let owned: Vec<&RawEvent> = batch.iter().filter(|e| owner(e, workers) == w).collect();
            let want: Vec<&RawEvent> = evs.iter().filter(|e| owner(e, workers) == w).collect();
            assert!(want.len() > 300, "40 cgroups spread over every worker");
            assert_eq!(owned, want);
            // Lifecycle: every worker sees all of it, in order.
            let got_life: Vec<&RawEvent> = batch.iter().filter(life).collect();
            let all_life: Vec<&RawEvent> = evs.iter().filter(life).collect();
            assert_eq!(got_life, all_life);
            // Nothing else of another worker's.
            assert!(batch.iter().all(|e| owner(e, workers) == w || life(&e)));
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
        let mut batches: Vec<RawBatch> = (0..workers).map(|_| RawBatch::default()).collect();
        push(&mut batches, cut);
        let metrics = crate::telemetry::Metrics::new();
        for (w, b) in batches.iter().enumerate() {
            assert_eq!(b.len(), 1, "a fork reaches every worker");
            for rec in b.iter() {
                assert!(crate::capture::decode_counted(rec, &metrics, w, workers).is_none());
            }
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
