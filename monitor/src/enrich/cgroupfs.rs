//! Bounded walks of the host's cgroup2 tree: the start-up scan for container cgroups and the
//! by-inode lookup of a cgroup whose process is gone.
use std::{os::unix::fs::MetadataExt, path::Path};

/// cgroup2 id of the root cgroup: host processes outside any slice.
pub(super) const ROOT_CGROUP_ID: u64 = 1;

/// Directories a walk of the cgroup2 tree visits at most, and how deep it goes.
pub(super) const MAX_WALK: usize = 100_000;
pub(super) const MAX_WALK_DEPTH: u32 = 10;

/// Visits the cgroup2 directories below `root` (bounded), calling `visit(inode, path below the
/// root)` until it returns false. Returns false if the bound stopped the walk.
pub(super) fn walk_cgroups(root: &Path, mut visit: impl FnMut(u64, &str) -> bool) -> bool {
    let mut stack = vec![(root.to_path_buf(), 0u32)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        seen += 1;
        if seen > MAX_WALK {
            return false;
        }
        if let (Ok(meta), Ok(rel)) = (std::fs::metadata(&dir), dir.strip_prefix(root))
            && !visit(meta.ino(), &format!("/{}", rel.display()))
        {
            return true;
        }
        if depth < MAX_WALK_DEPTH
            && let Ok(rd) = std::fs::read_dir(&dir)
        {
            stack.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| (e.path(), depth + 1)),
            );
        }
    }
    true
}
