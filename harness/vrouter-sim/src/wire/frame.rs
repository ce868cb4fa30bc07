//! Ethernet, ARP, IPv4, TCP, UDP and ICMP through etherparse (SCTP through [`super::sctp`]):
//! builders for the frames the model sends, [`parse`] for forwarding decisions, and in-place
//! rewrites (NAT, TTL, MAC addresses) that keep every checksum valid.

use std::net::Ipv4Addr;

use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacket, ArpPacketSlice, Ethernet2HeaderSlice,
    Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4HeaderSlice, PacketBuilder, TcpHeaderSlice,
    UdpHeaderSlice, icmpv4::DestUnreachableHeader,
};

use super::{Error, Result, fold_checksum, ones_sum, sctp};

/// An Ethernet MAC address.
pub type Mac = [u8; 6];
/// Length of an Ethernet II header.
pub const ETH_HEADER_LEN: usize = 14;
/// EtherType IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IP protocol numbers the model uses.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// GRE.
pub const PROTO_GRE: u8 = 47;
/// SCTP.
pub const PROTO_SCTP: u8 = 132;
/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];

/// The 5-tuple of a packet (ports are 0 for protocols without them; for ICMP echo the
/// identifier is both ports, as the vrouter keys ICMP flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (ICMP echo: identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: identifier).
    pub dport: u16,
}

impl Tuple {
    /// The tuple of the answer.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.proto {
            PROTO_TCP => "TCP",
            PROTO_UDP => "UDP",
            PROTO_SCTP => "SCTP",
            PROTO_ICMP => "ICMP",
            _ => "IP",
        };
        write!(
            f,
            "{p} {}:{} -> {}:{}",
            self.src, self.sport, self.dst, self.dport
        )
    }
}

/// TCP flags the model sets and reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// RST.
    pub rst: bool,
    /// FIN.
    pub fin: bool,
}

/// What an ICMP error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpError {
    /// Destination unreachable with its code (1 host, 2 protocol, 3 port, 13 prohibited).
    Unreachable(u8),
    /// Time exceeded in transit.
    TimeExceeded,
}

/// The transport part of a packet, as forwarding needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TCP segment.
    Tcp {
        /// Flags.
        flags: TcpFlags,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
    },
    /// UDP datagram.
    Udp,
    /// SCTP packet (first chunk type).
    Sctp {
        /// Verification tag.
        vtag: u32,
        /// First chunk type (`None` without chunk).
        chunk: Option<u8>,
    },
    /// ICMP echo request or reply.
    IcmpEcho {
        /// Reply (type 0) rather than request (type 8).
        reply: bool,
        /// Sequence number.
        seq: u16,
    },
    /// ICMP error quoting an earlier packet.
    IcmpError {
        /// The error.
        error: IcmpError,
        /// 5-tuple of the quoted packet, when readable.
        quoted: Option<Tuple>,
    },
    /// Another protocol or ICMP type.
    Other,
}

/// An IPv4 packet inside a frame, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Summary {
    /// 5-tuple.
    pub tuple: Tuple,
    /// TTL.
    pub ttl: u8,
    /// Transport details.
    pub transport: Transport,
    /// Offset of the IP header in the frame.
    pub ip_start: usize,
    /// Offset of the transport header.
    pub l4_start: usize,
    /// Offset of the transport payload (after the TCP/UDP/ICMP header).
    pub payload_start: usize,
    /// End of the IP packet (frames may carry padding after it).
    pub ip_end: usize,
}

impl Ipv4Summary {
    /// The transport payload.
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.payload_start..self.ip_end).unwrap_or(&[])
    }

    /// The IP packet (header and payload).
    pub fn ip_packet<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.ip_start..self.ip_end).unwrap_or(&[])
    }
}

/// What an Ethernet frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// ARP for IPv4 over Ethernet.
    Arp(ArpEthIpv4Packet),
    /// IPv4.
    Ipv4(Ipv4Summary),
    /// Anything else (EtherType).
    Other(u16),
}

/// An Ethernet frame, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSummary {
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Source MAC.
    pub src_mac: Mac,
    /// Contents.
    pub payload: Payload,
}

fn lenerr<E>(_: E) -> Error {
    Error::Truncated
}

/// Parses an Ethernet frame.
///
/// # Errors
/// `Truncated` when a header does not fit, `Malformed` for an IPv4 header that lies about its
/// lengths, a fragment, or an IP version other than 4 under EtherType IPv4.
pub fn parse(frame: &[u8]) -> Result<FrameSummary> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(lenerr)?;
    let ethertype = eth.ether_type().0;
    let payload = match ethertype {
        ETHERTYPE_IPV4 => Payload::Ipv4(parse_ipv4(frame, ETH_HEADER_LEN)?),
        ETHERTYPE_ARP => {
            let arp = ArpPacketSlice::from_slice(&frame[ETH_HEADER_LEN..]).map_err(lenerr)?;
            match arp.to_packet().try_eth_ipv4() {
                Ok(a) => Payload::Arp(a),
                Err(_) => return Err(Error::Malformed("ARP is not Ethernet/IPv4")),
            }
        }
        other => Payload::Other(other),
    };
    Ok(FrameSummary {
        dst_mac: eth.destination(),
        src_mac: eth.source(),
        payload,
    })
}

/// Parses the IPv4 packet starting at `ip_start` in `buf`.
///
/// # Errors
/// As [`parse`].
pub fn parse_ipv4(buf: &[u8], ip_start: usize) -> Result<Ipv4Summary> {
    let data = buf.get(ip_start..).ok_or(Error::Truncated)?;
    let ip = Ipv4HeaderSlice::from_slice(data).map_err(|e| match e {
        etherparse::err::ipv4::HeaderSliceError::Len(_) => Error::Truncated,
        etherparse::err::ipv4::HeaderSliceError::Content(_) => Error::Malformed("bad IPv4 header"),
    })?;
    let total = usize::from(ip.total_len());
    let hlen = usize::from(ip.ihl()) * 4;
    if total < hlen {
        return Err(Error::Malformed("IPv4 total length below header length"));
    }
    if total > data.len() {
        return Err(Error::Truncated);
    }
    if ip.is_fragmenting_payload() {
        return Err(Error::Malformed(
            "IPv4 fragments are not forwarded by the model",
        ));
    }
    let l4_start = ip_start + hlen;
    let ip_end = ip_start + total;
    let l4 = &buf[l4_start..ip_end];
    let proto = ip.protocol().0;
    let mut tuple = Tuple {
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        proto,
        sport: 0,
        dport: 0,
    };
    let (transport, payload_start) = match proto {
        PROTO_TCP => {
            let t = TcpHeaderSlice::from_slice(l4).map_err(|e| match e {
                etherparse::err::tcp::HeaderSliceError::Len(_) => Error::Truncated,
                etherparse::err::tcp::HeaderSliceError::Content(_) => {
                    Error::Malformed("bad TCP header")
                }
            })?;
            tuple.sport = t.source_port();
            tuple.dport = t.destination_port();
            let flags = TcpFlags {
                syn: t.syn(),
                ack: t.ack(),
                rst: t.rst(),
                fin: t.fin(),
            };
            (
                Transport::Tcp {
                    flags,
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                },
                l4_start + t.slice().len(),
            )
        }
        PROTO_UDP => {
            let u = UdpHeaderSlice::from_slice(l4).map_err(lenerr)?;
            tuple.sport = u.source_port();
            tuple.dport = u.destination_port();
            (Transport::Udp, l4_start + 8)
        }
        PROTO_SCTP => {
            let p = sctp::Packet::new_checked(l4)?;
            tuple.sport = p.src_port();
            tuple.dport = p.dst_port();
            (
                Transport::Sctp {
                    vtag: p.verification_tag(),
                    chunk: p.chunk_type(),
                },
                l4_start + sctp::HEADER_LEN,
            )
        }
        PROTO_ICMP => {
            let icmp = Icmpv4Slice::from_slice(l4).map_err(lenerr)?;
            let b = icmp.bytes5to8();
            match icmp.type_u8() {
                0 | 8 => {
                    let id = u16::from_be_bytes([b[0], b[1]]);
                    tuple.sport = id;
                    tuple.dport = id;
                    (
                        Transport::IcmpEcho {
                            reply: icmp.type_u8() == 0,
                            seq: u16::from_be_bytes([b[2], b[3]]),
                        },
                        l4_start + 8,
                    )
                }
                3 | 11 => {
                    let error = if icmp.type_u8() == 3 {
                        IcmpError::Unreachable(icmp.code_u8())
                    } else {
                        IcmpError::TimeExceeded
                    };
                    let quoted = quoted_tuple(icmp.payload());
                    (Transport::IcmpError { error, quoted }, l4_start + 8)
                }
                _ => (Transport::Other, l4_start + 8),
            }
        }
        _ => (Transport::Other, l4_start),
    };
    Ok(Ipv4Summary {
        tuple,
        ttl: ip.ttl(),
        transport,
        ip_start,
        l4_start,
        payload_start: payload_start.min(ip_end),
        ip_end,
    })
}

/// The 5-tuple of the packet an ICMP error quotes (IP header plus at least 8 bytes).
fn quoted_tuple(quoted: &[u8]) -> Option<Tuple> {
    let ip = Ipv4HeaderSlice::from_slice(quoted).ok()?;
    let l4 = quoted.get(usize::from(ip.ihl()) * 4..)?;
    let proto = ip.protocol().0;
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => (
            u16::from_be_bytes([*l4.first()?, *l4.get(1)?]),
            u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]),
        ),
        PROTO_ICMP => {
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(Tuple {
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        proto,
        sport,
        dport,
    })
}

/// Addresses of a frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    /// Source MAC.
    pub src_mac: Mac,
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Source IP.
    pub src: Ipv4Addr,
    /// Destination IP.
    pub dst: Ipv4Addr,
    /// TTL.
    pub ttl: u8,
}

fn builder(a: &Addrs) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(a.src_mac, a.dst_mac).ipv4(a.src.octets(), a.dst.octets(), a.ttl)
}

/// A TCP segment in a frame.
pub fn tcp(
    a: &Addrs,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = builder(a).tcp(sport, dport, seq, 64240);
    if flags.syn {
        b = b.syn();
    }
    if flags.ack {
        b = b.ack(ack);
    }
    if flags.rst {
        b = b.rst();
    }
    if flags.fin {
        b = b.fin();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing into a Vec cannot fail; an oversized payload is the caller's bug.
    let _ = b.write(&mut out, payload);
    out
}

/// A UDP datagram in a frame.
pub fn udp(a: &Addrs, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = builder(a).udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    let _ = b.write(&mut out, payload);
    out
}

/// An IPv4 packet with an arbitrary protocol and payload in a frame.
pub fn ip(a: &Addrs, proto: u8, payload: &[u8]) -> Vec<u8> {
    let b = builder(a);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    let _ = b.write(&mut out, IpNumber(proto), payload);
    out
}

/// An SCTP packet in a frame.
pub fn sctp(a: &Addrs, repr: &sctp::Repr) -> Vec<u8> {
    ip(a, PROTO_SCTP, &repr.to_bytes())
}

/// An ICMP echo request or reply in a frame.
pub fn icmp_echo(a: &Addrs, reply: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let b = if reply {
        builder(a).icmpv4_echo_reply(id, seq)
    } else {
        builder(a).icmpv4_echo_request(id, seq)
    };
    let mut out = Vec::with_capacity(b.size(payload.len()));
    let _ = b.write(&mut out, payload);
    out
}

/// An ICMP error quoting `original` (an IP packet: its header and first 8 payload bytes are
/// quoted, as RFC 792 asks).
pub fn icmp_error(a: &Addrs, error: IcmpError, original: &[u8]) -> Vec<u8> {
    let quote_len = Ipv4HeaderSlice::from_slice(original)
        .map(|h| usize::from(h.ihl()) * 4 + 8)
        .unwrap_or(28)
        .min(original.len());
    let t = match error {
        IcmpError::Unreachable(code) => {
            let h = match code {
                0 => DestUnreachableHeader::Network,
                1 => DestUnreachableHeader::Host,
                2 => DestUnreachableHeader::Protocol,
                13 => DestUnreachableHeader::FilterProhibited,
                _ => DestUnreachableHeader::Port,
            };
            Icmpv4Type::DestinationUnreachable(h)
        }
        IcmpError::TimeExceeded => {
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        }
    };
    let b = builder(a).icmpv4(t);
    let payload = &original[..quote_len];
    let mut out = Vec::with_capacity(b.size(payload.len()));
    let _ = b.write(&mut out, payload);
    out
}

/// An ARP request or reply for IPv4 over Ethernet.
pub fn arp(
    src_mac: Mac,
    dst_mac: Mac,
    reply: bool,
    sender: (Mac, Ipv4Addr),
    target: (Mac, Ipv4Addr),
) -> Vec<u8> {
    let packet = ArpEthIpv4Packet {
        operation: if reply {
            ArpOperation::REPLY
        } else {
            ArpOperation::REQUEST
        },
        sender_mac: sender.0,
        sender_ipv4: sender.1.octets(),
        target_mac: target.0,
        target_ipv4: target.1.octets(),
    };
    let arp: ArpPacket = packet.into();
    debug_assert_eq!(arp.hw_addr_type, ArpHardwareId::ETHERNET);
    let b = PacketBuilder::ethernet2(src_mac, dst_mac).arp(arp);
    let mut out = Vec::with_capacity(b.size());
    let _ = b.write(&mut out);
    out
}

/// Wraps an IP packet in an Ethernet header.
pub fn ethernet(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETH_HEADER_LEN + payload.len());
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The EtherType of a frame (0 when too short).
pub fn ethertype(frame: &[u8]) -> u16 {
    match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Sets the MAC addresses of a frame (no-op on a frame too short to have them).
pub fn set_macs(frame: &mut [u8], dst: Mac, src: Mac) {
    if frame.len() >= ETH_HEADER_LEN {
        frame[0..6].copy_from_slice(&dst);
        frame[6..12].copy_from_slice(&src);
    }
}

fn ipv4_header_checksum(frame: &mut [u8], ip_start: usize) {
    let hlen = usize::from(frame[ip_start] & 0x0f) * 4;
    frame[ip_start + 10] = 0;
    frame[ip_start + 11] = 0;
    let c = fold_checksum(ones_sum(0, &frame[ip_start..ip_start + hlen]));
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
}

/// Decrements the TTL of the IPv4 packet `s` describes and fixes the header checksum; returns
/// the new TTL.
pub fn decrement_ttl(frame: &mut [u8], s: &mut Ipv4Summary) -> u8 {
    let ttl = s.ttl.saturating_sub(1);
    frame[s.ip_start + 8] = ttl;
    ipv4_header_checksum(frame, s.ip_start);
    s.ttl = ttl;
    ttl
}

fn l4_checksum(frame: &mut [u8], s: &Ipv4Summary) {
    let l4 = s.l4_start;
    let end = s.ip_end;
    let len = end - l4;
    let pseudo = |frame: &[u8]| {
        let mut sum = ones_sum(0, &frame[s.ip_start + 12..s.ip_start + 20]);
        sum = sum.wrapping_add(u32::from(s.tuple.proto));
        sum.wrapping_add(len as u32)
    };
    match s.tuple.proto {
        PROTO_TCP if len >= 20 => {
            frame[l4 + 16] = 0;
            frame[l4 + 17] = 0;
            let c = fold_checksum(ones_sum(pseudo(frame), &frame[l4..end]));
            frame[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_UDP if len >= 8 => {
            if frame[l4 + 6] == 0 && frame[l4 + 7] == 0 {
                return; // no checksum in use
            }
            frame[l4 + 6] = 0;
            frame[l4 + 7] = 0;
            let mut c = fold_checksum(ones_sum(pseudo(frame), &frame[l4..end]));
            if c == 0 {
                c = 0xffff;
            }
            frame[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
        }
        PROTO_SCTP if len >= sctp::HEADER_LEN => {
            sctp::Packet::new_unchecked(&mut frame[l4..end]).fill_checksum();
        }
        PROTO_ICMP if len >= 8 => {
            frame[l4 + 2] = 0;
            frame[l4 + 3] = 0;
            let c = fold_checksum(ones_sum(0, &frame[l4..end]));
            frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// Rewrites addresses and ports (NAT) of the packet `s` describes, fixing the IPv4 and
/// transport checksums, and updates `s`. For ICMP echo the port is the identifier. For an
/// ICMP error the outer addresses are rewritten and the quoted packet is rewritten the other
/// way round (its source is the outer destination), so the receiver can match it.
pub fn rewrite(frame: &mut [u8], s: &mut Ipv4Summary, new: Tuple) {
    let ip = s.ip_start;
    frame[ip + 12..ip + 16].copy_from_slice(&new.src.octets());
    frame[ip + 16..ip + 20].copy_from_slice(&new.dst.octets());
    ipv4_header_checksum(frame, ip);
    let l4 = s.l4_start;
    match (&s.transport, s.tuple.proto) {
        (Transport::Tcp { .. } | Transport::Udp | Transport::Sctp { .. }, _) => {
            frame[l4..l4 + 2].copy_from_slice(&new.sport.to_be_bytes());
            frame[l4 + 2..l4 + 4].copy_from_slice(&new.dport.to_be_bytes());
        }
        (Transport::IcmpEcho { .. }, _) => {
            frame[l4 + 4..l4 + 6].copy_from_slice(&new.sport.to_be_bytes());
        }
        (
            Transport::IcmpError {
                quoted: Some(q), ..
            },
            _,
        ) => {
            // The quoted packet went from the outer destination to the outer source: mirror
            // the outer rewrite onto it.
            let quoted_new = Tuple {
                src: if q.src == s.tuple.dst { new.dst } else { q.src },
                dst: if q.dst == s.tuple.src { new.src } else { q.dst },
                ..*q
            };
            rewrite_quoted(frame, l4 + 8, s.ip_end, *q, quoted_new);
        }
        _ => {}
    }
    s.tuple = Tuple {
        proto: s.tuple.proto,
        ..new
    };
    if let Transport::IcmpError { quoted, .. } = &mut s.transport {
        *quoted = quoted_tuple(frame.get(l4 + 8..s.ip_end).unwrap_or(&[]));
    }
    l4_checksum(frame, s);
}

/// Rewrites the packet an ICMP error quotes to `quoted` (addresses and ports), e.g. to undo a
/// port mapping, and fixes the checksums; a no-op for other packets.
pub fn rewrite_quoted_tuple(frame: &mut [u8], s: &mut Ipv4Summary, quoted: Tuple) {
    if let Transport::IcmpError {
        quoted: Some(q), ..
    } = &s.transport
    {
        let old = *q;
        rewrite_quoted(frame, s.l4_start + 8, s.ip_end, old, quoted);
        if let Transport::IcmpError { quoted: q, .. } = &mut s.transport {
            *q = quoted_tuple(frame.get(s.l4_start + 8..s.ip_end).unwrap_or(&[]));
        }
        l4_checksum(frame, s);
    }
}

/// Rewrites the packet quoted in an ICMP error to `new` (addresses and, for TCP/UDP/SCTP,
/// ports), fixing the quoted IPv4 header checksum.
fn rewrite_quoted(frame: &mut [u8], inner: usize, end: usize, old: Tuple, new: Tuple) {
    let Some(q) = frame.get(inner..end) else {
        return;
    };
    let Ok(h) = Ipv4HeaderSlice::from_slice(q) else {
        return;
    };
    let hlen = usize::from(h.ihl()) * 4;
    frame[inner + 12..inner + 16].copy_from_slice(&new.src.octets());
    frame[inner + 16..inner + 20].copy_from_slice(&new.dst.octets());
    ipv4_header_checksum(frame, inner);
    let l4 = inner + hlen;
    if matches!(old.proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) && l4 + 4 <= end {
        frame[l4..l4 + 2].copy_from_slice(&new.sport.to_be_bytes());
        frame[l4 + 2..l4 + 4].copy_from_slice(&new.dport.to_be_bytes());
    }
}

/// Whether the IPv4 header checksum and the TCP/UDP/ICMP/SCTP checksum of a frame are right
/// (used by tests and by the pcap checks).
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(FrameSummary {
        payload: Payload::Ipv4(s),
        ..
    }) = parse(frame)
    else {
        return true;
    };
    let hlen = s.l4_start - s.ip_start;
    if fold_checksum(ones_sum(0, &frame[s.ip_start..s.ip_start + hlen])) != 0 {
        return false;
    }
    let mut copy = frame.to_vec();
    l4_checksum(&mut copy, &s);
    copy == frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    fn addrs() -> Addrs {
        Addrs {
            src_mac: A,
            dst_mac: B,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            ttl: 64,
        }
    }

    #[test]
    fn tcp_syn_parses_back() {
        let f = tcp(
            &addrs(),
            40000,
            80,
            7,
            0,
            TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            b"",
        );
        assert!(checksums_ok(&f));
        let s = parse(&f).expect("parse");
        assert_eq!((s.dst_mac, s.src_mac), (B, A));
        let Payload::Ipv4(ip) = s.payload else {
            panic!("not ipv4")
        };
        assert_eq!(ip.tuple.sport, 40000);
        assert_eq!(ip.tuple.dport, 80);
        assert!(matches!(ip.transport, Transport::Tcp { flags, .. } if flags.syn && !flags.ack));
    }

    #[test]
    fn nat_rewrite_keeps_checksums_valid() {
        for mut f in [
            tcp(&addrs(), 1, 2, 3, 4, TcpFlags::default(), b"hello"),
            udp(&addrs(), 1, 2, b"x"),
            icmp_echo(&addrs(), false, 9, 1, b"ping"),
            sctp(
                &addrs(),
                &sctp::Repr {
                    src_port: 1,
                    dst_port: 2,
                    verification_tag: 5,
                    chunk: sctp::Chunk::Abort { reflected: false },
                },
            ),
        ] {
            let Payload::Ipv4(mut s) = parse(&f).expect("parse").payload else {
                panic!("ipv4")
            };
            let new = Tuple {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(198, 51, 100, 7),
                proto: s.tuple.proto,
                sport: 5555,
                dport: 6666,
            };
            rewrite(&mut f, &mut s, new);
            assert!(checksums_ok(&f), "{:?}", s.tuple);
            let Payload::Ipv4(again) = parse(&f).expect("parse").payload else {
                panic!("ipv4")
            };
            assert_eq!(again.tuple.src, new.src);
            assert_eq!(again.tuple.dst, new.dst);
            decrement_ttl(&mut f, &mut s);
            assert!(checksums_ok(&f));
        }
    }

    #[test]
    fn icmp_error_quotes_the_packet_and_rewrites_it() {
        let orig = udp(&addrs(), 40000, 53, b"q");
        let back = Addrs {
            src_mac: B,
            dst_mac: A,
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            ttl: 64,
        };
        let mut err = icmp_error(&back, IcmpError::Unreachable(3), &orig[ETH_HEADER_LEN..]);
        assert!(checksums_ok(&err));
        let Payload::Ipv4(mut s) = parse(&err).expect("parse").payload else {
            panic!("ipv4")
        };
        let Transport::IcmpError { error, quoted } = &s.transport else {
            panic!("icmp error")
        };
        assert_eq!(*error, IcmpError::Unreachable(3));
        assert_eq!(quoted.map(|q| q.dport), Some(53));
        // The vrouter un-NATs: the outer source and the quoted destination become the VIP.
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        let new = Tuple {
            src: vip,
            ..s.tuple
        };
        rewrite(&mut err, &mut s, new);
        assert!(checksums_ok(&err));
        let Payload::Ipv4(s2) = parse(&err).expect("parse").payload else {
            panic!("ipv4")
        };
        let Transport::IcmpError { quoted, .. } = s2.transport else {
            panic!("icmp error")
        };
        assert_eq!(quoted.map(|q| q.dst), Some(vip));
    }

    #[test]
    fn arp_round_trip() {
        let f = arp(
            A,
            BROADCAST,
            false,
            (A, Ipv4Addr::new(10, 0, 0, 1)),
            ([0; 6], Ipv4Addr::new(10, 0, 0, 254)),
        );
        let Payload::Arp(a) = parse(&f).expect("parse").payload else {
            panic!("arp")
        };
        assert_eq!(a.operation, ArpOperation::REQUEST);
        assert_eq!(a.target_ipv4_addr(), Ipv4Addr::new(10, 0, 0, 254));
    }

    #[test]
    fn truncated_frames_are_errors() {
        let f = tcp(&addrs(), 1, 2, 3, 4, TcpFlags::default(), b"");
        for n in 0..f.len() {
            assert!(parse(&f[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(&bytes);
            let _ = checksums_ok(&bytes);
        }

        #[test]
        fn ipv4_ethertype_garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 15..120), proto in prop_oneof![Just(1u8), Just(6), Just(17), Just(132), Just(47)]) {
            bytes[12] = 0x08; bytes[13] = 0x00; bytes[14] = 0x45;
            if bytes.len() > 23 { bytes[23] = proto; }
            if let Ok(FrameSummary { payload: Payload::Ipv4(mut s), .. }) = parse(&bytes) {
                let t = s.tuple.reversed();
                rewrite(&mut bytes, &mut s, t);
                decrement_ttl(&mut bytes, &mut s);
            }
        }
    }
}
