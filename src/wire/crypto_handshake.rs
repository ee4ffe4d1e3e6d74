//! Crypto handshake (0x1a): each side of a net_crypto session sends one,
//! returning a [cookie](super::cookie) the other side made and naming its
//! session key and the nonce its data packets start from.
//!
//! | bytes | field                                                         |
//! |-------|---------------------------------------------------------------|
//! | 1     | 0x1a                                                          |
//! | 112   | a cookie the receiver made (from its cookie response or handshake) |
//! | 24    | nonce, random per packet                                      |
//! | 16    | MAC                                                           |
//! | 24    | encrypted: base nonce of the sender's data packets            |
//! | 32    | encrypted: the sender's session public key                    |
//! | 64    | encrypted: SHA-512 of the cookie above                        |
//! | 112   | encrypted: a cookie for the receiver, made by the sender      |
//!
//! 385 bytes. The payload is sealed with the key of the sender's real
//! (long-term) secret key and the receiver's real public key: only a holder
//! of the real key the cookie names can have made it.
//!
//! The flow: the side that wants a connection gets a cookie with a
//! [cookie request](super::cookie_request) and sends its handshake with it;
//! the other side answers with its own handshake, returning the cookie that
//! came inside. A receiver opens the cookie with its own cookie key, checks
//! it is fresh and names the expected real key, then opens the payload with
//! the key of that real key ([`CryptoHandshake::open`] also checks the
//! hash). The session key is `crypto_box_beforenm` of the peer's session
//! public key and our session secret key; each side seals its data packets
//! starting from the base nonce it sent, and opens the peer's from the base
//! nonce it received.
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c`:
//! - `create_crypto_handshake` builds the layout above
//!   (`HANDSHAKE_PACKET_LENGTH` = 385); the new cookie names the peer's real
//!   and DHT keys; the packet is resent every `CRYPTO_SEND_PACKET_INTERVAL`
//!   (1 s) up to `MAX_NUM_SENDPACKET_TRIES` (8) times.
//! - `handle_crypto_handshake` accepts exactly 385 bytes, opens the cookie
//!   (`open_cookie`, 15 s), compares its real key with the expected one if
//!   there is one, decrypts with the cookie's real key and compares the hash
//!   (`crypto_sha512_eq`, constant time). A handshake whose cookie names
//!   another DHT key than the connection's is not an error: c-toxcore
//!   reports the new DHT key instead (`handle_packet_crypto_hs`).
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> ("handshake packet").

use bytes::{Buf, BufMut, Bytes};

use super::cookie::{COOKIE_LEN, Cookie};
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey, ct_eq};

/// The packet kind.
pub const CRYPTO_HANDSHAKE_KIND: u8 = 0x1a;
/// Length of a SHA-512 hash.
const HASH_LEN: usize = 64;

/// Why a handshake could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeOpenError {
    /// The MAC did not verify.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The payload's hash is not the hash of the packet's cookie.
    #[error("handshake does not answer its cookie")]
    CookieHash,
}

/// A handshake's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoHandshakePayload {
    /// The nonce the sender's first data packet is sealed with.
    pub base_nonce: Nonce,
    /// The sender's session public key.
    pub session_pk: PublicKey,
    /// SHA-512 of the cookie the packet returns.
    pub cookie_hash: [u8; HASH_LEN],
    /// A cookie for the receiver, made by the sender.
    pub cookie: Cookie,
}

impl CryptoHandshakePayload {
    /// Plaintext length.
    pub const LEN: usize = NONCE_LEN + PUBLIC_KEY_LEN + HASH_LEN + COOKIE_LEN;

    /// The payload of a handshake that returns `answered`, with `cookie`
    /// made for the receiver.
    pub fn new(base_nonce: Nonce, session_pk: PublicKey, answered: &Cookie, cookie: Cookie) -> Self {
        Self { base_nonce, session_pk, cookie_hash: answered.hash(), cookie }
    }

    /// Whether the payload carries the hash of `cookie` (constant time).
    pub fn answers(&self, cookie: &Cookie) -> bool {
        ct_eq(&self.cookie_hash, &cookie.hash())
    }

    fn to_plaintext(self) -> [u8; Self::LEN] {
        let mut plain = [0u8; Self::LEN];
        let mut out = &mut plain[..];
        out.put_slice(self.base_nonce.as_bytes());
        out.put_slice(self.session_pk.as_bytes());
        out.put_slice(&self.cookie_hash);
        self.cookie.encode(&mut out);
        plain
    }

    fn from_plaintext(plain: &[u8; Self::LEN]) -> Self {
        // Fixed-size input: none of these reads can run short.
        let mut bytes = &plain[..];
        let mut base_nonce = [0u8; NONCE_LEN];
        bytes.copy_to_slice(&mut base_nonce);
        let mut session_pk = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_to_slice(&mut session_pk);
        let mut cookie_hash = [0u8; HASH_LEN];
        bytes.copy_to_slice(&mut cookie_hash);
        let mut cookie = [0u8; COOKIE_LEN];
        bytes.copy_to_slice(&mut cookie);
        Self {
            base_nonce: Nonce::from_bytes(base_nonce),
            session_pk: PublicKey::from_bytes(session_pk),
            cookie_hash,
            cookie: Cookie::from_bytes(cookie),
        }
    }
}

/// A handshake, its payload still sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoHandshake {
    /// The cookie returned to the receiver (which made it).
    pub cookie: Cookie,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext 232]`.
    pub payload: [u8; MAC_LEN + CryptoHandshakePayload::LEN],
}

impl CryptoHandshake {
    /// Length of the datagram.
    pub const LEN: usize = 1 + COOKIE_LEN + NONCE_LEN + MAC_LEN + CryptoHandshakePayload::LEN;

    /// Seals `payload` behind `cookie` (the receiver's); `key` is
    /// precomputed from the receiver's real public key and the sender's real
    /// secret key.
    pub fn seal(cookie: Cookie, key: &SharedKey, nonce: Nonce, payload: &CryptoHandshakePayload) -> Self {
        let mut sealed = [0u8; MAC_LEN + CryptoHandshakePayload::LEN];
        let (mac_slot, body) = sealed.split_at_mut(MAC_LEN);
        body.copy_from_slice(&payload.to_plaintext());
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Self { cookie, nonce, payload: sealed }
    }

    /// Checks the MAC with the key of the real key the cookie names, and
    /// that the payload answers the packet's cookie.
    pub fn open(&self, key: &SharedKey) -> Result<CryptoHandshakePayload, HandshakeOpenError> {
        let (mac, body) = self.payload.split_at(MAC_LEN);
        let mut plain = [0u8; CryptoHandshakePayload::LEN];
        plain.copy_from_slice(body);
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(mac);
        key.open_in_place_detached(&self.nonce, &mut plain, &tag)?;
        let payload = CryptoHandshakePayload::from_plaintext(&plain);
        if !payload.answers(&self.cookie) {
            return Err(HandshakeOpenError::CookieHash);
        }
        Ok(payload)
    }

    /// Reads a whole datagram: exactly 385 bytes.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.u8("crypto handshake kind")? != CRYPTO_HANDSHAKE_KIND {
            return Err(DecodeError::Invalid("crypto handshake kind"));
        }
        let cookie = Cookie::decode(&mut r)?;
        let nonce = Nonce::from_bytes(r.array("crypto handshake nonce")?);
        let payload = r.array("crypto handshake payload")?;
        r.finish()?;
        Ok(Self { cookie, nonce, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(CRYPTO_HANDSHAKE_KIND);
        self.cookie.encode(buf);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes: always 385 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::sha512;
    use crate::wire::cookie::CookieContents;
    use crate::wire::cookie_response::CookieResponse;
    use crate::wire::test_support::{arb_cookie, arb_nonce, arb_public_key, damage, session};

    fn encode(handshake: &CryptoHandshake) -> Vec<u8> {
        let mut out = Vec::new();
        handshake.encode(&mut out);
        assert_eq!(out.len(), handshake.encoded_len());
        out
    }

    #[test]
    fn layout_by_hand() {
        let key = SharedKey::from_bytes([0x55; 32]);
        let answered = Cookie::from_bytes([0x11; 112]);
        let payload = CryptoHandshakePayload::new(
            Nonce::from_bytes([0x22; 24]),
            PublicKey::from_bytes([0x33; 32]),
            &answered,
            Cookie::from_bytes([0x44; 112]),
        );
        let handshake = CryptoHandshake::seal(answered, &key, Nonce::from_bytes([0x66; 24]), &payload);
        let bytes = encode(&handshake);
        assert_eq!(bytes.len(), 385);
        assert_eq!(bytes[0], 0x1a);
        assert_eq!(bytes[1..113], [0x11; 112]);
        assert_eq!(bytes[113..137], [0x66; 24]);
        let plain = key.open(&Nonce::from_bytes([0x66; 24]), &bytes[137..]).unwrap();
        assert_eq!(plain[..24], [0x22; 24]);
        assert_eq!(plain[24..56], [0x33; 32]);
        assert_eq!(plain[56..120], sha512(&[0x11; 112]));
        assert_eq!(plain[120..], [0x44; 112]);
        let back = CryptoHandshake::decode(bytes.clone()).unwrap();
        assert_eq!(back, handshake);
        assert_eq!(back.open(&key), Ok(payload));

        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(CryptoHandshake::decode(long), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(CryptoHandshake::decode(bytes[..384].to_vec()), Err(DecodeError::UnexpectedEnd { .. })));
        let mut wrong = bytes;
        wrong[0] = 0x1b;
        assert_eq!(CryptoHandshake::decode(wrong), Err(DecodeError::Invalid("crypto handshake kind")));
    }

    #[test]
    fn a_swapped_cookie_is_refused() {
        let key = SharedKey::from_bytes([0x55; 32]);
        let answered = Cookie::from_bytes([0x11; 112]);
        let payload = CryptoHandshakePayload::new(Nonce::ZERO, PublicKey::from_bytes([3; 32]), &answered, answered);
        let mut handshake = CryptoHandshake::seal(answered, &key, Nonce::ZERO, &payload);
        assert!(handshake.open(&key).is_ok());
        handshake.cookie = Cookie::from_bytes([0x12; 112]);
        assert_eq!(handshake.open(&key), Err(HandshakeOpenError::CookieHash));
        assert_eq!(
            handshake.open(&SharedKey::from_bytes([0; 32])),
            Err(HandshakeOpenError::Crypto(CryptoError::Decrypt))
        );
    }

    #[test]
    fn matches_c_toxcore() {
        let (a_real, a_dht, b_real, b_dht) = (session::a_real(), session::a_dht(), session::b_real(), session::b_dht());
        let (a_session, b_session) = (session::a_session(), session::b_session());
        let response = CookieResponse::decode(session::COOKIE_RESPONSE.to_vec()).unwrap();
        let b_cookie = response.open(&SharedKey::precompute(b_dht.public(), a_dht.secret()).unwrap()).unwrap().cookie;

        // A's handshake: returns B's cookie; B opens it as c-toxcore does.
        let from_a = CryptoHandshake::decode(session::HANDSHAKE_A_TO_B.to_vec()).unwrap();
        assert_eq!(from_a.cookie, b_cookie);
        assert_eq!(from_a.nonce, session::A_HANDSHAKE_NONCE);
        let named = from_a.cookie.open(&session::b_cookie_key()).unwrap();
        assert_eq!(named.real_pk, *a_real.public());
        let a_payload = from_a.open(&SharedKey::precompute(&named.real_pk, b_real.secret()).unwrap()).unwrap();
        assert_eq!(a_payload.base_nonce, session::A_BASE_NONCE);
        assert_eq!(a_payload.session_pk, *a_session.public());
        let a_cookie_for_b = a_payload.cookie.open(&session::a_cookie_key()).unwrap();
        assert_eq!(a_cookie_for_b, CookieContents::new(named.time, *b_real.public(), *b_dht.public()));

        // B's handshake returns the cookie A's carried.
        let from_b = CryptoHandshake::decode(session::HANDSHAKE_B_TO_A.to_vec()).unwrap();
        assert_eq!(from_b.cookie, a_payload.cookie);
        let b_payload = from_b.open(&SharedKey::precompute(b_real.public(), a_real.secret()).unwrap()).unwrap();
        assert_eq!(b_payload.base_nonce, session::B_BASE_NONCE);
        assert_eq!(b_payload.session_pk, *b_session.public());
        assert_eq!(b_payload.cookie.nonce(), session::B_HANDSHAKE_COOKIE_NONCE);
        let b_cookie_for_a = b_payload.cookie.open(&session::b_cookie_key()).unwrap();
        assert_eq!((b_cookie_for_a.real_pk, b_cookie_for_a.dht_pk), (*a_real.public(), *a_dht.public()));

        // Sealing the same payloads again gives c-toxcore's bytes.
        let a_to_b = SharedKey::precompute(b_real.public(), a_real.secret()).unwrap();
        let ours = CryptoHandshake::seal(
            b_cookie,
            &a_to_b,
            session::A_HANDSHAKE_NONCE,
            &CryptoHandshakePayload::new(session::A_BASE_NONCE, *a_session.public(), &b_cookie, a_payload.cookie),
        );
        assert_eq!(encode(&ours), session::HANDSHAKE_A_TO_B);
        let ours = CryptoHandshake::seal(from_b.cookie, &a_to_b, session::B_HANDSHAKE_NONCE, &b_payload);
        assert_eq!(encode(&ours), session::HANDSHAKE_B_TO_A);
    }

    fn arb_payload() -> impl Strategy<Value = (Cookie, CryptoHandshakePayload)> {
        (arb_cookie(), arb_nonce(), arb_public_key(), arb_cookie()).prop_map(|(answered, nonce, pk, cookie)| {
            (answered, CryptoHandshakePayload::new(nonce, pk, &answered, cookie))
        })
    }

    proptest! {
        #[test]
        fn round_trips((answered, payload) in arb_payload(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let key = SharedKey::from_bytes(key);
            let handshake = CryptoHandshake::seal(answered, &key, nonce, &payload);
            let back = CryptoHandshake::decode(encode(&handshake)).unwrap();
            prop_assert_eq!(back, handshake);
            prop_assert_eq!(back.open(&key), Ok(payload));
        }

        #[test]
        fn damaged_input_never_panics((answered, payload) in arb_payload(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([7; 32]);
            let handshake = CryptoHandshake::seal(answered, &key, Nonce::ZERO, &payload);
            let bytes = encode(&handshake);
            let damaged = damage(bytes.clone(), flip, bit, cut);
            if let Ok(packet) = CryptoHandshake::decode(damaged.clone()) {
                // The kind byte or a bit the MAC or the hash covers changed.
                prop_assert_eq!(packet.open(&key).is_ok(), damaged == bytes);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = CryptoHandshake::decode(bytes);
        }
    }
}
