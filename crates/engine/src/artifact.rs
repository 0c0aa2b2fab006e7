//! The wedge AOT artifact (`.cwasm`): wasmtime's compiled code behind a small header that
//! says who made it, for which engine, and a BLAKE3 digest of the payload.
//!
//! Why a header of our own when wasmtime already checks compatibility on load: wasmtime's
//! check cannot tell a truncated or bit-flipped file from a good one, and its error says
//! nothing a user can act on. The header lets wedge refuse a foreign or damaged artifact
//! *before* handing native code to the loader, and say how to recompile it.
//!
//! Layout (little-endian):
//! ```text
//! magic        8  b"WEDGEAOT"
//! format       4  u32, currently 1
//! kind         1  1 = core module, 2 = component
//! flags        1  bit 0: compiled with fuel metering
//! reserved     2
//! fingerprint 32  engine fingerprint (see `Fingerprint`)
//! digest      32  BLAKE3 of the payload
//! payload_len  8  u64
//! build_len    2  u16, then that many bytes of UTF-8: the wedge build that wrote it
//! payload         wasmtime's serialized module or component
//! ```
//!
//! The AOT cache stores the header (`<key>.meta`) and the payload (`<key>.code`) in two files,
//! so that the payload can be mapped from disk (see cache.rs).

use crate::Fingerprint;

pub const MAGIC: &[u8; 8] = b"WEDGEAOT";
const FORMAT: u32 = 1;
const FIXED_HEADER_LEN: usize = 8 + 4 + 1 + 1 + 2 + 32 + 32 + 8 + 2;
const FLAG_FUEL: u8 = 1;

/// What kind of program an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Module,
    Component,
}

/// The decoded header of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactHeader {
    pub kind: ArtifactKind,
    pub fuel_metering: bool,
    pub fingerprint: Fingerprint,
    pub built_by: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("it is not a wedge artifact (no WEDGEAOT header)")]
    NotAnArtifact,
    #[error("it is truncated or damaged: {0}")]
    Damaged(&'static str),
    #[error("it uses artifact format {0}, which this wedge ({build}) cannot read", build = crate::BUILD_ID)]
    UnknownFormat(u32),
}

/// What the header says of its payload: its length and BLAKE3 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadSeal {
    pub len: u64,
    pub digest: [u8; 32],
}

impl PayloadSeal {
    pub fn of(payload: &[u8]) -> Self {
        Self {
            len: payload.len() as u64,
            digest: *blake3::hash(payload).as_bytes(),
        }
    }
}

/// Wraps wasmtime's serialized code in a header.
pub fn encode(header: &ArtifactHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = encode_header(header, PayloadSeal::of(payload));
    out.extend_from_slice(payload);
    out
}

/// The header alone, sealing a payload kept elsewhere (the AOT cache keeps the payload in a
/// file of its own, so that it can be mapped instead of copied).
pub fn encode_header(header: &ArtifactHeader, seal: PayloadSeal) -> Vec<u8> {
    let built_by = header.built_by.as_bytes();
    let built_by = &built_by[..built_by.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(FIXED_HEADER_LEN + built_by.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.push(match header.kind {
        ArtifactKind::Module => 1,
        ArtifactKind::Component => 2,
    });
    out.push(if header.fuel_metering { FLAG_FUEL } else { 0 });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&header.fingerprint.0);
    out.extend_from_slice(&seal.digest);
    out.extend_from_slice(&seal.len.to_le_bytes());
    out.extend_from_slice(&(built_by.len() as u16).to_le_bytes());
    out.extend_from_slice(built_by);
    out
}

/// Whether `bytes` start like a wedge artifact (cheap: looks at the magic only).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Parses the header and checks the payload's digest. Returns the header and the payload.
/// Nothing here trusts the payload: a wrong length or digest is an error, never a load.
pub fn decode(bytes: &[u8]) -> Result<(ArtifactHeader, &[u8]), ArtifactError> {
    let (header, seal, header_len) = decode_header(bytes)?;
    let payload = &bytes[header_len..];
    if payload.len() as u64 != seal.len {
        return Err(ArtifactError::Damaged(
            "its length differs from the one in its header",
        ));
    }
    if PayloadSeal::of(payload) != seal {
        return Err(ArtifactError::Damaged(
            "its contents do not match the digest in its header",
        ));
    }
    Ok((header, payload))
}

/// Parses the header only: the header, its seal of the payload, and where the payload
/// starts. The caller checks the payload against the seal.
pub fn decode_header(bytes: &[u8]) -> Result<(ArtifactHeader, PayloadSeal, usize), ArtifactError> {
    if !is_artifact(bytes) {
        return Err(ArtifactError::NotAnArtifact);
    }
    if bytes.len() < FIXED_HEADER_LEN {
        return Err(ArtifactError::Damaged("the header is incomplete"));
    }
    let mut reader = Reader { bytes, pos: 8 };
    let format = u32::from_le_bytes(reader.take::<4>());
    if format != FORMAT {
        return Err(ArtifactError::UnknownFormat(format));
    }
    let kind = match reader.take::<1>()[0] {
        1 => ArtifactKind::Module,
        2 => ArtifactKind::Component,
        _ => return Err(ArtifactError::Damaged("unknown program kind in the header")),
    };
    let flags = reader.take::<1>()[0];
    if flags & !FLAG_FUEL != 0 || reader.take::<2>() != [0, 0] {
        return Err(ArtifactError::Damaged("unknown flags in the header"));
    }
    let fingerprint = Fingerprint(reader.take::<32>());
    let digest = reader.take::<32>();
    let payload_len = u64::from_le_bytes(reader.take::<8>());
    let built_by_len = u16::from_le_bytes(reader.take::<2>()) as usize;
    let rest = &bytes[FIXED_HEADER_LEN..];
    if rest.len() < built_by_len {
        return Err(ArtifactError::Damaged("the header is incomplete"));
    }
    let built_by = String::from_utf8_lossy(&rest[..built_by_len]).into_owned();
    Ok((
        ArtifactHeader {
            kind,
            fuel_metering: flags & FLAG_FUEL != 0,
            fingerprint,
            built_by,
        },
        PayloadSeal {
            len: payload_len,
            digest,
        },
        FIXED_HEADER_LEN + built_by_len,
    ))
}

/// Reads fixed-size fields; callers have checked the total length first.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..self.pos + N]);
        self.pos += N;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ArtifactHeader {
        ArtifactHeader {
            kind: ArtifactKind::Component,
            fuel_metering: true,
            fingerprint: Fingerprint([7; 32]),
            built_by: "wedge test".into(),
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&header(), b"payload");
        let (decoded, payload) = decode(&bytes).unwrap();
        assert_eq!(decoded, header());
        assert_eq!(payload, b"payload");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_detected() {
        let bytes = encode(&header(), b"some compiled code");
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
        // Flipping a bit of the payload or of the digest must fail; flipping a bit of the
        // fingerprint or flags decodes (the caller compares those) but changes them.
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            match decode(&damaged) {
                Err(_) => {}
                Ok((h, p)) => assert!(h != header() || p != b"some compiled code"),
            }
        }
    }

    #[test]
    fn unknown_format_is_named() {
        let mut bytes = encode(&header(), b"x");
        bytes[8] = 9;
        assert_eq!(decode(&bytes), Err(ArtifactError::UnknownFormat(9)));
    }
}
