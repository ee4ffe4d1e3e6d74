//! The DHT packet: the encrypted envelope of pings, nodes requests and
//! responses, and net_crypto's cookie request.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | kind: 0x00, 0x01, 0x02, 0x04 or 0x18 (see [`DhtPacketKind`]) |
//! | 32    | sender's DHT public key                                      |
//! | 24    | nonce, random per packet                                     |
//! | 16    | MAC                                                          |
//! | ...   | encrypted payload, as long as the plaintext                  |
//!
//! The payload is sealed with the key precomputed from the sender's DHT
//! secret key and the receiver's DHT public key (`crypto_box_beforenm`);
//! the same key serves both directions. The plaintexts are in their own
//! files: [`PingRequest`], [`PingResponse`], [`NodesRequest`],
//! [`NodesResponse`]; the cookie request belongs to net_crypto.
//!
//! Facts from c-toxcore 0.2.18: the header is built by `DHT.c`
//! `dht_create_packet` (golden bytes in the payload files' tests are its
//! output) and by hand in `ping.c` `ping_send_request`/`ping_send_response`.
//! Each handler checks the packet's exact length before it decrypts
//! (`ping.c` `handle_ping_request`/`handle_ping_response`: 82 bytes;
//! `DHT.c` `handle_getnodes`: 113; `DHT.c` `handle_sendnodes_core`: at least
//! one node; `net_crypto.c` `handle_cookie_request`: 145). [`DhtPacket::decode`]
//! applies the same bounds per kind (see [`DhtPacketKind::plaintext_len`]),
//! so junk costs no shared-key computation; only an empty nodes response,
//! well formed but dropped by c-toxcore, is let through.
//!
//! Spec: <https://toktok.ltd/spec.html#dht-packet>.

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes};

use super::nodes_request::NodesRequest;
use super::nodes_response::NodesResponse;
use super::packet_kind::PacketKind;
use super::ping_request::PingRequest;
use super::ping_response::PingResponse;
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// Length of the clear header: kind, sender key and nonce.
pub const DHT_PACKET_HEADER_LEN: usize = 1 + PUBLIC_KEY_LEN + NONCE_LEN;

/// Plaintext length of net_crypto's cookie request: the requester's real
/// public key, 32 zero bytes and an echo id (`net_crypto.c`
/// `COOKIE_REQUEST_PLAIN_LENGTH`: two key lengths and a `uint64_t`; the
/// requester's DHT key is the packet's sender key).
pub const COOKIE_REQUEST_PLAINTEXT_LEN: usize = 2 * PUBLIC_KEY_LEN + 8;

/// The packet kinds that use the DHT packet layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhtPacketKind {
    /// 0x00.
    PingRequest,
    /// 0x01.
    PingResponse,
    /// 0x02.
    NodesRequest,
    /// 0x04.
    NodesResponse,
    /// 0x18 (net_crypto).
    CookieRequest,
}

impl DhtPacketKind {
    /// The id byte.
    pub const fn id(self) -> u8 {
        match self {
            Self::PingRequest => 0x00,
            Self::PingResponse => 0x01,
            Self::NodesRequest => 0x02,
            Self::NodesResponse => 0x04,
            Self::CookieRequest => 0x18,
        }
    }

    /// The kind with this id, if it uses the DHT packet layout.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x00 => Some(Self::PingRequest),
            0x01 => Some(Self::PingResponse),
            0x02 => Some(Self::NodesRequest),
            0x04 => Some(Self::NodesResponse),
            0x18 => Some(Self::CookieRequest),
            _ => None,
        }
    }

    /// The plaintext lengths c-toxcore accepts for this kind: 9 for pings,
    /// 40 for a nodes request, 72 for a cookie request, and for a nodes
    /// response a count byte, up to four IPv6 nodes and the ping id. (A
    /// response without nodes, which c-toxcore sends but drops on receipt,
    /// is let through here; the DHT decides what to make of it.)
    pub const fn plaintext_len(self) -> RangeInclusive<usize> {
        match self {
            Self::PingRequest => PingRequest::LEN..=PingRequest::LEN,
            Self::PingResponse => PingResponse::LEN..=PingResponse::LEN,
            Self::NodesRequest => NodesRequest::LEN..=NodesRequest::LEN,
            Self::NodesResponse => NodesResponse::MIN_LEN..=NodesResponse::MAX_LEN,
            Self::CookieRequest => COOKIE_REQUEST_PLAINTEXT_LEN..=COOKIE_REQUEST_PLAINTEXT_LEN,
        }
    }
}

impl From<DhtPacketKind> for PacketKind {
    fn from(kind: DhtPacketKind) -> Self {
        PacketKind::from(kind.id())
    }
}

/// A plaintext that travels in a DHT packet of a fixed kind.
pub trait DhtPayload: Sized {
    /// The packet kind that carries it.
    const KIND: DhtPacketKind;

    /// What [`encode`](Self::encode) writes.
    fn encoded_len(&self) -> usize;

    /// Writes the plaintext.
    fn encode(&self, buf: &mut impl BufMut);

    /// Reads a whole plaintext.
    fn decode(plaintext: Bytes) -> Result<Self, DecodeError>;
}

/// A DHT packet, its payload still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtPacket {
    /// Which kind of packet.
    pub kind: DhtPacketKind,
    /// The sender's DHT public key.
    pub sender: PublicKey,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext]`.
    pub payload: Bytes,
}

impl DhtPacket {
    /// Seals `plaintext` for the holder of the other half of `key`.
    pub fn seal(kind: DhtPacketKind, sender: PublicKey, key: &SharedKey, nonce: Nonce, plaintext: &[u8]) -> Self {
        let mut sealed = Vec::with_capacity(MAC_LEN + plaintext.len());
        key.seal_into(&nonce, plaintext, &mut sealed);
        Self { kind, sender, nonce, payload: sealed.into() }
    }

    /// Encodes and seals a typed plaintext, with the kind that carries it.
    pub fn seal_payload<P: DhtPayload>(sender: PublicKey, key: &SharedKey, nonce: Nonce, payload: &P) -> Self {
        let mut buf = Vec::with_capacity(MAC_LEN + payload.encoded_len());
        buf.put_bytes(0, MAC_LEN);
        payload.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Self { kind: P::KIND, sender, nonce, payload: buf.into() }
    }

    /// Checks the MAC and returns the plaintext.
    pub fn open(&self, key: &SharedKey) -> Result<Bytes, CryptoError> {
        key.open(&self.nonce, &self.payload).map(Bytes::from)
    }

    /// Reads a whole datagram. Fails on a kind without this layout and on a
    /// payload whose length the kind cannot have.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        let kind = DhtPacketKind::from_id(r.u8("DHT packet kind")?).ok_or(DecodeError::Invalid("DHT packet kind"))?;
        let sender = PublicKey::from_bytes(r.array("DHT packet sender key")?);
        let nonce = Nonce::from_bytes(r.array("DHT packet nonce")?);
        let payload = r.rest();
        let plain = kind.plaintext_len();
        if payload.len() < MAC_LEN + plain.start() {
            return Err(DecodeError::UnexpectedEnd {
                what: "DHT packet payload",
                needed: MAC_LEN + plain.start(),
                available: payload.len(),
            });
        }
        if payload.len() > MAC_LEN + plain.end() {
            return Err(DecodeError::TrailingBytes(payload.len() - MAC_LEN - plain.end()));
        }
        Ok(Self { kind, sender, nonce, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.kind.id());
        buf.put_slice(self.sender.as_bytes());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        DHT_PACKET_HEADER_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, golden};

    const KINDS: [DhtPacketKind; 5] = [
        DhtPacketKind::PingRequest,
        DhtPacketKind::PingResponse,
        DhtPacketKind::NodesRequest,
        DhtPacketKind::NodesResponse,
        DhtPacketKind::CookieRequest,
    ];

    fn arb_kind() -> impl Strategy<Value = DhtPacketKind> {
        proptest::sample::select(KINDS.to_vec())
    }

    /// A kind and a plaintext length it allows.
    fn arb_kind_and_len() -> impl Strategy<Value = (DhtPacketKind, usize)> {
        arb_kind().prop_flat_map(|kind| (Just(kind), kind.plaintext_len()))
    }

    fn encode(packet: &DhtPacket) -> Vec<u8> {
        let mut out = Vec::new();
        packet.encode(&mut out);
        assert_eq!(out.len(), packet.encoded_len());
        out
    }

    #[test]
    fn header_by_hand() {
        // A ping request: kind 0x00, sender key 0x11 x 32, nonce 0x22 x 24,
        // and 25 bytes of sealed payload (9 of plaintext and the MAC).
        let mut bytes = vec![0x00];
        bytes.extend_from_slice(&[0x11; 32]);
        bytes.extend_from_slice(&[0x22; 24]);
        bytes.extend_from_slice(&[0x33; 25]);
        assert_eq!(bytes.len(), 82);
        let packet = DhtPacket::decode(bytes.clone()).unwrap();
        assert_eq!(packet.kind, DhtPacketKind::PingRequest);
        assert_eq!(packet.sender, PublicKey::from_bytes([0x11; 32]));
        assert_eq!(packet.nonce, Nonce::from_bytes([0x22; 24]));
        assert_eq!(packet.payload, Bytes::from(vec![0x33; 25]));
        assert_eq!(encode(&packet), bytes);
        assert_eq!(PacketKind::from(packet.kind), PacketKind::PingRequest);
    }

    #[test]
    fn lengths_are_checked_per_kind() {
        let packet = |kind: u8, payload: usize| {
            let mut bytes = vec![kind];
            bytes.resize(DHT_PACKET_HEADER_LEN + payload, 0);
            DhtPacket::decode(bytes)
        };
        assert!(packet(0x00, 25).is_ok());
        assert!(matches!(packet(0x00, 24), Err(DecodeError::UnexpectedEnd { needed: 25, available: 24, .. })));
        assert_eq!(packet(0x01, 26), Err(DecodeError::TrailingBytes(1)));
        assert!(packet(0x02, 56).is_ok());
        assert!(packet(0x02, 57).is_err());
        assert!(packet(0x04, 16 + 9).is_ok());
        assert!(packet(0x04, 16 + 1 + 204 + 8).is_ok());
        assert!(packet(0x04, 16 + 1 + 204 + 9).is_err());
        assert!(packet(0x18, 88).is_ok());
        assert_eq!(packet(0x18, 88).unwrap().encoded_len(), 145);
        assert_eq!(packet(0x03, 25), Err(DecodeError::Invalid("DHT packet kind")));
        assert_eq!(packet(0x20, 25), Err(DecodeError::Invalid("DHT packet kind")));
        assert!(DhtPacket::decode(Vec::new()).is_err());
    }

    #[test]
    fn seal_and_open() {
        let (alice, bob) = (golden::alice(), golden::bob());
        let to_bob = golden::shared();
        let from_alice = SharedKey::precompute(alice.public(), bob.secret()).unwrap();
        let plain = [0x00, 1, 2, 3, 4, 5, 6, 7, 8];
        let packet = DhtPacket::seal(DhtPacketKind::PingRequest, *alice.public(), &to_bob, golden::nonce(), &plain);
        assert_eq!(packet.payload.len(), MAC_LEN + plain.len());
        let received = DhtPacket::decode(encode(&packet)).unwrap();
        assert_eq!(received, packet);
        assert_eq!(received.open(&from_alice).unwrap(), &plain[..]);
        let mut tampered = received.clone();
        tampered.nonce.increment();
        assert_eq!(tampered.open(&from_alice), Err(CryptoError::Decrypt));
    }

    proptest! {
        #[test]
        fn round_trips((kind, len) in arb_kind_and_len(), sender in arb_public_key(), nonce in arb_nonce(), key in any::<[u8; 32]>(), fill in any::<u8>()) {
            let key = SharedKey::from_bytes(key);
            let plain = vec![fill; len];
            let packet = DhtPacket::seal(kind, sender, &key, nonce, &plain);
            let bytes = encode(&packet);
            prop_assert_eq!(bytes.first().copied(), Some(kind.id()));
            let back = DhtPacket::decode(bytes).unwrap();
            prop_assert_eq!(&back, &packet);
            prop_assert_eq!(back.open(&key).unwrap(), Bytes::from(plain));
        }

        #[test]
        fn damaged_input_never_panics((kind, len) in arb_kind_and_len(), sender in arb_public_key(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([7; 32]);
            let packet = DhtPacket::seal(kind, sender, &key, nonce, &vec![0; len]);
            if let Ok(damaged) = DhtPacket::decode(damage(encode(&packet), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DhtPacket::decode(bytes);
        }
    }
}
