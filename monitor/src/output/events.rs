//! `monitor trace` output: every enriched event as one JSON line.
use std::io::Write;

use crate::{event::Event, pipeline::EventSink};

/// Writes each event as a JSON line to `W`, buffered.
pub(crate) struct JsonLines<W: Write> {
    out: std::io::BufWriter<W>,
}

impl<W: Write> JsonLines<W> {
    /// Lines to `out`, in 64 KiB writes.
    pub(crate) fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out: std::io::BufWriter::with_capacity(1 << 16, out),
        }
    }
}

impl<W: Write> EventSink for JsonLines<W> {
    fn event(&mut self, e: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, e).map_err(std::io::Error::other)?;
        self.out.write_all(b"\n")
    }

    fn tick(&mut self, _all: bool) {}

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
