//! Hole-punching messages: how two tuntox peers, already connected through
//! a TCP relay, agree on a direct UDP path. Not part of Tox; the flow is in
//! [`crate::proto::punch`].
//!
//! The hello is a lossless packet (id 0x9e), sent once per session before
//! any data. Candidates and stop are lossy packets (id 0xde, the same
//! layout after the id), resent until they are no longer needed: a
//! lossless message would wait behind everything the session has queued,
//! seconds of a bulk transfer through a relay.
//!
//! Every message starts with the id and a kind byte.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | packet id 0x9e                                               |
//! | 1     | kind: 0 hello, 1 candidates, 2 stop                          |
//!
//! **Hello** (kind 0): sent once per session, like the cipher offer
//! ([`cipher_offer`](super::cipher_offer)); a peer that sent no hello
//! takes no part in hole punching and gets no other message.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | version: 1                                                   |
//! | 1     | flags: bit 0 UDP on; bits 1-2 our NAT's mapping ([`Mapping`]); other bits 0, ignored |
//! | ...   | reserved for later versions: ignored                         |
//!
//! **Candidates** (kind 1): one side's half of an attempt.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 4     | attempt number (big-endian)                                  |
//! | 8     | token: the ping id the attempt's probes carry               |
//! | 1     | flags: bit 0 wide (many ports), bit 1 opened (the sender's openers toward the receiver's candidates are out); bits 2-3 the sender's mapping |
//! | 2     | port: the local port of the sender's punching socket         |
//! | 2     | how many more sockets the sender opened toward the receiver's punching socket (wide attempts) |
//! | 1     | n: addresses that follow (at most 8)                         |
//! | n ×   | family (4 or 6), IP (4 or 16 bytes), port (2)                |
//! | ...   | reserved: ignored                                            |
//!
//! **Stop** (kind 2): the sender ends an attempt.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 4     | attempt number                                               |
//! | 1     | 0: a path was found; 1: the sender gave up                   |
//!
//! The id is a Messenger id no Tox client uses (c-toxcore 0.2.18 uses up
//! to 100; 0x9f is the cipher offer). c-toxcore drops it as it drops the
//! cipher offer: Messenger passes ids it does not know to its custom
//! packet handler, which refuses ids outside 160 to 191.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};

use super::{DecodeError, Reader};

/// The packet id of lossless punching messages (the hello).
pub const PUNCH_ID: u8 = 0x9e;
/// The packet id of lossy punching messages (candidates, stop): a lossy id
/// of the custom range, never handed to the application.
pub const PUNCH_LOSSY_ID: u8 = 0xde;
/// The protocol version a hello carries.
pub const VERSION: u8 = 1;
/// Addresses in one candidates message at most.
pub const MAX_ADDRS: usize = 8;

const KIND_HELLO: u8 = 0;
const KIND_CANDIDATES: u8 = 1;
const KIND_STOP: u8 = 2;

/// What a side knows about its NAT's port mapping (from how DHT nodes at
/// different addresses see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mapping {
    /// Not known (fewer than two nodes reported it).
    #[default]
    Unknown,
    /// The same public port whatever the destination (or no NAT).
    EndpointIndependent,
    /// A new public port per destination.
    PerDestination,
}

impl Mapping {
    fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::EndpointIndependent => 1,
            Self::PerDestination => 2,
        }
    }

    fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            1 => Self::EndpointIndependent,
            2 => Self::PerDestination,
            _ => Self::Unknown,
        }
    }
}

/// A hello: the sender takes part in hole punching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hello {
    /// The sender uses UDP.
    pub udp: bool,
    /// Its NAT's mapping, as far as it knows.
    pub mapping: Mapping,
}

/// One side's half of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidates {
    /// Which attempt (the leading side numbers them).
    pub attempt: u32,
    /// The ping id of the attempt's probes.
    pub token: u64,
    /// Many ports: the sender opened `extra` more sockets, or sprays.
    pub wide: bool,
    /// The sender's openers toward the receiver's candidates are out.
    pub opened: bool,
    /// The sender's NAT's mapping, as far as it knows.
    pub mapping: Mapping,
    /// The local port of the sender's punching socket.
    pub port: u16,
    /// How many more sockets the sender opened toward the receiver's
    /// punching socket.
    pub extra: u16,
    /// Where the sender expects its punching socket to be seen (its public
    /// addresses with `port`, a router's port mapping...), at most
    /// [`MAX_ADDRS`].
    pub addrs: Vec<SocketAddr>,
}

/// Why an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// A path was found.
    Found,
    /// The sender gave up.
    GaveUp,
}

/// A hole-punching message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PunchMessage {
    /// Kind 0.
    Hello(Hello),
    /// Kind 1.
    Candidates(Candidates),
    /// Kind 2.
    Stop {
        /// The attempt.
        attempt: u32,
        /// Why.
        reason: StopReason,
    },
}

impl PunchMessage {
    /// Reads a payload that starts with [`PUNCH_ID`] or [`PUNCH_LOSSY_ID`].
    /// Bytes after the known fields are ignored (later versions may add
    /// some).
    pub fn decode(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        if !matches!(r.u8("punch packet id")?, PUNCH_ID | PUNCH_LOSSY_ID) {
            return Err(DecodeError::Invalid("punch packet id"));
        }
        match r.u8("punch message kind")? {
            KIND_HELLO => {
                let _version = r.u8("punch hello version")?;
                let flags = r.u8("punch hello flags")?;
                Ok(Self::Hello(Hello { udp: flags & 1 != 0, mapping: Mapping::from_bits(flags >> 1) }))
            }
            KIND_CANDIDATES => {
                let attempt = r.u32_be("punch attempt")?;
                let token = r.u64_be("punch token")?;
                let flags = r.u8("punch flags")?;
                let port = r.u16_be("punch port")?;
                let extra = r.u16_be("punch extra sockets")?;
                let n = r.u8("punch address count")? as usize;
                if n > MAX_ADDRS {
                    return Err(DecodeError::Invalid("punch address count"));
                }
                let mut addrs = Vec::with_capacity(n);
                for _ in 0..n {
                    let ip = match r.u8("punch address family")? {
                        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("punch IPv4 address")?)),
                        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("punch IPv6 address")?)),
                        _ => return Err(DecodeError::Invalid("punch address family")),
                    };
                    addrs.push(SocketAddr::new(ip, r.u16_be("punch address port")?));
                }
                Ok(Self::Candidates(Candidates {
                    attempt,
                    token,
                    wide: flags & 1 != 0,
                    opened: flags & 2 != 0,
                    mapping: Mapping::from_bits(flags >> 2),
                    port,
                    extra,
                    addrs,
                }))
            }
            KIND_STOP => {
                let attempt = r.u32_be("punch attempt")?;
                let reason = match r.u8("punch stop reason")? {
                    0 => StopReason::Found,
                    1 => StopReason::GaveUp,
                    _ => return Err(DecodeError::Invalid("punch stop reason")),
                };
                Ok(Self::Stop { attempt, reason })
            }
            _ => Err(DecodeError::Invalid("punch message kind")),
        }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Self::Hello(_) => 2,
            Self::Candidates(c) => {
                4 + 8
                    + 1
                    + 2
                    + 2
                    + 1
                    + c.addrs
                        .iter()
                        .take(MAX_ADDRS)
                        .map(|a| if a.is_ipv4() { 1 + 4 + 2 } else { 1 + 16 + 2 })
                        .sum::<usize>()
            }
            Self::Stop { .. } => 5,
        }
    }

    /// Whether the message travels as a lossy packet (all but the hello).
    pub fn lossy(&self) -> bool {
        !matches!(self, Self::Hello(_))
    }

    /// Writes the payload, with [`PUNCH_LOSSY_ID`] or [`PUNCH_ID`] as
    /// [`lossy`](Self::lossy) says; at most [`MAX_ADDRS`] addresses go out.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(if self.lossy() { PUNCH_LOSSY_ID } else { PUNCH_ID });
        match self {
            Self::Hello(hello) => {
                buf.put_u8(KIND_HELLO);
                buf.put_u8(VERSION);
                buf.put_u8(u8::from(hello.udp) | hello.mapping.bits() << 1);
            }
            Self::Candidates(c) => {
                buf.put_u8(KIND_CANDIDATES);
                buf.put_u32(c.attempt);
                buf.put_u64(c.token);
                buf.put_u8(u8::from(c.wide) | u8::from(c.opened) << 1 | c.mapping.bits() << 2);
                buf.put_u16(c.port);
                buf.put_u16(c.extra);
                let addrs = &c.addrs[..c.addrs.len().min(MAX_ADDRS)];
                buf.put_u8(addrs.len() as u8);
                for addr in addrs {
                    match addr.ip() {
                        IpAddr::V4(ip) => {
                            buf.put_u8(4);
                            buf.put_slice(&ip.octets());
                        }
                        IpAddr::V6(ip) => {
                            buf.put_u8(6);
                            buf.put_slice(&ip.octets());
                        }
                    }
                    buf.put_u16(addr.port());
                }
            }
            Self::Stop { attempt, reason } => {
                buf.put_u8(KIND_STOP);
                buf.put_u32(*attempt);
                buf.put_u8(match reason {
                    StopReason::Found => 0,
                    StopReason::GaveUp => 1,
                });
            }
        }
    }

    /// The encoded payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        Bytes::from(buf)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::cipher_offer::CIPHER_OFFER_ID;
    use crate::wire::crypto_data::{PayloadKind, packet_id};

    #[test]
    fn bytes() {
        let hello = PunchMessage::Hello(Hello { udp: true, mapping: Mapping::PerDestination });
        assert_eq!(&hello.to_bytes()[..], &[0x9e, 0, 1, 0b101]);
        let candidates = PunchMessage::Candidates(Candidates {
            attempt: 3,
            token: 0x0102_0304_0506_0708,
            wide: true,
            opened: true,
            mapping: Mapping::EndpointIndependent,
            port: 40001,
            extra: 256,
            addrs: vec![SocketAddr::from(([198, 18, 1, 2], 40001)), "[2001:db8::1]:7".parse().unwrap()],
        });
        let bytes = candidates.to_bytes();
        assert_eq!(
            &bytes[..],
            &[
                0xde, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0b0111, 0x9c, 0x41, 1, 0, 2, 4, 198, 18, 1, 2, 0x9c, 0x41,
                6, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7
            ]
        );
        assert_eq!(bytes.len(), candidates.encoded_len());
        assert_eq!(PunchMessage::decode(bytes), Ok(candidates));
        let stop = PunchMessage::Stop { attempt: 9, reason: StopReason::GaveUp };
        assert_eq!(&stop.to_bytes()[..], &[0xde, 2, 0, 0, 0, 9, 1]);
        // Either id reads.
        assert_eq!(PunchMessage::decode(Bytes::from_static(&[0x9e, 2, 0, 0, 0, 9, 1])), Ok(stop));
        // Later versions may append fields and set reserved bits.
        assert_eq!(
            PunchMessage::decode(Bytes::from_static(&[0x9e, 0, 2, 0b1111_1001, 7, 7])),
            Ok(PunchMessage::Hello(Hello { udp: true, mapping: Mapping::Unknown }))
        );
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            &[][..],
            &[0x9f, 0, 1, 1],
            &[0x9e],
            &[0x9e, 3],
            &[0x9e, 0, 1],
            &[0x9e, 2, 0, 0, 0, 1, 2],
            // Nine addresses.
            &[0x9e, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 9],
            // Family 5.
            &[0x9e, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 5, 1, 2, 3, 4, 0, 1],
        ] {
            assert!(PunchMessage::decode(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_ids_are_lossless_and_lossy_and_clash_with_nothing() {
        assert_eq!(PayloadKind::of(PUNCH_LOSSY_ID), Some(PayloadKind::Lossy));
        assert!(packet_id::LOSSY_CUSTOM.contains(&PUNCH_LOSSY_ID));
        // The VPN's data packets.
        assert_ne!(PUNCH_LOSSY_ID, 0xd8);
        assert_eq!(PayloadKind::of(PUNCH_ID), Some(PayloadKind::Lossless));
        assert!(!packet_id::LOSSLESS_CUSTOM.contains(&PUNCH_ID));
        assert_ne!(PUNCH_ID, CIPHER_OFFER_ID);
        for known in [packet_id::ALIVE, packet_id::SHARE_RELAYS, packet_id::FRIEND_REQUESTS, packet_id::ONLINE] {
            assert_ne!(known, PUNCH_ID);
        }
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ]
    }

    fn mapping() -> impl Strategy<Value = Mapping> {
        prop_oneof![Just(Mapping::Unknown), Just(Mapping::EndpointIndependent), Just(Mapping::PerDestination)]
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PunchMessage::decode(Bytes::from(bytes));
        }

        #[test]
        fn candidates_round_trip(
            attempt in any::<u32>(), token in any::<u64>(), wide in any::<bool>(), opened in any::<bool>(),
            mapping in mapping(), port in any::<u16>(), extra in any::<u16>(),
            addrs in proptest::collection::vec(addr(), 0..=MAX_ADDRS),
        ) {
            let message = PunchMessage::Candidates(Candidates { attempt, token, wide, opened, mapping, port, extra, addrs });
            let bytes = message.to_bytes();
            prop_assert_eq!(bytes.len(), message.encoded_len());
            prop_assert_eq!(PunchMessage::decode(bytes), Ok(message));
        }

        #[test]
        fn hello_round_trips(udp in any::<bool>(), mapping in mapping()) {
            let message = PunchMessage::Hello(Hello { udp, mapping });
            prop_assert_eq!(PunchMessage::decode(message.to_bytes()), Ok(message));
        }
    }
}
