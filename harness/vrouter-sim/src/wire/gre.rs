//! GRE header (RFC 2784 / 2890): flags and version, protocol type, optional checksum, key and
//! sequence number. MPLSoGRE carries protocol type 0x8847 (MPLS unicast).

use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const FLAGS_VERSION: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
}

/// Length of the header without options.
pub const BASE_LEN: usize = 4;
/// Protocol type of MPLS unicast.
pub const PROTO_MPLS: u16 = 0x8847;
const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;

/// A read/write view of a GRE header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checking the length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of `buffer`, or `Err(Truncated)` when the header (with the options its flags
    /// announce) does not fit.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` unless the header and its options are present.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < BASE_LEN || len < self.header_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags_version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS_VERSION];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Checksum present (C bit).
    pub fn checksum_present(&self) -> bool {
        self.flags_version() & FLAG_C != 0
    }

    /// Key present (K bit).
    pub fn key_present(&self) -> bool {
        self.flags_version() & FLAG_K != 0
    }

    /// Sequence number present (S bit).
    pub fn sequence_present(&self) -> bool {
        self.flags_version() & FLAG_S != 0
    }

    /// Version (must be 0).
    pub fn version(&self) -> u8 {
        (self.flags_version() & 0x7) as u8
    }

    /// The protocol type of the payload.
    pub fn protocol(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Header length including the options the flags announce.
    pub fn header_len(&self) -> usize {
        if self.buffer.as_ref().len() < BASE_LEN {
            return BASE_LEN;
        }
        BASE_LEN
            + if self.checksum_present() { 4 } else { 0 }
            + if self.key_present() { 4 } else { 0 }
            + if self.sequence_present() { 4 } else { 0 }
    }

    fn option_at(&self, index: usize) -> u32 {
        let b = &self.buffer.as_ref()[BASE_LEN + 4 * index..BASE_LEN + 4 * index + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The key, when present.
    pub fn key(&self) -> Option<u32> {
        self.key_present()
            .then(|| self.option_at(usize::from(self.checksum_present())))
    }

    /// The sequence number, when present.
    pub fn sequence(&self) -> Option<u32> {
        self.sequence_present().then(|| {
            self.option_at(usize::from(self.checksum_present()) + usize::from(self.key_present()))
        })
    }

    /// What follows the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets flags and version from the presence of key and sequence (no checksum).
    pub fn set_flags(&mut self, key: bool, sequence: bool) {
        let v = if key { FLAG_K } else { 0 } | if sequence { FLAG_S } else { 0 };
        self.buffer.as_mut()[field::FLAGS_VERSION].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the protocol type.
    pub fn set_protocol(&mut self, proto: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&proto.to_be_bytes());
    }
}

/// A GRE header, decoded (the checksum is not kept: the vrouter never sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Payload protocol type.
    pub protocol: u16,
    /// Key.
    pub key: Option<u32>,
    /// Sequence number.
    pub sequence: Option<u32>,
}

impl Repr {
    /// Decodes a header.
    ///
    /// # Errors
    /// `Truncated` for a short buffer, `Malformed` for a version other than 0 or reserved
    /// bits set.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 0 {
            return Err(Error::Malformed("GRE version is not 0"));
        }
        if packet.flags_version() & 0x4ff8 != 0 {
            return Err(Error::Malformed("GRE reserved bits set"));
        }
        Ok(Repr {
            protocol: packet.protocol(),
            key: packet.key(),
            sequence: packet.sequence(),
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        BASE_LEN + 4 * (usize::from(self.key.is_some()) + usize::from(self.sequence.is_some()))
    }

    /// Writes the header; the buffer must be at least [`Repr::buffer_len`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(self.key.is_some(), self.sequence.is_some());
        packet.set_protocol(self.protocol);
        let mut at = BASE_LEN;
        for v in [self.key, self.sequence].into_iter().flatten() {
            packet.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
            at += 4;
        }
    }

    /// The header bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut b[..]));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // No options, protocol MPLS, one payload byte.
    static PACKET_BYTES: [u8; 5] = [0x00, 0x00, 0x88, 0x47, 0x00];
    // Key 0x01020304 and sequence 7.
    static KEYED_BYTES: [u8; 12] = [0x30, 0x00, 0x88, 0x47, 1, 2, 3, 4, 0, 0, 0, 7];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).expect("long enough");
        assert_eq!(p.protocol(), PROTO_MPLS);
        assert_eq!(p.header_len(), 4);
        assert_eq!(p.payload(), &[0]);
        let k = Packet::new_checked(&KEYED_BYTES[..]).expect("long enough");
        assert_eq!(k.key(), Some(0x0102_0304));
        assert_eq!(k.sequence(), Some(7));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_flags(true, true);
        p.set_protocol(PROTO_MPLS);
        Repr {
            protocol: PROTO_MPLS,
            key: Some(0x0102_0304),
            sequence: Some(7),
        }
        .emit(&mut p);
        assert_eq!(bytes, KEYED_BYTES);
    }

    #[test]
    fn parse_and_emit() {
        let r = Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..])).expect("parse");
        assert_eq!(
            r,
            Repr {
                protocol: PROTO_MPLS,
                key: None,
                sequence: None
            }
        );
        assert_eq!(r.to_bytes(), PACKET_BYTES[..4]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            Packet::new_checked(&[0u8; 3][..]).err(),
            Some(Error::Truncated)
        );
        // K bit set but no key.
        assert_eq!(
            Packet::new_checked(&[0x20, 0, 0x88, 0x47][..]).err(),
            Some(Error::Truncated)
        );
        assert!(matches!(
            Repr::parse(&Packet::new_unchecked(&[0, 1, 0x88, 0x47][..])),
            Err(Error::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(protocol: u16, key: Option<u32>, sequence: Option<u32>) {
            let r = Repr { protocol, key, sequence };
            let bytes = r.to_bytes();
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(r));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                let _ = p.payload();
            }
        }
    }
}
