//! Maps shared by all programs. Names are the constants of monitor-common.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    AGENT_SLOTS, Config, DROPS_BY_CGROUP_ENTRIES, FOLD_ENTRIES, FoldKey, FoldState, KIND_SLOTS,
    KindStats, MAX_SYSCALL_NR, MISC_SLOTS, OPEN_PATHS_ENTRIES, PathKey, SCRATCH_SIZE, Stash,
    SyscallDesc, interest,
};

/// Event records: every record with one pipeline worker, else worker 0's (see
/// `monitor_common::RING_MAPS`). The agent sizes the rings at load time; those beyond the
/// workers it runs keep one page.
#[map(name = "EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);
#[map(name = "EVENTS_1")]
pub(crate) static EVENTS_1: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_2")]
pub(crate) static EVENTS_2: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_3")]
pub(crate) static EVENTS_3: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_4")]
pub(crate) static EVENTS_4: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_5")]
pub(crate) static EVENTS_5: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_6")]
pub(crate) static EVENTS_6: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map(name = "EVENTS_7")]
pub(crate) static EVENTS_7: RingBuf = RingBuf::with_byte_size(4096, 0);

/// The ring of worker `i` (worker 7's for any larger number).
#[inline(always)]
pub(crate) fn ring(i: u32) -> &'static RingBuf {
    match i {
        0 => &EVENTS,
        1 => &EVENTS_1,
        2 => &EVENTS_2,
        3 => &EVENTS_3,
        4 => &EVENTS_4,
        5 => &EVENTS_5,
        6 => &EVENTS_6,
        _ => &EVENTS_7,
    }
}

#[map(name = "STATS")]
pub(crate) static STATS: PerCpuArray<KindStats> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

#[map(name = "MISC")]
pub(crate) static MISC: PerCpuArray<u64> = PerCpuArray::with_max_entries(MISC_SLOTS, 0);

#[map(name = "SYSCALLS")]
pub(crate) static SYSCALLS: Array<SyscallDesc> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// One entry per thread inside a hooked syscall; entries of exiting threads are removed.
#[map(name = "STASH")]
pub(crate) static STASH: HashMap<u64, Stash> = HashMap::with_max_entries(32768, 0);

/// Written by whichever agent runs the programs now: its tgid, and whether capture is paused.
#[map(name = "AGENT")]
pub(crate) static AGENT: Array<u32> = Array::with_max_entries(AGENT_SLOTS, 0);

#[map(name = "CGROUP_FILTER")]
pub(crate) static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Ring-buffer drops per cgroup, so alerts can say which container lost events.
#[map(name = "DROPS_BY_CGROUP")]
pub(crate) static DROPS_BY_CGROUP: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(DROPS_BY_CGROUP_ENTRIES, 0);

/// Identical syscall records folded within the fold window, per record key.
#[map(name = "FOLD")]
pub(crate) static FOLD: LruHashMap<FoldKey, FoldState> =
    LruHashMap::with_max_entries(FOLD_ENTRIES, 0);

/// Path prefixes the loaded rules and baselines need opens of, with the accesses wanted
/// (`interest::PATH_READ | PATH_WRITE`, already merged with those of shorter prefixes).
#[map(name = "OPEN_PATHS")]
pub(crate) static OPEN_PATHS: LpmTrie<[u8; interest::PATH_KEY_LEN], u8> =
    LpmTrie::with_max_entries(OPEN_PATHS_ENTRIES, 0);

/// Interest that is not per syscall (`interest::SLOT_*`), written by the agent.
#[map(name = "INTEREST")]
pub(crate) static INTEREST: Array<u32> = Array::with_max_entries(interest::SLOTS, 0);

/// The path of an open is compared from here: a key is too large for the stack.
#[map(name = "PATH_KEY")]
pub(crate) static PATH_KEY: PerCpuArray<PathKey> = PerCpuArray::with_max_entries(1, 0);

/// Records are built here: too large for the 512-byte stack.
#[map(name = "SCRATCH")]
pub(crate) static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

/// Overridden by the agent at load time; read only through `conf!`.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::UNSET;

/// Reads a field of the load-time configuration without letting the compiler fold the default.
macro_rules! conf {
    ($($f:ident).+) => {
        // SAFETY: CONFIG is a plain static of integers; the volatile read keeps the load.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::CONFIG.$($f).+) }
    };
}
pub(crate) use conf;
