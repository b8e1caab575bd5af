//! Events for unit tests of the stages after `event` (rules, interest): a process, an event of
//! any detail, and the same event inside a container of a pod.
use std::sync::Arc;

use super::{
    Attribution, ContainerView, Detail, Event, MetadataStatus, PodMeta, ProcessView, Status,
};
use crate::process::Source;

/// A root process `pid` running `exe` as `comm`, in `/`.
pub(crate) fn process(pid: u32, comm: &str, exe: &str) -> ProcessView {
    ProcessView {
        pid,
        tid: pid,
        id: format!("id{pid}").into(),
        ppid: 1,
        comm: comm.into(),
        exe: exe.into(),
        args: vec![exe.to_string()].into(),
        command_line: exe.into(),
        cwd: Some("/".into()),
        uid: 0,
        gid: 0,
        euid: 0,
        egid: 0,
        source: Source::Exec,
        ancestors: vec![],
        start_ticks: 0,
    }
}

/// An event of `kind` by `p` on the host.
pub(crate) fn event(kind: &'static str, p: ProcessView, detail: Detail) -> Event {
    Event {
        time: "2026-11-22T00:00:00.000000000Z".into(),
        kind,
        node: "n".into(),
        process: p,
        cgroup_id: 1,
        ticks: 0,
        folded: 0,
        attribution: Attribution::host(),
        detail,
    }
}

/// `e` as done in container `id` of pod `ns/p`.
pub(crate) fn in_container(mut e: Event, id: &str) -> Event {
    e.attribution = Attribution {
        container: Some(ContainerView {
            pod_uid_from_cgroup: None,
            id: id.into(),
            runtime: "containerd".into(),
            meta: None,
        }),
        pod: Some(Arc::new(PodMeta {
            name: "p".into(),
            namespace: "ns".into(),
            ..PodMeta::default()
        })),
        metadata: MetadataStatus {
            status: Status::Complete,
            scope: "container",
            reason: None,
        },
    };
    e
}
