//! `monitor trace` output: every enriched event as one JSON line.
use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError},
};

use crate::{event::Event, pipeline::EventSink};

pub(crate) mod line;

/// Lines are written out once this many bytes are rendered.
const CHUNK: usize = 1 << 16;

/// Writes each event as a JSON line to `W`, in chunks of whole lines, so that the pipeline's
/// workers can share one output (each worker's lines stay in its order, none is cut).
pub(crate) struct JsonLines<W: Write> {
    lines: line::Lines,
    buf: Vec<u8>,
    out: SharedWriter<W>,
}

/// One writer for every worker: each write goes out whole under the lock.
pub(crate) struct SharedWriter<W>(Arc<Mutex<W>>);

impl<W> Clone for SharedWriter<W> {
    fn clone(&self) -> Self {
        SharedWriter(self.0.clone())
    }
}

impl<W: Write> Write for SharedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        w.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

impl<W: Write> JsonLines<W> {
    /// Lines to `out`, in 64 KiB writes.
    pub(crate) fn new(out: W) -> JsonLines<W> {
        JsonLines {
            lines: line::Lines::default(),
            buf: Vec::with_capacity(CHUNK + 4096),
            out: SharedWriter(Arc::new(Mutex::new(out))),
        }
    }

    /// Lines from another pipeline worker to the same output.
    pub(crate) fn worker(&self) -> JsonLines<W> {
        JsonLines {
            lines: line::Lines::default(),
            buf: Vec::with_capacity(CHUNK + 4096),
            out: self.out.clone(),
        }
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.out.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

impl<W: Write> EventSink for JsonLines<W> {
    fn event(&mut self, e: &Event) -> std::io::Result<()> {
        self.lines
            .write(&mut self.buf, e)
            .map_err(std::io::Error::other)?;
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    fn tick(&mut self, _all: bool) {}

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes a few bytes per call, as a pipe may.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::thread::yield_now();
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn workers_sharing_an_output_never_cut_a_line() {
        let first = JsonLines::new(Trickle(Vec::new()));
        let out = first.out.clone();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = first.worker();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        let line = format!(
                            "{{\"worker\":{t},\"n\":{i},\"pad\":\"{}\"}}\n",
                            "x".repeat(i % 50)
                        );
                        w.buf.extend_from_slice(line.as_bytes());
                        if w.buf.len() >= 1000 {
                            w.write_out().expect("write");
                        }
                    }
                    w.flush().expect("flush");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("worker");
        }
        drop(first);
        let text = String::from_utf8(out.0.lock().expect("lock").0.clone()).expect("utf8");
        let mut next = [0usize; 4];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
            let (t, n) = (
                v["worker"].as_u64().expect("worker") as usize,
                v["n"].as_u64().expect("n") as usize,
            );
            assert_eq!(n, next[t], "worker {t}'s lines in its order");
            next[t] += 1;
        }
        assert_eq!(next, [3000; 4]);
    }
}
