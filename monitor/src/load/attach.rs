//! Attaching the programs to their tracepoints, in the order that keeps attribution and the
//! process table complete, and keeping the links when the set is to be pinned. In floor mode
//! (the bench's mechanism floor) programs that return at once take every real program's place.
use aya::{
    Ebpf,
    programs::{ProgramError, RawTracePoint, TracePoint, links::FdLink},
};

use super::{
    LoadError, ProbeStatus, ok,
    pin::{self, link_name},
    skip, syscalls,
    tracefs::Tracefs,
};

/// The do-nothing programs of floor mode.
const FLOOR_TP: &str = "floor_tp";
const FLOOR_RAW: &str = "floor_raw";

/// Attaches the programs of one object.
pub(super) struct Attacher<'a> {
    pub(super) ebpf: &'a mut Ebpf,
    pub(super) tfs: &'a Tracefs,
    pub(super) probes: &'a mut Vec<ProbeStatus>,
    /// Links taken out of their programs when the set is to be pinned (name, link).
    pub(super) links: Option<Vec<(String, FdLink)>>,
    /// Attach the do-nothing programs instead of the real ones.
    pub(super) floor: bool,
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::Missing(name.into()))?;
    prog.try_into().map_err(|source| LoadError::Program {
        name: name.into(),
        source,
    })
}

/// Loads a program into the kernel unless it already is (one program may serve many
/// tracepoints).
fn load_once(
    name: &str,
    loaded: bool,
    load: impl FnOnce() -> Result<(), ProgramError>,
) -> Result<(), LoadError> {
    if loaded {
        return Ok(());
    }
    load().map_err(|source| LoadError::Program {
        name: name.into(),
        source,
    })
}

/// Keeps a just-attached link when the set is to be pinned.
fn keep_link<L: TryInto<FdLink>>(
    links: &mut Option<Vec<(String, FdLink)>>,
    name: String,
    take: impl FnOnce() -> Result<L, ProgramError>,
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

impl Attacher<'_> {
    fn tp_program(&self, real: &'static str) -> &'static str {
        if self.floor { FLOOR_TP } else { real }
    }

    /// cgroup, process lifecycle, TCP state and signal programs, in the order that keeps
    /// attribution and the process table complete.
    pub(super) fn lifecycle(&mut self) -> Result<(), LoadError> {
        // cgroup creation before anything a task in the new cgroup can do: attribution of
        // containers that are gone before the agent can look at them depends on it.
        for name in ["cgroup_mkdir", "cgroup_rmdir"] {
            self.tp(name, ("cgroup", name))?;
        }
        // Process lifecycle next, so that the process table never misses a fork of a process
        // that later makes a syscall.
        for name in ["sched_process_exec", "sched_process_exit"] {
            self.tp(name, ("sched", name))?;
        }
        self.raw("sched_process_fork")?;
        let name = "inet_sock_set_state";
        self.tp(name, ("sock", name))?;
        // Operations submitted through io_uring, which no syscall tracepoint sees.
        let name = "io_uring_submit_req";
        self.tp(name, ("io_uring", name))?;
        // Signals to the agent: who stops or kills it.
        let name = "signal_generate";
        self.tp(name, ("signal", name))
    }

    fn raw(&mut self, tracepoint: &'static str) -> Result<(), LoadError> {
        let name = if self.floor { FLOOR_RAW } else { tracepoint };
        let label = format!("raw_tracepoint/{tracepoint}");
        let prog: &mut RawTracePoint = program(self.ebpf, name)?;
        let loaded = prog.fd().is_ok();
        load_once(name, loaded, || prog.load())?;
        match prog.attach(tracepoint) {
            Ok(id) => {
                keep_link(&mut self.links, link_name("raw", tracepoint), || {
                    prog.take_link(id)
                })?;
                self.probes.push(ok(&label));
            }
            Err(e) => self.probes.push(skip(&label, e.to_string())),
        }
        Ok(())
    }

    fn tp(
        &mut self,
        prog_name: &'static str,
        (group, tp_name): (&str, &str),
    ) -> Result<(), LoadError> {
        let label = format!("tracepoint/{group}/{tp_name}");
        if !self.tfs.exists(group, tp_name) {
            self.probes.push(skip(
                &label,
                "tracepoint does not exist on this kernel".into(),
            ));
            return Ok(());
        }
        let name = self.tp_program(prog_name);
        let prog: &mut TracePoint = program(self.ebpf, name)?;
        let loaded = prog.fd().is_ok();
        load_once(name, loaded, || prog.load())?;
        match prog.attach(group, tp_name) {
            Ok(id) => {
                keep_link(&mut self.links, link_name(group, tp_name), || {
                    prog.take_link(id)
                })?;
                self.probes.push(ok(&label));
            }
            Err(e) => self.probes.push(skip(&label, e.to_string())),
        }
        Ok(())
    }

    /// Attaches the shared `sys_enter`/`sys_exit` programs to each usable syscall's
    /// tracepoints (their recipes are already in the syscall table); returns how many calls are
    /// hooked.
    pub(super) fn syscalls(&mut self, usable: &[syscalls::Hook]) -> Result<usize, LoadError> {
        let mut attached = 0;
        for (prog_name, prefix) in [("sys_enter", "sys_enter_"), ("sys_exit", "sys_exit_")] {
            let name = self.tp_program(prog_name);
            let prog: &mut TracePoint = program(self.ebpf, name)?;
            let loaded = prog.fd().is_ok();
            load_once(name, loaded, || prog.load())?;
            for h in usable {
                let tp_name = format!("{prefix}{}", h.tracepoint);
                match prog.attach("syscalls", &tp_name) {
                    Err(e) => self.probes.push(skip(
                        &format!("tracepoint/syscalls/{tp_name}"),
                        e.to_string(),
                    )),
                    Ok(id) => {
                        keep_link(&mut self.links, link_name("syscalls", &tp_name), || {
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
            self.probes
                .push(ok(&format!("tracepoint/syscalls/{}", h.tracepoint)));
        }
        Ok(attached)
    }
}
