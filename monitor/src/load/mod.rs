//! Loading and attaching the kernel programs, with the running kernel's offsets.
//!
//! What could not be attached (a tracepoint this kernel lacks, a layout we do not understand)
//! is skipped and reported, never silently ignored: see [`ProbeStatus`].
mod attach;
pub(crate) mod btf;
pub(crate) mod caps;
pub(crate) mod interest;
mod layout;
pub(crate) mod pin;
pub(crate) mod syscalls;
pub(crate) mod tracefs;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData},
    programs::links::FdLink,
};
use monitor_common::{
    AGENT_FOLD_MS, AGENT_MAP, AGENT_PAUSED, AGENT_TGID, CGROUP_FILTER_MAP, CONFIG_GLOBAL, Config,
    MAX_RINGS, RING_MAPS,
};
use thiserror::Error;
use tracing::{debug, info, warn};

use self::{
    attach::Attacher,
    btf::Btf,
    interest::KernelInterest,
    layout::{SysLayout, kernel_offsets, tp_offsets, usable_syscalls},
    pin::{Identity, PinDir, probe_of_link},
    tracefs::Tracefs,
};

/// The kernel object built by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));

#[derive(Debug, Error)]
pub(crate) enum LoadError {
    #[error(
        "this agent was built without its kernel programs (AYA_BUILD_SKIP was set); rebuild without it"
    )]
    NoObject,
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("kernel BTF is required to locate task fields: {0}")]
    Btf(#[from] btf::BtfError),
    #[error("loading the eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error("program `{name}`: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("map `{name}`: {source}")]
    Map {
        name: String,
        source: aya::maps::MapError,
    },
    #[error("object has no program or map `{0}`")]
    Missing(String),
    #[error("no syscall tracepoint could be attached; see the probe report above")]
    NothingAttached,
    #[error(transparent)]
    Capabilities(#[from] caps::CapError),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
}

impl LoadError {
    /// The verifier gave up on a program: more paths than it walks (E2BIG).
    fn too_complex(&self) -> bool {
        matches!(self, LoadError::Program {
            source: aya::programs::ProgramError::LoadError { io_error, .. },
            ..
        } if io_error.raw_os_error() == Some(libc::E2BIG))
    }
}

/// Settings of the kernel side.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    /// Ring buffer bytes in all, shared out over the `rings` (each a power of two, at least
    /// one page).
    pub(crate) ring_bytes: u32,
    /// Ring buffers the records are sharded over: one per pipeline worker (1 to
    /// [`monitor_common::MAX_RINGS`]).
    pub(crate) rings: u32,
    /// When non-empty: capture only these cgroup2 ids.
    pub(crate) cgroups: Vec<u64>,
    /// What the programs capture: derived from the rules, baselines and trace filters.
    pub(crate) interest: KernelInterest,
    /// Pending bytes that wake the reader (0: every record); capped at a quarter of the ring.
    pub(crate) wakeup_bytes: u32,
    /// bpffs directory where the programs stay pinned between agents (none: they are
    /// detached when the agent exits).
    pub(crate) pin_dir: Option<PathBuf>,
    /// The bench's mechanism floor: the same tracepoints, with programs that return at once
    /// (never pinned).
    pub(crate) floor: bool,
    /// Identical syscall records within this many milliseconds are folded (0: none).
    pub(crate) fold_ms: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: 16 << 20,
            rings: 1,
            cgroups: Vec::new(),
            interest: KernelInterest::everything(),
            wakeup_bytes: crate::config::DEFAULT_WAKEUP_BYTES,
            pin_dir: None,
            floor: false,
            fold_ms: 1000,
        }
    }
}

/// Outcome of one probe (one tracepoint attachment).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ProbeStatus {
    pub(crate) probe: String,
    pub(crate) attached: bool,
    /// Why it was skipped, when it was.
    pub(crate) reason: Option<String>,
}

/// Where the running set is pinned.
pub(crate) struct PinnedSet {
    pub(crate) dir: PinDir,
    pub(crate) id: String,
    /// Adopted from an earlier agent rather than loaded by this one.
    pub(crate) adopted: bool,
    /// Its pins, held open while the agent runs.
    held: pin::Held,
}

/// The loaded (or adopted) programs and what was attached.
pub(crate) struct Loaded {
    /// The object, when this agent loaded it: dropping it detaches what is not pinned.
    ebpf: Option<Ebpf>,
    /// The maps of an adopted set.
    adopted: HashMap<&'static str, Map>,
    /// The agent slots ([`AGENT_MAP`]).
    agent: Array<MapData, u32>,
    pub(crate) probes: Vec<ProbeStatus>,
    pub(crate) pinned: Option<PinnedSet>,
    /// The hooked syscalls, whose descriptors carry the interest.
    hooks: Vec<syscalls::Hook>,
    /// Ring buffers the records are sharded over: one per pipeline worker (see [`load`]).
    pub(crate) rings: u32,
    /// The interest written at load (`None` for an adopted set: the last agent's is in force).
    interest: Option<KernelInterest>,
}

impl Loaded {
    /// Takes a map out, for the stage that owns it from now on.
    pub(crate) fn take_map(&mut self, name: &str) -> Option<Map> {
        match &mut self.ebpf {
            Some(e) => e.take_map(name),
            None => self.adopted.remove(name),
        }
    }

    /// Pauses capture: the programs write and count nothing until resumed. A stopping agent
    /// pauses before it reads the ring to its end, so its final counts are exact.
    pub(crate) fn pause(&mut self, paused: bool) -> Result<(), LoadError> {
        self.agent
            .set(AGENT_PAUSED, u32::from(paused), 0)
            .map_err(|source| LoadError::Map {
                name: AGENT_MAP.into(),
                source,
            })
    }

    /// Pins again what another process removed from the running set; returns what it had to
    /// restore (the removal itself is the unlink event `monitor_files_tampered` judges).
    pub(crate) fn repair_pins(&mut self) -> Result<Vec<String>, LoadError> {
        match &mut self.pinned {
            Some(p) => Ok(p.held.repair()?),
            None => Ok(Vec::new()),
        }
    }

    /// Removes this agent's pins, so the programs are detached once it lets go of them (a
    /// deliberate uninstall).
    pub(crate) fn unpin(&self) -> Result<(), LoadError> {
        if let Some(p) = &self.pinned {
            p.dir.remove(&p.id)?;
            info!(dir = %p.dir.root().display(), set = %p.id, "pinned programs removed");
        }
        Ok(())
    }
}

/// Makes sure tracefs is mounted (agents in a container may need to mount it themselves).
pub(crate) fn ensure_tracefs() -> Result<Tracefs, tracefs::TracefsError> {
    if let Ok(t) = Tracefs::find() {
        return Ok(t);
    }
    let target = Path::new(tracefs::TRACEFS_CANDIDATES[0]);
    // SAFETY: plain mount(2) with NUL-terminated constant strings.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        info!(path = %target.display(), "mounted tracefs");
    }
    Tracefs::find()
}

fn skip(probe: &str, reason: String) -> ProbeStatus {
    ProbeStatus {
        probe: probe.to_string(),
        attached: false,
        reason: Some(reason),
    }
}
fn ok(probe: &str) -> ProbeStatus {
    ProbeStatus {
        probe: probe.to_string(),
        attached: true,
        reason: None,
    }
}

/// Loads the programs, fills their maps and attaches every probe this kernel supports; with
/// a pin directory, adopts the pinned set of the same identity instead, or pins the new one
/// and removes the others (see [`pin`]).
///
/// The programs write to one ring buffer per pipeline worker; a kernel whose verifier gives up
/// on programs writing to that many (it walks every path through them, up to a million
/// instructions) gets them loaded for half as many, and so on: [`Loaded::rings`] says how
/// many the agent got.
pub(crate) fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut rings = opts.rings.clamp(1, MAX_RINGS);
    loop {
        match load_with(opts, rings) {
            Err(e) if rings > 1 && e.too_complex() => {
                warn!(error = %e, rings, retry_with = rings / 2,
                    "the kernel's verifier gave up on programs writing to this many ring buffers: running fewer pipeline workers");
                rings /= 2;
            }
            r => return r,
        }
    }
}

/// [`load`], with the records sharded over `rings` ring buffers.
fn load_with(opts: &LoadOptions, rings: u32) -> Result<Loaded, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    check_privileges()?;
    let tfs = ensure_tracefs()?;
    let btf = Btf::from_sys_fs()?;
    let mut probes = Vec::new();
    let tp = tp_offsets(&tfs, &mut probes)?;
    let per_ring = ring_size(opts.ring_bytes, rings);
    let config = Config {
        cgroup_filter: u32::from(!opts.cgroups.is_empty()),
        wakeup_bytes: opts.wakeup_bytes.min(per_ring / 4),
        rings,
        tp,
        k: kernel_offsets(&btf),
    };
    let reference = SysLayout {
        nr: tp.sys_enter_nr,
        args: tp.sys_enter_args,
    };
    let usable = usable_syscalls(&tfs, reference, &mut probes);
    // Without a usable pin directory the agent still captures, unpinned: a restart then leaves
    // a blind window, which the warning and `monitor_programs_pinned 0` say.
    let pin_dir = opts.pin_dir.as_deref().filter(|_| !opts.floor);
    let pins = match pin_dir.map(PinDir::open).transpose() {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "programs not pinned: capture stops while the agent restarts");
            None
        }
    };
    let id = identity(&config, opts, &usable);
    if let Some(dir) = &pins
        && let Some(adopted) = dir.adopt(&id)?
    {
        return finish_adoption(dir.clone(), id, adopted, (usable, rings), opts.fold_ms);
    }
    let mut loader = EbpfLoader::new();
    loader.override_global(CONFIG_GLOBAL, &config, true);
    for (i, name) in RING_MAPS.iter().enumerate() {
        // Rings no worker reads keep one page: they must exist, the programs name them all.
        let bytes = if (i as u32) < rings { per_ring } else { PAGE };
        loader.map_max_entries(name, bytes);
    }
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    // Before anything is attached, so that the agent's own work is never captured.
    set_agent_slots(agent_map(ebpf.map_mut(AGENT_MAP))?, opts.fold_ms)?;
    if !opts.cgroups.is_empty() {
        fill_cgroup_filter(&mut ebpf, &opts.cgroups)?;
    }
    // Before anything is attached, so that the programs never capture less than asked.
    let written = interest::write_initial(&mut ebpf, &usable, &opts.interest)?;
    let mut attacher = Attacher {
        ebpf: &mut ebpf,
        tfs: &tfs,
        probes: &mut probes,
        links: pins.as_ref().map(|_| Vec::new()),
        floor: opts.floor,
    };
    attacher.lifecycle()?;
    if attacher.syscalls(&usable)? == 0 {
        return Err(LoadError::NothingAttached);
    }
    let links = attacher.links.take();
    let pinned = match (pins, links) {
        (Some(dir), Some(links)) => Some(publish(dir, id, &ebpf, links)?),
        _ => None,
    };
    let agent = take_agent_map(ebpf.take_map(AGENT_MAP))?;
    Ok(Loaded {
        ebpf: Some(ebpf),
        adopted: HashMap::new(),
        agent,
        probes,
        pinned,
        hooks: usable,
        rings,
        interest: Some(written),
    })
}

/// Smallest ring buffer: one page.
const PAGE: u32 = 4096;

/// Each ring's size when `total` bytes are shared out over `rings`: the largest power of two
/// that fits the share, and one page at least.
pub(crate) fn ring_size(total: u32, rings: u32) -> u32 {
    let share = total / rings.max(1);
    if share <= PAGE {
        return PAGE;
    }
    1 << (31 - share.leading_zeros())
}

/// What makes two sets interchangeable: the object, its load-time configuration and what it
/// is attached to.
fn identity(config: &Config, opts: &LoadOptions, usable: &[syscalls::Hook]) -> String {
    // SAFETY: Config is repr(C), built only of u32 fields (no padding), so all its bytes are
    // initialised; the slice lives no longer than the borrow.
    let config_bytes = unsafe {
        std::slice::from_raw_parts((config as *const Config).cast::<u8>(), size_of::<Config>())
    };
    let mut id = Identity::new()
        .with(EBPF_OBJECT)
        .with(config_bytes)
        .with(&opts.ring_bytes.to_le_bytes());
    for c in &opts.cgroups {
        id = id.with(&c.to_le_bytes());
    }
    for h in usable {
        id = id.with(h.tracepoint.as_bytes()).with(&h.nr.to_le_bytes());
    }
    id.hex()
}

/// Takes over a pinned set: the maps from their pins, the probe report from the link pins.
fn finish_adoption(
    dir: PinDir,
    id: String,
    mut a: pin::Adopted,
    (hooks, rings): (Vec<syscalls::Hook>, u32),
    fold_ms: u32,
) -> Result<Loaded, LoadError> {
    set_agent_slots(agent_map(a.maps.get_mut(AGENT_MAP))?, fold_ms)?;
    let agent = take_agent_map(a.maps.remove(AGENT_MAP))?;
    let mut probes: Vec<ProbeStatus> = Vec::new();
    let links = a.held.link_names();
    for label in links.iter().filter_map(|l| probe_of_link(l)) {
        if !probes.iter().any(|p| p.probe == label) {
            probes.push(ok(&label));
        }
    }
    info!(dir = %dir.root().display(), set = %id, links = links.len(), "adopted the pinned programs: capture went on while no agent ran");
    Ok(Loaded {
        ebpf: None,
        adopted: a.maps,
        agent,
        probes,
        pinned: Some(PinnedSet {
            dir,
            id,
            adopted: true,
            held: a.held,
        }),
        hooks,
        rings,
        interest: None,
    })
}

/// Pins a freshly attached set, then removes the sets of other identities (their programs
/// ran until now: there is no moment with nothing attached).
fn publish(
    dir: PinDir,
    id: String,
    ebpf: &Ebpf,
    links: Vec<(String, FdLink)>,
) -> Result<PinnedSet, LoadError> {
    let n = links.len();
    dir.publish(&id, ebpf, links)?;
    let removed = dir.remove_others(&id)?;
    if removed.is_empty() {
        info!(dir = %dir.root().display(), set = %id, links = n, "programs pinned");
    } else {
        warn!(dir = %dir.root().display(), set = %id, replaced = %removed.join(","),
            "programs pinned; the pinned sets of another layout or configuration were replaced (records they held unread are lost)");
    }
    let held = pin::Held::open(&dir.set_dir(&id))?;
    Ok(PinnedSet {
        dir,
        id,
        adopted: false,
        held,
    })
}

fn agent_map(map: Option<&mut Map>) -> Result<Array<&mut MapData, u32>, LoadError> {
    let map = map.ok_or_else(|| LoadError::Missing(AGENT_MAP.into()))?;
    Array::try_from(map).map_err(|source| LoadError::Map {
        name: AGENT_MAP.into(),
        source,
    })
}

fn take_agent_map(map: Option<Map>) -> Result<Array<MapData, u32>, LoadError> {
    let map = map.ok_or_else(|| LoadError::Missing(AGENT_MAP.into()))?;
    Array::try_from(map).map_err(|source| LoadError::Map {
        name: AGENT_MAP.into(),
        source,
    })
}

/// Makes the programs this agent's: its tgid, capture running, its fold window.
fn set_agent_slots(mut agent: Array<&mut MapData, u32>, fold_ms: u32) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map {
        name: AGENT_MAP.into(),
        source,
    };
    agent.set(AGENT_PAUSED, 0, 0).map_err(map_err)?;
    agent.set(AGENT_FOLD_MS, fold_ms, 0).map_err(map_err)?;
    agent
        .set(AGENT_TGID, std::process::id(), 0)
        .map_err(map_err)
}

/// Warns about every capability the agent lacks (the kernel has the last word) and raises
/// RLIMIT_MEMLOCK for kernels that still charge BPF maps to it.
fn check_privileges() -> Result<(), LoadError> {
    if let Some(mask) = caps::current() {
        for c in caps::check(mask)? {
            warn!(
                capability = c.name,
                "capability missing: the agent cannot {}", c.why
            );
        }
    }
    if let Err(e) = caps::raise_memlock() {
        debug!(error = %e, "RLIMIT_MEMLOCK not raised (not needed on kernels >= 5.11)");
    }
    Ok(())
}

/// The cgroup2 ids the kernel programs capture exclusively.
fn fill_cgroup_filter(ebpf: &mut Ebpf, cgroups: &[u64]) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map {
        name: CGROUP_FILTER_MAP.into(),
        source,
    };
    let map = ebpf
        .map_mut(CGROUP_FILTER_MAP)
        .ok_or_else(|| LoadError::Missing(CGROUP_FILTER_MAP.into()))?;
    let mut filter: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(map).map_err(map_err)?;
    for id in cgroups {
        filter.insert(id, 1, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Logs the probe report: one line per skipped probe, one summary line.
pub(crate) fn log_probes(probes: &[ProbeStatus]) {
    let attached = probes.iter().filter(|p| p.attached).count();
    for p in probes.iter().filter(|p| !p.attached) {
        warn!(probe = %p.probe, reason = p.reason.as_deref().unwrap_or(""), "probe skipped");
    }
    let names: Vec<&str> = probes
        .iter()
        .filter(|p| p.attached)
        .map(|p| p.probe.as_str())
        .collect();
    info!(
        attached,
        skipped = probes.len() - attached,
        probes = %names.join(","),
        "kernel probes attached"
    );
}

/// Publishes the probe report as `monitor_probe_attached{probe,reason}`.
pub(crate) fn export_probes(probes: &[ProbeStatus], m: &crate::telemetry::metrics::Metrics) {
    for p in probes {
        m.probe_attached
            .with_label_values(&[&p.probe, p.reason.as_deref().unwrap_or("")])
            .set(i64::from(p.attached));
    }
}
