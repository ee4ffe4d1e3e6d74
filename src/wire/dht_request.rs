//! DHT request (0x20): a packet for a node we may have no route to,
//! addressed by its DHT public key and passed on by nodes that know it.
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 1     | 0x20                                                      |
//! | 32    | receiver's (addressee's) DHT public key                   |
//! | 32    | sender's DHT public key                                   |
//! | 24    | nonce, random per packet                                  |
//! | 16    | MAC                                                       |
//! | ...   | encrypted: `[inner id u8][data]` (see [`DhtRequestPayload`]) |
//!
//! A node that receives one checks the receiver key: its own, it opens the
//! packet; a close node's, it forwards the packet unchanged; otherwise it
//! drops it. The payload is sealed with the key of the sender's DHT secret
//! key and the receiver's DHT public key. Inner ids: 0xfe
//! [NAT ping](super::nat_ping), 156 DHT-PK (the onion module's), 32 friend
//! request (legacy path).
//!
//! Facts from c-toxcore 0.2.18 `DHT.c`:
//! - `create_request` writes the layout above (`NET_PACKET_CRYPTO` = 0x20)
//!   and refuses to build more than `MAX_CRYPTO_REQUEST_SIZE` = 1024 bytes,
//!   so a plaintext (inner id included) holds at most 1024 - 89 - 16 = 919
//!   bytes ([`MAX_DHT_REQUEST_PLAINTEXT_LEN`]).
//! - `cryptopacket_handle` drops packets of 105 bytes or less (no room for
//!   an inner id) and of more than 1024 + 16 = 1040; it forwards anything in
//!   between that is not for itself (`route_packet`). For itself,
//!   `handle_request` also drops packets over 1024 bytes and a plaintext
//!   that is only the inner id (no data), and passes `[data]` to the handler
//!   registered for the id (`cryptopacket_registerhandler`).
//!
//! [`DhtRequest::decode`] accepts what c-toxcore would forward (106 to 1040
//! bytes); [`DhtRequestPayload::decode`] requires data after the inner id.
//!
//! Spec: <https://toktok.ltd/spec.html#dht-request-packets>.

use bytes::{BufMut, Bytes};

use super::nat_ping::{NAT_PING_ID, NatPingRequest, NatPingResponse};
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// The packet kind.
pub const DHT_REQUEST_KIND: u8 = 0x20;
/// Length of the clear header: kind, two keys and the nonce.
pub const DHT_REQUEST_HEADER_LEN: usize = 1 + 2 * PUBLIC_KEY_LEN + NONCE_LEN;
/// Longest DHT request a node accepts for itself (`MAX_CRYPTO_REQUEST_SIZE`).
pub const MAX_DHT_REQUEST_LEN: usize = 1024;
/// Longest DHT request c-toxcore forwards for others.
pub const MAX_ROUTED_DHT_REQUEST_LEN: usize = MAX_DHT_REQUEST_LEN + MAC_LEN;
/// Longest plaintext, inner id included, that fits in [`MAX_DHT_REQUEST_LEN`].
pub const MAX_DHT_REQUEST_PLAINTEXT_LEN: usize = MAX_DHT_REQUEST_LEN - DHT_REQUEST_HEADER_LEN - MAC_LEN;
/// Inner id of a DHT-PK packet (`CRYPTO_PACKET_DHTPK`).
pub const DHT_PK_ID: u8 = 156;
/// Inner id of a friend request (`CRYPTO_PACKET_FRIEND_REQ`).
pub const FRIEND_REQUEST_ID: u8 = 32;

/// A plaintext too long for a DHT request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DHT request plaintext is {0} bytes; at most {MAX_DHT_REQUEST_PLAINTEXT_LEN} fit")]
pub struct PayloadTooLong(pub usize);

/// What a DHT request carries, once opened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DhtRequestPayload {
    /// A NAT ping request (inner id 0xfe, type 0).
    NatPingRequest(NatPingRequest),
    /// A NAT ping response (inner id 0xfe, type 1).
    NatPingResponse(NatPingResponse),
    /// Any other inner id with its data, for the module that handles it
    /// (DHT-PK, friend request). Never 0xfe when decoded.
    Other {
        /// The inner id.
        kind: u8,
        /// What follows it.
        data: Bytes,
    },
}

impl DhtRequestPayload {
    /// The inner id.
    pub fn kind(&self) -> u8 {
        match self {
            Self::NatPingRequest(_) | Self::NatPingResponse(_) => NAT_PING_ID,
            Self::Other { kind, .. } => *kind,
        }
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let plaintext = plaintext.into();
        let mut r = Reader::new(plaintext.clone());
        let kind = r.u8("DHT request inner id")?;
        if r.is_empty() {
            return Err(DecodeError::UnexpectedEnd { what: "DHT request data", needed: 1, available: 0 });
        }
        if kind == NAT_PING_ID {
            let is_request = r.u8("NAT ping type")? == 0x00;
            return if is_request {
                NatPingRequest::decode(plaintext).map(Self::NatPingRequest)
            } else {
                NatPingResponse::decode(plaintext).map(Self::NatPingResponse)
            };
        }
        Ok(Self::Other { kind, data: r.rest() })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::NatPingRequest(ping) => ping.encode(buf),
            Self::NatPingResponse(ping) => ping.encode(buf),
            Self::Other { kind, data } => {
                buf.put_u8(*kind);
                buf.put_slice(data);
            }
        }
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::NatPingRequest(ping) => ping.encoded_len(),
            Self::NatPingResponse(ping) => ping.encoded_len(),
            Self::Other { data, .. } => 1 + data.len(),
        }
    }
}

impl From<NatPingRequest> for DhtRequestPayload {
    fn from(ping: NatPingRequest) -> Self {
        Self::NatPingRequest(ping)
    }
}

impl From<NatPingResponse> for DhtRequestPayload {
    fn from(ping: NatPingResponse) -> Self {
        Self::NatPingResponse(ping)
    }
}

/// A DHT request, its payload still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtRequest {
    /// The addressee's DHT public key.
    pub receiver: PublicKey,
    /// The sender's DHT public key.
    pub sender: PublicKey,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext]`.
    pub payload: Bytes,
}

impl DhtRequest {
    /// Seals `payload` for `receiver`; `key` is precomputed from the
    /// receiver's public key and the sender's secret key. Fails if the
    /// packet would exceed what a receiver accepts.
    pub fn seal(
        receiver: PublicKey,
        sender: PublicKey,
        key: &SharedKey,
        nonce: Nonce,
        payload: &DhtRequestPayload,
    ) -> Result<Self, PayloadTooLong> {
        let len = payload.encoded_len();
        if len > MAX_DHT_REQUEST_PLAINTEXT_LEN {
            return Err(PayloadTooLong(len));
        }
        let mut buf = Vec::with_capacity(MAC_LEN + len);
        buf.put_bytes(0, MAC_LEN);
        payload.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Ok(Self { receiver, sender, nonce, payload: buf.into() })
    }

    /// Checks the MAC and returns the plaintext, for
    /// [`DhtRequestPayload::decode`].
    pub fn open(&self, key: &SharedKey) -> Result<Bytes, CryptoError> {
        key.open(&self.nonce, &self.payload).map(Bytes::from)
    }

    /// Reads a whole datagram: 106 to 1040 bytes, as c-toxcore accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.remaining() > MAX_ROUTED_DHT_REQUEST_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - MAX_ROUTED_DHT_REQUEST_LEN));
        }
        if r.u8("DHT request kind")? != DHT_REQUEST_KIND {
            return Err(DecodeError::Invalid("DHT request kind"));
        }
        let receiver = PublicKey::from_bytes(r.array("DHT request receiver key")?);
        let sender = PublicKey::from_bytes(r.array("DHT request sender key")?);
        let nonce = Nonce::from_bytes(r.array("DHT request nonce")?);
        // The MAC and at least the inner id.
        let payload = r.rest();
        if payload.len() <= MAC_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "DHT request payload",
                needed: MAC_LEN + 1,
                available: payload.len(),
            });
        }
        Ok(Self { receiver, sender, nonce, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(DHT_REQUEST_KIND);
        buf.put_slice(self.receiver.as_bytes());
        buf.put_slice(self.sender.as_bytes());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        DHT_REQUEST_HEADER_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, golden};

    fn arb_payload() -> impl Strategy<Value = DhtRequestPayload> {
        prop_oneof![
            any::<u64>().prop_map(|id| NatPingRequest::new(id).into()),
            any::<u64>().prop_map(|id| NatPingResponse::new(id).into()),
            (
                any::<u8>().prop_filter("0xfe is the NAT ping", |kind| *kind != NAT_PING_ID),
                proptest::collection::vec(any::<u8>(), 1..=MAX_DHT_REQUEST_PLAINTEXT_LEN - 1)
            )
                .prop_map(|(kind, data)| DhtRequestPayload::Other { kind, data: data.into() }),
        ]
    }

    fn encode(request: &DhtRequest) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(out.len(), request.encoded_len());
        out
    }

    fn encode_payload(payload: &DhtRequestPayload) -> Vec<u8> {
        let mut out = Vec::new();
        payload.encode(&mut out);
        assert_eq!(out.len(), payload.encoded_len());
        out
    }

    #[test]
    fn header_by_hand() {
        let mut bytes = vec![0x20];
        bytes.extend_from_slice(&[0x11; 32]); // receiver
        bytes.extend_from_slice(&[0x22; 32]); // sender
        bytes.extend_from_slice(&[0x33; 24]); // nonce
        bytes.extend_from_slice(&[0x44; 17]); // MAC and one byte
        assert_eq!(bytes.len(), 106);
        let request = DhtRequest::decode(bytes.clone()).unwrap();
        assert_eq!(request.receiver, PublicKey::from_bytes([0x11; 32]));
        assert_eq!(request.sender, PublicKey::from_bytes([0x22; 32]));
        assert_eq!(request.nonce, Nonce::from_bytes([0x33; 24]));
        assert_eq!(request.payload.len(), 17);
        assert_eq!(encode(&request), bytes);

        bytes.pop();
        assert!(matches!(DhtRequest::decode(bytes.clone()), Err(DecodeError::UnexpectedEnd { .. })));
        bytes.resize(1040, 0);
        assert!(DhtRequest::decode(bytes.clone()).is_ok());
        bytes.push(0);
        assert_eq!(DhtRequest::decode(bytes.clone()), Err(DecodeError::TrailingBytes(1)));
        bytes.truncate(200);
        bytes[0] = 0x21;
        assert_eq!(DhtRequest::decode(bytes), Err(DecodeError::Invalid("DHT request kind")));
    }

    #[test]
    fn payloads_by_hand() {
        let dht_pk = [156, 0xaa, 0xbb];
        assert_eq!(
            DhtRequestPayload::decode(dht_pk.to_vec()),
            Ok(DhtRequestPayload::Other { kind: DHT_PK_ID, data: Bytes::from_static(&[0xaa, 0xbb]) })
        );
        assert_eq!(
            DhtRequestPayload::decode(hex!("fe 00 0102030405060708").to_vec()),
            Ok(DhtRequestPayload::NatPingRequest(NatPingRequest::new(0x0102_0304_0506_0708)))
        );
        assert_eq!(
            DhtRequestPayload::decode(hex!("fe 01 0102030405060708").to_vec()),
            Ok(DhtRequestPayload::NatPingResponse(NatPingResponse::new(0x0102_0304_0506_0708)))
        );
        assert_eq!(
            DhtRequestPayload::decode(hex!("fe 02 0102030405060708").to_vec()),
            Err(DecodeError::Invalid("NAT ping response type"))
        );
        // c-toxcore drops a plaintext that is only an inner id.
        assert!(DhtRequestPayload::decode(vec![FRIEND_REQUEST_ID]).is_err());
        assert!(DhtRequestPayload::decode(Vec::new()).is_err());
    }

    #[test]
    fn too_long_payloads_are_refused() {
        let key = SharedKey::from_bytes([1; 32]);
        let keys = (PublicKey::from_bytes([2; 32]), PublicKey::from_bytes([3; 32]));
        let fits = DhtRequestPayload::Other { kind: 7, data: vec![0; 918].into() };
        let request = DhtRequest::seal(keys.0, keys.1, &key, Nonce::ZERO, &fits).unwrap();
        assert_eq!(request.encoded_len(), MAX_DHT_REQUEST_LEN);
        let too_long = DhtRequestPayload::Other { kind: 7, data: vec![0; 919].into() };
        assert_eq!(DhtRequest::seal(keys.0, keys.1, &key, Nonce::ZERO, &too_long), Err(PayloadTooLong(920)));
    }

    #[test]
    fn nat_pings_match_c_toxcore() {
        // c-toxcore's `create_request` from Alice to Bob with the 9 bytes
        // `send_NATping` builds; `handle_request` on Bob's side opened it.
        let golden_request = hex!(
            "20"
            "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a" // Bob's public key
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c" // Alice's public key
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "fcd02c365b56b0644b1a956dd3fff0454bcfbad1f761dbe3dfa8"
        );
        let golden_response = hex!(
            "20"
            "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "f7ee98605492930b404eaae4c73b09014bcebad1f761dbe3dfa8"
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let ping = NatPingRequest::new(golden::PING_ID);
        let cases = [
            (&golden_request[..], DhtRequestPayload::from(ping), 0x00),
            (&golden_response[..], ping.response().into(), 0x01),
        ];
        for (golden_packet, payload, ping_type) in cases {
            let request = DhtRequest::decode(golden_packet.to_vec()).unwrap();
            assert_eq!(request.receiver, *bob.public());
            assert_eq!(request.sender, *alice.public());
            let key = SharedKey::precompute(&request.sender, bob.secret()).unwrap();
            let plain = request.open(&key).unwrap();
            assert_eq!(plain[..2], [0xfe, ping_type]);
            assert_eq!(&plain[2..], hex!("efcdab8967452301"));
            assert_eq!(DhtRequestPayload::decode(plain), Ok(payload.clone()));

            let ours =
                DhtRequest::seal(*bob.public(), *alice.public(), &golden::shared(), golden::nonce(), &payload).unwrap();
            assert_eq!(encode(&ours), golden_packet);
        }
    }

    proptest! {
        #[test]
        fn round_trips(receiver in arb_public_key(), sender in arb_public_key(), nonce in arb_nonce(), key in any::<[u8; 32]>(), payload in arb_payload()) {
            let key = SharedKey::from_bytes(key);
            let request = DhtRequest::seal(receiver, sender, &key, nonce, &payload).unwrap();
            let back = DhtRequest::decode(encode(&request)).unwrap();
            prop_assert_eq!(&back, &request);
            prop_assert_eq!(DhtRequestPayload::decode(back.open(&key).unwrap()), Ok(payload.clone()));
            prop_assert_eq!(DhtRequestPayload::decode(encode_payload(&payload)), Ok(payload));
        }

        #[test]
        fn damaged_input_never_panics(receiver in arb_public_key(), sender in arb_public_key(), nonce in arb_nonce(), payload in arb_payload(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([9; 32]);
            let request = DhtRequest::seal(receiver, sender, &key, nonce, &payload).unwrap();
            if let Ok(damaged) = DhtRequest::decode(damage(encode(&request), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
            let _ = DhtRequestPayload::decode(damage(encode_payload(&payload), flip, bit, cut));
        }
    }
}
