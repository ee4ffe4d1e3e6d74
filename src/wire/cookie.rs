//! The net_crypto cookie: a token a node hands out in its
//! [cookie response](super::cookie_response) and in its
//! [handshake](super::crypto_handshake), and takes back in the peer's
//! handshake, so that it keeps no state for peers that never answer.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 24    | nonce, random per cookie                                     |
//! | 16    | MAC                                                          |
//! | 8     | encrypted: time made, seconds, in the maker's byte order     |
//! | 32    | encrypted: requester's real (long-term) public key           |
//! | 32    | encrypted: requester's DHT public key                        |
//!
//! 112 bytes. Only the node that made a cookie can open it: the contents
//! are sealed with a random symmetric key the node keeps to itself. To the
//! peer the cookie is opaque bytes, which it echoes and hashes.
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c`:
//! - `create_cookie` writes `mono_time_get` (seconds; c-toxcore's monotonic
//!   clock is offset to start at the Unix time) with `memcpy`, so in host
//!   byte order, little-endian on every platform Tox runs on in practice;
//!   the key is `secret_symmetric_key`, made by `new_symmetric_key` in
//!   `new_net_crypto`. We write the time little-endian too, so our cookies
//!   have c-toxcore's layout, but since only the maker reads a cookie, the
//!   choice affects no one else.
//! - `open_cookie` rejects a cookie made more than `COOKIE_TIMEOUT` = 15
//!   seconds ago or in the future ([`CookieContents::is_fresh`]).
//! - the cookie response carries a cookie for the requester's keys
//!   (`create_cookie_response`: real key from the request's plaintext, DHT
//!   key from the request's header); a handshake carries one for the keys
//!   of the peer it is sent to (`create_crypto_handshake`).
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> (the cookie).

use std::fmt;

use bytes::{Buf, BufMut};

use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey, sha512};

/// Length of a cookie on the wire.
pub const COOKIE_LEN: usize = NONCE_LEN + MAC_LEN + COOKIE_PLAINTEXT_LEN;
/// Length of a cookie's contents: the time and two keys.
pub const COOKIE_PLAINTEXT_LEN: usize = 8 + 2 * PUBLIC_KEY_LEN;
/// How long a cookie stays valid, in seconds (`COOKIE_TIMEOUT`).
pub const COOKIE_TIMEOUT_SECS: u64 = 15;

/// A sealed cookie, as it travels. Not secret; opaque to all but its maker.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cookie([u8; COOKIE_LEN]);

impl Cookie {
    /// Wraps 112 bytes.
    pub const fn from_bytes(bytes: [u8; COOKIE_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; COOKIE_LEN] {
        &self.0
    }

    /// The nonce the contents were sealed with.
    pub fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.0[..NONCE_LEN]);
        Nonce::from_bytes(nonce)
    }

    /// SHA-512 of the cookie: what a handshake answering it carries.
    pub fn hash(&self) -> [u8; 64] {
        sha512(&self.0)
    }

    /// Checks the MAC with the maker's symmetric key and returns the
    /// contents. Freshness is the caller's check
    /// ([`CookieContents::is_fresh`]).
    pub fn open(&self, key: &SharedKey) -> Result<CookieContents, CryptoError> {
        let mut plain = [0u8; COOKIE_PLAINTEXT_LEN];
        let (nonce_and_mac, sealed) = self.0.split_at(NONCE_LEN + MAC_LEN);
        plain.copy_from_slice(sealed);
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&nonce_and_mac[NONCE_LEN..]);
        key.open_in_place_detached(&self.nonce(), &mut plain, &mac)?;
        Ok(CookieContents::from_plaintext(&plain))
    }

    /// Reads a cookie off `r`.
    pub fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.array("cookie").map(Self)
    }

    /// Writes the cookie.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl fmt::Debug for Cookie {
    /// The first bytes of the nonce: enough to tell cookies apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("..)")
    }
}

/// What a cookie holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieContents {
    /// When the cookie was made, in the maker's seconds.
    pub time: u64,
    /// The requester's real (long-term) public key.
    pub real_pk: PublicKey,
    /// The requester's DHT public key.
    pub dht_pk: PublicKey,
}

impl CookieContents {
    /// Contents for a requester, made at `time` seconds.
    pub const fn new(time: u64, real_pk: PublicKey, dht_pk: PublicKey) -> Self {
        Self { time, real_pk, dht_pk }
    }

    /// Seals the contents with the maker's symmetric key and a fresh nonce.
    pub fn seal(&self, key: &SharedKey, nonce: Nonce) -> Cookie {
        let mut out = [0u8; COOKIE_LEN];
        let (head, body) = out.split_at_mut(NONCE_LEN + MAC_LEN);
        self.write_plaintext(body);
        let mac = key.seal_in_place_detached(&nonce, body);
        head[..NONCE_LEN].copy_from_slice(nonce.as_bytes());
        head[NONCE_LEN..].copy_from_slice(&mac);
        Cookie(out)
    }

    /// Whether a cookie with these contents is still accepted at `now`
    /// seconds: made at most [`COOKIE_TIMEOUT_SECS`] ago and not in the
    /// future. The same as c-toxcore's check in `open_cookie` for every time
    /// that does not overflow a `u64`.
    pub const fn is_fresh(&self, now: u64) -> bool {
        now >= self.time && now - self.time <= COOKIE_TIMEOUT_SECS
    }

    fn write_plaintext(&self, mut out: &mut [u8]) {
        out.put_u64_le(self.time);
        out.put_slice(self.real_pk.as_bytes());
        out.put_slice(self.dht_pk.as_bytes());
    }

    fn from_plaintext(plain: &[u8; COOKIE_PLAINTEXT_LEN]) -> Self {
        // Fixed-size input: none of these reads can run short.
        let mut bytes = &plain[..];
        let time = bytes.get_u64_le();
        let mut real_pk = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_to_slice(&mut real_pk);
        let mut dht_pk = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_to_slice(&mut dht_pk);
        Self { time, real_pk: PublicKey::from_bytes(real_pk), dht_pk: PublicKey::from_bytes(dht_pk) }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_cookie, arb_nonce, arb_public_key, damage, session};

    #[test]
    fn layout_by_hand() {
        let key = SharedKey::from_bytes([0x55; 32]);
        let nonce = Nonce::from_bytes([0x22; 24]);
        let contents =
            CookieContents::new(0x0102, PublicKey::from_bytes([0x11; 32]), PublicKey::from_bytes([0x33; 32]));
        let cookie = contents.seal(&key, nonce);
        let bytes = cookie.as_bytes();
        assert_eq!(bytes.len(), 112);
        assert_eq!(bytes[..24], [0x22; 24]);
        assert_eq!(cookie.nonce(), nonce);
        // `[MAC][ciphertext]` after the nonce; the time is little-endian.
        let plain = key.open(&nonce, &bytes[24..]).unwrap();
        assert_eq!(plain[..8], [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(plain[8..40], [0x11; 32]);
        assert_eq!(plain[40..], [0x33; 32]);
        assert_eq!(cookie.open(&key), Ok(contents));
        assert_eq!(cookie.open(&SharedKey::from_bytes([0x56; 32])), Err(CryptoError::Decrypt));
        assert_eq!(format!("{cookie:?}"), "Cookie(22222222..)");

        let mut out = Vec::new();
        cookie.encode(&mut out);
        assert_eq!(out, bytes);
        let mut r = Reader::new(out);
        assert_eq!(Cookie::decode(&mut r), Ok(cookie));
        assert!(r.is_empty());
        assert!(matches!(
            Cookie::decode(&mut Reader::new(vec![0; 111])),
            Err(DecodeError::UnexpectedEnd { what: "cookie", needed: 112, available: 111 })
        ));
    }

    #[test]
    fn freshness_is_fifteen_seconds() {
        let contents = CookieContents::new(1000, PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
        assert!(contents.is_fresh(1000));
        assert!(contents.is_fresh(1015));
        assert!(!contents.is_fresh(1016));
        // Made in the future: c-toxcore refuses it too.
        assert!(!contents.is_fresh(999));
        let late = CookieContents { time: u64::MAX, ..contents };
        assert!(late.is_fresh(u64::MAX));
        assert!(!late.is_fresh(0));
    }

    #[test]
    fn matches_c_toxcore() {
        // The cookie B made for A (in its cookie response) and the one A made
        // for B (in its handshake), sealed by c-toxcore's `create_cookie`.
        let (a_real, a_dht, b_real, b_dht) = (session::a_real(), session::a_dht(), session::b_real(), session::b_dht());
        let from_b = Cookie::from_bytes(session::HANDSHAKE_A_TO_B[1..113].try_into().unwrap());
        let from_a = Cookie::from_bytes(session::HANDSHAKE_B_TO_A[1..113].try_into().unwrap());
        assert_eq!(from_b.nonce(), session::B_COOKIE_NONCE);
        assert_eq!(from_a.nonce(), session::A_COOKIE_NONCE);
        let for_a = from_b.open(&session::b_cookie_key()).unwrap();
        let for_b = from_a.open(&session::a_cookie_key()).unwrap();
        assert_eq!((for_a.real_pk, for_a.dht_pk), (*a_real.public(), *a_dht.public()));
        assert_eq!((for_b.real_pk, for_b.dht_pk), (*b_real.public(), *b_dht.public()));
        // Both made in the same second of c-toxcore's clock, which starts at
        // the Unix time: 1795416639 is 2026-11-23 06:50:39 UTC, when the
        // program ran; the bytes are little-endian (x86-64).
        assert_eq!(for_a.time, for_b.time);
        assert_eq!(for_a.time, 1_795_416_639);
        assert_eq!(for_a.seal(&session::b_cookie_key(), session::B_COOKIE_NONCE), from_b);
        assert_eq!(for_b.seal(&session::a_cookie_key(), session::A_COOKIE_NONCE), from_a);
        assert_eq!(from_b.open(&session::a_cookie_key()), Err(CryptoError::Decrypt));
    }

    proptest! {
        #[test]
        fn round_trips(time in any::<u64>(), real_pk in arb_public_key(), dht_pk in arb_public_key(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let key = SharedKey::from_bytes(key);
            let contents = CookieContents::new(time, real_pk, dht_pk);
            let cookie = contents.seal(&key, nonce);
            let mut bytes = Vec::new();
            cookie.encode(&mut bytes);
            let back = Cookie::decode(&mut Reader::new(bytes)).unwrap();
            prop_assert_eq!(back, cookie);
            prop_assert_eq!(back.open(&key), Ok(contents));
            prop_assert_eq!(back.hash(), sha512(back.as_bytes()));
        }

        #[test]
        fn damaged_input_never_panics(cookie in arb_cookie(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let bytes = damage(cookie.as_bytes().to_vec(), flip, bit, cut);
            if let Ok(damaged) = Cookie::decode(&mut Reader::new(Bytes::from(bytes))) {
                prop_assert_eq!(damaged.open(&SharedKey::from_bytes([7; 32])).err(), Some(CryptoError::Decrypt));
            }
        }
    }
}
