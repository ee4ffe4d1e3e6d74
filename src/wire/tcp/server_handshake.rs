//! The relay's handshake: its 96-byte answer to a
//! [`ClientHandshake`](super::ClientHandshake).
//!
//! | bytes | field                                                 |
//! |-------|-------------------------------------------------------|
//! | 24    | nonce                                                 |
//! | 72    | sealed with the same key as the client's handshake: [`HandshakePayload`] |
//!
//! The payload is the relay's temporary public key for this connection and
//! the base nonce it seals its frames with (`TCP_server.c`
//! `handle_TCP_handshake` copies its `sent_nonce` there). Not framed.

use bytes::{BufMut, Bytes};

use super::HANDSHAKE_SEALED_LEN;
use super::client_handshake::HandshakePayload;
use crate::crypto::{CryptoError, NONCE_LEN, Nonce, SharedKey};
use crate::wire::{DecodeError, Reader};

/// The relay's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHandshake {
    /// The nonce of the sealed part.
    pub nonce: Nonce,
    /// The sealed [`HandshakePayload`].
    pub sealed: [u8; HANDSHAKE_SEALED_LEN],
}

impl ServerHandshake {
    /// Always 96 bytes (`TCP_SERVER_HANDSHAKE_SIZE`).
    pub const LEN: usize = NONCE_LEN + HANDSHAKE_SEALED_LEN;

    /// Seals `payload` with `key` (the shared key of the client's handshake).
    pub fn seal(key: &SharedKey, nonce: Nonce, payload: &HandshakePayload) -> Self {
        Self { nonce, sealed: payload.seal(key, &nonce) }
    }

    /// Opens the payload.
    pub fn open(&self, key: &SharedKey) -> Result<HandshakePayload, CryptoError> {
        HandshakePayload::open(&self.sealed, key, &self.nonce)
    }

    /// Reads the 96 bytes.
    pub fn decode(bytes: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let nonce = Nonce::from_bytes(r.array("server handshake nonce")?);
        let sealed = r.array("server handshake payload")?;
        r.finish()?;
        Ok(Self { nonce, sealed })
    }

    /// Writes the 96 bytes.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.sealed);
    }

    /// Always 96.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::test_support::{arb_nonce, encoded, golden};

    #[test]
    fn seals_and_opens() {
        let payload =
            HandshakePayload { temp_pk: *golden::key_pair(0x90).public(), base_nonce: Nonce::from_bytes([6; 24]) };
        let hs = ServerHandshake::seal(&golden::shared(), golden::nonce(), &payload);
        let bytes = encoded!(hs);
        assert_eq!(bytes.len(), 96);
        assert_eq!(&bytes[..24], golden::nonce().as_bytes());
        let read = ServerHandshake::decode(bytes).unwrap();
        assert_eq!(read.open(&golden::shared()), Ok(payload));
        assert!(ServerHandshake::decode(vec![0; 95]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(nonce in arb_nonce(), sealed in proptest::collection::vec(any::<u8>(), 72)) {
            let hs = ServerHandshake { nonce, sealed: sealed.try_into().unwrap() };
            prop_assert_eq!(ServerHandshake::decode(encoded!(hs)), Ok(hs));
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(hs) = ServerHandshake::decode(bytes) {
                prop_assert!(hs.open(&golden::shared()).is_err());
            }
        }
    }
}
