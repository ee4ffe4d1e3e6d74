//! The onion's IP_Port: a socket address in a fixed 19 bytes, so that an
//! onion layer does not reveal by its size whether the next hop is IPv4 or
//! IPv6.
//!
//! | bytes | field                                                      |
//! |-------|------------------------------------------------------------|
//! | 1     | address family: 2 IPv4, 10 IPv6                            |
//! | 16    | IPv6 address, or IPv4 address followed by 12 zero bytes    |
//! | 2     | port, big-endian                                           |
//!
//! Unlike the [packed node format](super::packed_node), there is no public
//! key and no TCP flag in practice. Facts from c-toxcore 0.2.18 `onion.c`:
//! - `ip_pack`/`ipport_pack` write the in-memory family value, which for UDP
//!   addresses is `TOX_AF_INET` 2 and `TOX_AF_INET6` 10, the same numbers as
//!   packed nodes; then the address (IPv4 zero-padded to 16 bytes) and the
//!   port as stored, i.e. big-endian (`SIZE_IPPORT` = 19 in `network.h`).
//! - `ip_unpack` ignores the 12 padding bytes after an IPv4 address, and
//!   every forwarding step (`onion_send_1`, which serves both
//!   `handle_send_initial` and TCP relays, `handle_send_1`, `handle_send_2`,
//!   `handle_recv_3`, `handle_recv_2`) calls `ipport_unpack` with the family
//!   check on, which accepts only 2 and 10.
//!   Only `handle_recv_1` turns the check off, for the return address a hop
//!   wrote for itself (a TCP relay writes its private `TCP_CLIENT_FAMILY`
//!   there, see `TCP_server.c` `con_id_to_ip_port`); such return blocks are
//!   private to the hop that made them and need not use this type.
//!
//! So we decode families 2 and 10 only, ignore the padding as c-toxcore
//! does and always write it as zeros (the spec requires that, so no stale
//! memory leaks). IPv4-mapped IPv6 addresses are written, and read, as IPv4
//! (see [`normalize_addr`]).
//!
//! Spec: <https://toktok.ltd/spec.html#onion> (the `IP_Port` table).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BufMut;

use super::packed_node::{IP_TYPE_UDP_IPV4, IP_TYPE_UDP_IPV6, normalize_addr};
use super::{DecodeError, Reader};

/// Length of an onion IP_Port.
pub const ONION_IP_PORT_LEN: usize = 1 + 16 + 2;

/// A socket address in the onion's fixed-size format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OnionIpPort {
    /// The address. IPv4-mapped IPv6 addresses are written as IPv4.
    pub addr: SocketAddr,
}

impl OnionIpPort {
    /// Wraps an address.
    pub const fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// Reads 19 bytes off `r`.
    pub fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let family = r.u8("onion IP_Port family")?;
        let ip: [u8; 16] = r.array("onion IP_Port address")?;
        let ip = match family {
            IP_TYPE_UDP_IPV4 => {
                let [a, b, c, d, ..] = ip;
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            IP_TYPE_UDP_IPV6 => IpAddr::V6(Ipv6Addr::from(ip)),
            _ => return Err(DecodeError::Invalid("onion IP_Port family")),
        };
        let port = r.u16_be("onion IP_Port port")?;
        Ok(Self::new(normalize_addr(SocketAddr::new(ip, port))))
    }

    /// Writes the 19 bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match normalize_addr(self.addr) {
            SocketAddr::V4(v4) => {
                buf.put_u8(IP_TYPE_UDP_IPV4);
                buf.put_slice(&v4.ip().octets());
                buf.put_bytes(0, 12);
                buf.put_u16(v4.port());
            }
            SocketAddr::V6(v6) => {
                buf.put_u8(IP_TYPE_UDP_IPV6);
                buf.put_slice(&v6.ip().octets());
                buf.put_u16(v6.port());
            }
        }
    }

    /// What [`encode`](Self::encode) writes: always 19 bytes.
    pub const fn encoded_len(&self) -> usize {
        ONION_IP_PORT_LEN
    }
}

impl From<SocketAddr> for OnionIpPort {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_socket_addr, damage};

    fn encode(ip_port: OnionIpPort) -> Vec<u8> {
        let mut out = Vec::new();
        ip_port.encode(&mut out);
        assert_eq!(out.len(), ip_port.encoded_len());
        out
    }

    fn decode(bytes: &[u8]) -> Result<OnionIpPort, DecodeError> {
        let mut r = Reader::new(bytes.to_vec());
        let ip_port = OnionIpPort::decode(&mut r)?;
        r.finish()?;
        Ok(ip_port)
    }

    #[test]
    fn by_hand_from_the_spec() {
        let v4 = OnionIpPort::new("192.0.2.1:33445".parse().unwrap());
        let v4_bytes = hex!("02 c0000201 000000000000000000000000 82a5");
        assert_eq!(encode(v4), v4_bytes);
        assert_eq!(decode(&v4_bytes), Ok(v4));

        let v6 = OnionIpPort::new("[2001:db8::1]:443".parse().unwrap());
        let v6_bytes = hex!("0a 20010db8000000000000000000000001 01bb");
        assert_eq!(encode(v6), v6_bytes);
        assert_eq!(decode(&v6_bytes), Ok(v6));

        // A mapped address goes out as IPv4.
        assert_eq!(encode(OnionIpPort::new("[::ffff:192.0.2.1]:33445".parse().unwrap())), v4_bytes);
    }

    #[test]
    fn padding_is_ignored_and_other_families_refused() {
        let dirty = hex!("02 c0000201 ffffffffffffffffffffffff 82a5");
        assert_eq!(decode(&dirty), Ok(OnionIpPort::new("192.0.2.1:33445".parse().unwrap())));
        for family in [0u8, 11, 130, 138, 255] {
            let mut bytes = dirty;
            bytes[0] = family;
            assert_eq!(decode(&bytes), Err(DecodeError::Invalid("onion IP_Port family")));
        }
        assert!(matches!(decode(&dirty[..18]), Err(DecodeError::UnexpectedEnd { .. })));
    }

    proptest! {
        #[test]
        fn round_trips(addr in arb_socket_addr()) {
            let bytes = encode(OnionIpPort::new(addr));
            prop_assert_eq!(bytes.len(), ONION_IP_PORT_LEN);
            prop_assert_eq!(decode(&bytes), Ok(OnionIpPort::new(normalize_addr(addr))));
        }

        #[test]
        fn damaged_input_never_panics(addr in arb_socket_addr(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = decode(&damage(encode(OnionIpPort::new(addr)), flip, bit, cut));
        }
    }
}
