//! Overlay encapsulations of the vrouter: MPLSoUDP (UDP destination port 6635, RFC 7510),
//! MPLSoGRE (GRE protocol 0x8847) and VXLAN (UDP 4789). MPLS carries the inner IP packet (the
//! label names the destination interface); VXLAN carries the inner Ethernet frame (the VNI
//! names the destination network's VRF).

use std::net::Ipv4Addr;

use harness_scenario::Encapsulation;

use super::frame::{self, Addrs, ETH_HEADER_LEN, ETHERTYPE_IPV4, Mac, Payload};
use super::{Error, Result, fold_checksum, gre, mpls, ones_sum, vxlan};

/// UDP destination port of MPLSoUDP (`VR_MPLS_OVER_UDP_NEW_DST_PORT`).
pub const MPLS_UDP_PORT: u16 = 6635;
/// The legacy MPLSoUDP port (`VR_MPLS_OVER_UDP_OLD_DST_PORT`), accepted on receive.
pub const MPLS_UDP_LEGACY_PORT: u16 = 51234;

/// The outer header of a tunnelled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Outer addresses (vhost to vhost).
    pub addrs: Addrs,
    /// Flow entropy: chooses the UDP source port (49152-65535).
    pub entropy: u16,
}

/// Encapsulates `inner_frame` (an Ethernet frame carrying IPv4). MPLS carries the IP packet
/// after the Ethernet header; VXLAN the whole frame. `id` is the MPLS label or the VNI. The
/// outer headers are written with etherparse, the UDP checksum is computed (one allocation,
/// one copy of the inner packet). An inner packet too big for one outer IPv4 packet gives an
/// empty frame.
pub fn encapsulate(kind: Encapsulation, outer: &Outer, id: u32, inner_frame: &[u8]) -> Vec<u8> {
    let inner_ip = inner_frame.get(ETH_HEADER_LEN..).unwrap_or(&[]);
    let sport = 49152 | (outer.entropy & 0x3fff);
    let label = mpls::Repr {
        label: id,
        traffic_class: 0,
        bottom_of_stack: true,
        ttl: 64,
    }
    .to_bytes();
    let mut th = [0u8; 16];
    let (proto, tl, body) = match kind {
        Encapsulation::MplsOverUdp => {
            th[0..2].copy_from_slice(&sport.to_be_bytes());
            th[2..4].copy_from_slice(&MPLS_UDP_PORT.to_be_bytes());
            th[8..12].copy_from_slice(&label);
            (frame::PROTO_UDP, 12, inner_ip)
        }
        Encapsulation::MplsOverGre => {
            let g = gre::Repr {
                protocol: gre::PROTO_MPLS,
                key: None,
                sequence: None,
            };
            g.emit(&mut gre::Packet::new_unchecked(&mut th[0..4]));
            th[4..8].copy_from_slice(&label);
            (frame::PROTO_GRE, 8, inner_ip)
        }
        Encapsulation::Vxlan => {
            th[0..2].copy_from_slice(&sport.to_be_bytes());
            th[2..4].copy_from_slice(&vxlan::UDP_PORT.to_be_bytes());
            th[8..16].copy_from_slice(&vxlan::Repr { vni: id }.to_bytes());
            (frame::PROTO_UDP, 16, inner_frame)
        }
    };
    let Ok(payload_len) = u16::try_from(tl + body.len()) else {
        return Vec::new();
    };
    let Ok(mut ip) = etherparse::Ipv4Header::new(
        payload_len,
        outer.addrs.ttl,
        etherparse::IpNumber(proto),
        outer.addrs.src.octets(),
        outer.addrs.dst.octets(),
    ) else {
        return Vec::new();
    };
    ip.header_checksum = ip.calc_header_checksum();
    if proto == frame::PROTO_UDP {
        th[4..6].copy_from_slice(&payload_len.to_be_bytes());
        let mut sum = ones_sum(0, &outer.addrs.src.octets());
        sum = ones_sum(sum, &outer.addrs.dst.octets());
        sum = sum
            .wrapping_add(u32::from(frame::PROTO_UDP))
            .wrapping_add(u32::from(payload_len));
        sum = ones_sum(sum, &th[..tl]);
        sum = ones_sum(sum, body);
        let c = match fold_checksum(sum) {
            0 => 0xffff,
            c => c,
        };
        th[6..8].copy_from_slice(&c.to_be_bytes());
    }
    let mut out = Vec::with_capacity(ETH_HEADER_LEN + 20 + tl + body.len());
    let eth = etherparse::Ethernet2Header {
        source: outer.addrs.src_mac,
        destination: outer.addrs.dst_mac,
        ether_type: etherparse::EtherType::IPV4,
    };
    // Writing into a Vec cannot fail.
    let _ = eth.write(&mut out);
    let _ = ip.write(&mut out);
    out.extend_from_slice(&th[..tl]);
    out.extend_from_slice(body);
    out
}

/// A packet taken out of its tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// The encapsulation it arrived in.
    pub kind: Encapsulation,
    /// MPLS label or VNI.
    pub id: u32,
    /// Outer source (the sending vhost).
    pub outer_src: Ipv4Addr,
    /// The inner packet as an Ethernet frame (for MPLS the Ethernet header is synthesised
    /// with `inner_macs`).
    pub inner_frame: Vec<u8>,
    /// The inner IPv4 packet, summarised.
    pub inner: frame::Ipv4Summary,
}

/// Whether `frame` is a tunnelled packet, and which encapsulation (without decoding it).
pub fn classify(s: &frame::Ipv4Summary) -> Option<Encapsulation> {
    match s.tuple.proto {
        frame::PROTO_UDP if matches!(s.tuple.dport, MPLS_UDP_PORT | MPLS_UDP_LEGACY_PORT) => {
            Some(Encapsulation::MplsOverUdp)
        }
        frame::PROTO_UDP if s.tuple.dport == vxlan::UDP_PORT => Some(Encapsulation::Vxlan),
        frame::PROTO_GRE => Some(Encapsulation::MplsOverGre),
        _ => None,
    }
}

/// Takes the inner packet out of a tunnelled frame. `Ok(None)` when the frame is not a tunnel
/// packet.
///
/// # Errors
/// When the outer or tunnel headers are truncated or malformed, or the MPLS payload is not
/// IPv4.
pub fn decapsulate(outer_frame: &[u8], inner_macs: (Mac, Mac)) -> Result<Option<Decapsulated>> {
    let Payload::Ipv4(s) = frame::parse(outer_frame)?.payload else {
        return Ok(None);
    };
    decapsulate_parsed(outer_frame, &s, inner_macs)
}

/// [`decapsulate`] of a frame whose outer IPv4 packet is already summarised as `s`.
///
/// # Errors
/// As [`decapsulate`].
pub fn decapsulate_parsed(
    outer_frame: &[u8],
    s: &frame::Ipv4Summary,
    inner_macs: (Mac, Mac),
) -> Result<Option<Decapsulated>> {
    let Some(kind) = classify(s) else {
        return Ok(None);
    };
    let payload = s.payload(outer_frame);
    let (id, inner_frame) = match kind {
        Encapsulation::MplsOverUdp => mpls_inner(payload, inner_macs)?,
        Encapsulation::MplsOverGre => {
            let g = gre::Packet::new_checked(outer_frame.get(s.l4_start..s.ip_end).unwrap_or(&[]))?;
            let r = gre::Repr::parse(&g)?;
            if r.protocol != gre::PROTO_MPLS {
                return Err(Error::Malformed("GRE payload is not MPLS"));
            }
            mpls_inner(g.payload(), inner_macs)?
        }
        Encapsulation::Vxlan => {
            let v = vxlan::Packet::new_checked(payload)?;
            let r = vxlan::Repr::parse(&v)?;
            if frame::ethertype(v.payload()) != ETHERTYPE_IPV4 {
                return Err(Error::Malformed("VXLAN payload is not IPv4 over Ethernet"));
            }
            (r.vni, v.payload().to_vec())
        }
    };
    let inner = frame::parse_ipv4(&inner_frame, ETH_HEADER_LEN)?;
    Ok(Some(Decapsulated {
        kind,
        id,
        outer_src: s.tuple.src,
        inner_frame,
        inner,
    }))
}

/// [`decapsulate_parsed`] that reuses the outer frame's buffer for the inner frame (no
/// allocation: the inner packet is moved to the front).
///
/// # Errors
/// As [`decapsulate`].
pub fn decapsulate_owned(
    mut outer_frame: Vec<u8>,
    s: &frame::Ipv4Summary,
    (dst, src): (Mac, Mac),
) -> Result<Option<Decapsulated>> {
    let Some(kind) = classify(s) else {
        return Ok(None);
    };
    let (id, start) = match kind {
        Encapsulation::MplsOverUdp | Encapsulation::MplsOverGre => {
            let at = if kind == Encapsulation::MplsOverGre {
                let g =
                    gre::Packet::new_checked(outer_frame.get(s.l4_start..s.ip_end).unwrap_or(&[]))?;
                let r = gre::Repr::parse(&g)?;
                if r.protocol != gre::PROTO_MPLS {
                    return Err(Error::Malformed("GRE payload is not MPLS"));
                }
                s.l4_start + g.header_len()
            } else {
                s.payload_start
            };
            let payload = outer_frame.get(at..s.ip_end).unwrap_or(&[]);
            let (stack, inner) = mpls::parse_stack(payload)?;
            let label = stack.first().map(|r| r.label).ok_or(Error::Truncated)?;
            if inner.first().map(|b| b >> 4) != Some(4) {
                return Err(Error::Malformed("MPLS payload is not IPv4"));
            }
            let ip_at = at + stack.len() * mpls::HEADER_LEN;
            // Room for the synthesised Ethernet header: the outer headers are longer.
            let eth_at = ip_at - ETH_HEADER_LEN;
            outer_frame[eth_at..eth_at + 6].copy_from_slice(&dst);
            outer_frame[eth_at + 6..eth_at + 12].copy_from_slice(&src);
            outer_frame[eth_at + 12..ip_at].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            (label, eth_at)
        }
        Encapsulation::Vxlan => {
            let v = vxlan::Packet::new_checked(s.payload(&outer_frame))?;
            let r = vxlan::Repr::parse(&v)?;
            if frame::ethertype(v.payload()) != ETHERTYPE_IPV4 {
                return Err(Error::Malformed("VXLAN payload is not IPv4 over Ethernet"));
            }
            (r.vni, s.payload_start + vxlan::HEADER_LEN)
        }
    };
    outer_frame.truncate(s.ip_end);
    outer_frame.drain(..start);
    let inner = frame::parse_ipv4(&outer_frame, ETH_HEADER_LEN)?;
    Ok(Some(Decapsulated {
        kind,
        id,
        outer_src: s.tuple.src,
        inner_frame: outer_frame,
        inner,
    }))
}

fn mpls_inner(payload: &[u8], (dst, src): (Mac, Mac)) -> Result<(u32, Vec<u8>)> {
    let (stack, inner) = mpls::parse_stack(payload)?;
    let label = stack.first().map(|r| r.label).ok_or(Error::Truncated)?;
    if inner.first().map(|b| b >> 4) != Some(4) {
        return Err(Error::Malformed("MPLS payload is not IPv4"));
    }
    Ok((label, frame::ethernet(dst, src, ETHERTYPE_IPV4, inner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::TcpFlags;
    use proptest::prelude::*;

    fn inner() -> Vec<u8> {
        frame::tcp(
            &Addrs {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                src: Ipv4Addr::new(10, 47, 255, 254),
                dst: Ipv4Addr::new(10, 47, 255, 253),
                ttl: 63,
            },
            40000,
            80,
            1,
            0,
            TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            b"",
        )
    }

    fn outer() -> Outer {
        Outer {
            addrs: Addrs {
                src_mac: [0, 0, 0x5e, 0, 1, 1],
                dst_mac: [0, 0, 0x5e, 0, 1, 2],
                src: Ipv4Addr::new(192, 168, 0, 11),
                dst: Ipv4Addr::new(192, 168, 0, 12),
                ttl: 64,
            },
            entropy: 1234,
        }
    }

    #[test]
    fn every_encapsulation_round_trips() {
        let inner = inner();
        for kind in [
            Encapsulation::MplsOverUdp,
            Encapsulation::MplsOverGre,
            Encapsulation::Vxlan,
        ] {
            let f = encapsulate(kind, &outer(), 17, &inner);
            assert!(frame::checksums_ok(&f));
            let d = decapsulate(&f, ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]))
                .expect("decap")
                .expect("tunnel");
            assert_eq!(d.kind, kind);
            assert_eq!(d.id, 17);
            assert_eq!(d.outer_src, Ipv4Addr::new(192, 168, 0, 11));
            assert_eq!(d.inner_frame, inner, "{kind:?}");
            let Payload::Ipv4(s) = frame::parse(&f).expect("outer").payload else {
                panic!("ipv4")
            };
            let owned = decapsulate_owned(f.clone(), &s, ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]))
                .expect("decap")
                .expect("tunnel");
            assert_eq!(owned, d, "{kind:?}");
        }
        let f = encapsulate(Encapsulation::MplsOverUdp, &outer(), 17, &inner);
        // UDP destination port 6635 at offset 14 + 20 + 2.
        assert_eq!(&f[36..38], &6635u16.to_be_bytes());
        assert!(
            decapsulate(&inner, ([0; 6], [0; 6]))
                .expect("plain")
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn garbage_tunnels_never_panic(kind in 0u8..3, bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let kind = [Encapsulation::MplsOverUdp, Encapsulation::MplsOverGre, Encapsulation::Vxlan][usize::from(kind)];
            let f = encapsulate(kind, &outer(), 5, &bytes);
            let _ = decapsulate(&f, ([0; 6], [0; 6]));
            let mut inner = inner();
            inner.extend_from_slice(&bytes);
            let f = encapsulate(kind, &outer(), 5, &inner);
            let a = decapsulate(&f, ([0; 6], [0; 6]));
            if let Ok(Payload::Ipv4(s)) = frame::parse(&f).map(|x| x.payload) {
                let b = decapsulate_owned(f.clone(), &s, ([0; 6], [0; 6]));
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn truncated_tunnels_never_panic(kind in 0u8..3, cut in 0usize..100) {
            let kind = [Encapsulation::MplsOverUdp, Encapsulation::MplsOverGre, Encapsulation::Vxlan][usize::from(kind)];
            let f = encapsulate(kind, &outer(), 5, &inner());
            let _ = decapsulate(&f[..cut.min(f.len())], ([0; 6], [0; 6]));
        }
    }
}
