//! A small reader of kernel BTF (`/sys/kernel/btf/vmlinux`) that answers one question: at which
//! byte offset does `struct X` hold member `y`. aya-ebpf has no CO-RE relocations, so the agent
//! resolves the few kernel structure offsets the programs need here and passes them in at load.
use std::{collections::HashMap, path::Path};

use thiserror::Error;

pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub(crate) enum BtfError {
    #[error("reading BTF from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF: {0}")]
    Malformed(String),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("BTF struct `{strukt}` has no member `{member}`")]
    NoMember { strukt: String, member: String },
    #[error("BTF member `{strukt}.{member}` is a bitfield, not addressable by byte")]
    Bitfield { strukt: String, member: String },
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
enum Type {
    /// Struct or union with its members.
    Composite(Vec<Member>),
    /// Anything else; only composites are ever looked into.
    Other,
}

/// Parsed BTF, reduced to what offset lookups need.
#[derive(Debug)]
pub(crate) struct Btf {
    /// Index = type id - 1.
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

fn rd_u32(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {off}")))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub(crate) fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_BTF))
    }

    pub(crate) fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Btf::parse(&data)
    }

    /// Parses little-endian BTF (the only byte order of the supported architectures).
    pub(crate) fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = data
            .get(0..2)
            .map(|m| u16::from_le_bytes([m[0], m[1]]))
            .ok_or_else(|| BtfError::Malformed("shorter than its header".into()))?;
        if magic != MAGIC {
            return Err(BtfError::Malformed(format!("bad magic {magic:#x}")));
        }
        let hdr_len = rd_u32(data, 4)? as usize;
        let type_off = rd_u32(data, 8)? as usize;
        let type_len = rd_u32(data, 12)? as usize;
        let str_off = rd_u32(data, 16)? as usize;
        let str_len = rd_u32(data, 20)? as usize;
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len.checked_add(off);
            start
                .and_then(|s| s.checked_add(len).map(|e| (s, e)))
                .and_then(|(s, e)| data.get(s..e))
                .ok_or_else(|| BtfError::Malformed(format!("{what} section out of bounds")))
        };
        let types_sec = section(type_off, type_len, "type")?;
        let strs = section(str_off, str_len, "string")?;
        let name_at = |off: u32| -> String {
            let off = off as usize;
            strs.get(off..)
                .map(|s| {
                    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
                    String::from_utf8_lossy(&s[..end]).into_owned()
                })
                .unwrap_or_default()
        };

        let mut types = Vec::new();
        let mut structs = HashMap::new();
        let mut p = 0usize;
        while p < types_sec.len() {
            let name_off = rd_u32(types_sec, p)?;
            let info = rd_u32(types_sec, p + 4)?;
            p += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 == 1;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                _ => 0,
            };
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = p + i * 12;
                    let off = rd_u32(types_sec, m + 8)?;
                    let (bit_offset, bitfield_size) = if kflag {
                        (off & 0x00ff_ffff, off >> 24)
                    } else {
                        (off, 0)
                    };
                    members.push(Member {
                        name: name_at(rd_u32(types_sec, m)?),
                        type_id: rd_u32(types_sec, m + 4)?,
                        bit_offset,
                        bitfield_size,
                    });
                }
                let name = name_at(name_off);
                if kind == KIND_STRUCT && !name.is_empty() {
                    // The first definition wins; later duplicates are modules' copies.
                    structs.entry(name).or_insert(types.len() as u32 + 1);
                }
                types.push(Type::Composite(members));
            } else {
                types.push(Type::Other);
            }
            p = p
                .checked_add(extra)
                .filter(|&e| e <= types_sec.len())
                .ok_or_else(|| {
                    BtfError::Malformed(format!("type {} overruns the section", types.len()))
                })?;
        }
        Ok(Btf { types, structs })
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous struct/union
    /// members (as in task_struct's randomized-layout wrapper).
    pub(crate) fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        match self.find(id, member, 0, 0)? {
            Some(bits) if bits % 8 == 0 => Ok(bits / 8),
            Some(_) => Err(BtfError::Bitfield {
                strukt: strukt.into(),
                member: member.into(),
            }),
            None => Err(BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            }),
        }
    }

    fn find(
        &self,
        id: u32,
        member: &str,
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<u32>, BtfError> {
        if depth > 8 {
            return Ok(None);
        }
        let Some(Type::Composite(members)) =
            id.checked_sub(1).and_then(|i| self.types.get(i as usize))
        else {
            return Ok(None);
        };
        for m in members {
            if m.name == member {
                if m.bitfield_size != 0 {
                    return Ok(Some(u32::MAX));
                }
                return Ok(Some(base_bits + m.bit_offset));
            }
        }
        for m in members.iter().filter(|m| m.name.is_empty()) {
            if let Some(found) =
                self.find(m.type_id, member, base_bits + m.bit_offset, depth + 1)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a BTF blob: `struct outer { int a; union { int b; int c; }; int d; }` plus
    /// `struct flags { int x:3; }`.
    pub(crate) fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0d\0flags\0x\0";
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap_or(0)
        };
        let mut t = Vec::new();
        let mut push = |vals: &[u32]| {
            vals.iter()
                .for_each(|v| t.extend_from_slice(&v.to_le_bytes()))
        };
        // 1: int
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: anonymous union { b; c; }
        push(&[0, (KIND_UNION << 24) | 2, 4, s("b"), 1, 0, s("c"), 1, 0]);
        // 3: struct outer
        push(&[
            s("outer"),
            (KIND_STRUCT << 24) | 3,
            12,
            s("a"),
            1,
            0,
            0,
            2,
            32,
            s("d"),
            1,
            64,
        ]);
        // 4: struct flags { int x:3 } with kflag
        push(&[
            s("flags"),
            (1 << 31) | (KIND_STRUCT << 24) | 1,
            4,
            s("x"),
            1,
            (3 << 24) | 8,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(&sample()).expect("parse");
        assert_eq!(btf.member_offset("outer", "a").expect("a"), 0);
        assert_eq!(btf.member_offset("outer", "b").expect("b"), 4);
        assert_eq!(btf.member_offset("outer", "c").expect("c"), 4);
        assert_eq!(btf.member_offset("outer", "d").expect("d"), 8);
        assert!(matches!(
            btf.member_offset("outer", "zz"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "a"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.member_offset("flags", "x"),
            Err(BtfError::Bitfield { .. })
        ));
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let blob = sample();
        for cut in [0, 1, 10, 30, blob.len() - 5] {
            assert!(Btf::parse(&blob[..cut]).is_err(), "cut at {cut} must fail");
        }
        assert!(Btf::parse(&[0u8; 64]).is_err());
    }

    #[test]
    fn running_kernel_has_the_offsets_we_need() {
        // Every supported node exposes BTF; this machine must too.
        let Ok(btf) = Btf::from_sys_fs() else {
            panic!("{VMLINUX_BTF} unreadable: the agent needs kernel BTF");
        };
        for (s, m) in [
            ("task_struct", "tgid"),
            ("task_struct", "exit_code"),
            ("mm_struct", "arg_start"),
            ("cred", "euid"),
        ] {
            btf.member_offset(s, m)
                .unwrap_or_else(|e| panic!("{s}.{m}: {e}"));
        }
    }
}
