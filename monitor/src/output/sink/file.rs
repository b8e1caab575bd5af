//! File sink: JSON lines appended to a file created with mode 0600, rotated by size
//! (`alerts.json` -> `alerts.json.1` -> ... -> `alerts.json.N`, the oldest deleted).
//!
//! Each batch is written whole and synced to disk before it counts as delivered. A failed write
//! (disk full) is cut back to the last complete line and retried later, so the file never holds
//! a torn alert and nothing is lost while the queue has room.
use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{SinkError, Transport};

pub(crate) struct FileSink {
    /// `None` only while a write runs on the blocking pool.
    state: Option<FileState>,
}

struct FileState {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
    /// Alerts at the head of the batch being retried that are already in the file.
    written: usize,
}

fn open_file(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: tighten it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl FileSink {
    pub(crate) fn open(path: &Path, max_bytes: u64, max_files: u32) -> Result<FileSink, SinkError> {
        let io = |source| SinkError::Io {
            what: format!("file sink {}", path.display()),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = open_file(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        Ok(FileSink {
            state: Some(FileState {
                path: path.to_path_buf(),
                file,
                size,
                max_bytes,
                max_files,
                written: 0,
            }),
        })
    }
}

impl FileState {
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_all()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.max_files));
            for i in (1..self.max_files).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = open_file(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Appends whole lines; on failure cuts back to the last complete line.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => {
                self.size += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.size);
                Err(e)
            }
        }
    }

    /// Writes the batch, rotating between lines so no file grows past `max_bytes` (a single
    /// longer alert gets a file of its own). After a failure part-way, the alerts already
    /// written are remembered and skipped when the same batch is retried.
    fn write(&mut self, batch: &[Arc<[u8]>]) -> std::io::Result<()> {
        let mut done = std::mem::take(&mut self.written).min(batch.len());
        let mut chunk = Vec::new();
        let mut in_chunk = 0;
        for b in &batch[done..] {
            let need = b.len() as u64 + 1;
            let used = self.size + chunk.len() as u64;
            if used > 0 && used + need > self.max_bytes {
                let r = self.append(&chunk);
                if r.is_ok() {
                    done += in_chunk;
                    in_chunk = 0;
                    chunk.clear();
                }
                if let Err(e) = r.and_then(|()| self.rotate()) {
                    self.written = done;
                    return Err(e);
                }
            }
            chunk.extend_from_slice(b);
            chunk.push(b'\n');
            in_chunk += 1;
        }
        self.append(&chunk).inspect_err(|_| self.written = done)
    }
}

impl Transport for FileSink {
    async fn send(&mut self, batch: &[Arc<[u8]>]) -> Result<(), SinkError> {
        let Some(mut state) = self.state.take() else {
            return Err(SinkError::Request("file sink lost its state".into()));
        };
        let batch = batch.to_vec();
        let what = format!("writing {}", state.path.display());
        let (state, r) = tokio::task::spawn_blocking(move || {
            let r = state.write(&batch);
            (state, r)
        })
        .await
        .map_err(|e| SinkError::Request(format!("file writer task: {e}")))?;
        self.state = Some(state);
        r.map_err(|source| SinkError::Io { what, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotates_by_size_and_keeps_n_files() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("sink");
        let path = dir.join("alerts.json");
        let mut s = FileSink::open(&path, 100, 2).expect("open");
        for i in 0..10 {
            let line: Arc<[u8]> = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(30))
                .into_bytes()
                .into();
            s.send(&[line]).await.expect("write");
        }
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let cur = read(path.clone());
        let one = read(rotated(&path, 1));
        let two = read(rotated(&path, 2));
        assert!(!rotated(&path, 3).exists(), "only 2 rotated files are kept");
        // Newest in the current file, older ones in .1 then .2; none torn.
        assert!(cur.contains("\"n\":9"), "{cur}");
        assert!(one.contains("\"n\":7") || one.contains("\"n\":6"), "{one}");
        for text in [&cur, &one, &two] {
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).expect("whole JSON line");
            }
            assert!(text.len() <= 100);
        }
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
