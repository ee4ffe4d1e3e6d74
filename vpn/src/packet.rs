//! Reading IP packets (through etherparse) and clamping the MSS of TCP
//! SYNs so that TCP segments fit the tunnel MTU.
//!
//! The tunnel carries one IP packet per Tox packet and never fragments, so
//! a TCP connection through it must not send segments larger than the MTU
//! allows: its SYN and SYN-ACK are rewritten on the way through (in both
//! directions) to announce at most `MTU - 40` (IPv4) or `MTU - 60` (IPv6)
//! bytes, and the TCP checksum is computed again.

use std::net::IpAddr;

use etherparse::{IpNumber, IpSlice, TcpOptionElement, TcpSlice};

/// What the engine needs to know of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The source address.
    pub src: IpAddr,
    /// The destination address.
    pub dst: IpAddr,
    /// A TCP segment with the SYN flag (whose MSS may need clamping).
    pub tcp_syn: bool,
}

/// The packet is not a whole, valid IPv4 or IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid IP packet")]
pub struct Malformed;

/// Reads a packet's addresses and whether it is a TCP SYN.
pub fn summarize(packet: &[u8]) -> Result<Summary, Malformed> {
    let ip = IpSlice::from_slice(packet).map_err(|_| Malformed)?;
    let payload = ip.payload();
    let tcp_syn = payload.ip_number == IpNumber::TCP
        && !ip.is_fragmenting_payload()
        && TcpSlice::from_slice(payload.payload).is_ok_and(|tcp| tcp.syn());
    Ok(Summary { src: ip.source_addr(), dst: ip.destination_addr(), tcp_syn })
}

/// The largest MSS a TCP peer may announce through a tunnel of `mtu`.
pub fn max_mss(mtu: u16, ipv6: bool) -> u16 {
    mtu.saturating_sub(if ipv6 { 60 } else { 40 })
}

/// What [`clamp_mss`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not an unfragmented TCP SYN.
    NotSyn,
    /// A SYN whose MSS option (if any) already fits.
    Fits,
    /// The MSS option was lowered.
    Clamped {
        /// The MSS the sender announced.
        from: u16,
        /// The MSS now in the packet.
        to: u16,
    },
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) to fit `mtu`, in place,
/// and fixes the TCP checksum. Other packets are left alone.
pub fn clamp_mss(packet: &mut [u8], mtu: u16) -> Clamp {
    let Ok(ip) = IpSlice::from_slice(packet) else { return Clamp::NotSyn };
    let payload = ip.payload();
    if payload.ip_number != IpNumber::TCP || ip.is_fragmenting_payload() {
        return Clamp::NotSyn;
    }
    let Ok(tcp) = TcpSlice::from_slice(payload.payload) else { return Clamp::NotSyn };
    if !tcp.syn() {
        return Clamp::NotSyn;
    }
    let limit = max_mss(mtu, ip.ipv6().is_some());

    // Find the MSS option: its value and where it starts among the options.
    let options = tcp.options();
    let mut iter = tcp.options_iterator();
    let mut found = None;
    loop {
        let at = options.len() - iter.rest().len();
        match iter.next() {
            Some(Ok(TcpOptionElement::MaximumSegmentSize(mss))) => {
                found = Some((at, mss));
                break;
            }
            Some(Ok(_)) => {}
            // An option etherparse does not know, or the end: in Linux and
            // every common stack the MSS option comes first, so a SYN whose
            // MSS hides behind an unknown option is left as it is.
            Some(Err(_)) | None => break,
        }
    }
    let Some((at, mss)) = found else { return Clamp::Fits };
    if mss <= limit {
        return Clamp::Fits;
    }

    let mut header = tcp.to_header();
    let mut new_options = [0u8; 40];
    let new_options = &mut new_options[..options.len()];
    new_options.copy_from_slice(options);
    // The option is kind (2), length (4), then the value.
    new_options[at + 2..at + 4].copy_from_slice(&limit.to_be_bytes());
    if header.set_options_raw(new_options).is_err() {
        return Clamp::Fits;
    }
    let checksum = match &ip {
        IpSlice::Ipv4(v4) => {
            let h = v4.header();
            header.calc_checksum_ipv4_raw(h.source(), h.destination(), tcp.payload())
        }
        IpSlice::Ipv6(v6) => {
            let h = v6.header();
            header.calc_checksum_ipv6_raw(h.source(), h.destination(), tcp.payload())
        }
    };
    let Ok(checksum) = checksum else { return Clamp::Fits };
    header.checksum = checksum;
    let start = offset_in(packet, tcp.slice());
    let bytes = header.to_bytes();
    packet[start..start + bytes.len()].copy_from_slice(&bytes);
    Clamp::Clamped { from: mss, to: limit }
}

/// Where `inner`, a sub-slice that etherparse found, starts in `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// A TCP SYN from `src` to `dst` with the given options.
    pub(crate) fn syn(src: IpAddr, dst: IpAddr, options: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
        let builder = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let builder = builder.tcp(40000, 22, 7, 64240).syn().options(options).unwrap();
        let mut out = Vec::new();
        builder.write(&mut out, payload).unwrap();
        out
    }

    /// A UDP packet from `src` to `dst`.
    pub(crate) fn udp(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let builder = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut out = Vec::new();
        builder.udp(5000, 6000).write(&mut out, payload).unwrap();
        out
    }

    fn checksum_ok(packet: &[u8]) -> bool {
        let ip = IpSlice::from_slice(packet).unwrap();
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        let computed = match &ip {
            IpSlice::Ipv4(v4) => tcp.calc_checksum_ipv4(v4.header().source(), v4.header().destination()),
            IpSlice::Ipv6(v6) => tcp.calc_checksum_ipv6(v6.header().source(), v6.header().destination()),
        };
        computed.unwrap() == tcp.checksum()
    }

    fn mss_of(packet: &[u8]) -> Option<u16> {
        let ip = IpSlice::from_slice(packet).unwrap();
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        tcp.options_iterator().find_map(|o| match o {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        })
    }

    const A4: &str = "10.7.0.2";
    const B4: &str = "192.168.1.10";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn clamps_ipv4_syn() {
        use TcpOptionElement::*;
        let options =
            [MaximumSegmentSize(1460), SelectiveAcknowledgementPermitted, Timestamp(1, 0), Noop, WindowScale(7)];
        let mut p = syn(ip(A4), ip(B4), &options, &[]);
        let before = p.clone();
        assert!(summarize(&p).unwrap().tcp_syn);
        assert_eq!(clamp_mss(&mut p, 1280), Clamp::Clamped { from: 1460, to: 1240 });
        assert_eq!(mss_of(&p), Some(1240));
        assert!(checksum_ok(&p));
        // Only the option value and the checksum changed.
        let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
        assert!(changed.len() <= 4, "{changed:?}");
        // Clamping again changes nothing.
        assert_eq!(clamp_mss(&mut p, 1280), Clamp::Fits);
    }

    #[test]
    fn clamps_ipv6_syn_with_payload() {
        use TcpOptionElement::*;
        let mut p = syn(ip("fd00::2"), ip("fd00::1"), &[Noop, MaximumSegmentSize(1440)], b"fast open data");
        assert_eq!(clamp_mss(&mut p, 1280), Clamp::Clamped { from: 1440, to: 1220 });
        assert_eq!(mss_of(&p), Some(1220));
        assert!(checksum_ok(&p));
    }

    #[test]
    fn leaves_others_alone() {
        use TcpOptionElement::*;
        let mut small = syn(ip(A4), ip(B4), &[MaximumSegmentSize(1000)], &[]);
        assert_eq!(clamp_mss(&mut small, 1280), Clamp::Fits);
        let mut none = syn(ip(A4), ip(B4), &[], &[]);
        assert_eq!(clamp_mss(&mut none, 1280), Clamp::Fits);
        let mut u = udp(ip(A4), ip(B4), b"hello");
        let copy = u.clone();
        assert_eq!(clamp_mss(&mut u, 1280), Clamp::NotSyn);
        assert_eq!(u, copy);
        assert!(!summarize(&u).unwrap().tcp_syn);
        assert_eq!(summarize(&u).unwrap().dst, ip(B4));
        assert_eq!(clamp_mss(&mut [0x45, 0, 0], 1280), Clamp::NotSyn);
        assert_eq!(summarize(&[0x60; 10]), Err(Malformed));
        assert_eq!(summarize(&[]), Err(Malformed));
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in prop::collection::vec(any::<u8>(), 0..200), mtu in 0u16..2000) {
            let _ = summarize(&bytes);
            let _ = clamp_mss(&mut bytes, mtu);
        }

        #[test]
        fn clamped_syns_stay_valid(mss in any::<u16>(), mtu in 576u16..=1372, v6 in any::<bool>(),
                                   payload in prop::collection::vec(any::<u8>(), 0..50)) {
            let (s, d) = if v6 { (ip("fd00::2"), ip("2001:db8::1")) } else { (ip(A4), ip(B4)) };
            let mut p = syn(s, d, &[TcpOptionElement::MaximumSegmentSize(mss), TcpOptionElement::Noop,
                                    TcpOptionElement::WindowScale(3)], &payload);
            let limit = max_mss(mtu, v6);
            let result = clamp_mss(&mut p, mtu);
            prop_assert!(checksum_ok(&p));
            prop_assert_eq!(mss_of(&p), Some(mss.min(limit)));
            prop_assert_eq!(matches!(result, Clamp::Clamped { .. }), mss > limit);
        }
    }
}
