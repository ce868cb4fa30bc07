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
/// Adds the big-endian 16-bit words of `data` (an odd last byte padded with zero) to `sum`,
/// folded back to at most 17 bits so callers can keep adding. Eight bytes at a time into a
/// 64-bit accumulator (the sum of 32-bit words folds to the same 16-bit sum, as
/// 2^16 ≡ 1 mod 0xffff): frames of up to 64 KiB (a TCP super-frame through a tunnel) cost
/// a quarter of a word-by-word loop. Public so the netns dataplane's segmentation and
/// checksum completion share this one implementation.
pub fn ones_sum(sum: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(sum);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for c in &mut words {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0x1_ffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a one's complement sum and complements it: the Internet checksum.
pub fn fold_checksum(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wide_sum_folds_to_the_word_by_word_sum() {
        let naive = |sum: u32, d: &[u8]| {
            let mut s = u64::from(sum);
            for c in d.chunks(2) {
                s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            fold_checksum(u32::try_from(s % 0xffff).unwrap_or(0))
        };
        let data: Vec<u8> = (0..70_001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 2, 7, 8, 9, 1500, 65_535, 70_001] {
            for start in [0u32, 0xffff, 0x1_fffe] {
                let a = fold_checksum(ones_sum(start, &data[..len]));
                let b = naive(start, &data[..len]);
                // 0x0000 and 0xffff are the same number in ones' complement.
                assert!(
                    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0),
                    "{len} {start}: {a:#x} {b:#x}"
                );
            }
        }
        let ones = vec![0xffu8; 65_536];
        assert_eq!(fold_checksum(ones_sum(0, &ones)), 0);
    }

    #[test]
    fn internet_checksum_of_rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let sum = ones_sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(fold_checksum(sum), !0xddf2);
        assert_eq!(fold_checksum(ones_sum(0, &[0xff])), !0xff00);
    }
}
