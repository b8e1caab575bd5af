//! A sink's queue: encoded alerts in memory up to a bound, then (optionally) in a disk spool,
//! always delivered oldest first.
//!
//! The spool is one file of length-prefixed records (`u32` little-endian length, then the bytes)
//! and a small offset file saying how much of it was delivered. Memory holds the oldest alerts;
//! once anything is spooled, newer alerts go to the spool too until it is drained, so order holds.
//! A spool left by a previous run is delivered first. A torn record at the end (a crash while
//! appending) is cut off with a warning.
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tracing::warn;

/// One queued alert, already encoded for the sink.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) bytes: Arc<[u8]>,
    /// For alerts read back from the spool: the spool offset just past them.
    spool_end: Option<u64>,
}

/// Why an alert could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Memory queue full and no spool configured.
    Queue,
    /// The spool reached its size limit.
    Spool,
    /// Writing the spool failed (disk full...).
    SpoolError,
}

impl Full {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Full::Queue => "queue_full",
            Full::Spool => "spool_full",
            Full::SpoolError => "spool_error",
        }
    }
}

pub(crate) struct Buffer {
    mem: VecDeque<Entry>,
    cap: usize,
    spool: Option<Spool>,
}

struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Where the next read starts.
    read: u64,
    /// Everything before this was delivered.
    committed: u64,
    max_bytes: u64,
}

fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl Spool {
    fn open(dir: &Path, name: &str, max_bytes: u64) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.spool"));
        let offset_path = dir.join(format!("{name}.spool.offset"));
        let file = open_private(&path)?;
        let len = file.metadata()?.len();
        let committed = std::fs::read_to_string(&offset_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(len);
        Ok(Spool {
            path,
            offset_path,
            file,
            len,
            read: committed,
            committed,
            max_bytes,
        })
    }

    fn unread(&self) -> bool {
        self.read < self.len
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let rec = 4 + bytes.len() as u64;
        if self.len - self.committed + rec > self.max_bytes {
            return Err(Full::Spool);
        }
        let mut buf = Vec::with_capacity(rec as usize);
        buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        buf.extend_from_slice(bytes);
        if let Err(e) = self.file.write_all(&buf) {
            warn!(spool = %self.path.display(), error = %e, "spool write failed");
            // Cut a partial record so the file stays readable.
            let _ = self.file.set_len(self.len);
            return Err(Full::SpoolError);
        }
        self.len += rec;
        Ok(())
    }

    /// Reads the next record; `None` at the end or at a torn tail (which is cut off).
    fn next(&mut self) -> Option<Entry> {
        if !self.unread() {
            return None;
        }
        let mut read = || -> std::io::Result<Vec<u8>> {
            self.file.seek(SeekFrom::Start(self.read))?;
            let mut len = [0u8; 4];
            self.file.read_exact(&mut len)?;
            let n = u32::from_le_bytes(len) as u64;
            if self.read + 4 + n > self.len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "record runs past the end",
                ));
            }
            let mut b = vec![0u8; n as usize];
            self.file.read_exact(&mut b)?;
            Ok(b)
        };
        match read() {
            Ok(b) => {
                self.read += 4 + b.len() as u64;
                Some(Entry {
                    bytes: b.into(),
                    spool_end: Some(self.read),
                })
            }
            Err(e) => {
                warn!(spool = %self.path.display(), offset = self.read, error = %e,
                    "torn spool record cut off (the agent stopped while writing it)");
                let _ = self.file.set_len(self.read);
                self.len = self.read;
                None
            }
        }
    }

    fn commit(&mut self, end: u64) {
        self.committed = end;
        if self.committed >= self.len && self.read >= self.len {
            // Fully delivered: start over with an empty file.
            if self.file.set_len(0).is_ok() {
                self.len = 0;
                self.read = 0;
                self.committed = 0;
            }
        }
        if let Err(e) = std::fs::write(&self.offset_path, format!("{}\n", self.committed)) {
            warn!(spool = %self.offset_path.display(), error = %e, "spool offset not saved");
        }
    }

    fn pending_bytes(&self) -> u64 {
        self.len - self.committed
    }

    /// Rewrites the spool as `first` followed by everything not yet delivered, so a restart
    /// delivers it all in order.
    fn persist_with(&mut self, first: &[Entry]) -> std::io::Result<u64> {
        let tmp = self.path.with_extension("spool.tmp");
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut n = 0;
        for e in first {
            out.write_all(&(e.bytes.len() as u32).to_le_bytes())?;
            out.write_all(&e.bytes)?;
            n += 1;
        }
        self.file.seek(SeekFrom::Start(self.committed))?;
        let mut rest = Vec::new();
        (&self.file)
            .take(self.len - self.committed)
            .read_to_end(&mut rest)?;
        out.write_all(&rest)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::write(&self.offset_path, "0\n")?;
        Ok(n)
    }
}

impl Buffer {
    /// `spool`: directory, file name stem and size limit.
    pub(crate) fn new(cap: usize, spool: Option<(&Path, &str, u64)>) -> std::io::Result<Buffer> {
        let spool = match spool {
            Some((dir, name, max)) => Some(Spool::open(dir, name, max)?),
            None => None,
        };
        let mut b = Buffer {
            mem: VecDeque::new(),
            cap: cap.max(1),
            spool,
        };
        b.refill();
        Ok(b)
    }

    pub(crate) fn push(&mut self, bytes: Arc<[u8]>) -> Result<(), Full> {
        match &mut self.spool {
            Some(s) if s.unread() || self.mem.len() >= self.cap => s.append(&bytes),
            None if self.mem.len() >= self.cap => Err(Full::Queue),
            _ => {
                self.mem.push_back(Entry {
                    bytes,
                    spool_end: None,
                });
                Ok(())
            }
        }
    }

    fn refill(&mut self) {
        if let Some(s) = &mut self.spool {
            while self.mem.len() < self.cap {
                match s.next() {
                    Some(e) => self.mem.push_back(e),
                    None => break,
                }
            }
        }
    }

    /// The oldest `n` alerts (cheap clones), left in place until [`Buffer::commit`].
    pub(crate) fn peek(&self, n: usize) -> Vec<Arc<[u8]>> {
        self.mem.iter().take(n).map(|e| e.bytes.clone()).collect()
    }

    /// Removes the `n` oldest alerts: they were delivered (or given up on).
    pub(crate) fn commit(&mut self, n: usize) {
        let mut end = None;
        for _ in 0..n {
            match self.mem.pop_front() {
                Some(e) => end = e.spool_end.or(end),
                None => break,
            }
        }
        if let (Some(s), Some(end)) = (&mut self.spool, end) {
            s.commit(end);
        }
        self.refill();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Alerts in memory.
    pub(crate) fn len(&self) -> usize {
        self.mem.len()
    }

    pub(crate) fn spool_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::pending_bytes)
    }

    pub(crate) fn has_spool(&self) -> bool {
        self.spool.is_some()
    }

    /// At shutdown: moves what memory holds into the spool for the next start. Returns how many
    /// alerts are now only on disk; `Err` leaves them to be counted as lost.
    pub(crate) fn persist(&mut self) -> std::io::Result<usize> {
        let Some(s) = &mut self.spool else {
            return Ok(0);
        };
        let fresh: Vec<Entry> = self
            .mem
            .iter()
            .filter(|e| e.spool_end.is_none())
            .cloned()
            .collect();
        s.persist_with(&fresh)?;
        let total = self.mem.len();
        self.mem.clear();
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    fn drain(buf: &mut Buffer) -> Vec<String> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let batch = buf.peek(2);
            out.extend(
                batch
                    .iter()
                    .map(|x| String::from_utf8_lossy(x).into_owned()),
            );
            buf.commit(batch.len());
        }
        out
    }

    #[test]
    fn memory_only_drops_beyond_the_bound() {
        let mut buf = Buffer::new(2, None).expect("buffer");
        assert!(buf.push(b("a")).is_ok());
        assert!(buf.push(b("b")).is_ok());
        assert_eq!(buf.push(b("c")), Err(Full::Queue));
        assert_eq!(drain(&mut buf), ["a", "b"]);
    }

    #[test]
    fn spool_keeps_order_and_survives_restart() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("spool");
        {
            let mut buf = Buffer::new(2, Some((&dir, "s", 1 << 20))).expect("buffer");
            for x in ["1", "2", "3", "4", "5"] {
                buf.push(b(x)).expect("queued");
            }
            // Deliver one, then stop with the rest pending.
            assert_eq!(buf.peek(1)[0].as_ref(), b"1");
            buf.commit(1);
            buf.push(b("6")).expect("queued");
            assert_eq!(buf.persist().expect("persist"), 2);
        }
        let mode = std::fs::metadata(dir.join("s.spool"))
            .expect("spool")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let mut buf = Buffer::new(2, Some((&dir, "s", 1 << 20))).expect("reopen");
        assert_eq!(drain(&mut buf), ["2", "3", "4", "5", "6"]);
        assert_eq!(buf.spool_bytes(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn spool_limit_and_torn_tail() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("spool");
        let mut buf = Buffer::new(1, Some((&dir, "t", 20))).expect("buffer");
        buf.push(b("first")).expect("memory");
        buf.push(b("0123456789")).expect("spooled: 14 bytes");
        assert_eq!(buf.push(b("0123456789")), Err(Full::Spool));
        drop(buf);
        // A crash mid-append: a length prefix promising more than is there.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("t.spool"))
            .expect("open");
        f.write_all(&100u32.to_le_bytes()).expect("write");
        f.write_all(b"torn").expect("write");
        drop(f);
        let mut buf = Buffer::new(4, Some((&dir, "t", 1 << 20))).expect("reopen");
        assert_eq!(drain(&mut buf), ["0123456789"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
