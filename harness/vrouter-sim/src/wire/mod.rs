//! Packet codecs, in the shape of smoltcp's `wire` module: each protocol has a zero-copy
//! `Packet<T: AsRef<[u8]>>` view over a buffer (checked construction returns
//! [`Error::Truncated`] instead of panicking; byte ranges live in a private `field` module) and
//! a plain `Repr` with `parse` and `emit`.
//!
//! - [`mpls`], [`vxlan`], [`gre`], [`sctp`]: written by hand (etherparse has no such headers;
//!   SCTP INIT / INIT-ACK / ABORT carry a CRC32c checksum so tshark reports none bad).
//! - [`frame`]: Ethernet, ARP, IPv4, TCP, UDP and ICMP through etherparse: builders for the
//!   frames the model sends, a summary parser for forwarding decisions, NAT and TTL rewrites
//!   that keep every checksum valid.
//! - [`encap`]: MPLSoUDP (UDP 6635), MPLSoGRE and VXLAN (UDP 4789) encapsulation and
//!   decapsulation of whole frames.
//! - [`pcap`]: the classic pcap file format (LINKTYPE_ETHERNET) with injectable timestamps.
//!
//! Invariant: no parser in this module panics, whatever the bytes; a malformed or short buffer
//! is an [`Error`].

pub mod encap;
pub mod frame;
pub mod gre;
pub mod mpls;
pub mod pcap;
pub mod sctp;
pub mod vxlan;

/// Why bytes could not be read as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol does not allow.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Result of the codecs.
pub type Result<T> = core::result::Result<T, Error>;

/// A byte range inside a header.
pub(crate) type Field = core::ops::Range<usize>;

/// The 16-bit one's complement sum of `data` added to `sum` (RFC 1071), not yet folded.
pub(crate) fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a one's complement sum and complements it: the Internet checksum.
pub(crate) fn fold_checksum(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_checksum_of_rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let sum = ones_sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(fold_checksum(sum), !0xddf2);
        assert_eq!(fold_checksum(ones_sum(0, &[0xff])), !0xff00);
    }
}
