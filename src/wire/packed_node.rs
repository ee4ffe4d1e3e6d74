//! The packed node format: how Tox writes a node (transport, socket address
//! and public key) into a packet.
//!
//! | bytes   | field                                                            |
//! |---------|------------------------------------------------------------------|
//! | 1       | IP type: 2 UDP/IPv4, 10 UDP/IPv6, 130 TCP/IPv4, 138 TCP/IPv6     |
//! | 4 or 16 | the IPv4 or IPv6 address, in network order                       |
//! | 2       | port, big-endian                                                 |
//! | 32      | public key (a DHT key, or a TCP relay's key)                     |
//!
//! A node is therefore 39 bytes (IPv4) or 51 bytes (IPv6). Lists are nodes
//! written back to back, with no count and no padding: the enclosing packet
//! says how many (a nodes response's count byte) or they run to its end
//! (DHT-PK, friend_connection's shared relays).
//!
//! Facts from c-toxcore 0.2.18:
//! - `network.h`: `TOX_AF_INET` 2, `TOX_AF_INET6` 10, `TOX_TCP_INET` 130,
//!   `TOX_TCP_INET6` 138; the spec reads the IP type as one protocol bit
//!   (high, TCP = 1) and a 7-bit address family.
//! - `DHT.c` `pack_ip_port`/`unpack_ip_port`: the address and the port are
//!   copied as they sit in memory, i.e. in network (big-endian) order; an
//!   unknown IP type fails the whole list (`unpack_nodes` returns -1), and so
//!   do TCP types where the caller passes `tcp_enabled = false` (nodes
//!   responses, see [`super::nodes_response`]). Golden bytes below come from
//!   `pack_nodes` itself.
//! - `DHT.c` `ip_port_normalize` and `network.c` `receivepacket`: an
//!   IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is turned into IPv4 before it
//!   is stored, so it is only ever packed as IPv4. We do the same in both
//!   directions: [`PackedNode::encode`] writes mapped addresses as IPv4 and
//!   [`PackedNode::decode`] returns them as IPv4 (see [`normalize_addr`]).
//!
//! Spec: <https://toktok.ltd/spec.html#node-info-packed-node-format>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;

use super::{DecodeError, Reader};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};

/// IP type of a UDP node with an IPv4 address.
pub const IP_TYPE_UDP_IPV4: u8 = 2;
/// IP type of a UDP node with an IPv6 address.
pub const IP_TYPE_UDP_IPV6: u8 = 10;
/// IP type of a TCP relay with an IPv4 address.
pub const IP_TYPE_TCP_IPV4: u8 = 130;
/// IP type of a TCP relay with an IPv6 address.
pub const IP_TYPE_TCP_IPV6: u8 = 138;

/// Length of a packed node with an IPv4 address.
pub const PACKED_NODE_IPV4_LEN: usize = 1 + 4 + 2 + PUBLIC_KEY_LEN;
/// Length of a packed node with an IPv6 address: the longest a node can be.
pub const PACKED_NODE_IPV6_LEN: usize = 1 + 16 + 2 + PUBLIC_KEY_LEN;

/// The transport a node is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A DHT node, over UDP.
    Udp,
    /// A TCP relay.
    Tcp,
}

impl Protocol {
    /// The IP type byte for this protocol and an address family.
    pub const fn ip_type(self, ipv4: bool) -> u8 {
        match (self, ipv4) {
            (Self::Udp, true) => IP_TYPE_UDP_IPV4,
            (Self::Udp, false) => IP_TYPE_UDP_IPV6,
            (Self::Tcp, true) => IP_TYPE_TCP_IPV4,
            (Self::Tcp, false) => IP_TYPE_TCP_IPV6,
        }
    }
}

/// An IPv4-mapped IPv6 address turned into the IPv4 address it maps, as
/// c-toxcore's `ip_port_normalize` does; any other address unchanged. IPv6
/// flow info and scope are dropped, since the wire carries neither.
pub fn normalize_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => SocketAddr::new(IpAddr::V6(*v6.ip()), v6.port()),
        },
        v4 => v4,
    }
}

/// A node: how to reach it and its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackedNode {
    /// UDP for DHT nodes, TCP for relays.
    pub protocol: Protocol,
    /// Its address. IPv4-mapped IPv6 addresses are written as IPv4.
    pub addr: SocketAddr,
    /// Its public key.
    pub public_key: PublicKey,
}

impl PackedNode {
    /// A node.
    pub const fn new(protocol: Protocol, addr: SocketAddr, public_key: PublicKey) -> Self {
        Self { protocol, addr, public_key }
    }

    /// A UDP (DHT) node.
    pub const fn udp(addr: SocketAddr, public_key: PublicKey) -> Self {
        Self::new(Protocol::Udp, addr, public_key)
    }

    /// A TCP relay.
    pub const fn tcp(addr: SocketAddr, public_key: PublicKey) -> Self {
        Self::new(Protocol::Tcp, addr, public_key)
    }

    /// Reads one node off `r`. An IPv4-mapped IPv6 address comes back as
    /// IPv4.
    pub fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let ip_type = r.u8("packed node IP type")?;
        let ip = match ip_type {
            IP_TYPE_UDP_IPV4 | IP_TYPE_TCP_IPV4 => {
                IpAddr::V4(Ipv4Addr::from(r.array::<4>("packed node IPv4 address")?))
            }
            IP_TYPE_UDP_IPV6 | IP_TYPE_TCP_IPV6 => {
                IpAddr::V6(Ipv6Addr::from(r.array::<16>("packed node IPv6 address")?))
            }
            _ => return Err(DecodeError::Invalid("packed node IP type")),
        };
        // The high bit of the IP type is the protocol.
        let protocol = if ip_type & 0x80 == 0 { Protocol::Udp } else { Protocol::Tcp };
        let port = r.u16_be("packed node port")?;
        let public_key = PublicKey::from_bytes(r.array("packed node public key")?);
        Ok(Self::new(protocol, normalize_addr(SocketAddr::new(ip, port)), public_key))
    }

    /// Writes the node.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match normalize_addr(self.addr) {
            SocketAddr::V4(v4) => {
                buf.put_u8(self.protocol.ip_type(true));
                buf.put_slice(&v4.ip().octets());
                buf.put_u16(v4.port());
            }
            SocketAddr::V6(v6) => {
                buf.put_u8(self.protocol.ip_type(false));
                buf.put_slice(&v6.ip().octets());
                buf.put_u16(v6.port());
            }
        }
        buf.put_slice(self.public_key.as_bytes());
    }

    /// What [`encode`](Self::encode) writes: 39 or 51 bytes.
    pub fn encoded_len(&self) -> usize {
        match normalize_addr(self.addr) {
            SocketAddr::V4(_) => PACKED_NODE_IPV4_LEN,
            SocketAddr::V6(_) => PACKED_NODE_IPV6_LEN,
        }
    }

    /// Reads exactly `count` nodes (a nodes response names its count).
    pub fn decode_list(r: &mut Reader, count: usize) -> Result<Vec<Self>, DecodeError> {
        // `count` may come off the wire: allocate no more than the input can hold.
        let mut nodes = Vec::with_capacity(count.min(r.remaining() / PACKED_NODE_IPV4_LEN));
        for _ in 0..count {
            nodes.push(Self::decode(r)?);
        }
        Ok(nodes)
    }

    /// Reads nodes until the input ends or `max` have been read, as
    /// c-toxcore's `unpack_nodes` does for lists that run to the end of a
    /// packet (DHT-PK, shared relays). A node cut short is an error; bytes
    /// after the `max`-th node are left unread.
    pub fn decode_up_to(r: &mut Reader, max: usize) -> Result<Vec<Self>, DecodeError> {
        let mut nodes = Vec::with_capacity(max.min(r.remaining() / PACKED_NODE_IPV4_LEN));
        while nodes.len() < max && !r.is_empty() {
            nodes.push(Self::decode(r)?);
        }
        Ok(nodes)
    }

    /// Writes nodes back to back.
    pub fn encode_list(nodes: &[Self], buf: &mut impl BufMut) {
        for node in nodes {
            node.encode(buf);
        }
    }

    /// What [`encode_list`](Self::encode_list) writes.
    pub fn list_encoded_len(nodes: &[Self]) -> usize {
        nodes.iter().map(Self::encoded_len).sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_public_key, arb_socket_addr, damage};

    /// Any node, IPv4-mapped addresses included.
    pub(crate) fn arb_packed_node() -> impl Strategy<Value = PackedNode> {
        let protocol = prop_oneof![Just(Protocol::Udp), Just(Protocol::Tcp)];
        (protocol, arb_socket_addr(), arb_public_key()).prop_map(|(p, a, k)| PackedNode::new(p, a, k))
    }

    fn key(first: u8) -> PublicKey {
        PublicKey::from_bytes(std::array::from_fn(|i| first + i as u8))
    }

    fn encode(nodes: &[PackedNode]) -> Vec<u8> {
        let mut out = Vec::new();
        PackedNode::encode_list(nodes, &mut out);
        assert_eq!(out.len(), PackedNode::list_encoded_len(nodes));
        out
    }

    /// The four kinds of node, as the test program fed them to c-toxcore.
    fn four_nodes() -> [PackedNode; 4] {
        [
            PackedNode::udp("192.0.2.1:33445".parse().unwrap(), key(0x10)),
            PackedNode::udp("[2001:db8::1]:443".parse().unwrap(), key(0x20)),
            PackedNode::tcp("198.51.100.7:3389".parse().unwrap(), key(0x30)),
            PackedNode::tcp("[2001:db8::abcd]:65535".parse().unwrap(), key(0x40)),
        ]
    }

    #[test]
    fn ipv4_udp_node_by_hand() {
        // From the spec's table: IP type 2, 192.0.2.1, port 33445 = 0x82a5, key.
        let mut expected = vec![0x02, 192, 0, 2, 1, 0x82, 0xa5];
        expected.extend(0x10..0x30u8);
        assert_eq!(expected.len(), PACKED_NODE_IPV4_LEN);
        assert_eq!(encode(&four_nodes()[..1]), expected);
        let mut r = Reader::new(expected);
        assert_eq!(PackedNode::decode(&mut r).unwrap(), four_nodes()[0]);
        assert!(r.is_empty());
    }

    #[test]
    fn matches_c_toxcore_pack_nodes() {
        // What c-toxcore 0.2.18's `pack_nodes` (Debian's libtoxcore.a) wrote
        // for `four_nodes()`: keys 0x10.., 0x20.., 0x30.., 0x40.. counting up.
        let golden = hex!(
            "02 c0000201 82a5 101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
            "0a 20010db8000000000000000000000001 01bb 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
            "82 c6336407 0d3d 303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f"
            "8a 20010db800000000000000000000abcd ffff 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        );
        assert_eq!(golden.len(), 39 + 51 + 39 + 51);
        assert_eq!(encode(&four_nodes()), golden);
        let mut r = Reader::new(Bytes::copy_from_slice(&golden));
        assert_eq!(PackedNode::decode_list(&mut r, 4).unwrap(), four_nodes());
        assert!(r.is_empty());
    }

    #[test]
    fn mapped_addresses_are_written_and_read_as_ipv4() {
        let mapped = PackedNode::udp("[::ffff:192.0.2.1]:33445".parse().unwrap(), key(0x10));
        assert_eq!(mapped.encoded_len(), PACKED_NODE_IPV4_LEN);
        assert_eq!(encode(&[mapped]), encode(&four_nodes()[..1]));
        // A peer that sends one as IPv6 (type 10) gets it read as IPv4.
        let mut as_v6 = vec![IP_TYPE_UDP_IPV6];
        as_v6.extend_from_slice(&"::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets());
        as_v6.extend_from_slice(&[0x82, 0xa5]);
        as_v6.extend(0x10..0x30u8);
        assert_eq!(PackedNode::decode(&mut Reader::new(as_v6)).unwrap(), four_nodes()[0]);
    }

    #[test]
    fn bad_ip_types_and_short_input_fail() {
        for ip_type in [0u8, 1, 3, 4, 6, 11, 129, 131, 255] {
            let mut bytes = vec![ip_type];
            bytes.extend_from_slice(&[0; 50]);
            assert_eq!(PackedNode::decode(&mut Reader::new(bytes)), Err(DecodeError::Invalid("packed node IP type")));
        }
        let full = encode(&four_nodes()[..1]);
        let mut short = Reader::new(full[..38].to_vec());
        assert!(matches!(
            PackedNode::decode(&mut short),
            Err(DecodeError::UnexpectedEnd { what: "packed node public key", needed: 32, available: 31 })
        ));
    }

    #[test]
    fn lists_to_the_end() {
        let bytes = encode(&four_nodes());
        let mut r = Reader::new(bytes.clone());
        assert_eq!(PackedNode::decode_up_to(&mut r, 10).unwrap(), four_nodes());
        let mut r = Reader::new(bytes.clone());
        assert_eq!(PackedNode::decode_up_to(&mut r, 2).unwrap(), four_nodes()[..2]);
        assert_eq!(r.remaining(), 39 + 51);
        assert_eq!(PackedNode::decode_up_to(&mut Reader::new(Vec::new()), 4).unwrap(), []);
        // A node cut short at the end fails the list, as in c-toxcore.
        let mut r = Reader::new(bytes[..bytes.len() - 1].to_vec());
        assert!(PackedNode::decode_up_to(&mut r, 4).is_err());
        // An untrusted huge count does not allocate for it.
        assert!(PackedNode::decode_list(&mut Reader::new(bytes), usize::MAX).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(nodes in proptest::collection::vec(arb_packed_node(), 0..8)) {
            let bytes = encode(&nodes);
            let mut r = Reader::new(bytes.clone());
            let back = PackedNode::decode_list(&mut r, nodes.len()).unwrap();
            prop_assert!(r.is_empty());
            let normalized: Vec<_> = nodes.iter().map(|n| PackedNode { addr: normalize_addr(n.addr), ..*n }).collect();
            prop_assert_eq!(&back, &normalized);
            // Decoding yields the canonical form: encoding it again gives the same bytes.
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn damaged_input_never_panics(nodes in proptest::collection::vec(arb_packed_node(), 1..5), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let bytes = damage(encode(&nodes), flip, bit, cut);
            let _ = PackedNode::decode_list(&mut Reader::new(bytes.clone()), nodes.len());
            let _ = PackedNode::decode_up_to(&mut Reader::new(bytes), 4);
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), count in 0usize..10) {
            let _ = PackedNode::decode_list(&mut Reader::new(bytes.clone()), count);
            let _ = PackedNode::decode_up_to(&mut Reader::new(bytes), count);
        }
    }
}
