//! PCP (RFC 6887), the MAP and ANNOUNCE opcodes: a mapping of one of our
//! ports on the gateway, and the gateway's answer. Sent to the default
//! gateway's UDP port 5351, like NAT-PMP, whose successor it is.
//!
//! Request header (24 bytes), then the opcode's payload:
//!
//! | bytes | field                                                          |
//! |-------|----------------------------------------------------------------|
//! | 1     | version 2                                                      |
//! | 1     | R bit 0 (a request), opcode in the low 7 bits: 0 ANNOUNCE, 1 MAP |
//! | 2     | reserved, 0                                                    |
//! | 4     | requested lifetime in seconds (0: delete)                      |
//! | 16    | our address as the gateway sees it (IPv4 as ::ffff:a.b.c.d)    |
//!
//! MAP payload (36 bytes, the same in the response):
//!
//! | bytes | field                                                          |
//! |-------|----------------------------------------------------------------|
//! | 12    | mapping nonce: repeated in renewals and the deletion           |
//! | 1     | protocol (17 UDP, 6 TCP)                                       |
//! | 3     | reserved, 0                                                    |
//! | 2     | internal port                                                  |
//! | 2     | suggested (request) or assigned (response) external port       |
//! | 16    | suggested or assigned external address                         |
//!
//! Response header (24 bytes): version 2, R bit 1 and the opcode, a
//! reserved byte, the result code, the lifetime granted, the gateway's
//! epoch (seconds), 12 reserved bytes. Options may follow the payload; we
//! send none and skip those we get.
//!
//! A NAT-PMP-only gateway answers with a version 0 packet (see
//! [`super::natpmp`]): [`Response::decode`] returns
//! [`Response::NatPmpOnly`] for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes};

use crate::wire::{DecodeError, Reader};

/// The protocol version.
pub const VERSION: u8 = 2;
/// The ANNOUNCE opcode.
pub const OP_ANNOUNCE: u8 = 0;
/// The MAP opcode.
pub const OP_MAP: u8 = 1;
/// The protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// The protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Length of the common header.
pub const HEADER_LEN: usize = 24;
/// Length of a MAP payload.
pub const MAP_LEN: usize = 36;
/// The longest PCP message (RFC 6887 section 7).
pub const MAX_LEN: usize = 1100;
/// The result code of success.
pub const SUCCESS: u8 = 0;

/// A MAP request's fields (also a response's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Map {
    /// Identifies the mapping; the same in its renewals and deletion.
    pub nonce: [u8; 12],
    /// [`PROTO_UDP`] or [`PROTO_TCP`].
    pub protocol: u8,
    /// Our port on this host.
    pub internal_port: u16,
    /// The external port asked for or granted (0: any).
    pub external_port: u16,
    /// The external address asked for or granted (unspecified: any).
    pub external_ip: IpAddr,
}

/// A request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Seconds the mapping should last; 0 deletes it.
    pub lifetime: u32,
    /// Our address on the link toward the gateway.
    pub client_ip: IpAddr,
    /// `None`: ANNOUNCE ("are you there?"); `Some`: MAP.
    pub map: Option<Map>,
}

impl Request {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + if self.map.is_some() { MAP_LEN } else { 0 }
    }

    /// Writes the request.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(VERSION);
        buf.put_u8(if self.map.is_some() { OP_MAP } else { OP_ANNOUNCE });
        buf.put_u16(0);
        buf.put_u32(self.lifetime);
        buf.put_slice(&ip16(self.client_ip));
        if let Some(map) = &self.map {
            buf.put_slice(&map.nonce);
            buf.put_u8(map.protocol);
            buf.put_slice(&[0; 3]);
            buf.put_u16(map.internal_port);
            buf.put_u16(map.external_port);
            buf.put_slice(&ip16(map.external_ip));
        }
    }

    /// The request as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        Bytes::from(buf)
    }
}

/// A gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// A PCP response.
    Pcp {
        /// [`OP_ANNOUNCE`] or [`OP_MAP`] (others are refused).
        opcode: u8,
        /// [`SUCCESS`] or an error (see [`result_text`]).
        result: u8,
        /// Seconds granted; on an error, how long the error is expected
        /// to last.
        lifetime: u32,
        /// Seconds since the gateway's mapping table started.
        epoch: u32,
        /// MAP's fields (`None` for ANNOUNCE).
        map: Option<Map>,
    },
    /// A NAT-PMP gateway saying it does not speak PCP.
    NatPmpOnly,
}

impl Response {
    /// Reads a response: PCP version 2 with the R bit set and the
    /// ANNOUNCE or MAP opcode, or a NAT-PMP "unsupported version".
    /// Options after the payload are not decoded. On an error result the
    /// MAP payload may be absent or partial and is then ignored.
    pub fn decode(data: Bytes) -> Result<Self, DecodeError> {
        if data.len() > MAX_LEN {
            return Err(DecodeError::Invalid("PCP message length"));
        }
        if data.first() == Some(&0) {
            return match super::natpmp::Response::decode(data)? {
                super::natpmp::Response::UnsupportedVersion => Ok(Self::NatPmpOnly),
                _ => Err(DecodeError::Invalid("NAT-PMP answer to a PCP request")),
            };
        }
        let mut r = Reader::new(data);
        if r.u8("version")? != VERSION {
            return Err(DecodeError::Invalid("PCP version"));
        }
        let op = r.u8("opcode")?;
        if op & 0x80 == 0 {
            return Err(DecodeError::Invalid("PCP request where a response belongs"));
        }
        let opcode = op & 0x7f;
        if opcode != OP_ANNOUNCE && opcode != OP_MAP {
            return Err(DecodeError::Invalid("PCP opcode"));
        }
        r.u8("reserved")?;
        let result = r.u8("result code")?;
        let lifetime = r.u32_be("lifetime")?;
        let epoch = r.u32_be("epoch")?;
        r.array::<12>("reserved")?;
        let map = if opcode == OP_MAP && (result == SUCCESS || r.remaining() >= MAP_LEN) {
            let nonce = r.array::<12>("nonce")?;
            let protocol = r.u8("protocol")?;
            r.array::<3>("reserved")?;
            let internal_port = r.u16_be("internal port")?;
            let external_port = r.u16_be("external port")?;
            let external_ip = ip_from16(r.array::<16>("external address")?);
            Some(Map { nonce, protocol, internal_port, external_port, external_ip })
        } else {
            None
        };
        Ok(Self::Pcp { opcode, result, lifetime, epoch, map })
    }
}

/// An address in PCP's 16-byte form: IPv6, or IPv4 as `::ffff:a.b.c.d`.
fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The 16-byte form back: IPv4-mapped addresses become IPv4.
fn ip_from16(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The unspecified address in the family of `ip` (PCP's "any external
/// address" suggestion).
pub fn any_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// What a PCP result code means (RFC 6887 section 7.4).
pub fn result_text(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure",
        8 => "no resources",
        9 => "unsupported protocol",
        10 => "user exceeded quota",
        11 => "cannot provide the external address",
        12 => "address mismatch (a NAT between us and the gateway)",
        13 => "excessive remote peers",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn map() -> Map {
        Map {
            nonce: [7; 12],
            protocol: PROTO_UDP,
            internal_port: 33445,
            external_port: 33445,
            external_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    #[test]
    fn map_requests_have_the_rfc_layout() {
        let request = Request { lifetime: 7200, client_ip: "10.9.0.2".parse().unwrap(), map: Some(map()) };
        let bytes = request.to_bytes();
        assert_eq!(bytes.len(), 60);
        assert_eq!(bytes.len(), request.encoded_len());
        assert_eq!(&bytes[..8], &[2, 1, 0, 0, 0, 0, 0x1c, 0x20]);
        assert_eq!(&bytes[8..24], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 9, 0, 2]);
        assert_eq!(&bytes[24..36], &[7; 12]);
        assert_eq!(&bytes[36..44], &[17, 0, 0, 0, 0x82, 0xa5, 0x82, 0xa5]);
        assert_eq!(&bytes[44..60], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);
        let announce = Request { lifetime: 0, client_ip: "10.9.0.2".parse().unwrap(), map: None };
        assert_eq!(announce.to_bytes().len(), HEADER_LEN);
        assert_eq!(announce.to_bytes()[1], OP_ANNOUNCE);
    }

    fn response(result: u8, lifetime: u32, payload: Option<Map>) -> Vec<u8> {
        let mut bytes = vec![2, 0x80 | OP_MAP, 0, result];
        bytes.extend_from_slice(&lifetime.to_be_bytes());
        bytes.extend_from_slice(&42u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 12]);
        if let Some(map) = payload {
            let mut body = Vec::new();
            Request { lifetime: 0, client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), map: Some(map) }.encode(&mut body);
            bytes.extend_from_slice(&body[HEADER_LEN..]);
        }
        bytes
    }

    #[test]
    fn responses_decode() {
        let granted = Map { external_port: 40000, external_ip: "203.0.113.5".parse().unwrap(), ..map() };
        let mut bytes = response(SUCCESS, 3600, Some(granted));
        // An option (THIRD_PARTY, say) after the payload is skipped.
        bytes.extend_from_slice(&[1, 0, 0, 16]);
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(
            Response::decode(Bytes::from(bytes)).unwrap(),
            Response::Pcp { opcode: OP_MAP, result: 0, lifetime: 3600, epoch: 42, map: Some(granted) }
        );
        // An error without a payload.
        assert_eq!(
            Response::decode(Bytes::from(response(2, 30, None))).unwrap(),
            Response::Pcp { opcode: OP_MAP, result: 2, lifetime: 30, epoch: 42, map: None }
        );
        // Success needs the payload.
        assert!(Response::decode(Bytes::from(response(SUCCESS, 30, None))).is_err());
        // A NAT-PMP gateway's refusal of version 2.
        assert_eq!(Response::decode(Bytes::from_static(&[0, 0x81, 0, 1, 0, 0, 0, 5])).unwrap(), Response::NatPmpOnly);
        // Requests, other versions and opcodes are refused.
        let mut request = response(0, 0, Some(map()));
        request[1] = OP_MAP;
        assert!(Response::decode(Bytes::from(request)).is_err());
        let mut peer = response(0, 0, Some(map()));
        peer[1] = 0x82;
        assert!(Response::decode(Bytes::from(peer)).is_err());
        assert!(Response::decode(Bytes::from_static(&[1, 0x81])).is_err());
        assert!(Response::decode(Bytes::from(vec![2; MAX_LEN + 1])).is_err());
        assert_eq!(result_text(12), "address mismatch (a NAT between us and the gateway)");
    }

    proptest! {
        #[test]
        fn decoding_never_panics(data in prop::collection::vec(any::<u8>(), 0..120)) {
            let _ = Response::decode(Bytes::from(data));
        }

        #[test]
        fn map_payloads_round_trip(nonce: [u8; 12], udp: bool, internal: u16, external: u16, ip: [u8; 16], lifetime: u32) {
            let map = Map {
                nonce,
                protocol: if udp { PROTO_UDP } else { PROTO_TCP },
                internal_port: internal,
                external_port: external,
                external_ip: ip_from16(ip),
            };
            let decoded = Response::decode(Bytes::from(response(SUCCESS, lifetime, Some(map)))).unwrap();
            prop_assert_eq!(decoded, Response::Pcp { opcode: OP_MAP, result: SUCCESS, lifetime, epoch: 42, map: Some(map) });
        }
    }
}
