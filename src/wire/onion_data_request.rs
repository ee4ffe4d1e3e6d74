//! Onion data request (0x85): data for someone announced on an announce
//! node (a friend request, a DHT-PK packet), sent to that node through an
//! [onion path](super::onion_request); the node passes it to the announced
//! client as an [onion data response](super::onion_data_response).
//!
//! | bytes | field                                                             |
//! |-------|-------------------------------------------------------------------|
//! | 1     | 0x85                                                              |
//! | 32    | receiver's real public key: the announced key the node looks up   |
//! | 24    | nonce, random per message                                         |
//! | 32    | temporary public key, fresh per packet                            |
//! | 16    | MAC                                                               |
//! | ...   | encrypted [`OnionDataEnvelope`]                                    |
//!
//! Two seals: the outer one with the temporary secret key and the
//! receiver's *data* public key (from an announce response, is_stored 1),
//! which only the receiver can open; inside it the envelope proves the
//! sender, sealed with the two *real* keys under the same nonce:
//!
//! | bytes | envelope field                                                  |
//! |-------|-----------------------------------------------------------------|
//! | 32    | sender's real public key                                        |
//! | 16    | MAC                                                             |
//! | ...   | encrypted `[kind][data]`: [`OnionDataPayload`] (32 friend request, 156 DHT-PK) |
//!
//! Facts from c-toxcore 0.2.18:
//! - `onion_client.c` `send_onion_data` seals the envelope with the client's
//!   real secret key, the friend's real public key and one random nonce, for
//!   1 to `ONION_CLIENT_MAX_DATA_SIZE` = 1021 bytes of `[kind][data]`, then
//!   calls `onion_announce.c` `create_data_request` once per announce node
//!   holding the friend (up to 8), each with a fresh key pair
//!   (`crypto_new_keypair`) and the node's data key, over a random path.
//!   `create_data_request` refuses envelopes over `MAX_DATA_REQUEST_SIZE` =
//!   1174 - 105 = 1069 bytes. Golden bytes below are its output.
//! - `onion_announce.c` `handle_data_request` takes 283 to 1400 bytes (with
//!   hop 3's `ONION_RETURN_3`, so 106 to 1223 here), looks the receiver key
//!   up, and sends `[0x86][nonce][temp key][sealed]` back along the path the
//!   receiver announced itself by ([`OnionDataRequest::into_response`]).
//! - `onion_client.c` `handle_data_response` drops an 0x86 of more than
//!   `MAX_DATA_REQUEST_SIZE` = 1069 bytes: the whole packet, not just the
//!   envelope. So a c-toxcore client receives `[kind][data]` of at most
//!   1069 - 121 = 948 bytes ([`MAX_ONION_DATA_LEN`]), though it sends up to
//!   1021. [`OnionDataRequest::seal`] keeps to 948, so what we send arrives.
//! - Its handlers are chosen by the kind byte (`oniondata_registerhandler`):
//!   32 goes to friend requests, 156 to DHT-PK; others are dropped.
//!
//! Spec: <https://toktok.ltd/spec.html#onion> ("data to route request packet").

use bytes::{BufMut, Bytes};

use super::dht_pk_announce::{DHT_PK_KIND, DhtPkAnnounce};
use super::friend_request::{FRIEND_REQUEST_KIND, FriendRequest};
use super::onion_data_response::OnionDataResponse;
use super::onion_request::{MAX_ONION_PACKET_LEN, ONION_RETURN_3_LEN, OnionPayloadError, OpenError};
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// The packet kind (`NET_PACKET_ONION_DATA_REQUEST`).
pub const ONION_DATA_REQUEST_KIND: u8 = 0x85;
/// Longest `[kind][data]` whose onion data response a c-toxcore client
/// accepts; what [`OnionDataRequest::seal`] allows.
pub const MAX_ONION_DATA_LEN: usize = OnionDataResponse::MAX_LEN - OnionDataResponse::MIN_LEN + 1;

/// What onion data carries, once both seals are open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OnionDataPayload {
    /// Kind 32.
    FriendRequest(FriendRequest),
    /// Kind 156.
    DhtPk(DhtPkAnnounce),
    /// Any other kind with its data; c-toxcore drops these. Never 32 or 156
    /// when decoded.
    Other {
        /// The kind byte.
        kind: u8,
        /// What follows it, possibly nothing.
        data: Bytes,
    },
}

impl OnionDataPayload {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::FriendRequest(_) => FRIEND_REQUEST_KIND,
            Self::DhtPk(_) => DHT_PK_KIND,
            Self::Other { kind, .. } => *kind,
        }
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let plaintext = plaintext.into();
        let mut r = Reader::new(plaintext.clone());
        match r.u8("onion data kind")? {
            FRIEND_REQUEST_KIND => FriendRequest::decode(plaintext).map(Self::FriendRequest),
            DHT_PK_KIND => DhtPkAnnounce::decode(plaintext).map(Self::DhtPk),
            kind => Ok(Self::Other { kind, data: r.rest() }),
        }
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::FriendRequest(request) => request.encode(buf),
            Self::DhtPk(announce) => announce.encode(buf),
            Self::Other { kind, data } => {
                buf.put_u8(*kind);
                buf.put_slice(data);
            }
        }
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::FriendRequest(request) => request.encoded_len(),
            Self::DhtPk(announce) => announce.encoded_len(),
            Self::Other { data, .. } => 1 + data.len(),
        }
    }
}

impl From<FriendRequest> for OnionDataPayload {
    fn from(request: FriendRequest) -> Self {
        Self::FriendRequest(request)
    }
}

impl From<DhtPkAnnounce> for OnionDataPayload {
    fn from(announce: DhtPkAnnounce) -> Self {
        Self::DhtPk(announce)
    }
}

/// The plaintext of the outer seal: the sender's real key and the data
/// sealed with the real keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionDataEnvelope {
    /// The sender's real public key.
    pub sender_pk: PublicKey,
    /// `[MAC 16][ciphertext of [kind][data]]`.
    pub payload: Bytes,
}

impl OnionDataEnvelope {
    /// Shortest envelope: a key, a MAC and a kind byte.
    pub const MIN_LEN: usize = PUBLIC_KEY_LEN + MAC_LEN + 1;

    /// Seals `plaintext` (`[kind][data]`, see [`OnionDataPayload`]); `key`
    /// is precomputed from the receiver's real public key and the sender's
    /// real secret key, `nonce` is the one the request will carry.
    pub fn seal(sender_pk: PublicKey, key: &SharedKey, nonce: &Nonce, plaintext: &[u8]) -> Self {
        let mut sealed = Vec::with_capacity(MAC_LEN + plaintext.len());
        key.seal_into(nonce, plaintext, &mut sealed);
        Self { sender_pk, payload: sealed.into() }
    }

    /// Checks the MAC and returns `[kind][data]`; `key` is precomputed from
    /// [`sender_pk`](Self::sender_pk) and the receiver's real secret key,
    /// `nonce` is the packet's.
    pub fn open(&self, key: &SharedKey, nonce: &Nonce) -> Result<Bytes, CryptoError> {
        key.open(nonce, &self.payload).map(Bytes::from)
    }

    /// Reads a whole plaintext: a key and at least a MAC and one byte.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let sender_pk = PublicKey::from_bytes(r.array("onion data sender key")?);
        if r.remaining() <= MAC_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "onion data payload",
                needed: MAC_LEN + 1,
                available: r.remaining(),
            });
        }
        Ok(Self { sender_pk, payload: r.rest() })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.sender_pk.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        PUBLIC_KEY_LEN + self.payload.len()
    }
}

/// An onion data request, its envelope still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionDataRequest {
    /// The receiver's real public key.
    pub receiver_pk: PublicKey,
    /// The nonce of both seals.
    pub nonce: Nonce,
    /// The temporary public key the envelope was sealed with.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of the envelope]`.
    pub payload: Bytes,
}

impl OnionDataRequest {
    /// Everything but the sealed envelope (`ONION_DATA_REQUEST_MIN_SIZE` less the MAC).
    const HEADER_LEN: usize = 1 + PUBLIC_KEY_LEN + NONCE_LEN + PUBLIC_KEY_LEN;
    /// Shortest request an announce node accepts: one byte of payload.
    pub const MIN_LEN: usize = Self::HEADER_LEN + MAC_LEN + 1;
    /// Longest request an announce node accepts (1400 less `ONION_RETURN_3`).
    pub const MAX_LEN: usize = MAX_ONION_PACKET_LEN - ONION_RETURN_3_LEN;

    /// Seals `envelope` for the receiver; `key` is precomputed from the
    /// receiver's data public key and the temporary secret key whose public
    /// half is `temp_pk`. The envelope must hold 1 to
    /// [`MAX_ONION_DATA_LEN`] = 948 bytes of `[kind][data]`.
    pub fn seal(
        receiver_pk: PublicKey,
        nonce: Nonce,
        temp_pk: PublicKey,
        key: &SharedKey,
        envelope: &OnionDataEnvelope,
    ) -> Result<Self, OnionPayloadError> {
        let len = envelope.payload.len().saturating_sub(MAC_LEN);
        if len == 0 {
            return Err(OnionPayloadError::Empty);
        }
        if len > MAX_ONION_DATA_LEN {
            return Err(OnionPayloadError::TooLong { len, max: MAX_ONION_DATA_LEN });
        }
        let mut buf = Vec::with_capacity(MAC_LEN + envelope.encoded_len());
        buf.put_bytes(0, MAC_LEN);
        envelope.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Ok(Self { receiver_pk, nonce, temp_pk, payload: buf.into() })
    }

    /// Checks the MAC and reads the envelope; `key` is precomputed from
    /// [`temp_pk`](Self::temp_pk) and the receiver's data secret key.
    pub fn open(&self, key: &SharedKey) -> Result<OnionDataEnvelope, OpenError> {
        Ok(OnionDataEnvelope::decode(key.open(&self.nonce, &self.payload)?)?)
    }

    /// What the announce node sends on to the receiver: the same bytes
    /// without the receiver key.
    pub fn into_response(self) -> OnionDataResponse {
        OnionDataResponse { nonce: self.nonce, temp_pk: self.temp_pk, payload: self.payload }
    }

    /// Reads a whole request (without hop 3's return block): 106 to 1223 bytes.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.remaining() > Self::MAX_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - Self::MAX_LEN));
        }
        if r.remaining() < Self::MIN_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "onion data request",
                needed: Self::MIN_LEN,
                available: r.remaining(),
            });
        }
        if r.u8("onion data request kind")? != ONION_DATA_REQUEST_KIND {
            return Err(DecodeError::Invalid("onion data request kind"));
        }
        let receiver_pk = PublicKey::from_bytes(r.array("onion data request receiver key")?);
        let nonce = Nonce::from_bytes(r.array("onion data request nonce")?);
        let temp_pk = PublicKey::from_bytes(r.array("onion data request temporary key")?);
        Ok(Self { receiver_pk, nonce, temp_pk, payload: r.rest() })
    }

    /// Writes the request.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_DATA_REQUEST_KIND);
        buf.put_slice(self.receiver_pk.as_bytes());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(self.temp_pk.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::KeyPair;
    use crate::wire::packed_node::PackedNode;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, encoded, golden};
    use crate::wire::tox_id::NoSpam;

    /// Bob's onion data key pair (secret key from 0x91).
    fn data_key() -> KeyPair {
        golden::key_pair(0x91)
    }

    /// `[32][0a 0b 0c 0d]["hello from tuntox"]`.
    fn friend_request() -> FriendRequest {
        FriendRequest::new(NoSpam([0x0a, 0x0b, 0x0c, 0x0d]), &b"hello from tuntox"[..]).unwrap()
    }

    #[test]
    fn matches_c_toxcore_create_data_request() {
        // As `send_onion_data` does it: Alice seals a friend request for Bob
        // with their real keys and the nonce a0 .. b7, then c-toxcore's
        // `create_data_request` seals that for Bob's data key with a fresh
        // key pair (libsodium's generator, counting up from 0xc0 and by 7 a
        // call, had been called once before: its secret key counts from 0xc7).
        let golden_request = hex!(
            "85"
            "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a" // Bob's real public key
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"                 // nonce
            "8397522ae4dd2217ff49c696ea64d66029ebd15bbf0e4a9aa196012c0079eb56" // temporary public key
            "54fcd1f7ce3ae200da407e033997b785a2c04f58777d53a21b0b9c244ddfc4d61f4c19d6496f32474a5a63bb2311b936"
            "aa10404b2cd20adfbfabd4fd12889001a6462fd1a425b3e87c7c3006de70d41e50764a2d41e8"
        );
        let (alice, bob, temp) = (golden::alice(), golden::bob(), golden::key_pair(0xc7));
        let request = OnionDataRequest::decode(golden_request.to_vec()).unwrap();
        assert_eq!((request.receiver_pk, request.temp_pk), (*bob.public(), *temp.public()));

        // Bob opens both seals.
        let outer = SharedKey::precompute(&request.temp_pk, data_key().secret()).unwrap();
        let envelope = request.open(&outer).unwrap();
        assert_eq!(envelope.sender_pk, *alice.public());
        let inner = SharedKey::precompute(&envelope.sender_pk, bob.secret()).unwrap();
        let plain = envelope.open(&inner, &request.nonce).unwrap();
        assert_eq!(OnionDataPayload::decode(plain), Ok(friend_request().into()));

        // And we seal the same bytes.
        let plain = encoded!(OnionDataPayload::from(friend_request()));
        let envelope = OnionDataEnvelope::seal(*alice.public(), &golden::shared(), &golden::nonce(), &plain);
        let outer = SharedKey::precompute(data_key().public(), temp.secret()).unwrap();
        let ours = OnionDataRequest::seal(*bob.public(), golden::nonce(), *temp.public(), &outer, &envelope).unwrap();
        assert_eq!(encoded!(ours), golden_request);
    }

    #[test]
    fn lengths_are_what_a_c_toxcore_client_accepts() {
        assert_eq!(MAX_ONION_DATA_LEN, 948);
        assert_eq!((OnionDataRequest::MIN_LEN, OnionDataRequest::MAX_LEN), (106, 1223));
        let key = SharedKey::from_bytes([1; 32]);
        let seal = |len: usize| {
            let envelope = OnionDataEnvelope::seal(PublicKey::from_bytes([2; 32]), &key, &Nonce::ZERO, &vec![7; len]);
            OnionDataRequest::seal(
                PublicKey::from_bytes([3; 32]),
                Nonce::ZERO,
                PublicKey::from_bytes([4; 32]),
                &key,
                &envelope,
            )
        };
        assert_eq!(seal(0), Err(OnionPayloadError::Empty));
        // The shortest we build has a whole envelope; an announce node only
        // asks for one byte after the MAC.
        assert_eq!(seal(1).unwrap().encoded_len(), OnionDataRequest::MIN_LEN + PUBLIC_KEY_LEN + MAC_LEN);
        let longest = seal(948).unwrap();
        // The announce node's 0x86 is exactly as long as a c-toxcore client takes.
        assert_eq!(longest.clone().into_response().encoded_len(), OnionDataResponse::MAX_LEN);
        assert_eq!(OnionDataRequest::decode(encoded!(longest)), Ok(longest));
        assert_eq!(seal(949), Err(OnionPayloadError::TooLong { len: 949, max: 948 }));

        let packet = |kind: u8, len: usize| {
            let mut bytes = vec![kind];
            bytes.resize(len, 0);
            OnionDataRequest::decode(bytes)
        };
        assert!(packet(0x85, 106).is_ok());
        assert!(matches!(packet(0x85, 105), Err(DecodeError::UnexpectedEnd { .. })));
        assert!(packet(0x85, 1223).is_ok());
        assert_eq!(packet(0x85, 1224), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(packet(0x86, 200), Err(DecodeError::Invalid("onion data request kind")));
        assert!(OnionDataEnvelope::decode(vec![0; 48]).is_err());
        assert!(OnionDataEnvelope::decode(vec![0; 49]).is_ok());
    }

    #[test]
    fn payload_kinds() {
        assert_eq!(OnionDataPayload::decode(encoded!(friend_request())), Ok(friend_request().into()));
        let announce = DhtPkAnnounce::new(5, PublicKey::from_bytes([1; 32]), Vec::new()).unwrap();
        assert_eq!(OnionDataPayload::decode(encoded!(announce)), Ok(announce.clone().into()));
        assert_eq!(OnionDataPayload::from(announce).kind(), DHT_PK_KIND);
        assert_eq!(
            OnionDataPayload::decode(vec![7, 1, 2]),
            Ok(OnionDataPayload::Other { kind: 7, data: Bytes::from_static(&[1, 2]) })
        );
        // A known kind must be well formed.
        assert!(OnionDataPayload::decode(vec![FRIEND_REQUEST_KIND, 1, 2, 3, 4]).is_err());
        assert!(OnionDataPayload::decode(vec![DHT_PK_KIND, 0]).is_err());
        assert!(OnionDataPayload::decode(Vec::new()).is_err());
    }

    fn arb_payload() -> impl Strategy<Value = OnionDataPayload> {
        let node = crate::wire::packed_node::tests::arb_packed_node();
        prop_oneof![
            (any::<[u8; 4]>(), proptest::collection::vec(any::<u8>(), 1..=MAX_ONION_DATA_LEN - 5))
                .prop_map(|(nospam, message)| FriendRequest::new(NoSpam(nospam), message).unwrap().into()),
            (any::<u64>(), arb_public_key(), proptest::collection::vec(node, 0..=4)).prop_map(
                |(no_replay, key, nodes): (u64, PublicKey, Vec<PackedNode>)| DhtPkAnnounce::new(no_replay, key, nodes)
                    .unwrap()
                    .into()
            ),
            (
                any::<u8>()
                    .prop_filter("a kind with its own type", |kind| ![FRIEND_REQUEST_KIND, DHT_PK_KIND].contains(kind)),
                proptest::collection::vec(any::<u8>(), 0..MAX_ONION_DATA_LEN)
            )
                .prop_map(|(kind, data)| OnionDataPayload::Other { kind, data: data.into() }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(payload in arb_payload(), keys in proptest::array::uniform3(arb_public_key()), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let [receiver, sender, temp] = keys;
            let (outer, inner) = (SharedKey::from_bytes(key), SharedKey::from_bytes([key[0] ^ 1; 32]));
            let plain = encoded!(payload);
            let envelope = OnionDataEnvelope::seal(sender, &inner, &nonce, &plain);
            let request = OnionDataRequest::seal(receiver, nonce, temp, &outer, &envelope).unwrap();
            let back = OnionDataRequest::decode(encoded!(request)).unwrap();
            prop_assert_eq!(&back, &request);
            let opened = back.open(&outer).unwrap();
            prop_assert_eq!(&opened, &envelope);
            let plain_back = opened.open(&inner, &nonce).unwrap();
            // Nodes come back normalized; the bytes are the same.
            prop_assert_eq!(encoded!(OnionDataPayload::decode(plain_back).unwrap()), plain);
            // What the announce node forwards, a c-toxcore client accepts.
            let response = OnionDataResponse::decode(encoded!(request.into_response())).unwrap();
            prop_assert_eq!(response.open(&outer).unwrap(), envelope);
        }

        #[test]
        fn damaged_input_never_panics(payload in arb_payload(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([5; 32]);
            let plain = encoded!(payload);
            let envelope = OnionDataEnvelope::seal(PublicKey::from_bytes([6; 32]), &key, &nonce, &plain);
            let request = OnionDataRequest::seal(PublicKey::from_bytes([7; 32]), nonce, PublicKey::from_bytes([8; 32]), &key, &envelope).unwrap();
            if let Ok(damaged) = OnionDataRequest::decode(damage(encoded!(request), flip, bit, cut)) {
                if let Ok(envelope) = damaged.open(&key) {
                    let _ = envelope.open(&key, &damaged.nonce);
                }
            }
            let _ = OnionDataEnvelope::decode(damage(encoded!(envelope), flip, bit, cut));
            let _ = OnionDataPayload::decode(damage(plain, flip, bit, cut));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = OnionDataRequest::decode(bytes.clone());
            let _ = OnionDataEnvelope::decode(bytes.clone());
            let _ = OnionDataPayload::decode(bytes);
        }
    }
}
