//! VXLAN header (RFC 7348): flags with the I bit, a 24-bit VNI. Carried in UDP port 4789 and
//! followed by an Ethernet frame.

use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..7;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The IANA UDP port.
pub const UDP_PORT: u16 = 4789;
/// The "VNI valid" flag.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0xff_ffff;

/// A read/write view of a VXLAN header and the frame it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checking the length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of `buffer`, or `Err(Truncated)`.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` unless the whole header is present.
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

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit network identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI (masked to 24 bits).
    pub fn set_vni(&mut self, vni: u32) {
        let b = (vni & MAX_VNI).to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[1..4].fill(0);
        b[7] = 0;
    }

    /// The inner frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A VXLAN header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Network identifier.
    pub vni: u32,
}

impl Repr {
    /// Decodes a header.
    ///
    /// # Errors
    /// `Truncated` for a short buffer, `Malformed` when the I flag is not set.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.flags() & FLAG_I == 0 {
            return Err(Error::Malformed("VXLAN I flag not set"));
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }

    /// The 8 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut b[..]));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // I flag, VNI 5001 (0x001389), then one payload byte.
    static PACKET_BYTES: [u8; 9] = [0x08, 0, 0, 0, 0x00, 0x13, 0x89, 0, 0xaa];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).expect("long enough");
        assert_eq!(p.flags(), FLAG_I);
        assert_eq!(p.vni(), 5001);
        assert_eq!(p.payload(), &[0xaa]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xffu8; 9];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_flags(FLAG_I);
        p.clear_reserved();
        p.set_vni(5001);
        p.payload_mut()[0] = 0xaa;
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn parse_and_emit() {
        let r = Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..])).expect("parse");
        assert_eq!(r, Repr { vni: 5001 });
        assert_eq!(r.to_bytes(), PACKET_BYTES[..8]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            Packet::new_checked(&[0u8; 7][..]).err(),
            Some(Error::Truncated)
        );
        assert!(matches!(
            Repr::parse(&Packet::new_unchecked(&[0u8; 8][..])),
            Err(Error::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(vni in 0u32..=MAX_VNI) {
            let r = Repr { vni };
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&r.to_bytes()[..])), Ok(r));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
            }
        }
    }
}
