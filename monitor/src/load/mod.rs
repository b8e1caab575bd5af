//! Loading and attaching the kernel programs, with the running kernel's offsets.
//!
//! What could not be attached (a tracepoint this kernel lacks, a layout we do not understand)
//! is skipped and reported, never silently ignored: see [`ProbeStatus`].
pub(crate) mod btf;
pub(crate) mod caps;
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
    programs::{RawTracePoint, TracePoint, links::FdLink},
};
use monitor_common::{
    AGENT_MAP, AGENT_PAUSED, AGENT_TGID, CGROUP_FILTER_MAP, CONFIG_GLOBAL, Config, EVENTS_MAP,
    KernelOffsets, NO_OFFSET, SYSCALLS_MAP, SyscallDesc, TpOffsets,
};
use thiserror::Error;
use tracing::{debug, info, warn};

use self::{
    btf::Btf,
    pin::{Identity, PinDir, link_name, probe_of_link},
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

/// Settings of the kernel side.
#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    /// Ring buffer size in bytes (power of two, at least one page).
    pub(crate) ring_bytes: u32,
    /// When non-empty: capture only these cgroup2 ids.
    pub(crate) cgroups: Vec<u64>,
    /// TCP states whose entry is reported (bit N = state N).
    pub(crate) tcp_state_mask: u32,
    /// Pending bytes that wake the reader (0: every record); capped at a quarter of the ring.
    pub(crate) wakeup_bytes: u32,
    /// bpffs directory where the programs stay pinned between agents (none: they are
    /// detached when the agent exits).
    pub(crate) pin_dir: Option<PathBuf>,
}

/// Default TCP transitions reported: into SYN_SENT, ESTABLISHED, CLOSE and LISTEN.
pub(crate) const DEFAULT_TCP_STATES: u32 = (1 << 1) | (1 << 2) | (1 << 7) | (1 << 10);

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: 16 << 20,
            cgroups: Vec::new(),
            tcp_state_mask: DEFAULT_TCP_STATES,
            wakeup_bytes: crate::config::DEFAULT_WAKEUP_BYTES,
            pin_dir: None,
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

fn kernel_offsets(btf: &Btf) -> KernelOffsets {
    let get = |s: &str, m: &str| match btf.member_offset(s, m) {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "kernel field unavailable; events will lack it");
            NO_OFFSET
        }
    };
    KernelOffsets {
        task_tgid: get("task_struct", "tgid"),
        task_pid: get("task_struct", "pid"),
        task_real_parent: get("task_struct", "real_parent"),
        task_group_leader: get("task_struct", "group_leader"),
        task_start_boottime: get("task_struct", "start_boottime"),
        task_exit_code: get("task_struct", "exit_code"),
        task_mm: get("task_struct", "mm"),
        task_cred: get("task_struct", "cred"),
        mm_arg_start: get("mm_struct", "arg_start"),
        mm_arg_end: get("mm_struct", "arg_end"),
        cred_euid: get("cred", "euid"),
        cred_egid: get("cred", "egid"),
    }
}

/// Syscall tracepoint layout: `__syscall_nr`, then 8-byte argument slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SysLayout {
    nr: u32,
    args: u32,
}

/// An argument field of a sys_enter tracepoint: (name, offset, size).
type ArgField = (String, u32, u32);

fn sys_enter_layout(f: &tracefs::Format) -> Option<(SysLayout, Vec<ArgField>)> {
    let nr = f.offset("__syscall_nr")?;
    let mut args: Vec<ArgField> = f
        .fields
        .iter()
        .filter(|(n, _)| !n.starts_with("common_") && n.as_str() != "__syscall_nr")
        .map(|(n, fl)| (n.clone(), fl.offset, fl.size))
        .collect();
    args.sort_by_key(|a| a.1);
    let base = args.first().map(|a| a.1).unwrap_or(nr + 8);
    Some((SysLayout { nr, args: base }, args))
}

/// Checks that a sys_enter format has its arguments in consecutive 8-byte slots from `base`.
fn args_are_slots(args: &[ArgField], base: u32) -> bool {
    args.len() <= 6
        && args
            .iter()
            .enumerate()
            .all(|(i, (_, off, size))| *off == base + 8 * i as u32 && *size == 8)
}

fn tp_offsets(tfs: &Tracefs, probes: &mut Vec<ProbeStatus>) -> Result<TpOffsets, LoadError> {
    let mut tp = Config::UNSET.tp;
    // The reference layout of syscall tracepoints, from openat (present on every architecture).
    let enter = tfs.format("syscalls", "sys_enter_openat")?;
    let (layout, _) = sys_enter_layout(&enter)
        .ok_or_else(|| LoadError::Missing("syscalls/sys_enter_openat: __syscall_nr".into()))?;
    tp.sys_enter_nr = layout.nr;
    tp.sys_enter_args = layout.args;
    let exit = tfs.format("syscalls", "sys_exit_openat")?;
    tp.sys_exit_nr = exit.field("__syscall_nr")?.offset;
    tp.sys_exit_ret = exit.field("ret")?.offset;

    match tfs.format("sched", "sched_process_exec") {
        Ok(f) => {
            tp.exec_filename = f.field("filename")?.offset;
            tp.exec_old_pid = f.offset("old_pid").unwrap_or(NO_OFFSET);
        }
        Err(e) => probes.push(skip("tracepoint/sched/sched_process_exec", e.to_string())),
    }
    if let Ok(f) = tfs.format("sched", "sched_process_exit") {
        tp.exit_group_dead = f.offset("group_dead").unwrap_or(NO_OFFSET);
    }
    if let Ok(f) = tfs.format("sock", "inet_sock_set_state") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.sk_skaddr = o("skaddr");
        tp.sk_oldstate = o("oldstate");
        tp.sk_newstate = o("newstate");
        tp.sk_sport = o("sport");
        tp.sk_dport = o("dport");
        tp.sk_family = o("family");
        tp.sk_protocol = o("protocol");
        tp.sk_saddr = o("saddr");
        tp.sk_daddr = o("daddr");
        tp.sk_saddr_v6 = o("saddr_v6");
        tp.sk_daddr_v6 = o("daddr_v6");
    }
    if let Ok(f) = tfs.format("signal", "signal_generate") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.sig_sig = o("sig");
        tp.sig_code = o("code");
        tp.sig_pid = o("pid");
        tp.sig_group = o("group");
        tp.sig_result = o("result");
    }
    if let Ok(f) = tfs.format("cgroup", "cgroup_mkdir") {
        let o = |n: &str| f.offset(n).unwrap_or(NO_OFFSET);
        tp.cg_root = o("root");
        tp.cg_id = o("id");
        tp.cg_path = o("path");
    }
    Ok(tp)
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
pub(crate) fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    check_privileges()?;
    let tfs = ensure_tracefs()?;
    let btf = Btf::from_sys_fs()?;
    let mut probes = Vec::new();
    let tp = tp_offsets(&tfs, &mut probes)?;
    let config = Config {
        cgroup_filter: u32::from(!opts.cgroups.is_empty()),
        tcp_state_mask: opts.tcp_state_mask,
        wakeup_bytes: opts.wakeup_bytes.min(opts.ring_bytes / 4),
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
    let pins = match opts.pin_dir.as_deref().map(PinDir::open).transpose() {
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
        return finish_adoption(dir.clone(), id, adopted);
    }
    let mut ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &config, true)
        .map_max_entries(EVENTS_MAP, opts.ring_bytes)
        .load(EBPF_OBJECT)?;
    // Before anything is attached, so that the agent's own work is never captured.
    set_agent_tgid(agent_map(ebpf.map_mut(AGENT_MAP))?)?;
    if !opts.cgroups.is_empty() {
        fill_cgroup_filter(&mut ebpf, &opts.cgroups)?;
    }
    let mut links = pins.as_ref().map(|_| Vec::new());
    attach_lifecycle(&mut ebpf, &tfs, &mut probes, &mut links)?;
    fill_syscall_table(&mut ebpf, &usable)?;
    if attach_syscalls(&mut ebpf, &usable, &mut probes, &mut links)? == 0 {
        return Err(LoadError::NothingAttached);
    }
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
    })
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
fn finish_adoption(dir: PinDir, id: String, mut a: pin::Adopted) -> Result<Loaded, LoadError> {
    set_agent_tgid(agent_map(a.maps.get_mut(AGENT_MAP))?)?;
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

fn set_agent_tgid(mut agent: Array<&mut MapData, u32>) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map {
        name: AGENT_MAP.into(),
        source,
    };
    agent.set(AGENT_PAUSED, 0, 0).map_err(map_err)?;
    agent
        .set(AGENT_TGID, std::process::id(), 0)
        .map_err(map_err)
}

/// Links taken out of their programs when the set is to be pinned (name, link).
type Links = Option<Vec<(String, FdLink)>>;

/// Keeps a just-attached link when the set is to be pinned.
fn keep_link<L: TryInto<FdLink>>(
    links: &mut Links,
    name: String,
    take: impl FnOnce() -> Result<L, aya::programs::ProgramError>,
) -> Result<(), LoadError> {
    let Some(links) = links else {
        return Ok(());
    };
    let link = take().map_err(|source| LoadError::Program {
        name: name.clone(),
        source,
    })?;
    let fd = link.try_into().map_err(|_| pin::PinError::NotALink {
        probe: name.clone(),
    })?;
    links.push((name, fd));
    Ok(())
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

/// cgroup, process lifecycle and TCP state programs, in the order that keeps attribution and
/// the process table complete.
fn attach_lifecycle(
    ebpf: &mut Ebpf,
    tfs: &Tracefs,
    probes: &mut Vec<ProbeStatus>,
    links: &mut Links,
) -> Result<(), LoadError> {
    // cgroup creation before anything a task in the new cgroup can do: attribution of containers
    // that are gone before the agent can look at them depends on it.
    for name in ["cgroup_mkdir", "cgroup_rmdir"] {
        attach_tp(ebpf, name, ("cgroup", name), tfs, probes, links)?;
    }
    // Process lifecycle next, so that the process table never misses a fork of a process that
    // later makes a syscall.
    for name in ["sched_process_exec", "sched_process_exit"] {
        attach_tp(ebpf, name, ("sched", name), tfs, probes, links)?;
    }
    let name = "sched_process_fork";
    let prog: &mut RawTracePoint = program(ebpf, name)?;
    prog.load().map_err(|source| LoadError::Program {
        name: name.into(),
        source,
    })?;
    match prog.attach(name) {
        Ok(id) => {
            keep_link(links, link_name("raw", name), || prog.take_link(id))?;
            probes.push(ok("raw_tracepoint/sched_process_fork"));
        }
        Err(e) => probes.push(skip("raw_tracepoint/sched_process_fork", e.to_string())),
    }
    let name = "inet_sock_set_state";
    attach_tp(ebpf, name, ("sock", name), tfs, probes, links)?;
    // Signals to the agent: who stops or kills it.
    let name = "signal_generate";
    attach_tp(ebpf, name, ("signal", name), tfs, probes, links)
}

/// The hooks whose tracepoints exist here with the layout the programs expect.
fn usable_syscalls(
    tfs: &Tracefs,
    reference: SysLayout,
    probes: &mut Vec<ProbeStatus>,
) -> Vec<syscalls::Hook> {
    let mut usable = Vec::new();
    for h in syscalls::hooks() {
        let enter = format!("sys_enter_{}", h.tracepoint);
        let exit = format!("sys_exit_{}", h.tracepoint);
        let label = format!("tracepoint/syscalls/{}", h.tracepoint);
        if !tfs.exists("syscalls", &enter) || !tfs.exists("syscalls", &exit) {
            probes.push(skip(
                &label,
                "tracepoint does not exist on this kernel (syscall not built in)".into(),
            ));
            continue;
        }
        let same = tfs
            .format("syscalls", &enter)
            .ok()
            .and_then(|f| sys_enter_layout(&f))
            .filter(|(l, args)| l.nr == reference.nr && args_are_slots(args, reference.args));
        if same.is_none() {
            probes.push(skip(&label, "unexpected sys_enter layout".into()));
            continue;
        }
        usable.push(h);
    }
    usable
}

/// Publishes each usable hook's recipe under its syscall number.
fn fill_syscall_table(ebpf: &mut Ebpf, usable: &[syscalls::Hook]) -> Result<(), LoadError> {
    let map_err = |source| LoadError::Map {
        name: SYSCALLS_MAP.into(),
        source,
    };
    let map = ebpf
        .map_mut(SYSCALLS_MAP)
        .ok_or_else(|| LoadError::Missing(SYSCALLS_MAP.into()))?;
    let mut table: Array<_, SyscallDesc> = Array::try_from(map).map_err(map_err)?;
    for h in usable {
        table.set(h.nr, h.desc, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Attaches the shared `sys_enter`/`sys_exit` programs to each usable syscall's tracepoints;
/// returns how many calls are hooked.
fn attach_syscalls(
    ebpf: &mut Ebpf,
    usable: &[syscalls::Hook],
    probes: &mut Vec<ProbeStatus>,
    links: &mut Links,
) -> Result<usize, LoadError> {
    let mut attached = 0;
    for (prog_name, prefix) in [("sys_enter", "sys_enter_"), ("sys_exit", "sys_exit_")] {
        let prog: &mut TracePoint = program(ebpf, prog_name)?;
        prog.load().map_err(|source| LoadError::Program {
            name: prog_name.into(),
            source,
        })?;
        for h in usable {
            let tp_name = format!("{prefix}{}", h.tracepoint);
            match prog.attach("syscalls", &tp_name) {
                Err(e) => probes.push(skip(
                    &format!("tracepoint/syscalls/{tp_name}"),
                    e.to_string(),
                )),
                Ok(id) => {
                    keep_link(links, link_name("syscalls", &tp_name), || {
                        prog.take_link(id)
                    })?;
                    if prefix == "sys_exit_" {
                        attached += 1;
                    }
                }
            }
        }
    }
    for h in usable {
        probes.push(ok(&format!("tracepoint/syscalls/{}", h.tracepoint)));
    }
    Ok(attached)
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::Missing(name.into()))?;
    prog.try_into().map_err(|source| LoadError::Program {
        name: name.into(),
        source,
    })
}

fn attach_tp(
    ebpf: &mut Ebpf,
    prog_name: &str,
    (group, tp_name): (&str, &str),
    tfs: &Tracefs,
    probes: &mut Vec<ProbeStatus>,
    links: &mut Links,
) -> Result<(), LoadError> {
    let label = format!("tracepoint/{group}/{tp_name}");
    if !tfs.exists(group, tp_name) {
        probes.push(skip(
            &label,
            "tracepoint does not exist on this kernel".into(),
        ));
        return Ok(());
    }
    let prog: &mut TracePoint = program(ebpf, prog_name)?;
    prog.load().map_err(|source| LoadError::Program {
        name: prog_name.into(),
        source,
    })?;
    match prog.attach(group, tp_name) {
        Ok(id) => {
            keep_link(links, link_name(group, tp_name), || prog.take_link(id))?;
            probes.push(ok(&label));
        }
        Err(e) => probes.push(skip(&label, e.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_layout_check() {
        let text = include_str!("../../tests/fixtures/tracefs/sys_enter_openat.format");
        let f = tracefs::Format::parse("syscalls/sys_enter_openat", text, Path::new("x"))
            .expect("parse");
        let (layout, args) = sys_enter_layout(&f).expect("layout");
        assert_eq!(layout, SysLayout { nr: 8, args: 16 });
        assert!(args_are_slots(&args, 16));
        assert!(!args_are_slots(&args, 24));
    }
}
