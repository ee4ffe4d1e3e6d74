//! The TCP relay protocol's byte formats (c-toxcore's `TCP_server.c`,
//! `TCP_client.c`, `TCP_common.c`; spec: `docs/TCP_Network.txt` and
//! <https://toktok.ltd/spec.html#tcp-server>).
//!
//! A client opens a TCP connection to a relay and the two exchange
//! handshakes, which are not framed (their lengths are fixed):
//!
//! | direction        | bytes | format |
//! |------------------|-------|--------|
//! | client → relay   | 128   | [`ClientHandshake`] |
//! | relay → client   | 96    | [`ServerHandshake`] |
//!
//! Everything after that is a stream of frames ([`frame`]):
//! `[length u16 BE][MAC 16][ciphertext]`, at most [`MAX_FRAME_LEN`] bytes
//! after the length, each sealed with the session key and the sender's
//! nonce, which goes up by one per frame. The plaintext of a frame is one
//! [`TcpPacket`], whose first byte is its id:
//!
//! | id     | packet | direction |
//! |--------|--------|-----------|
//! | 0      | [`RoutingRequest`]: connect me to this key | client → relay |
//! | 1      | [`RoutingResponse`]: the connection id for it, or refused | relay → client |
//! | 2      | [`ConnectNotification`]: that peer is here | relay → client |
//! | 3      | [`DisconnectNotification`]: that peer left (or: forget it) | both |
//! | 4      | [`Ping`] | both |
//! | 5      | [`Pong`] | both |
//! | 6      | [`OobSend`]: data for a key, no connection needed | client → relay |
//! | 7      | [`OobRecv`]: data from a key | relay → client |
//! | 8      | [`TcpOnionRequest`]: the relay is hop 1 of an onion path | client → relay |
//! | 9      | [`TcpOnionResponse`]: what came back along it | relay → client |
//! | 10, 11 | forwarding (group announcements; carried as raw bytes) | both |
//! | 16-255 | [`Data`] for the peer behind that connection id | both |
//!
//! Ids 12 to 15 are reserved: receiving one ends the connection in
//! c-toxcore, as any packet of the wrong length does. Our decoders refuse
//! exactly what c-toxcore's handlers refuse, so the relay drops the same
//! connections.

pub mod client_handshake;
pub mod connect_notification;
pub mod data;
pub mod disconnect_notification;
pub mod frame;
pub mod onion_request;
pub mod onion_response;
pub mod oob_recv;
pub mod oob_send;
pub mod ping;
pub mod pong;
pub mod routing_request;
pub mod routing_response;
pub mod server_handshake;
mod shapes;

use std::fmt;

use bytes::{BufMut, Bytes};

pub use self::client_handshake::ClientHandshake;
pub use self::connect_notification::ConnectNotification;
pub use self::data::Data;
pub use self::disconnect_notification::DisconnectNotification;
pub use self::onion_request::TcpOnionRequest;
pub use self::onion_response::TcpOnionResponse;
pub use self::oob_recv::OobRecv;
pub use self::oob_send::OobSend;
pub use self::ping::Ping;
pub use self::pong::Pong;
pub use self::routing_request::RoutingRequest;
pub use self::routing_response::RoutingResponse;
pub use self::server_handshake::ServerHandshake;
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, NONCE_LEN, PUBLIC_KEY_LEN, PublicKey};

/// The packet ids (`TCP_PACKET_*`).
pub mod id {
    /// [`RoutingRequest`](super::RoutingRequest).
    pub const ROUTING_REQUEST: u8 = 0;
    /// [`RoutingResponse`](super::RoutingResponse).
    pub const ROUTING_RESPONSE: u8 = 1;
    /// [`ConnectNotification`](super::ConnectNotification).
    pub const CONNECT_NOTIFICATION: u8 = 2;
    /// [`DisconnectNotification`](super::DisconnectNotification).
    pub const DISCONNECT_NOTIFICATION: u8 = 3;
    /// [`Ping`](super::Ping).
    pub const PING: u8 = 4;
    /// [`Pong`](super::Pong).
    pub const PONG: u8 = 5;
    /// [`OobSend`](super::OobSend).
    pub const OOB_SEND: u8 = 6;
    /// [`OobRecv`](super::OobRecv).
    pub const OOB_RECV: u8 = 7;
    /// [`TcpOnionRequest`](super::TcpOnionRequest).
    pub const ONION_REQUEST: u8 = 8;
    /// [`TcpOnionResponse`](super::TcpOnionResponse).
    pub const ONION_RESPONSE: u8 = 9;
    /// A forward request (group announcements).
    pub const FORWARD_REQUEST: u8 = 10;
    /// A forwarded packet (group announcements).
    pub const FORWARDING: u8 = 11;
}

/// Ids below this one are the relay's own packets (`NUM_RESERVED_PORTS`).
pub const NUM_RESERVED_IDS: u8 = 16;
/// Connections one client can route through a relay (`NUM_CLIENT_CONNECTIONS`).
pub const NUM_CONNECTION_SLOTS: usize = 256 - NUM_RESERVED_IDS as usize;
/// Longest frame after its length field (`MAX_PACKET_SIZE`): MAC and ciphertext.
pub const MAX_FRAME_LEN: usize = 2048;
/// Longest plaintext a frame carries.
pub const MAX_PLAIN_LEN: usize = MAX_FRAME_LEN - MAC_LEN;
/// Longest out-of-band payload (`TCP_MAX_OOB_DATA_LENGTH`).
pub const MAX_OOB_DATA_LEN: usize = 1024;
/// Plaintext of both handshakes: a temporary public key and a base nonce.
pub const HANDSHAKE_PLAIN_LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN;
/// The sealed part of both handshakes.
pub const HANDSHAKE_SEALED_LEN: usize = HANDSHAKE_PLAIN_LEN + MAC_LEN;

/// Which of a client's connections a data packet belongs to: the ids 16 to
/// 255, one per slot 0 to 239 of the client's table on the relay. Each
/// side has its own numbering of the same link.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u8);

impl ConnectionId {
    /// The id of slot `slot` (0 to 239).
    pub fn from_slot(slot: usize) -> Option<Self> {
        u8::try_from(slot).ok().and_then(|s| s.checked_add(NUM_RESERVED_IDS)).map(Self)
    }

    /// The id byte, if it names a connection (16 or more).
    pub const fn from_byte(byte: u8) -> Option<Self> {
        if byte >= NUM_RESERVED_IDS { Some(Self(byte)) } else { None }
    }

    /// The byte on the wire.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The slot in the client's table (0 to 239).
    pub const fn slot(self) -> usize {
        (self.0 - NUM_RESERVED_IDS) as usize
    }

    fn decode(r: &mut Reader, what: &'static str) -> Result<Self, DecodeError> {
        Self::from_byte(r.u8(what)?).ok_or(DecodeError::Invalid(what))
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0)
    }
}

fn expect_id(r: &mut Reader, id: u8, what: &'static str) -> Result<(), DecodeError> {
    if r.u8(what)? == id { Ok(()) } else { Err(DecodeError::Invalid(what)) }
}

fn public_key(r: &mut Reader, what: &'static str) -> Result<PublicKey, DecodeError> {
    Ok(PublicKey::from_bytes(r.array(what)?))
}

/// The plaintext of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpPacket {
    /// 0.
    RoutingRequest(RoutingRequest),
    /// 1.
    RoutingResponse(RoutingResponse),
    /// 2.
    ConnectNotification(ConnectNotification),
    /// 3.
    DisconnectNotification(DisconnectNotification),
    /// 4.
    Ping(Ping),
    /// 5.
    Pong(Pong),
    /// 6.
    OobSend(OobSend),
    /// 7.
    OobRecv(OobRecv),
    /// 8.
    OnionRequest(TcpOnionRequest),
    /// 9.
    OnionResponse(TcpOnionResponse),
    /// 10: kept as the bytes after the id (we do not forward).
    ForwardRequest(Bytes),
    /// 11: kept as the bytes after the id.
    Forwarding(Bytes),
    /// 16-255.
    Data(Data),
}

impl TcpPacket {
    /// Reads a whole plaintext. Refuses ids 12 to 15 and any packet whose
    /// length its kind does not allow.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let plain = plain.into();
        let Some(&first) = plain.first() else {
            return Err(DecodeError::UnexpectedEnd { what: "TCP packet id", needed: 1, available: 0 });
        };
        Ok(match first {
            id::ROUTING_REQUEST => Self::RoutingRequest(RoutingRequest::decode(plain)?),
            id::ROUTING_RESPONSE => Self::RoutingResponse(RoutingResponse::decode(plain)?),
            id::CONNECT_NOTIFICATION => Self::ConnectNotification(ConnectNotification::decode(plain)?),
            id::DISCONNECT_NOTIFICATION => Self::DisconnectNotification(DisconnectNotification::decode(plain)?),
            id::PING => Self::Ping(Ping::decode(plain)?),
            id::PONG => Self::Pong(Pong::decode(plain)?),
            id::OOB_SEND => Self::OobSend(OobSend::decode(plain)?),
            id::OOB_RECV => Self::OobRecv(OobRecv::decode(plain)?),
            id::ONION_REQUEST => Self::OnionRequest(TcpOnionRequest::decode(plain)?),
            id::ONION_RESPONSE => Self::OnionResponse(TcpOnionResponse::decode(plain)?),
            id::FORWARD_REQUEST => Self::ForwardRequest(plain.slice(1..)),
            id::FORWARDING => Self::Forwarding(plain.slice(1..)),
            12..=15 => return Err(DecodeError::Invalid("TCP packet id (reserved)")),
            _ => Self::Data(Data::decode(plain)?),
        })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::RoutingRequest(p) => p.encode(buf),
            Self::RoutingResponse(p) => p.encode(buf),
            Self::ConnectNotification(p) => p.encode(buf),
            Self::DisconnectNotification(p) => p.encode(buf),
            Self::Ping(p) => p.encode(buf),
            Self::Pong(p) => p.encode(buf),
            Self::OobSend(p) => p.encode(buf),
            Self::OobRecv(p) => p.encode(buf),
            Self::OnionRequest(p) => p.encode(buf),
            Self::OnionResponse(p) => p.encode(buf),
            Self::ForwardRequest(body) => {
                buf.put_u8(id::FORWARD_REQUEST);
                buf.put_slice(body);
            }
            Self::Forwarding(body) => {
                buf.put_u8(id::FORWARDING);
                buf.put_slice(body);
            }
            Self::Data(p) => p.encode(buf),
        }
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::RoutingRequest(p) => p.encoded_len(),
            Self::RoutingResponse(p) => p.encoded_len(),
            Self::ConnectNotification(p) => p.encoded_len(),
            Self::DisconnectNotification(p) => p.encoded_len(),
            Self::Ping(p) => p.encoded_len(),
            Self::Pong(p) => p.encoded_len(),
            Self::OobSend(p) => p.encoded_len(),
            Self::OobRecv(p) => p.encoded_len(),
            Self::OnionRequest(p) => p.encoded_len(),
            Self::OnionResponse(p) => p.encoded_len(),
            Self::ForwardRequest(body) | Self::Forwarding(body) => 1 + body.len(),
            Self::Data(p) => p.encoded_len(),
        }
    }

    /// Whether c-toxcore sends this kind ahead of queued data (its
    /// "priority" packets: routing responses, notifications, pings, pongs
    /// and routing requests), which is also what a relay must not drop.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            Self::RoutingRequest(_)
                | Self::RoutingResponse(_)
                | Self::ConnectNotification(_)
                | Self::DisconnectNotification(_)
                | Self::Ping(_)
                | Self::Pong(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::onion_request::OnionRequestTcp;
    use crate::wire::test_support::{arb_public_key, damage, encoded};

    fn arb_connection_id() -> impl Strategy<Value = ConnectionId> {
        (16u8..=255).prop_map(|b| ConnectionId::from_byte(b).unwrap())
    }

    fn arb_bytes(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), min..=max).prop_map(Bytes::from)
    }

    pub(super) fn arb_packet() -> impl Strategy<Value = TcpPacket> {
        prop_oneof![
            arb_public_key().prop_map(|pk| TcpPacket::RoutingRequest(RoutingRequest::new(pk))),
            (proptest::option::of(arb_connection_id()), arb_public_key())
                .prop_map(|(c, pk)| TcpPacket::RoutingResponse(RoutingResponse::new(c, pk))),
            arb_connection_id().prop_map(|c| TcpPacket::ConnectNotification(ConnectNotification::new(c))),
            arb_connection_id().prop_map(|c| TcpPacket::DisconnectNotification(DisconnectNotification::new(c))),
            any::<u64>().prop_map(|id| TcpPacket::Ping(Ping::new(id))),
            any::<u64>().prop_map(|id| TcpPacket::Pong(Pong::new(id))),
            (arb_public_key(), arb_bytes(1, MAX_OOB_DATA_LEN))
                .prop_map(|(pk, d)| TcpPacket::OobSend(OobSend::new(pk, d).unwrap())),
            (arb_public_key(), arb_bytes(1, MAX_OOB_DATA_LEN))
                .prop_map(|(pk, d)| TcpPacket::OobRecv(OobRecv::new(pk, d).unwrap())),
            arb_bytes(TcpOnionRequest::MIN_BODY_LEN, OnionRequestTcp::MAX_LEN)
                .prop_map(|b| TcpPacket::OnionRequest(TcpOnionRequest::from_body(b).unwrap())),
            arb_bytes(1, 1400).prop_map(|b| TcpPacket::OnionResponse(TcpOnionResponse::new(b).unwrap())),
            arb_bytes(0, 100).prop_map(TcpPacket::ForwardRequest),
            arb_bytes(0, 100).prop_map(TcpPacket::Forwarding),
            (arb_connection_id(), arb_bytes(0, MAX_PLAIN_LEN - 1))
                .prop_map(|(c, d)| TcpPacket::Data(Data::new(c, d).unwrap())),
        ]
    }

    #[test]
    fn connection_ids_map_slots() {
        assert_eq!(ConnectionId::from_slot(0).unwrap().get(), 16);
        assert_eq!(ConnectionId::from_slot(239).unwrap().get(), 255);
        assert_eq!(ConnectionId::from_slot(240), None);
        assert_eq!(ConnectionId::from_byte(15), None);
        assert_eq!(ConnectionId::from_byte(200).unwrap().slot(), 184);
        assert_eq!(NUM_CONNECTION_SLOTS, 240);
    }

    #[test]
    fn reserved_and_empty_are_refused() {
        for id in 12..=15u8 {
            assert_eq!(TcpPacket::decode(vec![id, 0, 0]), Err(DecodeError::Invalid("TCP packet id (reserved)")));
        }
        assert!(TcpPacket::decode(Vec::new()).is_err());
    }

    #[test]
    fn control_packets() {
        let pk = PublicKey::from_bytes([1; 32]);
        assert!(TcpPacket::Ping(Ping::new(1)).is_control());
        assert!(TcpPacket::RoutingResponse(RoutingResponse::new(None, pk)).is_control());
        let data = Data::new(ConnectionId::from_byte(16).unwrap(), Bytes::from_static(b"x")).unwrap();
        assert!(!TcpPacket::Data(data).is_control());
        assert!(!TcpPacket::OobRecv(OobRecv::new(pk, Bytes::from_static(b"x")).unwrap()).is_control());
    }

    proptest! {
        #[test]
        fn every_packet_round_trips(packet in arb_packet()) {
            let bytes = encoded!(packet);
            prop_assert!(bytes.len() <= MAX_PLAIN_LEN);
            prop_assert_eq!(TcpPacket::decode(bytes), Ok(packet));
        }

        #[test]
        fn damaged_packets_never_panic(packet in arb_packet(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = TcpPacket::decode(damage(encoded!(packet), flip, bit, cut));
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2100)) {
            if let Ok(packet) = TcpPacket::decode(bytes.clone()) {
                // What decodes encodes back to the same bytes.
                prop_assert_eq!(encoded!(packet), bytes);
            }
        }
    }
}
