//! Profiles on disk: one YAML file per workload, written atomically (temporary file, fsync,
//! rename, fsync of the directory), so that a crash mid-write leaves the previous version intact.
use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::Profile;

#[derive(Debug, Error)]
pub(crate) enum StoreError {
    #[error("baseline directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("no profile for workload `{0}`")]
    NotFound(String),
}

/// A directory of profiles (created 0700: profiles describe what workloads do).
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
}

/// File name of a workload's profile: the key with anything but [A-Za-z0-9._-] escaped.
pub(crate) fn file_name(workload: &str) -> String {
    let mut s = String::new();
    for b in workload.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => s.push(b as char),
            _ => s.push_str(&format!("%{b:02x}")),
        }
    }
    s + ".yaml"
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn path_of(&self, workload: &str) -> PathBuf {
        self.dir.join(file_name(workload))
    }

    /// Writes a profile atomically.
    pub(crate) fn save(&self, p: &Profile) -> Result<(), StoreError> {
        let path = self.path_of(&p.workload);
        let text = serde_norway::to_string(p).map_err(|e| StoreError::Invalid {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let tmp = path.with_extension("yaml.tmp");
        let werr = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        f.write_all(text.as_bytes()).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(werr)?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
        Ok(())
    }

    /// Parses one profile file.
    pub(crate) fn read(path: &Path) -> Result<Profile, StoreError> {
        let text = fs::read_to_string(path).map_err(|source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        serde_norway::from_str(&text).map_err(|e| StoreError::Invalid {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Every readable profile, and the errors of the others. Leftover temporary files (a crash
    /// mid-write) are removed; unreadable profiles are renamed `*.corrupt` so that they are kept
    /// for inspection but never block the agent.
    pub(crate) fn load_all(&self) -> (Vec<Profile>, Vec<StoreError>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect::<Vec<_>>(),
            Err(source) => {
                return (
                    good,
                    vec![StoreError::Dir {
                        path: self.dir.clone(),
                        source,
                    }],
                );
            }
        };
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".yaml.tmp") {
                let _ = fs::remove_file(&path);
            } else if name.ends_with(".yaml") {
                match Store::read(&path) {
                    Ok(p) if file_name(&p.workload) == name => good.push(p),
                    Ok(p) => bad.push(StoreError::Invalid {
                        path: path.clone(),
                        msg: format!(
                            "holds workload `{}`, expected in {}",
                            p.workload,
                            file_name(&p.workload)
                        ),
                    }),
                    Err(e) => {
                        let _ = fs::rename(&path, path.with_extension("yaml.corrupt"));
                        bad.push(e);
                    }
                }
            }
        }
        good.sort_by(|a, b| a.workload.cmp(&b.workload));
        (good, bad)
    }

    pub(crate) fn get(&self, workload: &str) -> Result<Profile, StoreError> {
        let path = self.path_of(workload);
        if !path.exists() {
            return Err(StoreError::NotFound(workload.into()));
        }
        Store::read(&path)
    }

    pub(crate) fn remove(&self, workload: &str) -> Result<(), StoreError> {
        let path = self.path_of(workload);
        fs::remove_file(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(workload.into()),
            _ => StoreError::Write { path, source: e },
        })
    }
}

/// Changes queued for a running agent (and applied at the next start otherwise): imported
/// profiles and resets, in `<dir>/incoming/`.
pub(crate) enum Incoming {
    Import(Profile),
    Reset(String),
}

impl Store {
    fn incoming_dir(&self) -> PathBuf {
        self.dir.join("incoming")
    }

    /// Queues a profile (validated) for the agent.
    pub(crate) fn queue_import(&self, p: &Profile) -> Result<PathBuf, StoreError> {
        let inc = Store::open(&self.incoming_dir())?;
        inc.save(p)?;
        Ok(inc.path_of(&p.workload))
    }

    /// Queues a reset: the agent forgets the profile and learns the workload anew.
    pub(crate) fn queue_reset(&self, workload: &str) -> Result<(), StoreError> {
        let inc = Store::open(&self.incoming_dir())?;
        let path = inc.dir.join(file_name(workload)).with_extension("reset");
        fs::write(&path, workload).map_err(|source| StoreError::Write { path, source })
    }

    /// Takes the queued changes (removing them) and the errors of unreadable ones.
    pub(crate) fn take_incoming(&self) -> (Vec<Incoming>, Vec<StoreError>) {
        let dir = self.incoming_dir();
        let Ok(rd) = fs::read_dir(&dir) else {
            return (Vec::new(), Vec::new());
        };
        let mut out = Vec::new();
        let mut errs = Vec::new();
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".yaml") {
                match Store::read(&path) {
                    Ok(p) => out.push(Incoming::Import(p)),
                    Err(e) => errs.push(e),
                }
                let _ = fs::remove_file(&path);
            } else if name.ends_with(".reset") {
                if let Ok(w) = fs::read_to_string(&path) {
                    out.push(Incoming::Reset(w));
                }
                let _ = fs::remove_file(&path);
            }
        }
        (out, errs)
    }
}
