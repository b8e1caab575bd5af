//! Where an event ran: host or container, the container's runtime metadata, its pod and the
//! pod's workload, and how complete that knowledge is. Built by `enrich`, read by everything
//! after it.
use std::{collections::BTreeMap, sync::Arc};

use serde::Serialize;

/// Container facts from the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerMeta {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) image_digest: String,
    /// True for a pod's sandbox (pause) container.
    pub(crate) sandbox: bool,
    /// Runtime name reported over CRI.
    #[serde(skip)]
    pub(crate) runtime: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(skip)]
    pub(crate) pod: Option<Arc<PodMeta>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct PodMeta {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) uid: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) workload: Option<Workload>,
}

/// The controller that owns a pod, inferred from the labels the controllers set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Workload {
    pub(crate) kind: &'static str,
    pub(crate) name: String,
}

/// How complete an event's container/pod metadata is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Complete,
    Pending,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MetadataStatus {
    pub(crate) status: Status,
    /// `host`, `container`, or `unknown` (process and cgroup gone before they were read).
    pub(crate) scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// The container part of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContainerView {
    // Shared: every event of the container carries them.
    pub(crate) id: Arc<str>,
    pub(crate) runtime: Arc<str>,
    /// The pod's uid as the kubelet's cgroup path names it, given when the runtime could not
    /// name the pod (it is down, or has not answered yet): the pod is then still identifiable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pod_uid_from_cgroup: Option<String>,
    #[serde(flatten)]
    pub(crate) meta: Option<Arc<ContainerMeta>>,
}

/// What an event says about where it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) container: Option<ContainerView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pod: Option<Arc<PodMeta>>,
    pub(crate) metadata: MetadataStatus,
}

impl Attribution {
    /// The process and its cgroup were gone before they could be read: host or container is
    /// unknown, and the event says so instead of guessing.
    pub(crate) fn vanished() -> Attribution {
        Attribution {
            container: None,
            pod: None,
            metadata: MetadataStatus {
                status: Status::Missing,
                scope: "unknown",
                reason: Some(
                    "the process exited and its cgroup was removed before they could be read"
                        .into(),
                ),
            },
        }
    }

    /// A host process, outside any container.
    pub(crate) fn host() -> Attribution {
        Attribution {
            container: None,
            pod: None,
            metadata: MetadataStatus {
                status: Status::Complete,
                scope: "host",
                reason: None,
            },
        }
    }

    /// The workload an event belongs to: the one key rules (dedup), baselines (profiles) and
    /// outputs share. `namespace/Kind/name` for a pod whose controller is known,
    /// `namespace/Pod/name` for a bare pod, `container/<id>` for a container without pod
    /// metadata, `None` on the host.
    pub(crate) fn workload_key(&self) -> Option<String> {
        if let Some(p) = &self.pod {
            return Some(match &p.workload {
                Some(w) => format!("{}/{}/{}", p.namespace, w.kind, w.name),
                None => format!("{}/Pod/{}", p.namespace, p.name),
            });
        }
        self.container
            .as_ref()
            .map(|c| format!("container/{}", c.id))
    }
}
