//! Pinned programs: the links and the maps the agent reads, kept in bpffs, so that capture goes
//! on while no agent runs (a restart, an upgrade, a crash). The programs keep writing into the
//! ring buffer meanwhile; the next agent adopts the set, reads what the ring kept, and goes on.
//! What did not fit is counted as drops by the kernel, in the counters that were pinned too.
//!
//! A set lives in `<pin_dir>/<identity>/`: `map-<NAME>` for each of [`PINNED_MAPS`] and
//! `link-<group>-<tracepoint>` for each attached program (bpffs refuses names with a dot). The identity is a hash of everything
//! that decides what the programs do and how their records read: the kernel object, its
//! load-time configuration, the ring size, the cgroup filter and the hooked syscalls. An agent
//! whose identity matches adopts the set; any other set (an older layout, another
//! configuration) is replaced: the new one is attached and published first, then the old one
//! removed, so there is no moment with nothing attached. A set is published by renaming a
//! complete directory into place, so it is either whole or absent.
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{Map, MapData},
    programs::links::{FdLink, PinnedLink},
};
use monitor_common::{
    AGENT_MAP, DROPS_BY_CGROUP_MAP, INTEREST_MAP, MISC_MAP, OPEN_PATHS_MAP, RING_MAPS, STATS_MAP,
    SYSCALLS_MAP,
};
use thiserror::Error;

/// `statfs` magic number of the BPF file system.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// The maps the agent itself reads or writes; the programs hold the others. The interest maps
/// are among them: an adopting agent writes what its own rules need.
pub(crate) const PINNED_MAPS: [&str; 15] = [
    RING_MAPS[0],
    RING_MAPS[1],
    RING_MAPS[2],
    RING_MAPS[3],
    RING_MAPS[4],
    RING_MAPS[5],
    RING_MAPS[6],
    RING_MAPS[7],
    STATS_MAP,
    MISC_MAP,
    DROPS_BY_CGROUP_MAP,
    AGENT_MAP,
    SYSCALLS_MAP,
    OPEN_PATHS_MAP,
    INTEREST_MAP,
];
const _: () = assert!(RING_MAPS.len() == 8, "every ring is pinned");
/// Bumped when the pin directory's own layout changes (names, what is pinned).
const PIN_LAYOUT: &[u8] = b"monitor pin layout 6";

#[derive(Debug, Error)]
pub(crate) enum PinError {
    #[error(
        "capture.pin_dir {path}: not on a BPF file system (mount bpffs there, e.g. the host's /sys/fs/bpf)"
    )]
    NotBpffs { path: PathBuf },
    #[error("capture.pin_dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("adopting the pinned {path}: {message}")]
    Adopt { path: PathBuf, message: String },
    #[error(
        "probe {probe}: attached without a BPF link, which cannot be pinned (needs Linux 5.15 or later); unset capture.pin_dir"
    )]
    NotALink { probe: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// FNV-1a, 64 bits: stable across builds and toolchains, unlike std's hasher, so that an agent
/// built elsewhere from the same sources adopts the same set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity(u64);

impl Identity {
    pub(crate) fn new() -> Identity {
        Identity(0xcbf2_9ce4_8422_2325).with(PIN_LAYOUT)
    }
    pub(crate) fn with(mut self, bytes: &[u8]) -> Identity {
        // Each part's length first, so that two parts cannot run into each other.
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    pub(crate) fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The pin name of a link: `link-<group>-<tracepoint>` (`raw` for raw tracepoints).
pub(crate) fn link_name(group: &str, tracepoint: &str) -> String {
    format!("link-{group}-{tracepoint}")
}

/// The probe label a link pin stands for, as the probe report names it.
pub(crate) fn probe_of_link(name: &str) -> Option<String> {
    let rest = name.strip_prefix("link-")?;
    let (group, tp) = rest.split_once('-')?;
    Some(match group {
        "raw" => format!("raw_tracepoint/{tp}"),
        "syscalls" => {
            let call = tp
                .strip_prefix("sys_enter_")
                .or_else(|| tp.strip_prefix("sys_exit_"))
                .unwrap_or(tp);
            format!("tracepoint/syscalls/{call}")
        }
        _ => format!("tracepoint/{group}/{tp}"),
    })
}

/// A pinned set this agent adopted.
pub(crate) struct Adopted {
    pub(crate) maps: HashMap<&'static str, Map>,
    /// Its pins, held open.
    pub(crate) held: Held,
}

/// The pins of the running set, held open by the agent: while it runs, removing a pin
/// detaches nothing (the agent's fd keeps the link), and the agent pins it again.
pub(crate) struct Held {
    dir: PathBuf,
    links: Vec<(String, Option<PinnedLink>)>,
    maps: Vec<(String, MapData)>,
}

impl Held {
    /// Opens every pin of the set in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Held, PinError> {
        let adopt_err = |message: String| PinError::Adopt {
            path: dir.to_path_buf(),
            message,
        };
        let mut links = Vec::new();
        let mut maps = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("link-") {
                let link = PinnedLink::from_pin(entry.path())
                    .map_err(|e| adopt_err(format!("link {name}: {e}")))?;
                links.push((name, Some(link)));
            } else if name.starts_with("map-") {
                let map = MapData::from_pin(entry.path())
                    .map_err(|e| adopt_err(format!("map {name}: {e}")))?;
                maps.push((name, map));
            }
        }
        links.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Held {
            dir: dir.to_path_buf(),
            links,
            maps,
        })
    }

    /// Link pin names.
    pub(crate) fn link_names(&self) -> Vec<String> {
        self.links.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Pins again whatever another process removed (the set directory included); returns the
    /// names it had to restore.
    pub(crate) fn repair(&mut self) -> Result<Vec<String>, PinError> {
        let mut restored = Vec::new();
        let missing_dir = !self.dir.is_dir();
        if missing_dir {
            fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        }
        for (name, held) in &mut self.links {
            let path = self.dir.join(&*name);
            if path.exists() {
                continue;
            }
            let Some(link) = held.take() else { continue };
            let fd = FdLink::from(link);
            *held = Some(fd.pin(&path).map_err(|source| PinError::Pin {
                path: path.clone(),
                source,
            })?);
            restored.push(name.clone());
        }
        for (name, map) in &self.maps {
            let path = self.dir.join(name);
            if !path.exists() {
                map.pin(&path)
                    .map_err(|source| PinError::Pin { path, source })?;
                restored.push(name.clone());
            }
        }
        Ok(restored)
    }
}

/// The directory holding the pinned sets.
#[derive(Debug, Clone)]
pub(crate) struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// Creates the directory if needed and checks that it is on bpffs.
    pub(crate) fn open(root: &Path) -> Result<PinDir, PinError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).map_err(|_| {
            PinError::Io {
                path: root.into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
            }
        })?;
        // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(PinError::Io {
                path: root.into(),
                source: io::Error::last_os_error(),
            });
        }
        #[allow(
            clippy::unnecessary_cast,
            reason = "f_type is i64 on x86_64 but not on every target"
        )]
        if st.f_type as i64 != BPF_FS_MAGIC {
            return Err(PinError::NotBpffs { path: root.into() });
        }
        Ok(PinDir { root: root.into() })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn set(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The names of the sets present (half-built ones start with `new-`).
    pub(crate) fn sets(&self) -> Result<Vec<String>, PinError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    /// Opens the set with this identity, if one is pinned.
    pub(crate) fn adopt(&self, id: &str) -> Result<Option<Adopted>, PinError> {
        let dir = self.set(id);
        if !dir.is_dir() {
            return Ok(None);
        }
        let adopt_err = |message: String| PinError::Adopt {
            path: dir.clone(),
            message,
        };
        let mut maps = HashMap::new();
        for name in PINNED_MAPS {
            let path = dir.join(format!("map-{name}"));
            let data = MapData::from_pin(&path)
                .map_err(|e| adopt_err(format!("map {}: {e}", path.display())))?;
            let map =
                Map::from_map_data(data).map_err(|e| adopt_err(format!("map {name}: {e}")))?;
            maps.insert(name, map);
        }
        let held = Held::open(&dir)?;
        if held.links.is_empty() {
            return Err(adopt_err("no links are pinned".into()));
        }
        Ok(Some(Adopted { maps, held }))
    }

    /// Pins a freshly loaded set under `id`: the maps of `ebpf` named in [`PINNED_MAPS`] and the
    /// links, built in a `new-` directory and renamed into place once complete. A stale set
    /// of the same identity (one that could not be adopted) is removed first.
    pub(crate) fn publish(
        &self,
        id: &str,
        ebpf: &Ebpf,
        links: Vec<(String, FdLink)>,
    ) -> Result<(), PinError> {
        let tmp = self.root.join(format!("new-{id}-{}", std::process::id()));
        if tmp.exists() {
            remove_set(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let pinned = (|| {
            for name in PINNED_MAPS {
                let path = tmp.join(format!("map-{name}"));
                let map = ebpf.map(name).ok_or_else(|| PinError::Adopt {
                    path: path.clone(),
                    message: "map missing from the object".into(),
                })?;
                map.pin(&path)
                    .map_err(|source| PinError::Pin { path, source })?;
            }
            for (name, link) in links {
                let path = tmp.join(&name);
                // The pin keeps the link; our fd closes here.
                drop(
                    link.pin(&path)
                        .map_err(|source| PinError::Pin { path, source })?,
                );
            }
            Ok(())
        })();
        if let Err(e) = pinned {
            let _ = remove_set(&tmp);
            return Err(e);
        }
        let dest = self.set(id);
        if dest.exists() {
            remove_set(&dest).map_err(io_err(&dest))?;
        }
        fs::rename(&tmp, &dest).map_err(io_err(&dest))
    }

    /// Removes every set but `keep` (older layouts, other configurations, half-built ones),
    /// detaching their programs. Returns the names removed.
    pub(crate) fn remove_others(&self, keep: &str) -> Result<Vec<String>, PinError> {
        let mut removed = Vec::new();
        for name in self.sets()? {
            if name != keep {
                let path = self.root.join(&name);
                remove_set(&path).map_err(io_err(&path))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }

    /// The directory of the set `id`.
    pub(crate) fn set_dir(&self, id: &str) -> PathBuf {
        self.set(id)
    }

    /// Removes the set `id`: its programs are detached once no agent holds them.
    pub(crate) fn remove(&self, id: &str) -> Result<(), PinError> {
        let path = self.set(id);
        remove_set(&path).map_err(io_err(&path))
    }
}

/// Removes a set directory: its pins, then the directory.
fn remove_set(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    remove_set(&entry.path())?;
                } else {
                    fs::remove_file(entry.path())?;
                }
            }
            fs::remove_dir(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => fs::remove_file(dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_depends_on_every_part_and_their_boundaries() {
        let a = Identity::new().with(b"ab").with(b"c").hex();
        assert_eq!(a, Identity::new().with(b"ab").with(b"c").hex());
        assert_ne!(a, Identity::new().with(b"a").with(b"bc").hex());
        assert_ne!(a, Identity::new().with(b"ab").with(b"d").hex());
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn link_names_map_back_to_probe_labels() {
        let cases = [
            (
                ("syscalls", "sys_enter_openat"),
                "tracepoint/syscalls/openat",
            ),
            (
                ("syscalls", "sys_exit_openat"),
                "tracepoint/syscalls/openat",
            ),
            (
                ("sched", "sched_process_exec"),
                "tracepoint/sched/sched_process_exec",
            ),
            (
                ("raw", "sched_process_fork"),
                "raw_tracepoint/sched_process_fork",
            ),
        ];
        for ((group, tp), label) in cases {
            assert_eq!(probe_of_link(&link_name(group, tp)).as_deref(), Some(label));
        }
        assert_eq!(probe_of_link("map-EVENTS"), None);
    }

    #[test]
    fn a_directory_that_is_not_bpffs_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        match PinDir::open(dir.path()) {
            Err(PinError::NotBpffs { path }) => assert_eq!(path, dir.path()),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a tmp directory was taken for bpffs"),
        }
    }
}
