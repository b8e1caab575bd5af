//! CRI client: container and pod sandbox metadata from the container runtime (containerd,
//! CRI-O, cri-dockerd) over its unix socket, with no Kubernetes API server involved.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerFilter, ListContainersRequest, PodSandboxStatusRequest, VersionRequest,
    runtime_service_client::RuntimeServiceClient,
};
use thiserror::Error;
use tonic::transport::{Channel, Endpoint, Uri};

use super::workload_of;
use crate::event::{ContainerMeta, PodMeta};

/// Sockets probed, in order, when none is configured.
pub(crate) const DEFAULT_SOCKETS: [&str; 5] = [
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/cri-dockerd.sock",
    "/var/run/cri-dockerd.sock",
];

/// How long one CRI call may take before it counts as failed.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum CriError {
    #[error("no CRI socket found (looked at {0})")]
    NoSocket(String),
    #[error("CRI socket {path}: {reason}")]
    Unavailable { path: String, reason: String },
    #[error("container {0} not known to the runtime (yet)")]
    NotFound(String),
    #[error("CRI call {call} failed: {reason}")]
    Call { call: &'static str, reason: String },
}

impl CriError {
    /// Short label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CriError::NoSocket(_) => "no_socket",
            CriError::Unavailable { .. } => "socket_unavailable",
            CriError::NotFound(_) => "not_found",
            CriError::Call { .. } => "call_failed",
        }
    }
}

/// The socket to use: the configured one, else the first default that exists.
pub(crate) fn pick_socket(configured: Option<&Path>) -> Result<PathBuf, CriError> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| CriError::NoSocket(DEFAULT_SOCKETS.join(", ")))
}

/// A connection to one runtime socket.
pub(crate) struct CriClient {
    path: PathBuf,
    /// The runtime's own name (`containerd`, `cri-o`), from the CRI Version call.
    runtime: String,
    client: RuntimeServiceClient<Channel>,
}

impl CriClient {
    pub(crate) async fn connect(path: &Path) -> Result<CriClient, CriError> {
        let unavailable = |reason: String| CriError::Unavailable {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(unavailable("does not exist".into()));
        }
        let sock = path.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the unix socket.
        let endpoint = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(CALL_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut client = RuntimeServiceClient::new(channel);
        let runtime = client
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| unavailable(format!("CRI v1 Version call failed: {}", e.message())))?
            .into_inner()
            .runtime_name;
        Ok(CriClient {
            path: path.to_path_buf(),
            runtime,
            client,
        })
    }

    /// Another handle on the same connection (requests run concurrently over it).
    pub(crate) fn clone_handle(&self) -> CriClient {
        CriClient {
            path: self.path.clone(),
            runtime: self.runtime.clone(),
            client: self.client.clone(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata of a container (or of a pod sandbox, when `id` is one: its pause process).
    pub(crate) async fn lookup(&mut self, id: &str) -> Result<ContainerMeta, CriError> {
        let path = self.path.display().to_string();
        // Transport failures (the socket went away) are `Unavailable`: the caller reconnects.
        let call_err = |call: &'static str| {
            let path = path.clone();
            move |e: tonic::Status| match e.code() {
                tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown => CriError::Unavailable {
                    path: path.clone(),
                    reason: format!("{call}: {}", e.message()),
                },
                _ => CriError::Call {
                    call,
                    reason: e.message().to_string(),
                },
            }
        };
        let resp = self
            .client
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    id: id.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(call_err("ListContainers"))?
            .into_inner();
        let container = resp.containers.into_iter().find(|c| c.id == id);
        let (sandbox_id, mut meta) = match container {
            Some(c) => {
                let image = c.image.as_ref().map(|i| {
                    if i.user_specified_image.is_empty() {
                        i.image.clone()
                    } else {
                        i.user_specified_image.clone()
                    }
                });
                let meta = ContainerMeta {
                    id: c.id.clone(),
                    name: c
                        .metadata
                        .as_ref()
                        .map(|m| m.name.clone())
                        .unwrap_or_default(),
                    image: image.unwrap_or_default(),
                    image_digest: c.image_ref.clone(),
                    sandbox: false,
                    runtime: self.runtime.clone(),
                    labels: c.labels.into_iter().collect(),
                    pod: None,
                };
                (c.pod_sandbox_id, meta)
            }
            None => (
                id.to_string(),
                ContainerMeta {
                    id: id.to_string(),
                    name: "POD".into(),
                    sandbox: true,
                    runtime: self.runtime.clone(),
                    ..ContainerMeta::default()
                },
            ),
        };
        let sandbox = self
            .client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.clone(),
                verbose: false,
            })
            .await;
        match sandbox {
            Ok(r) => {
                if let Some(s) = r.into_inner().status {
                    let md = s.metadata.unwrap_or_default();
                    let labels: BTreeMap<String, String> = s.labels.into_iter().collect();
                    let annotations: BTreeMap<String, String> = s.annotations.into_iter().collect();
                    let workload = workload_of(&md.name, &labels, &annotations);
                    meta.pod = Some(std::sync::Arc::new(PodMeta {
                        name: md.name,
                        namespace: md.namespace,
                        uid: md.uid,
                        labels,
                        workload,
                    }));
                }
            }
            Err(e) if e.code() == tonic::Code::NotFound && meta.sandbox => {
                return Err(CriError::NotFound(id.into()));
            }
            // A container whose sandbox vanished: report the container alone.
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(call_err("PodSandboxStatus")(e)),
        }
        Ok(meta)
    }
}
