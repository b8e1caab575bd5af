//! The agent's own capabilities, checked before anything is loaded so a missing one is named
//! instead of surfacing as a bare EPERM from the kernel.
use thiserror::Error;

/// A Linux capability the agent cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    pub(crate) name: &'static str,
    pub(crate) bit: u32,
    /// What the agent does with it.
    pub(crate) why: &'static str,
}

pub(crate) const CAP_SYS_PTRACE: Cap = Cap {
    name: "CAP_SYS_PTRACE",
    bit: 19,
    why: "read /proc/<pid>/exe and cwd of processes with more privileges than the agent",
};
pub(crate) const CAP_SYS_ADMIN: Cap = Cap {
    name: "CAP_SYS_ADMIN",
    bit: 21,
    why: "stands in for CAP_BPF and CAP_PERFMON on kernels older than 5.8",
};
pub(crate) const CAP_SYS_RESOURCE: Cap = Cap {
    name: "CAP_SYS_RESOURCE",
    bit: 24,
    why: "raise RLIMIT_MEMLOCK for maps on kernels older than 5.11 (no memcg accounting)",
};
pub(crate) const CAP_PERFMON: Cap = Cap {
    name: "CAP_PERFMON",
    bit: 38,
    why: "attach tracepoint programs and read kernel memory from them",
};
pub(crate) const CAP_BPF: Cap = Cap {
    name: "CAP_BPF",
    bit: 39,
    why: "create BPF maps and load programs",
};

/// Without these the agent cannot capture at all.
pub(crate) const REQUIRED: &[Cap] = &[CAP_BPF, CAP_PERFMON];
/// Without these it runs, with the degradation each `why` describes.
/// (CAP_DAC_READ_SEARCH is not among them: the /proc files the agent reads are world-readable or
/// guarded by the ptrace check, which CAP_SYS_PTRACE passes.)
pub(crate) const RECOMMENDED: &[Cap] = &[CAP_SYS_PTRACE, CAP_SYS_RESOURCE];

#[derive(Debug, Error)]
pub(crate) enum CapError {
    #[error(
        "missing capabilit{} {}: {}. Grant {} (e.g. securityContext.capabilities.add), or run as full root",
        if .0.len() == 1 { "y" } else { "ies" },
        .0.iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
        .0.iter().map(|c| format!("{} is needed to {}", c.name, c.why)).collect::<Vec<_>>().join("; "),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    Missing(Vec<Cap>),
}

/// The effective capability mask from a `/proc/<pid>/status` text.
pub(crate) fn effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has(mask: u64, c: Cap) -> bool {
    mask & (1u64 << c.bit) != 0
}

/// Checks `mask`: `Err` names every missing required capability; `Ok` lists the recommended
/// ones that are missing (to be logged as warnings).
pub(crate) fn check(mask: u64) -> Result<Vec<Cap>, CapError> {
    let admin = has(mask, CAP_SYS_ADMIN);
    let missing: Vec<Cap> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !has(mask, *c) && !admin)
        .collect();
    if !missing.is_empty() {
        return Err(CapError::Missing(missing));
    }
    Ok(RECOMMENDED
        .iter()
        .copied()
        .filter(|c| !has(mask, *c))
        .collect())
}

/// The agent's own effective capabilities (`None` if /proc cannot tell: the kernel decides).
pub(crate) fn current() -> Option<u64> {
    effective(&crate::process::procfs::self_status()?)
}

/// Raises RLIMIT_MEMLOCK so map creation works on kernels before 5.11 (a no-op need on newer
/// ones, which account BPF memory to the cgroup); failure is only logged by the caller.
pub(crate) fn raise_memlock() -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = 0x000001ffffffffff;

    #[test]
    fn parses_cap_eff() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective(s), Some(ALL));
        assert_eq!(effective("Name: x\n"), None);
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(check(ALL).expect("root"), Vec::<Cap>::new());
        let just_bpf = (1 << 39) | (1 << 38);
        let warn = check(just_bpf).expect("enough to run");
        assert_eq!(warn, RECOMMENDED.to_vec());
        let e = check(just_bpf & !(1 << 38)).expect_err("no perfmon");
        let text = e.to_string();
        assert!(text.contains("missing capability CAP_PERFMON"), "{text}");
        assert!(text.contains("attach tracepoint"), "{text}");
        let e = check(0).expect_err("nothing");
        assert!(e.to_string().contains("CAP_BPF, CAP_PERFMON"), "{e}");
        // CAP_SYS_ADMIN covers both on old kernels.
        assert!(check(1 << 21).is_ok());
    }
}
