//! Onion data response (0x86): an [onion data request](super::onion_data_request)
//! as the announce node passes it to the client announced there, inside an
//! [onion response](super::onion_response) along the path the client
//! announced itself by.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | 0x86                                                         |
//! | 24    | nonce, the request's                                         |
//! | 32    | the sender's temporary public key                            |
//! | 16    | MAC                                                          |
//! | ...   | encrypted [`OnionDataEnvelope`]                               |
//!
//! The receiver opens it with its onion data secret key (the one whose
//! public half it announced), then the envelope with its real secret key.
//!
//! Facts from c-toxcore 0.2.18:
//! - `onion_announce.c` `handle_data_request` copies the request minus its
//!   receiver key and `ONION_RETURN_3` behind the kind 0x86
//!   (`NET_PACKET_ONION_DATA_RESPONSE`) and hands it to
//!   `send_onion_response` with the return block stored for the receiver.
//!   Golden bytes below come from a running 0.2.18 announce node.
//! - `onion_client.c` `handle_data_response` (UDP, and TCP via
//!   `handle_tcp_onion`) drops packets of 121 bytes or less
//!   (`ONION_DATA_RESPONSE_MIN_SIZE` + `ONION_DATA_IN_RESPONSE_MIN_SIZE`: no
//!   data) or more than `MAX_DATA_REQUEST_SIZE` = 1069, opens the envelope
//!   with `temp_secret_key` and the data with its real secret key, both with
//!   the packet's nonce, and requires each plaintext to fill its ciphertext.
//!
//! Spec: <https://toktok.ltd/spec.html#onion> ("data to route response packet").

use bytes::{BufMut, Bytes};

use super::onion_data_request::OnionDataEnvelope;
use super::onion_request::OpenError;
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// The packet kind (`NET_PACKET_ONION_DATA_RESPONSE`).
pub const ONION_DATA_RESPONSE_KIND: u8 = 0x86;

/// An onion data response, its envelope still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionDataResponse {
    /// The nonce of both seals.
    pub nonce: Nonce,
    /// The sender's temporary public key.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of the envelope]`.
    pub payload: Bytes,
}

impl OnionDataResponse {
    /// Kind, nonce and temporary key.
    const HEADER_LEN: usize = 1 + NONCE_LEN + PUBLIC_KEY_LEN;
    /// Shortest response a c-toxcore client accepts: one byte of data.
    pub const MIN_LEN: usize = Self::HEADER_LEN + MAC_LEN + OnionDataEnvelope::MIN_LEN;
    /// Longest response a c-toxcore client accepts (`MAX_DATA_REQUEST_SIZE`).
    pub const MAX_LEN: usize = 1069;

    /// Checks the MAC and reads the envelope; `key` is precomputed from
    /// [`temp_pk`](Self::temp_pk) and our onion data secret key.
    pub fn open(&self, key: &SharedKey) -> Result<OnionDataEnvelope, OpenError> {
        Ok(OnionDataEnvelope::decode(key.open(&self.nonce, &self.payload)?)?)
    }

    /// Reads a whole response: 122 to 1069 bytes, as c-toxcore accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.remaining() > Self::MAX_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - Self::MAX_LEN));
        }
        if r.remaining() < Self::MIN_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "onion data response",
                needed: Self::MIN_LEN,
                available: r.remaining(),
            });
        }
        if r.u8("onion data response kind")? != ONION_DATA_RESPONSE_KIND {
            return Err(DecodeError::Invalid("onion data response kind"));
        }
        let nonce = Nonce::from_bytes(r.array("onion data response nonce")?);
        let temp_pk = PublicKey::from_bytes(r.array("onion data response temporary key")?);
        Ok(Self { nonce, temp_pk, payload: r.rest() })
    }

    /// Writes the response.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_DATA_RESPONSE_KIND);
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
    use crate::wire::friend_request::FriendRequest;
    use crate::wire::onion_data_request::{OnionDataPayload, OnionDataRequest};
    use crate::wire::onion_request::{ONION_RETURN_3_LEN, OnionReturn3};
    use crate::wire::onion_response::OnionResponse3;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, encoded, golden};
    use crate::wire::tox_id::NoSpam;

    // The c-toxcore 0.2.18 announce node of `onion_announce_response`'s
    // golden test, with Alice announced on it (data key from 0x91, return
    // block 0x30, 0x31, ..), received this data request from Bob for Alice
    // (`create_data_request`, a friend request sealed as `send_onion_data`
    // seals it) with another return block, and sent the datagram below to
    // Alice's stored return path.
    const GOLDEN_REQUEST: [u8; 175] = hex!(
        "85"
        "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c" // Alice's real public key
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
        "35fdea9e30d3a32c8c366dd18e1eee4c13266995fd5c1c04ea694206cea3087c"
        "e96e123f1ce40763e5aa3ef576d2b2fef4540e58487725850fa8f79773d73b80d0623fd18fc2cd34518f1c577ccbdeb6"
        "6fcc8dae4370308b693fdc0f6c0d2c6e874a0b05c5d8b8e400cfd79a4e253662ddbd2d256e43"
    );
    const GOLDEN_0X8C: [u8; 321] = hex!(
        "8c303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e"
        "5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e"
        "8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbe"
        "bfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe086a0a1a2a3a4a5a6a7a8a9aaabac"
        "adaeafb0b1b2b3b4b5b6b735fdea9e30d3a32c8c366dd18e1eee4c13266995fd5c1c04ea694206cea3087ce96e123f1c"
        "e40763e5aa3ef576d2b2fef4540e58487725850fa8f79773d73b80d0623fd18fc2cd34518f1c577ccbdeb66fcc8dae43"
        "70308b693fdc0f6c0d2c6e874a0b05c5d8b8e400cfd79a4e253662ddbd2d256e43"
    );

    #[test]
    fn matches_a_c_toxcore_announce_node() {
        let (alice, bob) = (golden::alice(), golden::bob());
        let datagram = OnionResponse3::decode(GOLDEN_0X8C.to_vec()).unwrap();
        assert_eq!(datagram.ret, OnionReturn3::from_bytes(std::array::from_fn(|i| 0x30 + i as u8)));
        let response = OnionDataResponse::decode(datagram.payload.clone()).unwrap();

        // What the node did: drop the receiver key, change the kind.
        let request = OnionDataRequest::decode(GOLDEN_REQUEST.to_vec()).unwrap();
        assert_eq!(request.receiver_pk, *alice.public());
        assert_eq!(request.into_response(), response);
        assert_eq!(encoded!(response), datagram.payload);

        // Alice opens it with her data key, then with her real key.
        let outer = SharedKey::precompute(&response.temp_pk, golden::key_pair(0x91).secret()).unwrap();
        let envelope = response.open(&outer).unwrap();
        assert_eq!(envelope.sender_pk, *bob.public());
        let inner = SharedKey::precompute(&envelope.sender_pk, alice.secret()).unwrap();
        let request = FriendRequest::new(NoSpam([0x0a, 0x0b, 0x0c, 0x0d]), &b"hello from tuntox"[..]).unwrap();
        assert_eq!(OnionDataPayload::decode(envelope.open(&inner, &response.nonce).unwrap()), Ok(request.into()));
    }

    #[test]
    fn lengths_are_what_c_toxcore_accepts() {
        assert_eq!((OnionDataResponse::MIN_LEN, OnionDataResponse::MAX_LEN), (122, 1069));
        let packet = |kind: u8, len: usize| {
            let mut bytes = vec![kind];
            bytes.resize(len, 0);
            OnionDataResponse::decode(bytes)
        };
        assert!(packet(0x86, 122).is_ok());
        assert!(matches!(packet(0x86, 121), Err(DecodeError::UnexpectedEnd { .. })));
        assert!(packet(0x86, 1069).is_ok());
        assert_eq!(packet(0x86, 1070), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(packet(0x85, 200), Err(DecodeError::Invalid("onion data response kind")));
        // What an announce node forwards may be longer than a client takes:
        // a request of 1223 bytes makes a response of 1191, which c-toxcore drops.
        assert!(packet(0x86, 1191).is_err());
        assert_eq!(ONION_RETURN_3_LEN + OnionDataRequest::MAX_LEN, 1400);
    }

    proptest! {
        #[test]
        fn round_trips(nonce in arb_nonce(), temp_pk in arb_public_key(), sealed in proptest::collection::vec(any::<u8>(), OnionDataEnvelope::MIN_LEN + MAC_LEN..=OnionDataResponse::MAX_LEN - 57)) {
            let response = OnionDataResponse { nonce, temp_pk, payload: sealed.into() };
            prop_assert_eq!(OnionDataResponse::decode(encoded!(response)), Ok(response));
        }

        #[test]
        fn damaged_input_never_panics(nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let response = OnionDataRequest::decode(GOLDEN_REQUEST.to_vec()).unwrap().into_response();
            let key = SharedKey::precompute(&response.temp_pk, golden::key_pair(0x91).secret()).unwrap();
            if let Ok(mut damaged) = OnionDataResponse::decode(damage(encoded!(response), flip, bit, cut)) {
                let _ = damaged.open(&key);
                damaged.nonce = nonce;
                let _ = damaged.open(&key);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = OnionDataResponse::decode(bytes);
        }
    }
}
