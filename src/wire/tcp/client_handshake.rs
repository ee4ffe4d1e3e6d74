//! The client's handshake: the first 128 bytes a client sends a relay.
//!
//! | bytes | field                                                    |
//! |-------|----------------------------------------------------------|
//! | 32    | the client's public key (its DHT key)                    |
//! | 24    | nonce                                                    |
//! | 72    | sealed with the client's secret key and the relay's public key: [`HandshakePayload`] |
//!
//! The payload is a fresh temporary public key and the base nonce the
//! client will seal its frames with (`TCP_client.c` `generate_handshake`
//! copies its `sent_nonce` there; the relay's `handle_TCP_handshake` takes
//! it as its `recv_nonce`). The session key is the shared key of the two
//! temporary key pairs. The handshake is not framed.

use bytes::{BufMut, Bytes};

use super::{HANDSHAKE_PLAIN_LEN, HANDSHAKE_SEALED_LEN};
use crate::crypto::{CryptoError, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};
use crate::wire::{DecodeError, Reader};

/// The plaintext of both handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePayload {
    /// The sender's temporary public key for this connection.
    pub temp_pk: PublicKey,
    /// The nonce of the sender's first frame.
    pub base_nonce: Nonce,
}

impl HandshakePayload {
    /// Seals the payload: `[MAC][ciphertext]`, 72 bytes.
    pub fn seal(&self, key: &SharedKey, nonce: &Nonce) -> [u8; HANDSHAKE_SEALED_LEN] {
        let mut plain = [0u8; HANDSHAKE_PLAIN_LEN];
        plain[..PUBLIC_KEY_LEN].copy_from_slice(self.temp_pk.as_bytes());
        plain[PUBLIC_KEY_LEN..].copy_from_slice(self.base_nonce.as_bytes());
        let mut out = [0u8; HANDSHAKE_SEALED_LEN];
        let (mac, body) = out.split_at_mut(crate::crypto::MAC_LEN);
        body.copy_from_slice(&plain);
        mac.copy_from_slice(&key.seal_in_place_detached(nonce, body));
        out
    }

    /// Opens a sealed payload.
    pub fn open(sealed: &[u8; HANDSHAKE_SEALED_LEN], key: &SharedKey, nonce: &Nonce) -> Result<Self, CryptoError> {
        let mut buf = *sealed;
        let plain = key.open_in_place(nonce, &mut buf)?;
        let temp_pk = PublicKey::from_slice(&plain[..PUBLIC_KEY_LEN]).ok_or(CryptoError::TooShort)?;
        let base_nonce = Nonce::from_slice(&plain[PUBLIC_KEY_LEN..]).ok_or(CryptoError::TooShort)?;
        Ok(Self { temp_pk, base_nonce })
    }
}

/// The client's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    /// The client's public key: the key others route to it by.
    pub client_pk: PublicKey,
    /// The nonce of the sealed part.
    pub nonce: Nonce,
    /// The sealed [`HandshakePayload`].
    pub sealed: [u8; HANDSHAKE_SEALED_LEN],
}

impl ClientHandshake {
    /// Always 128 bytes (`TCP_CLIENT_HANDSHAKE_SIZE`).
    pub const LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN + HANDSHAKE_SEALED_LEN;

    /// Seals `payload` with `key` (the client's secret key and the relay's
    /// public key).
    pub fn seal(client_pk: PublicKey, key: &SharedKey, nonce: Nonce, payload: &HandshakePayload) -> Self {
        Self { client_pk, nonce, sealed: payload.seal(key, &nonce) }
    }

    /// Opens the payload with `key` (the relay's secret key and
    /// [`client_pk`](Self::client_pk)).
    pub fn open(&self, key: &SharedKey) -> Result<HandshakePayload, CryptoError> {
        HandshakePayload::open(&self.sealed, key, &self.nonce)
    }

    /// Reads the 128 bytes.
    pub fn decode(bytes: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let client_pk = PublicKey::from_bytes(r.array("client handshake key")?);
        let nonce = Nonce::from_bytes(r.array("client handshake nonce")?);
        let sealed = r.array("client handshake payload")?;
        r.finish()?;
        Ok(Self { client_pk, nonce, sealed })
    }

    /// Writes the 128 bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.client_pk.as_bytes());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.sealed);
    }

    /// Always 128.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, encoded, golden};

    #[test]
    fn seals_and_opens() {
        let (alice, bob) = (golden::alice(), golden::bob());
        let payload =
            HandshakePayload { temp_pk: *golden::key_pair(0x81).public(), base_nonce: Nonce::from_bytes([5; 24]) };
        let hs = ClientHandshake::seal(*alice.public(), &golden::shared(), golden::nonce(), &payload);
        let bytes = encoded!(hs);
        assert_eq!(bytes.len(), 128);
        let read = ClientHandshake::decode(bytes).unwrap();
        let key = SharedKey::precompute(&read.client_pk, bob.secret()).unwrap();
        assert_eq!(read.open(&key), Ok(payload));
        let wrong = SharedKey::precompute(&read.client_pk, golden::key_pair(0x30).secret()).unwrap();
        assert!(read.open(&wrong).is_err());
        assert!(ClientHandshake::decode(vec![0; 127]).is_err());
        assert!(ClientHandshake::decode(vec![0; 129]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(pk in arb_public_key(), nonce in arb_nonce(), sealed in proptest::collection::vec(any::<u8>(), 72)) {
            let hs = ClientHandshake { client_pk: pk, nonce, sealed: sealed.try_into().unwrap() };
            prop_assert_eq!(ClientHandshake::decode(encoded!(hs)), Ok(hs));
        }

        #[test]
        fn damaged_never_panics(bytes in proptest::collection::vec(any::<u8>(), 128), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = golden::shared();
            if let Ok(hs) = ClientHandshake::decode(damage(bytes, flip, bit, cut)) {
                prop_assert!(hs.open(&key).is_err());
            }
        }
    }
}
