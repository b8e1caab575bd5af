//! What the kernel programs capture: the interest derived from the loaded rules, baselines and
//! trace filters (by `detect::interest` and the agent), compiled into the kernel's maps. The
//! programs check it before they read or save anything, so a call nothing can match costs a
//! map lookup, not a ring-buffer record and a trip through the pipeline.
//!
//! Three maps hold it: the interest byte of each syscall's descriptor (`SYSCALLS`), the path
//! prefixes whose opens are wanted (`OPEN_PATHS`, an LPM trie) and the TCP states reported
//! (`INTEREST`). A change is written in two passes, first the union of the old and the new
//! interest, then the new one, so that at no moment does the kernel capture less than either.
use std::{
    borrow::BorrowMut,
    collections::{BTreeMap, BTreeSet},
};

use aya::maps::{
    Array, MapData,
    lpm_trie::{Key, LpmTrie},
};
use monitor_common::{
    EventKind, INTEREST_MAP, OPEN_PATHS_ENTRIES, OPEN_PATHS_MAP, SYSCALLS_MAP, SyscallDesc,
    interest,
};

use super::{LoadError, Loaded, syscalls::Hook};

/// The bytes of a path the kernel compares.
const KEY_BYTES: usize = interest::PATH_KEY_LEN - 1;

/// Which paths one access of `open` is wanted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathNeed {
    /// Every path.
    All,
    /// Paths that start with one of these (exact paths are their own prefix); empty: none.
    Prefixes(BTreeSet<String>),
}

impl PathNeed {
    /// No path at all.
    pub(crate) fn none() -> PathNeed {
        PathNeed::Prefixes(BTreeSet::new())
    }

    pub(crate) fn is_none(&self) -> bool {
        matches!(self, PathNeed::Prefixes(p) if p.is_empty())
    }

    /// Paths either side wants.
    pub(crate) fn union(&self, other: &PathNeed) -> PathNeed {
        match (self, other) {
            (PathNeed::All, _) | (_, PathNeed::All) => PathNeed::All,
            (PathNeed::Prefixes(a), PathNeed::Prefixes(b)) => {
                PathNeed::Prefixes(a.union(b).cloned().collect())
            }
        }
    }

    /// Paths both sides want: a prefix of one side is kept where the other side has it or a
    /// shorter prefix of it.
    pub(crate) fn intersect(&self, other: &PathNeed) -> PathNeed {
        match (self, other) {
            (PathNeed::All, x) | (x, PathNeed::All) => x.clone(),
            (PathNeed::Prefixes(a), PathNeed::Prefixes(b)) => {
                let covered = |p: &String, by: &BTreeSet<String>| {
                    by.iter().any(|q| p.starts_with(q.as_str()))
                };
                PathNeed::Prefixes(
                    a.iter()
                        .filter(|p| covered(p, b))
                        .chain(b.iter().filter(|p| covered(p, a)))
                        .cloned()
                        .collect(),
                )
            }
        }
    }

    /// The kernel mode of this need.
    fn mode(&self) -> u8 {
        match self {
            PathNeed::All => interest::ALL,
            p if p.is_none() => interest::NONE,
            PathNeed::Prefixes(_) => interest::BY_PATH,
        }
    }

    fn prefixes(&self) -> impl Iterator<Item = &String> {
        match self {
            PathNeed::All => None,
            PathNeed::Prefixes(p) => Some(p.iter()),
        }
        .into_iter()
        .flatten()
    }
}

/// What the kernel programs capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelInterest {
    /// Syscall event kinds captured at all; calls of the others are counted as filtered. (The
    /// process lifecycle, cgroup and signal records are always captured: the process table and
    /// attribution depend on them.)
    pub(crate) kinds: BTreeSet<EventKind>,
    /// Read-only opens wanted.
    pub(crate) open_read: PathNeed,
    /// Opens that write, create, truncate or append wanted.
    pub(crate) open_write: PathNeed,
    /// Bit N set: TCP transitions into state N are reported.
    pub(crate) tcp_states: u32,
}

/// Every TCP state the kernel knows (1 ... 12).
pub(crate) const ALL_TCP_STATES: u32 = 0x1ffe;

impl KernelInterest {
    /// Everything, as `monitor trace` without filters and `capture.interest_filter: false`.
    pub(crate) fn everything() -> KernelInterest {
        KernelInterest {
            kinds: EventKind::ALL.into_iter().collect(),
            open_read: PathNeed::All,
            open_write: PathNeed::All,
            tcp_states: ALL_TCP_STATES,
        }
    }

    /// Nothing but what is always captured.
    pub(crate) fn nothing() -> KernelInterest {
        KernelInterest {
            kinds: BTreeSet::new(),
            open_read: PathNeed::none(),
            open_write: PathNeed::none(),
            tcp_states: 0,
        }
    }

    /// What either side captures.
    pub(crate) fn union(&self, other: &KernelInterest) -> KernelInterest {
        KernelInterest {
            kinds: self.kinds.union(&other.kinds).copied().collect(),
            open_read: self.open_read.union(&other.open_read),
            open_write: self.open_write.union(&other.open_write),
            tcp_states: self.tcp_states | other.tcp_states,
        }
    }

    /// The interest byte of one syscall's descriptor.
    pub(crate) fn desc_byte(&self, kind: EventKind) -> u8 {
        if kind == EventKind::Open {
            let (r, w) = if self.kinds.contains(&EventKind::Open) {
                (self.open_read.mode(), self.open_write.mode())
            } else {
                (interest::NONE, interest::NONE)
            };
            return (r << interest::READ_SHIFT) | (w << interest::WRITE_SHIFT);
        }
        if self.kinds.contains(&kind) {
            interest::ALL
        } else {
            interest::NONE
        }
    }

    /// The bytes that come second in some path prefix of one access (`write` false: read-only
    /// opens), as eight 32-bit words (all set when a prefix is shorter than two bytes): an
    /// absolute path whose second byte is not among them matches no prefix of that access, and
    /// the kernel skips the trie lookup for it. One set per access, so that prefixes only writes
    /// need (`/lib/ld-linux*`) do not send every read-only open of a library to the trie.
    pub(crate) fn second_bytes(&self, write: bool) -> [u32; 8] {
        let mut words = [0u32; 8];
        let need = if write {
            &self.open_write
        } else {
            &self.open_read
        };
        for p in need.prefixes() {
            match p.as_bytes().get(1) {
                Some(b) => words[usize::from(b >> 5)] |= 1 << (b & 31),
                None => return [u32::MAX; 8],
            }
        }
        words
    }

    /// The path map's entries: each prefix (cut to the bytes the kernel compares) with the
    /// accesses wanted below it, merged with those of its shorter prefixes, since the kernel
    /// finds only the longest match.
    pub(crate) fn path_entries(&self) -> BTreeMap<Vec<u8>, u8> {
        let mut own: BTreeMap<Vec<u8>, u8> = BTreeMap::new();
        let open = self.kinds.contains(&EventKind::Open);
        for (need, bit) in [
            (&self.open_read, interest::PATH_READ),
            (&self.open_write, interest::PATH_WRITE),
        ] {
            if !open {
                continue;
            }
            for p in need.prefixes() {
                let b = p.as_bytes();
                *own.entry(b[..b.len().min(KEY_BYTES)].to_vec()).or_default() |= bit;
            }
        }
        own.keys()
            .map(|k| {
                let bits = own
                    .iter()
                    .filter(|(p, _)| k.starts_with(p))
                    .fold(0u8, |acc, (_, b)| acc | b);
                (k.clone(), bits)
            })
            .collect()
    }
}

/// The maps the interest lives in, owned by the agent after loading.
pub(crate) struct InterestMaps {
    syscalls: Array<MapData, SyscallDesc>,
    paths: LpmTrie<MapData, [u8; interest::PATH_KEY_LEN], u8>,
    knobs: Array<MapData, u32>,
    hooks: Vec<Hook>,
    current: Option<KernelInterest>,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map {
        name: name.into(),
        source,
    }
}

type PathTrie<T> = LpmTrie<T, [u8; interest::PATH_KEY_LEN], u8>;

fn key(prefix: &[u8]) -> Key<[u8; interest::PATH_KEY_LEN]> {
    let mut data = [0u8; interest::PATH_KEY_LEN];
    let n = prefix.len().min(KEY_BYTES);
    data[..n].copy_from_slice(&prefix[..n]);
    Key::new((n * 8) as u32, data)
}

/// Each hooked syscall's descriptor, with its interest byte for `x`.
pub(super) fn write_descs<T: BorrowMut<MapData>>(
    table: &mut Array<T, SyscallDesc>,
    hooks: &[Hook],
    x: &KernelInterest,
) -> Result<(), LoadError> {
    for h in hooks {
        let mut d = h.desc;
        if let Some(kind) = EventKind::from_u32(d.kind) {
            d.interest = x.desc_byte(kind);
        }
        table.set(h.nr, d, 0).map_err(map_err(SYSCALLS_MAP))?;
    }
    Ok(())
}

/// The path entries of `x`; with `exact`, entries `x` does not have are removed.
pub(super) fn write_paths<T: BorrowMut<MapData>>(
    trie: &mut PathTrie<T>,
    x: &KernelInterest,
    exact: bool,
) -> Result<(), LoadError> {
    let entries = x.path_entries();
    for (prefix, bits) in &entries {
        trie.insert(&key(prefix), bits, 0)
            .map_err(map_err(OPEN_PATHS_MAP))?;
    }
    if exact {
        let stale: Vec<Key<[u8; interest::PATH_KEY_LEN]>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                let n = ((k.prefix_len() / 8) as usize).min(KEY_BYTES);
                !entries.contains_key(&k.data()[..n])
            })
            .collect();
        for k in stale {
            trie.remove(&k).map_err(map_err(OPEN_PATHS_MAP))?;
        }
    }
    Ok(())
}

/// The settings that are not per syscall.
pub(super) fn write_knobs<T: BorrowMut<MapData>>(
    knobs: &mut Array<T, u32>,
    x: &KernelInterest,
) -> Result<(), LoadError> {
    knobs
        .set(interest::SLOT_TCP_STATES, x.tcp_states, 0)
        .map_err(map_err(INTEREST_MAP))?;
    for (base, write) in [
        (interest::SLOT_SECOND_BYTE_READ, false),
        (interest::SLOT_SECOND_BYTE_WRITE, true),
    ] {
        for (i, w) in (0u32..).zip(x.second_bytes(write)) {
            knobs.set(base + i, w, 0).map_err(map_err(INTEREST_MAP))?;
        }
    }
    Ok(())
}

/// `x` if its path prefixes fit the kernel map; otherwise every path of each access it wants.
fn fitting(x: KernelInterest) -> KernelInterest {
    if x.path_entries().len() <= OPEN_PATHS_ENTRIES as usize {
        return x;
    }
    tracing::warn!(
        limit = OPEN_PATHS_ENTRIES,
        "more path prefixes than the kernel map holds: capturing every open of that access"
    );
    let widen = |p: &PathNeed| {
        if p.is_none() {
            PathNeed::none()
        } else {
            PathNeed::All
        }
    };
    KernelInterest {
        open_read: widen(&x.open_read),
        open_write: widen(&x.open_write),
        ..x
    }
}

fn map<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, LoadError> {
    ebpf.map_mut(name)
        .ok_or_else(|| LoadError::Missing(name.into()))
}

/// Writes `x` into the maps of a freshly loaded object, before anything is attached.
pub(super) fn write_initial(
    ebpf: &mut aya::Ebpf,
    hooks: &[Hook],
    x: &KernelInterest,
) -> Result<KernelInterest, LoadError> {
    let x = fitting(x.clone());
    write_descs(
        &mut Array::try_from(map(ebpf, SYSCALLS_MAP)?).map_err(map_err(SYSCALLS_MAP))?,
        hooks,
        &x,
    )?;
    write_paths(
        &mut LpmTrie::try_from(map(ebpf, OPEN_PATHS_MAP)?).map_err(map_err(OPEN_PATHS_MAP))?,
        &x,
        true,
    )?;
    write_knobs(
        &mut Array::try_from(map(ebpf, INTEREST_MAP)?).map_err(map_err(INTEREST_MAP))?,
        &x,
    )?;
    Ok(x)
}

impl InterestMaps {
    /// Takes the interest maps out of the loaded (or adopted) set. A set this agent loaded
    /// already captures its interest; an adopted one captures what the last agent wrote until
    /// [`InterestMaps::apply`] is called.
    pub(crate) fn take(loaded: &mut Loaded) -> Result<InterestMaps, LoadError> {
        let current = loaded.interest.take();
        let hooks = loaded.hooks.clone();
        let mut take = |name: &'static str| {
            loaded
                .take_map(name)
                .ok_or_else(|| LoadError::Missing(name.into()))
        };
        Ok(InterestMaps {
            syscalls: Array::try_from(take(SYSCALLS_MAP)?).map_err(map_err(SYSCALLS_MAP))?,
            paths: LpmTrie::try_from(take(OPEN_PATHS_MAP)?).map_err(map_err(OPEN_PATHS_MAP))?,
            knobs: Array::try_from(take(INTEREST_MAP)?).map_err(map_err(INTEREST_MAP))?,
            hooks,
            current,
        })
    }

    /// What the kernel captures now, as written by this agent (`None` before an adopted set
    /// has been written).
    pub(crate) fn current(&self) -> Option<&KernelInterest> {
        self.current.as_ref()
    }

    /// Makes the kernel capture `new`: first the union of what it captured and `new`, then
    /// `new` alone, so a change never leaves a moment where less than either is captured.
    pub(crate) fn apply(&mut self, new: KernelInterest) -> Result<(), LoadError> {
        let new = fitting(new);
        if self.current.as_ref() == Some(&new) {
            return Ok(());
        }
        if let Some(old) = &self.current {
            let wider = fitting(old.union(&new));
            self.write(&wider, false)?;
        }
        self.write(&new, true)?;
        self.current = Some(new);
        Ok(())
    }

    fn write(&mut self, x: &KernelInterest, exact: bool) -> Result<(), LoadError> {
        // Paths before descriptors: a descriptor that starts asking for paths finds them.
        write_paths(&mut self.paths, x, false)?;
        write_descs(&mut self.syscalls, &self.hooks, x)?;
        write_knobs(&mut self.knobs, x)?;
        if exact {
            write_paths(&mut self.paths, x, true)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(p: &[&str]) -> PathNeed {
        PathNeed::Prefixes(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn intersection_keeps_the_longer_of_nested_prefixes() {
        let a = prefixes(&["/etc/", "/root/"]);
        let b = prefixes(&["/etc/shadow", "/var/"]);
        assert_eq!(a.intersect(&b), prefixes(&["/etc/shadow"]));
        assert_eq!(a.intersect(&PathNeed::All), a);
        assert!(a.intersect(&PathNeed::none()).is_none());
        assert_eq!(
            a.union(&b),
            prefixes(&["/etc/", "/etc/shadow", "/root/", "/var/"])
        );
        assert_eq!(a.union(&PathNeed::All), PathNeed::All);
    }

    #[test]
    fn path_entries_carry_the_bits_of_their_shorter_prefixes() {
        let i = KernelInterest {
            open_read: prefixes(&["/etc/shadow"]),
            open_write: prefixes(&["/etc/"]),
            ..KernelInterest::everything()
        };
        let e = i.path_entries();
        assert_eq!(e.get(b"/etc/".as_slice()), Some(&interest::PATH_WRITE));
        // A write below /etc/shadow must still be found through the longer entry.
        assert_eq!(
            e.get(b"/etc/shadow".as_slice()),
            Some(&(interest::PATH_WRITE | interest::PATH_READ))
        );
        // No open interest at all: no entries.
        let mut none = i.clone();
        none.kinds.remove(&EventKind::Open);
        assert!(none.path_entries().is_empty());
    }

    #[test]
    fn descriptor_bytes_encode_both_access_modes() {
        let mut i = KernelInterest::nothing();
        assert_eq!(i.desc_byte(EventKind::Connect), interest::NONE);
        assert_eq!(
            i.desc_byte(EventKind::Open),
            interest::NONE | (interest::NONE << interest::WRITE_SHIFT)
        );
        i.kinds.insert(EventKind::Open);
        i.kinds.insert(EventKind::Connect);
        i.open_read = prefixes(&["/etc/shadow"]);
        i.open_write = PathNeed::All;
        assert_eq!(i.desc_byte(EventKind::Connect), interest::ALL);
        assert_eq!(
            i.desc_byte(EventKind::Open),
            interest::BY_PATH | (interest::ALL << interest::WRITE_SHIFT)
        );
        assert_eq!(
            KernelInterest::everything().desc_byte(EventKind::Open),
            interest::ALL
        );
    }

    #[test]
    fn second_bytes_cover_every_prefix() {
        let i = KernelInterest {
            open_read: prefixes(&["/etc/shadow", "/home/"]),
            open_write: prefixes(&["/root/"]),
            ..KernelInterest::everything()
        };
        let (r, w) = (i.second_bytes(false), i.second_bytes(true));
        let has = |w: &[u32; 8], b: u8| w[usize::from(b >> 5)] & (1 << (b & 31)) != 0;
        assert!(has(&r, b'e') && has(&r, b'h') && !has(&r, b'r'));
        assert!(has(&w, b'r') && !has(&w, b'e'));
        for b in [b'u', b'l', b'p', b'd'] {
            assert!(!has(&r, b) && !has(&w, b));
        }
        let short = KernelInterest {
            open_read: prefixes(&["/"]),
            ..i
        };
        assert_eq!(short.second_bytes(false), [u32::MAX; 8]);
        assert_eq!(short.second_bytes(true), w);
    }

    #[test]
    fn long_prefixes_are_cut_to_what_the_kernel_compares() {
        let long = format!("/{}", "a".repeat(400));
        let i = KernelInterest {
            open_read: PathNeed::Prefixes([long].into()),
            ..KernelInterest::everything()
        };
        let e = i.path_entries();
        assert_eq!(e.len(), 1);
        assert!(e.keys().all(|k| k.len() == KEY_BYTES));
        assert_eq!(key(&[b'a'; 400]).prefix_len(), (KEY_BYTES * 8) as u32);
    }
}
