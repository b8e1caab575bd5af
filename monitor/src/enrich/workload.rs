//! Which controller owns a pod, inferred from the labels the controllers set (no API server).
use std::collections::BTreeMap;

use crate::event::Workload;

/// Infers the owning workload of a pod from its name and labels (no API server needed).
pub(crate) fn workload_of(
    pod: &str,
    labels: &BTreeMap<String, String>,
    _annotations: &BTreeMap<String, String>,
) -> Option<Workload> {
    let label = |k: &str| labels.get(k).map(String::as_str);
    let strip_last = |s: &str| s.rsplit_once('-').map(|(a, _)| a.to_string());
    if let Some(job) = label("batch.kubernetes.io/job-name").or(label("job-name")) {
        return Some(Workload {
            kind: "Job",
            name: job.to_string(),
        });
    }
    if label("statefulset.kubernetes.io/pod-name").is_some() {
        return strip_last(pod).map(|name| Workload {
            kind: "StatefulSet",
            name,
        });
    }
    if let Some(hash) = label("pod-template-hash") {
        let suffix = format!("-{hash}-");
        return pod.rfind(&suffix).map(|i| Workload {
            kind: "Deployment",
            name: pod[..i].to_string(),
        });
    }
    if label("controller-revision-hash").is_some() && label("pod-template-generation").is_some() {
        return strip_last(pod).map(|name| Workload {
            kind: "DaemonSet",
            name,
        });
    }
    None
}
