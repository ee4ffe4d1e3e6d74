//! Onion announce request (0x83, and 0x87 with group data): "store me", or
//! "who stores this key?", sent to an announce node as the payload of an
//! [onion request](super::onion_request), so the node never learns the
//! sender's address.
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 1      | 0x83 (0x87: the form with group data)                          |
//! | 24     | nonce, random per packet                                       |
//! | 32     | sender's public key: real when announcing, temporary when searching |
//! | 16     | MAC                                                            |
//! | 104    | encrypted [`AnnounceRequestPayload`]:                          |
//! |        | `[ping id 32][searched public key 32][data public key 32][sendback 8]` |
//! | 0..136 | (0x87 only) encrypted extra data, in the same sealed part      |
//!
//! The payload is sealed with the key of the sender's secret key and the
//! announce node's DHT public key. On the node's side the request arrives
//! with hop 3's return block after it ([`OnionExit`](super::onion_request::OnionExit));
//! the answer is an [announce response](super::onion_announce_response).
//!
//! Facts from c-toxcore 0.2.18:
//! - `onion_announce.c` `create_announce_request` writes exactly
//!   `ONION_ANNOUNCE_REQUEST_MIN_SIZE` = 177 bytes of kind 0x83
//!   (`NET_PACKET_ANNOUNCE_REQUEST_OLD`); golden bytes below are its output.
//!   The sendback is a `uint64_t` copied in host byte order: opaque bytes
//!   the response echoes. We read and write it big-endian, which keeps them.
//! - `onion_client.c` `client_send_announce_request`: to announce itself a
//!   client sends its real key pair, searches its own real key and gives its
//!   onion data key (`temp_public_key`) as data key; the ping id is zeros
//!   until a node returned one. To search for a friend it sends the friend
//!   entry's temporary key pair, searches the friend's real key and gives a
//!   zero data key.
//! - `handle_announce_request_old` takes exactly 177 + 177 bytes (the
//!   request and `ONION_RETURN_3`). `handle_announce_request` (0x87) takes
//!   354 bytes like the old form but answers 0x88 with a node count; longer
//!   ones, up to 136 bytes of extra data (`ONION_MAX_EXTRA_DATA_SIZE`), only
//!   when a group-chat extra-data callback is set, which
//!   `new_onion_announce` leaves unset. And hop 3 forwards 0x83 and 0x85 only
//!   (`onion.c` `handle_send_2`): in 0.2.18 a 0x87 never arrives through the
//!   onion. We decode both forms and build either; tuntox sends 0x83.
//! - `handle_announce_request_common` requires the plaintext to fill the
//!   packet exactly, stores the sender when the ping id is the one it would
//!   give that key and address now (`timed_auth.c`), and otherwise looks the
//!   searched key up.
//!
//! Spec: <https://toktok.ltd/spec.html#onion> ("announce request packet").

use bytes::{BufMut, Bytes};

use super::onion_request::OpenError;
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// Kind of the announce request 0.2.18 clients send (`NET_PACKET_ANNOUNCE_REQUEST_OLD`).
pub const ANNOUNCE_REQUEST_KIND: u8 = 0x83;
/// Kind of the announce request with group data (`NET_PACKET_ANNOUNCE_REQUEST`).
pub const ANNOUNCE_REQUEST_NEW_KIND: u8 = 0x87;
/// Length of a ping id (`ONION_PING_ID_SIZE`).
pub const ONION_PING_ID_LEN: usize = 32;
/// Most extra data an 0x87 request carries (`ONION_MAX_EXTRA_DATA_SIZE`).
pub const MAX_ANNOUNCE_EXTRA_DATA_LEN: usize = 136;

/// Which of the two announce packet pairs: 0x83/0x84 or 0x87/0x88.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceForm {
    /// 0x83 and 0x84: what 0.2.18 clients use.
    Old,
    /// 0x87 and 0x88: with group-chat extra data, and a node count in the response.
    New,
}

impl AnnounceForm {
    /// The request's kind byte.
    pub const fn request_kind(self) -> u8 {
        match self {
            Self::Old => ANNOUNCE_REQUEST_KIND,
            Self::New => ANNOUNCE_REQUEST_NEW_KIND,
        }
    }

    /// The response's kind byte.
    pub const fn response_kind(self) -> u8 {
        match self {
            Self::Old => 0x84,
            Self::New => 0x88,
        }
    }

    /// The form of a request kind.
    pub const fn from_request_kind(kind: u8) -> Option<Self> {
        match kind {
            ANNOUNCE_REQUEST_KIND => Some(Self::Old),
            ANNOUNCE_REQUEST_NEW_KIND => Some(Self::New),
            _ => None,
        }
    }

    /// The form of a response kind.
    pub const fn from_response_kind(kind: u8) -> Option<Self> {
        match kind {
            0x84 => Some(Self::Old),
            0x88 => Some(Self::New),
            _ => None,
        }
    }
}

/// Extra data an announce request cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("announce request extra data is {0} bytes; at most {MAX_ANNOUNCE_EXTRA_DATA_LEN} fit")]
pub struct ExtraDataTooLong(pub usize);

/// An announce request's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnnounceRequestPayload {
    /// The ping id the node gave in its last response; zeros the first time.
    pub ping_id: [u8; ONION_PING_ID_LEN],
    /// The real public key looked for (our own when announcing).
    pub searched_pk: PublicKey,
    /// The key others must seal onion data for us with; zeros when searching.
    pub data_pk: PublicKey,
    /// Echoed in the response, so the sender can match it.
    pub sendback: u64,
    /// `None` for the 0x83 form; the group data of the 0x87 form (0 to 136 bytes).
    pub extra: Option<Bytes>,
}

impl AnnounceRequestPayload {
    /// Length of the 0x83 plaintext, and of the 0x87 one without extra data
    /// (`ONION_MINIMAL_SIZE`).
    pub const LEN: usize = ONION_PING_ID_LEN + 2 * PUBLIC_KEY_LEN + 8;

    /// Reads a whole plaintext of `form`: exactly 104 bytes for 0x83, 104
    /// to 240 for 0x87.
    pub fn decode(form: AnnounceForm, plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let ping_id = r.array("announce ping id")?;
        let searched_pk = PublicKey::from_bytes(r.array("announce searched key")?);
        let data_pk = PublicKey::from_bytes(r.array("announce data key")?);
        let sendback = r.u64_be("announce sendback")?;
        let extra = match form {
            AnnounceForm::Old => {
                r.finish()?;
                None
            }
            AnnounceForm::New => {
                if r.remaining() > MAX_ANNOUNCE_EXTRA_DATA_LEN {
                    return Err(DecodeError::TrailingBytes(r.remaining() - MAX_ANNOUNCE_EXTRA_DATA_LEN));
                }
                Some(r.rest())
            }
        };
        Ok(Self { ping_id, searched_pk, data_pk, sendback, extra })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.ping_id);
        buf.put_slice(self.searched_pk.as_bytes());
        buf.put_slice(self.data_pk.as_bytes());
        buf.put_u64(self.sendback);
        if let Some(extra) = &self.extra {
            buf.put_slice(extra);
        }
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        Self::LEN + self.extra.as_ref().map_or(0, Bytes::len)
    }

    /// The form this plaintext travels in: 0x87 when it has extra data.
    pub fn form(&self) -> AnnounceForm {
        if self.extra.is_some() { AnnounceForm::New } else { AnnounceForm::Old }
    }
}

/// An announce request, its payload still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionAnnounceRequest {
    /// 0x83 or 0x87.
    pub form: AnnounceForm,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// The sender's public key (real or temporary).
    pub sender_pk: PublicKey,
    /// `[MAC 16][ciphertext]`.
    pub payload: Bytes,
}

impl OnionAnnounceRequest {
    /// Length of an 0x83 request (`ONION_ANNOUNCE_REQUEST_MIN_SIZE`).
    pub const LEN: usize = 1 + NONCE_LEN + PUBLIC_KEY_LEN + MAC_LEN + AnnounceRequestPayload::LEN;
    /// Longest 0x87 request (`ONION_ANNOUNCE_REQUEST_MAX_SIZE`).
    pub const MAX_LEN: usize = Self::LEN + MAX_ANNOUNCE_EXTRA_DATA_LEN;

    /// Seals `payload` for the announce node; `key` is precomputed from the
    /// node's DHT public key and the sender's secret key. The form follows
    /// the payload's [`extra`](AnnounceRequestPayload::extra).
    pub fn seal(
        sender_pk: PublicKey,
        key: &SharedKey,
        nonce: Nonce,
        payload: &AnnounceRequestPayload,
    ) -> Result<Self, ExtraDataTooLong> {
        let extra = payload.extra.as_ref().map_or(0, Bytes::len);
        if extra > MAX_ANNOUNCE_EXTRA_DATA_LEN {
            return Err(ExtraDataTooLong(extra));
        }
        let mut buf = Vec::with_capacity(MAC_LEN + payload.encoded_len());
        buf.put_bytes(0, MAC_LEN);
        payload.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Ok(Self { form: payload.form(), nonce, sender_pk, payload: buf.into() })
    }

    /// Checks the MAC and reads the plaintext; `key` is precomputed from
    /// [`sender_pk`](Self::sender_pk) and the node's DHT secret key.
    pub fn open(&self, key: &SharedKey) -> Result<AnnounceRequestPayload, OpenError> {
        let plain = key.open(&self.nonce, &self.payload)?;
        Ok(AnnounceRequestPayload::decode(self.form, plain)?)
    }

    /// Reads a whole request (without hop 3's return block): exactly 177
    /// bytes for 0x83, 177 to 313 for 0x87.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        let form = AnnounceForm::from_request_kind(r.u8("announce request kind")?)
            .ok_or(DecodeError::Invalid("announce request kind"))?;
        let nonce = Nonce::from_bytes(r.array("announce request nonce")?);
        let sender_pk = PublicKey::from_bytes(r.array("announce request sender key")?);
        let sealed_min = MAC_LEN + AnnounceRequestPayload::LEN;
        let sealed_max = match form {
            AnnounceForm::Old => sealed_min,
            AnnounceForm::New => sealed_min + MAX_ANNOUNCE_EXTRA_DATA_LEN,
        };
        let payload = r.rest();
        if payload.len() < sealed_min {
            return Err(DecodeError::UnexpectedEnd {
                what: "announce request payload",
                needed: sealed_min,
                available: payload.len(),
            });
        }
        if payload.len() > sealed_max {
            return Err(DecodeError::TrailingBytes(payload.len() - sealed_max));
        }
        Ok(Self { form, nonce, sender_pk, payload })
    }

    /// Writes the request.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.form.request_kind());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(self.sender_pk.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + NONCE_LEN + PUBLIC_KEY_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::CryptoError;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, encoded, golden};

    /// The onion data key the golden requests announce: secret key from 0x91.
    fn data_pk() -> PublicKey {
        *golden::key_pair(0x91).public()
    }

    #[test]
    fn matches_c_toxcore_create_announce_request() {
        // c-toxcore's `create_announce_request` from Alice (announcing
        // herself) to Bob as announce node: ping id e0, e1, .., ff, her data
        // key, sendback the `uint64_t` 0x0123456789abcdef, nonce a0 .. b7.
        let golden_request = hex!(
            "83"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"                 // nonce
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c" // Alice's public key
            "9c86bd675146d95d6d346082e1f0bda0552eb7ffb80d5a41144037daf9cb7fb16f4151c35463e8"
            "a1d6d4ca4a53e82f7c3c15623738986258e43817929c7f32f67e2078e0ffd75d0d2b8cc5ce0e3ea0a5c634927c70dde2"
            "e7708411fd93101fae767ab6e063b68d3ca56e07c390544e62b2ae87b32e230cf1"
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let expected = AnnounceRequestPayload {
            ping_id: std::array::from_fn(|i| 0xe0 + i as u8),
            searched_pk: *alice.public(),
            data_pk: data_pk(),
            sendback: golden::PING_ID,
            extra: None,
        };
        let request = OnionAnnounceRequest::decode(golden_request.to_vec()).unwrap();
        assert_eq!((request.form, request.sender_pk), (AnnounceForm::Old, *alice.public()));
        let key = SharedKey::precompute(&request.sender_pk, bob.secret()).unwrap();
        let plain = key.open(&request.nonce, &request.payload).unwrap();
        assert_eq!(plain[96..], hex!("efcdab8967452301"));
        assert_eq!(request.open(&key), Ok(expected.clone()));

        let ours = OnionAnnounceRequest::seal(*alice.public(), &golden::shared(), golden::nonce(), &expected).unwrap();
        assert_eq!(encoded!(ours), golden_request);
    }

    #[test]
    fn forms_and_lengths() {
        assert_eq!((OnionAnnounceRequest::LEN, OnionAnnounceRequest::MAX_LEN), (177, 313));
        for form in [AnnounceForm::Old, AnnounceForm::New] {
            assert_eq!(AnnounceForm::from_request_kind(form.request_kind()), Some(form));
            assert_eq!(AnnounceForm::from_response_kind(form.response_kind()), Some(form));
        }
        assert_eq!(AnnounceForm::from_request_kind(0x84), None);

        let key = SharedKey::from_bytes([3; 32]);
        let mut payload = AnnounceRequestPayload {
            ping_id: [0; 32],
            searched_pk: PublicKey::from_bytes([1; 32]),
            data_pk: PublicKey::from_bytes([0; 32]),
            sendback: 7,
            extra: Some(Bytes::new()),
        };
        // 0x87 without extra data is as long as 0x83.
        let new = OnionAnnounceRequest::seal(PublicKey::from_bytes([2; 32]), &key, Nonce::ZERO, &payload).unwrap();
        let bytes = encoded!(new);
        assert_eq!((bytes[0], bytes.len()), (0x87, 177));
        assert_eq!(OnionAnnounceRequest::decode(bytes).unwrap().open(&key), Ok(payload.clone()));
        payload.extra = Some(vec![9; 136].into());
        let longest = OnionAnnounceRequest::seal(PublicKey::from_bytes([2; 32]), &key, Nonce::ZERO, &payload).unwrap();
        assert_eq!(longest.encoded_len(), 313);
        payload.extra = Some(vec![9; 137].into());
        assert_eq!(
            OnionAnnounceRequest::seal(PublicKey::from_bytes([2; 32]), &key, Nonce::ZERO, &payload),
            Err(ExtraDataTooLong(137))
        );

        let packet = |kind: u8, len: usize| {
            let mut bytes = vec![kind];
            bytes.resize(len, 0);
            OnionAnnounceRequest::decode(bytes)
        };
        assert!(packet(0x83, 177).is_ok());
        assert!(matches!(packet(0x83, 176), Err(DecodeError::UnexpectedEnd { .. })));
        assert_eq!(packet(0x83, 178), Err(DecodeError::TrailingBytes(1)));
        assert!(packet(0x87, 178).is_ok());
        assert!(packet(0x87, 313).is_ok());
        assert_eq!(packet(0x87, 314), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(packet(0x85, 177), Err(DecodeError::Invalid("announce request kind")));
        // A wrong key fails the MAC.
        let other = SharedKey::from_bytes([4; 32]);
        assert_eq!(longest.open(&other), Err(OpenError::Crypto(CryptoError::Decrypt)));
    }

    fn arb_payload() -> impl Strategy<Value = AnnounceRequestPayload> {
        let extra = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_ANNOUNCE_EXTRA_DATA_LEN));
        (any::<[u8; 32]>(), arb_public_key(), arb_public_key(), any::<u64>(), extra).prop_map(
            |(ping_id, searched_pk, data_pk, sendback, extra)| AnnounceRequestPayload {
                ping_id,
                searched_pk,
                data_pk,
                sendback,
                extra: extra.map(Bytes::from),
            },
        )
    }

    proptest! {
        #[test]
        fn round_trips(payload in arb_payload(), sender in arb_public_key(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let key = SharedKey::from_bytes(key);
            let request = OnionAnnounceRequest::seal(sender, &key, nonce, &payload).unwrap();
            let back = OnionAnnounceRequest::decode(encoded!(request)).unwrap();
            prop_assert_eq!(&back, &request);
            prop_assert_eq!(back.open(&key), Ok(payload.clone()));
            prop_assert_eq!(AnnounceRequestPayload::decode(payload.form(), encoded!(payload)), Ok(payload));
        }

        #[test]
        fn damaged_input_never_panics(payload in arb_payload(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([5; 32]);
            let request = OnionAnnounceRequest::seal(PublicKey::from_bytes([6; 32]), &key, nonce, &payload).unwrap();
            if let Ok(damaged) = OnionAnnounceRequest::decode(damage(encoded!(request), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
            let _ = AnnounceRequestPayload::decode(payload.form(), damage(encoded!(payload), flip, bit, cut));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = OnionAnnounceRequest::decode(bytes.clone());
            let _ = AnnounceRequestPayload::decode(AnnounceForm::Old, bytes.clone());
            let _ = AnnounceRequestPayload::decode(AnnounceForm::New, bytes);
        }
    }
}
