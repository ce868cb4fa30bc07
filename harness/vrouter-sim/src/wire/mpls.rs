//! MPLS label stack entry (RFC 3032): 20-bit label, 3-bit traffic class, bottom-of-stack bit,
//! TTL. The vrouter pushes one label per packet (the label of the destination interface).

use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const ENTRY: Field = 0..4;
}

/// Length of one label stack entry.
pub const HEADER_LEN: usize = 4;
/// Largest label value (20 bits).
pub const MAX_LABEL: u32 = 0xf_ffff;
/// Label stacks deeper than this are refused as malformed.
pub const MAX_STACK_DEPTH: usize = 8;

/// A read/write view of one MPLS label stack entry followed by its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checking the length (accessors may then panic on short buffers;
    /// use [`Packet::new_checked`] on untrusted input).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of `buffer`, or `Err(Truncated)` when it cannot hold an entry.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` unless the buffer holds a whole entry.
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

    fn entry(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::ENTRY];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The 20-bit label.
    pub fn label(&self) -> u32 {
        self.entry() >> 12
    }

    /// The traffic class (EXP) bits.
    pub fn traffic_class(&self) -> u8 {
        ((self.entry() >> 9) & 0x7) as u8
    }

    /// Whether this is the last entry of the stack.
    pub fn bottom_of_stack(&self) -> bool {
        self.entry() & 0x100 != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        (self.entry() & 0xff) as u8
    }

    /// What follows the entry.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_entry(&mut self, value: u32) {
        self.buffer.as_mut()[field::ENTRY].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the label (masked to 20 bits).
    pub fn set_label(&mut self, label: u32) {
        let e = self.entry();
        self.set_entry((e & 0xfff) | ((label & MAX_LABEL) << 12));
    }

    /// Sets the traffic class (masked to 3 bits).
    pub fn set_traffic_class(&mut self, tc: u8) {
        let e = self.entry();
        self.set_entry((e & !0xe00) | (u32::from(tc & 7) << 9));
    }

    /// Sets the bottom-of-stack bit.
    pub fn set_bottom_of_stack(&mut self, bos: bool) {
        let e = self.entry();
        self.set_entry(if bos { e | 0x100 } else { e & !0x100 });
    }

    /// Sets the TTL.
    pub fn set_ttl(&mut self, ttl: u8) {
        let e = self.entry();
        self.set_entry((e & !0xff) | u32::from(ttl));
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// One label stack entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Label (20 bits).
    pub label: u32,
    /// Traffic class (3 bits).
    pub traffic_class: u8,
    /// Bottom of stack.
    pub bottom_of_stack: bool,
    /// Time to live.
    pub ttl: u8,
}

impl Repr {
    /// Decodes an entry.
    ///
    /// # Errors
    /// `Truncated` for a short buffer.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            label: packet.label(),
            traffic_class: packet.traffic_class(),
            bottom_of_stack: packet.bottom_of_stack(),
            ttl: packet.ttl(),
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the entry (label and traffic class are masked to their widths).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let e = ((self.label & MAX_LABEL) << 12)
            | (u32::from(self.traffic_class & 7) << 9)
            | if self.bottom_of_stack { 0x100 } else { 0 }
            | u32::from(self.ttl);
        packet.set_entry(e);
    }

    /// The 4 bytes of this entry.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut b[..]));
        b
    }
}

/// Decodes a whole label stack: the entries up to and including the bottom-of-stack one, and
/// the payload after it.
///
/// # Errors
/// `Truncated` when the buffer ends before the bottom of the stack, `Malformed` when the stack
/// is deeper than [`MAX_STACK_DEPTH`].
pub fn parse_stack(mut bytes: &[u8]) -> Result<(Vec<Repr>, &[u8])> {
    let mut stack = Vec::with_capacity(1);
    loop {
        let p = Packet::new_checked(bytes)?;
        let r = Repr::parse(&p)?;
        stack.push(r);
        bytes = &bytes[HEADER_LEN..];
        if r.bottom_of_stack {
            return Ok((stack, bytes));
        }
        if stack.len() >= MAX_STACK_DEPTH {
            return Err(Error::Malformed("MPLS label stack too deep"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // label 17, TC 0, bottom of stack, TTL 63, then one payload byte 0x45.
    static PACKET_BYTES: [u8; 5] = [0x00, 0x01, 0x11, 0x3f, 0x45];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).expect("long enough");
        assert_eq!(p.label(), 17);
        assert_eq!(p.traffic_class(), 0);
        assert!(p.bottom_of_stack());
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.payload(), &[0x45]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 5];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_label(17);
        p.set_traffic_class(0);
        p.set_bottom_of_stack(true);
        p.set_ttl(63);
        p.payload_mut()[0] = 0x45;
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn parse_and_emit() {
        let r = Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..])).expect("parse");
        assert_eq!(
            r,
            Repr {
                label: 17,
                traffic_class: 0,
                bottom_of_stack: true,
                ttl: 63
            }
        );
        assert_eq!(r.to_bytes(), PACKET_BYTES[..4]);
    }

    #[test]
    fn truncated_and_deep_stacks_are_errors() {
        assert_eq!(
            Packet::new_checked(&[0u8; 3][..]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(parse_stack(&[0, 0, 0, 0]).err(), Some(Error::Truncated));
        assert!(matches!(parse_stack(&[0u8; 64]), Err(Error::Malformed(_))));
        let (stack, rest) = parse_stack(&PACKET_BYTES).expect("stack");
        assert_eq!((stack.len(), rest), (1, &[0x45u8][..]));
    }

    proptest! {
        #[test]
        fn round_trip(label in 0u32..=MAX_LABEL, tc in 0u8..8, bos: bool, ttl: u8) {
            let r = Repr { label, traffic_class: tc, bottom_of_stack: bos, ttl };
            let bytes = r.to_bytes();
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(r));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_stack(&bytes);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
            }
        }
    }
}
