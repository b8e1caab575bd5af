//! Decoding of ring-buffer records into typed events, with every length checked.
use monitor_common::{
    CgroupBody, EventKind, ExecBody, ExitBody, ForkBody, Header, SignalBody, Syscall, SyscallBody,
    TcpStateBody,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte header")]
    ShortHeader { len: usize, need: usize },
    #[error("record header says {declared} bytes but {actual} were read")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind} record of {len} bytes is too short for its {need}-byte body")]
    ShortBody {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("{kind} record: tail of {tail} bytes overruns the {len}-byte record")]
    TailOverrun {
        kind: &'static str,
        tail: usize,
        len: usize,
    },
    #[error("syscall record with unknown call number {0}")]
    UnknownCall(u16),
}

impl DecodeError {
    /// Short label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            DecodeError::ShortHeader { .. } => "short_header",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::ShortBody { .. } => "short_body",
            DecodeError::TailOverrun { .. } => "tail_overrun",
            DecodeError::UnknownCall(_) => "unknown_call",
        }
    }
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawEvent {
    pub(crate) header: Header,
    pub(crate) kind: EventKind,
    pub(crate) payload: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    Exec {
        body: ExecBody,
        filename: String,
        argv: Vec<String>,
    },
    Fork(ForkBody),
    Exit(ExitBody),
    Syscall {
        body: SyscallBody,
        call: Syscall,
        str1: Option<String>,
        str2: Option<String>,
        data: Vec<u8>,
    },
    TcpState(TcpStateBody),
    /// A signal sent to the agent; the header is the sender.
    Signal(SignalBody),
    /// A cgroup2 directory was created or removed (the kind says which): its id and path
    /// below the cgroup2 root.
    Cgroup {
        body: CgroupBody,
        path: String,
    },
}

fn read<T: Copy>(buf: &[u8], off: usize, kind: &'static str) -> Result<T, DecodeError> {
    let need = off + size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::ShortBody {
            kind,
            len: buf.len(),
            need,
        });
    }
    // SAFETY: bounds checked above; T is a repr(C) integer-only type, valid for any bytes.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast::<T>()) })
}

/// The bytes as text, invalid UTF-8 replaced. Valid text (nearly all of it) takes the fast
/// validation and one copy; the replacing walk only runs on bytes that need it.
pub(crate) fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Decodes one record. Never panics, whatever the bytes.
pub(crate) fn decode(buf: &[u8]) -> Result<RawEvent, DecodeError> {
    const HDR: usize = size_of::<Header>();
    if buf.len() < HDR {
        return Err(DecodeError::ShortHeader {
            len: buf.len(),
            need: HDR,
        });
    }
    let header: Header = read(buf, 0, "header")?;
    let declared = header.len as usize;
    // The ring buffer rounds records up to 8 bytes; the declared length must fit what we got.
    if declared < HDR || declared > buf.len() {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: buf.len(),
        });
    }
    let rec = Record {
        buf: &buf[..declared],
        kind: EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?,
    };
    let name = rec.kind.name();
    let payload = match rec.kind {
        EventKind::Exec => rec.exec()?,
        EventKind::Fork => Payload::Fork(read(rec.buf, HDR, name)?),
        EventKind::Exit => Payload::Exit(read(rec.buf, HDR, name)?),
        EventKind::TcpState => Payload::TcpState(read(rec.buf, HDR, name)?),
        EventKind::Signal => Payload::Signal(read(rec.buf, HDR, name)?),
        EventKind::CgroupMkdir | EventKind::CgroupRmdir => rec.cgroup()?,
        _ => rec.syscall()?,
    };
    Ok(RawEvent {
        header,
        kind: rec.kind,
        payload,
    })
}

/// One record whose header checked out: its bytes (as long as it says) and kind.
struct Record<'a> {
    buf: &'a [u8],
    kind: EventKind,
}

impl<'a> Record<'a> {
    const HDR: usize = size_of::<Header>();

    /// The tail's parts of `lens` bytes each, after `fixed` bytes of header and body.
    /// The `N` variable-length parts that follow the fixed part, as slices of the record (an
    /// array, not a Vec: no allocation per record).
    fn tail<const N: usize>(
        &self,
        fixed: usize,
        lens: [usize; N],
    ) -> Result<[&'a [u8]; N], DecodeError> {
        let total: usize = lens.iter().sum();
        let overrun = || DecodeError::TailOverrun {
            kind: self.kind.name(),
            tail: total,
            len: self.buf.len(),
        };
        if fixed + total > self.buf.len() {
            return Err(overrun());
        }
        let mut parts: [&'a [u8]; N] = [&[]; N];
        let mut at = fixed;
        for (part, l) in parts.iter_mut().zip(lens) {
            *part = self.buf.get(at..at + l).ok_or_else(overrun)?;
            at += l;
        }
        Ok(parts)
    }

    fn exec(&self) -> Result<Payload, DecodeError> {
        let body: ExecBody = read(self.buf, Self::HDR, self.kind.name())?;
        let parts = self.tail(
            Self::HDR + size_of::<ExecBody>(),
            [body.filename_len as usize, body.args_len as usize],
        )?;
        // argv strings each end with a NUL; a truncated block may lack the last one.
        let block = parts[1].strip_suffix(&[0]).unwrap_or(parts[1]);
        let argv = if parts[1].is_empty() {
            Vec::new()
        } else {
            block.split(|&c| c == 0).map(lossy).collect()
        };
        Ok(Payload::Exec {
            body,
            filename: lossy(parts[0]),
            argv,
        })
    }

    fn cgroup(&self) -> Result<Payload, DecodeError> {
        let body: CgroupBody = read(self.buf, Self::HDR, self.kind.name())?;
        let parts = self.tail(
            Self::HDR + size_of::<CgroupBody>(),
            [body.path_len as usize],
        )?;
        Ok(Payload::Cgroup {
            body,
            path: lossy(parts[0]),
        })
    }

    fn syscall(&self) -> Result<Payload, DecodeError> {
        let body: SyscallBody = read(self.buf, Self::HDR, self.kind.name())?;
        let call = Syscall::from_u16(body.call).ok_or(DecodeError::UnknownCall(body.call))?;
        let parts = self.tail(
            Self::HDR + size_of::<SyscallBody>(),
            [
                body.str1_len as usize,
                body.str2_len as usize,
                body.data_len as usize,
            ],
        )?;
        // Absent (the call has no such argument) and unreadable strings are both None.
        let str_or_none = |b: &[u8], unreadable: u32| {
            if body.flags & unreadable != 0 || b.is_empty() {
                None
            } else {
                Some(lossy(b))
            }
        };
        Ok(Payload::Syscall {
            body,
            call,
            str1: str_or_none(parts[0], monitor_common::SYS_STR1_UNREADABLE),
            str2: str_or_none(parts[1], monitor_common::SYS_STR2_UNREADABLE),
            data: parts[2].to_vec(),
        })
    }
}

/// Test and benchmark support: builds records byte for byte as the kernel does.
pub(crate) mod encode {
    use monitor_common::Header;

    /// Appends `v`'s bytes.
    pub(crate) fn push<T: Copy>(out: &mut Vec<u8>, v: &T) {
        // SAFETY: T is a repr(C) integer-only type; reading its bytes is sound.
        let bytes =
            unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
        out.extend_from_slice(bytes);
    }

    /// A full record: header (with its len set), body, tail.
    pub(crate) fn record<B: Copy>(mut header: Header, body: &B, tail: &[&[u8]]) -> Vec<u8> {
        let len =
            size_of::<Header>() + size_of::<B>() + tail.iter().map(|t| t.len()).sum::<usize>();
        header.len = len as u32;
        let mut out = Vec::with_capacity(len);
        push(&mut out, &header);
        push(&mut out, body);
        for t in tail {
            out.extend_from_slice(t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::*;

    use super::{encode::record, *};

    fn hdr(kind: EventKind) -> Header {
        Header {
            kind: kind as u32,
            pid: 42,
            tid: 43,
            uid: 1000,
            cgroup_id: 7,
            ..Header::default()
        }
    }

    #[test]
    fn exec_round_trip() {
        let argv = b"/bin/sh\0-c\0\0echo hi\0";
        let body = ExecBody {
            ppid: 1,
            filename_len: 7,
            args_len: argv.len() as u16,
            flags: 0,
            old_pid: 42,
        };
        let rec = record(hdr(EventKind::Exec), &body, &[b"/bin/sh", argv]);
        let ev = decode(&rec).expect("decode");
        assert_eq!(ev.header.pid, 42);
        match ev.payload {
            Payload::Exec {
                filename,
                argv,
                body: b,
            } => {
                assert_eq!(filename, "/bin/sh");
                assert_eq!(argv, vec!["/bin/sh", "-c", "", "echo hi"]);
                assert_eq!(b.ppid, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fork_exit_tcp_round_trip() {
        let f = ForkBody {
            child_pid: 99,
            _pad: 0,
            child_start_ns: 5,
        };
        assert_eq!(
            decode(&record(hdr(EventKind::Fork), &f, &[]))
                .expect("fork")
                .payload,
            Payload::Fork(f)
        );
        let x = ExitBody {
            exit_code: 3 << 8,
            code_known: 1,
        };
        assert_eq!(
            decode(&record(hdr(EventKind::Exit), &x, &[]))
                .expect("exit")
                .payload,
            Payload::Exit(x)
        );
        let t = TcpStateBody {
            newstate: 10,
            sport: 80,
            family: 2,
            ..TcpStateBody::default()
        };
        assert_eq!(
            decode(&record(hdr(EventKind::TcpState), &t, &[]))
                .expect("tcp")
                .payload,
            Payload::TcpState(t)
        );
    }

    #[test]
    fn syscall_round_trip_every_syscall_kind() {
        for c in Syscall::ALL {
            let (tracepoint, desc) = (c.tracepoint(), c.desc());
            let kind = EventKind::from_u32(desc.kind).expect("kind");
            let body = SyscallBody {
                ret: -2,
                args: [1, 2, 3, 4, 5, 6],
                call: desc.call,
                str1_len: 4,
                str2_len: 3,
                data_len: 2,
                ..SyscallBody::default()
            };
            let rec = record(hdr(kind), &body, &[b"/etc", b"/tm", &[2, 0]]);
            let ev = decode(&rec).unwrap_or_else(|e| panic!("{tracepoint}: {e}"));
            match ev.payload {
                Payload::Syscall {
                    str1,
                    str2,
                    data,
                    body: b,
                    ..
                } => {
                    assert_eq!(str1.as_deref(), Some("/etc"));
                    assert_eq!(str2.as_deref(), Some("/tm"));
                    assert_eq!(data, vec![2, 0]);
                    assert_eq!(b.ret, -2);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn truncated_and_malformed_records_are_errors() {
        let body = ExecBody {
            filename_len: 7,
            args_len: 3,
            ..ExecBody::default()
        };
        let rec = record(hdr(EventKind::Exec), &body, &[b"/bin/sh", b"a\0b"]);
        // Every prefix of a valid record is rejected, none panics.
        for cut in 0..rec.len() {
            assert!(
                decode(&rec[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        // A header claiming more bytes than present.
        let mut long = rec.clone();
        long[4..8].copy_from_slice(&(rec.len() as u32 + 8).to_le_bytes());
        assert!(matches!(
            decode(&long),
            Err(DecodeError::LengthMismatch { .. })
        ));
        // A body whose tail lengths overrun the record.
        let bad = ExecBody {
            filename_len: 4000,
            ..ExecBody::default()
        };
        let rec = record(hdr(EventKind::Exec), &bad, &[b"x"]);
        assert!(matches!(decode(&rec), Err(DecodeError::TailOverrun { .. })));
        // Unknown kind and unknown syscall.
        let rec = record(
            Header {
                kind: 999,
                ..Header::default()
            },
            &ExitBody::default(),
            &[],
        );
        assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(999)));
        let rec = record(
            hdr(EventKind::Open),
            &SyscallBody {
                call: 999,
                ..SyscallBody::default()
            },
            &[],
        );
        assert_eq!(decode(&rec), Err(DecodeError::UnknownCall(999)));
        // Ring-buffer padding after the declared length is ignored.
        let ok = record(hdr(EventKind::Exit), &ExitBody::default(), &[]);
        let mut padded = ok.clone();
        padded.extend_from_slice(&[0xff; 5]);
        assert_eq!(decode(&padded), decode(&ok));
    }

    #[test]
    fn cgroup_mkdir_round_trip_and_overrun() {
        let path = b"/kubepods/besteffort/pod1a2b/0123abcd";
        let body = CgroupBody {
            id: 4242,
            path_len: path.len() as u32,
            flags: 0,
        };
        let ev = decode(&record(hdr(EventKind::CgroupMkdir), &body, &[path])).expect("decode");
        assert_eq!(ev.kind, EventKind::CgroupMkdir);
        assert_eq!(
            ev.payload,
            Payload::Cgroup {
                body,
                path: "/kubepods/besteffort/pod1a2b/0123abcd".into()
            }
        );
        let long = CgroupBody {
            path_len: 5000,
            ..body
        };
        assert!(matches!(
            decode(&record(hdr(EventKind::CgroupMkdir), &long, &[path])),
            Err(DecodeError::TailOverrun { .. })
        ));
    }

    #[test]
    fn unreadable_strings_are_none() {
        let body = SyscallBody {
            call: Syscall::Openat as u16,
            flags: SYS_STR1_UNREADABLE,
            ..SyscallBody::default()
        };
        let ev = decode(&record(hdr(EventKind::Open), &body, &[])).expect("decode");
        assert!(matches!(ev.payload, Payload::Syscall { str1: None, .. }));
    }
}
