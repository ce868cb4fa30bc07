//! SCTP (RFC 9260): the common header with its CRC32c checksum and the chunks a connection
//! attempt needs — INIT, INIT-ACK (with the State Cookie parameter) and ABORT. Only the first
//! chunk of a packet is decoded; the model never bundles chunks.

use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const VERIFICATION_TAG: Field = 4..8;
    pub const CHECKSUM: Field = 8..12;
    pub const CHUNK_TYPE: usize = 12;
    pub const CHUNK_FLAGS: usize = 13;
    pub const CHUNK_LENGTH: Field = 14..16;
}

/// Length of the common header.
pub const HEADER_LEN: usize = 12;
/// Length of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 4;
/// Chunk type INIT.
pub const CHUNK_INIT: u8 = 1;
/// Chunk type INIT ACK.
pub const CHUNK_INIT_ACK: u8 = 2;
/// Chunk type ABORT.
pub const CHUNK_ABORT: u8 = 6;
/// Parameter type State Cookie.
pub const PARAM_STATE_COOKIE: u16 = 7;
const INIT_FIXED_LEN: usize = 16;

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC32C: [u32; 256] = crc32c_table();

/// CRC-32C (Castagnoli) of `data`, the SCTP checksum algorithm.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc = CRC32C[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A read/write view of an SCTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checking the length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of `buffer`, or `Err(Truncated)` when the common header does not fit.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` unless the common header is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// Verification tag.
    pub fn verification_tag(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::VERIFICATION_TAG])
    }

    /// The checksum field as stored (CRC32c, least significant byte first on the wire).
    pub fn checksum(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The CRC32c of the packet computed with a zero checksum field.
    pub fn compute_checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let mut crc = 0xffff_ffffu32;
        for (i, byte) in b.iter().enumerate() {
            let v = if field::CHECKSUM.contains(&i) {
                0
            } else {
                *byte
            };
            crc = CRC32C[((crc ^ u32::from(v)) & 0xff) as usize] ^ (crc >> 8);
        }
        !crc
    }

    /// Whether the stored checksum is right.
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }

    /// Type of the first chunk, if any.
    pub fn chunk_type(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::CHUNK_TYPE).copied()
    }

    /// Flags of the first chunk, if any.
    pub fn chunk_flags(&self) -> Option<u8> {
        self.buffer.as_ref().get(field::CHUNK_FLAGS).copied()
    }

    /// The value of the first chunk.
    ///
    /// # Errors
    /// `Truncated` when the chunk header or its declared length does not fit, `Malformed`
    /// when the declared length is below the chunk header length.
    pub fn chunk_value(&self) -> Result<&[u8]> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN + CHUNK_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(be16(&b[field::CHUNK_LENGTH]));
        if len < CHUNK_HEADER_LEN {
            return Err(Error::Malformed("SCTP chunk length below 4"));
        }
        b.get(HEADER_LEN + CHUNK_HEADER_LEN..HEADER_LEN + len)
            .ok_or(Error::Truncated)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the verification tag.
    pub fn set_verification_tag(&mut self, v: u32) {
        self.buffer.as_mut()[field::VERIFICATION_TAG].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes and stores the checksum.
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_le_bytes());
    }
}

/// The fixed part of INIT and INIT-ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InitRepr {
    /// Initiate tag (non-zero).
    pub initiate_tag: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Number of outbound streams.
    pub outbound_streams: u16,
    /// Number of inbound streams.
    pub inbound_streams: u16,
    /// Initial TSN.
    pub initial_tsn: u32,
}

impl InitRepr {
    fn parse(v: &[u8]) -> Result<InitRepr> {
        if v.len() < INIT_FIXED_LEN {
            return Err(Error::Truncated);
        }
        let r = InitRepr {
            initiate_tag: be32(&v[0..4]),
            a_rwnd: be32(&v[4..8]),
            outbound_streams: be16(&v[8..10]),
            inbound_streams: be16(&v[10..12]),
            initial_tsn: be32(&v[12..16]),
        };
        if r.initiate_tag == 0 || r.outbound_streams == 0 || r.inbound_streams == 0 {
            return Err(Error::Malformed(
                "SCTP INIT with a zero tag or stream count",
            ));
        }
        Ok(r)
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.initiate_tag.to_be_bytes());
        out.extend_from_slice(&self.a_rwnd.to_be_bytes());
        out.extend_from_slice(&self.outbound_streams.to_be_bytes());
        out.extend_from_slice(&self.inbound_streams.to_be_bytes());
        out.extend_from_slice(&self.initial_tsn.to_be_bytes());
    }
}

/// The first chunk of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Chunk {
    /// INIT (association request).
    Init(InitRepr),
    /// INIT ACK with its State Cookie.
    InitAck {
        /// Fixed part.
        init: InitRepr,
        /// The State Cookie parameter's value.
        cookie: Vec<u8>,
    },
    /// ABORT (the T bit says the tag is reflected).
    Abort {
        /// T bit.
        reflected: bool,
    },
    /// Any other chunk, kept as bytes.
    Other {
        /// Chunk type.
        kind: u8,
        /// Chunk flags.
        flags: u8,
        /// Chunk value.
        value: Vec<u8>,
    },
}

/// An SCTP packet with one chunk, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
    /// The chunk.
    pub chunk: Chunk,
}

impl Repr {
    /// Decodes a packet (the checksum is checked).
    ///
    /// # Errors
    /// `Truncated` for short buffers, `Malformed` for a bad checksum, a chunk without its
    /// mandatory parts, or an INIT whose verification tag is not 0.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Malformed("SCTP checksum mismatch"));
        }
        let value = packet.chunk_value()?;
        let kind = packet.chunk_type().ok_or(Error::Truncated)?;
        let flags = packet.chunk_flags().ok_or(Error::Truncated)?;
        let chunk = match kind {
            CHUNK_INIT => {
                if packet.verification_tag() != 0 {
                    return Err(Error::Malformed(
                        "SCTP INIT with a non-zero verification tag",
                    ));
                }
                Chunk::Init(InitRepr::parse(value)?)
            }
            CHUNK_INIT_ACK => {
                let init = InitRepr::parse(value)?;
                let mut params = &value[INIT_FIXED_LEN..];
                let mut cookie = None;
                while params.len() >= 4 {
                    let ptype = be16(&params[0..2]);
                    let plen = usize::from(be16(&params[2..4]));
                    if plen < 4 {
                        return Err(Error::Malformed("SCTP parameter length below 4"));
                    }
                    let body = params.get(4..plen).ok_or(Error::Truncated)?;
                    if ptype == PARAM_STATE_COOKIE {
                        cookie = Some(body.to_vec());
                    }
                    let padded = (plen + 3) & !3;
                    params = params.get(padded..).unwrap_or(&[]);
                }
                Chunk::InitAck {
                    init,
                    cookie: cookie.ok_or(Error::Malformed("SCTP INIT ACK without State Cookie"))?,
                }
            }
            CHUNK_ABORT => Chunk::Abort {
                reflected: flags & 1 != 0,
            },
            _ => Chunk::Other {
                kind,
                flags,
                value: value.to_vec(),
            },
        };
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            verification_tag: packet.verification_tag(),
            chunk,
        })
    }

    /// The packet bytes with a valid checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.verification_tag.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        let (kind, flags) = match &self.chunk {
            Chunk::Init(_) => (CHUNK_INIT, 0),
            Chunk::InitAck { .. } => (CHUNK_INIT_ACK, 0),
            Chunk::Abort { reflected } => (CHUNK_ABORT, u8::from(*reflected)),
            Chunk::Other { kind, flags, .. } => (*kind, *flags),
        };
        let start = out.len();
        out.extend_from_slice(&[kind, flags, 0, 0]);
        match &self.chunk {
            Chunk::Init(init) => init.emit(&mut out),
            Chunk::InitAck { init, cookie } => {
                init.emit(&mut out);
                let plen = (4 + cookie.len()).min(usize::from(u16::MAX));
                out.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
                out.extend_from_slice(&(plen as u16).to_be_bytes());
                out.extend_from_slice(&cookie[..plen - 4]);
            }
            Chunk::Abort { .. } => {}
            Chunk::Other { value, .. } => out.extend_from_slice(value),
        }
        let clen = (out.len() - start).min(usize::from(u16::MAX));
        out.truncate(start + clen);
        out[start + 2..start + 4].copy_from_slice(&(clen as u16).to_be_bytes());
        while out.len() % 4 != 0 {
            out.push(0);
        }
        Packet::new_unchecked(&mut out[..]).fill_checksum();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn init() -> InitRepr {
        InitRepr {
            initiate_tag: 0x0102_0304,
            a_rwnd: 65535,
            outbound_streams: 10,
            inbound_streams: 10,
            initial_tsn: 1,
        }
    }

    // INIT 40000 -> 80, tag 0, checksum filled by to_bytes, chunk len 20.
    static INIT_HEAD: [u8; 16] = [
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x14,
    ];

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn init_emit_and_parse() {
        let r = Repr {
            src_port: 40000,
            dst_port: 80,
            verification_tag: 0,
            chunk: Chunk::Init(init()),
        };
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), 32);
        assert_eq!(bytes[..8], INIT_HEAD[..8]);
        assert_eq!(bytes[12..16], INIT_HEAD[12..16]);
        let p = Packet::new_checked(&bytes[..]).expect("view");
        assert!(p.verify_checksum());
        assert_eq!(p.src_port(), 40000);
        assert_eq!(Repr::parse(&p), Ok(r));
    }

    #[test]
    fn bad_checksum_and_truncation_are_errors() {
        let mut bytes = Repr {
            src_port: 1,
            dst_port: 2,
            verification_tag: 9,
            chunk: Chunk::Abort { reflected: true },
        }
        .to_bytes();
        assert!(Repr::parse(&Packet::new_unchecked(&bytes[..])).is_ok());
        bytes[9] ^= 1;
        assert!(matches!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::Malformed(_))
        ));
        assert_eq!(
            Packet::new_checked(&[0u8; 11][..]).err(),
            Some(Error::Truncated)
        );
    }

    fn arb_init() -> impl Strategy<Value = InitRepr> {
        (1u32.., any::<u32>(), 1u16.., 1u16.., any::<u32>()).prop_map(|(t, w, o, i, tsn)| {
            InitRepr {
                initiate_tag: t,
                a_rwnd: w,
                outbound_streams: o,
                inbound_streams: i,
                initial_tsn: tsn,
            }
        })
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        let chunk = prop_oneof![
            arb_init().prop_map(Chunk::Init),
            (arb_init(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(init, cookie)| Chunk::InitAck { init, cookie }),
            any::<bool>().prop_map(|reflected| Chunk::Abort { reflected }),
        ];
        (any::<u16>(), any::<u16>(), any::<u32>(), chunk).prop_map(|(s, d, tag, chunk)| Repr {
            src_port: s,
            dst_port: d,
            verification_tag: if matches!(chunk, Chunk::Init(_)) {
                0
            } else {
                tag
            },
            chunk,
        })
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_repr()) {
            let bytes = r.to_bytes();
            prop_assert_eq!(bytes.len() % 4, 0);
            let parsed = Repr::parse(&Packet::new_unchecked(&bytes[..]));
            prop_assert_eq!(parsed, Ok(r));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                let _ = p.chunk_value();
            }
        }

        #[test]
        fn valid_checksum_garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 12..80)) {
            Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            let _ = Repr::parse(&Packet::new_unchecked(&bytes[..]));
        }
    }
}
