//! Precomputed keys and authenticated encryption with them.
//!
//! Every Tox packet is sealed with `crypto_box_afternm`: XSalsa20-Poly1305
//! under a 32-byte key, either precomputed from a key pair
//! (`crypto_box_beforenm`) or a random symmetric key (c-toxcore's cookies).
//! The wire layout is NaCl's "easy" one: `[MAC 16][ciphertext]`, ciphertext
//! as long as the plaintext.

use std::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{CryptoError, Nonce, PublicKey, SecretKey, sodium};

/// Length of a Poly1305 MAC: what sealing adds to a plaintext.
pub const MAC_LEN: usize = 16;
/// Length of a precomputed or symmetric key.
pub const SHARED_KEY_LEN: usize = 32;

/// A key for XSalsa20-Poly1305: precomputed from a key pair, or symmetric.
/// Zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SharedKey([u8; SHARED_KEY_LEN]);

impl SharedKey {
    /// `crypto_box_beforenm(their_public, our_secret)`. Both sides of a pair
    /// compute the same key. Refuses low-order public keys, whose shared
    /// secret is all zeros.
    pub fn precompute(their_public: &PublicKey, our_secret: &SecretKey) -> Result<Self, CryptoError> {
        let mut key = Self([0; SHARED_KEY_LEN]);
        sodium::box_beforenm(their_public.as_bytes(), our_secret.as_bytes(), &mut key.0)?;
        Ok(key)
    }

    /// A symmetric key from its bytes.
    pub const fn from_bytes(bytes: [u8; SHARED_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random symmetric key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self([0; SHARED_KEY_LEN]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// The key's bytes, for deriving other keys from it.
    pub(super) const fn bytes(&self) -> &[u8; SHARED_KEY_LEN] {
        &self.0
    }

    /// Encrypts `buf` in place and returns its MAC.
    pub fn seal_in_place_detached(&self, nonce: &Nonce, buf: &mut [u8]) -> [u8; MAC_LEN] {
        sodium::seal_detached(&self.0, nonce.as_bytes(), buf)
    }

    /// Checks `mac` and decrypts `buf` in place; `buf` is unchanged on failure.
    pub fn open_in_place_detached(
        &self,
        nonce: &Nonce,
        buf: &mut [u8],
        mac: &[u8; MAC_LEN],
    ) -> Result<(), CryptoError> {
        sodium::open_detached(&self.0, nonce.as_bytes(), buf, mac)
    }

    /// Appends `[MAC][ciphertext of plain]` to `out`: the wire layout.
    pub fn seal_into(&self, nonce: &Nonce, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(MAC_LEN + plain.len());
        out.extend_from_slice(&[0; MAC_LEN]);
        out.extend_from_slice(plain);
        let (mac_slot, body) = out[start..].split_at_mut(MAC_LEN);
        let mac = self.seal_in_place_detached(nonce, body);
        mac_slot.copy_from_slice(&mac);
    }

    /// Returns `[MAC][ciphertext]` for `plain`.
    pub fn seal(&self, nonce: &Nonce, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAC_LEN + plain.len());
        self.seal_into(nonce, plain, &mut out);
        out
    }

    /// Opens `[MAC][ciphertext]` held in `buf`, decrypting in place, and
    /// returns the plaintext part of `buf`.
    pub fn open_in_place<'a>(&self, nonce: &Nonce, buf: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        if buf.len() < MAC_LEN {
            return Err(CryptoError::TooShort);
        }
        let (mac, body) = buf.split_at_mut(MAC_LEN);
        let mac: [u8; MAC_LEN] = (&*mac).try_into().map_err(|_| CryptoError::TooShort)?;
        self.open_in_place_detached(nonce, body, &mac)?;
        Ok(body)
    }

    /// Opens `[MAC][ciphertext]` and returns the plaintext.
    pub fn open(&self, nonce: &Nonce, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = sealed.to_vec();
        let plain_len = self.open_in_place(nonce, &mut buf)?.len();
        buf.drain(..MAC_LEN);
        debug_assert_eq!(buf.len(), plain_len);
        Ok(buf)
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::crypto::KeyPair;

    fn pair(seed: u64) -> (KeyPair, KeyPair) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng))
    }

    #[test]
    fn both_sides_compute_the_same_key() {
        let (alice, bob) = pair(1);
        let ab = SharedKey::precompute(bob.public(), alice.secret()).unwrap();
        let ba = SharedKey::precompute(alice.public(), bob.secret()).unwrap();
        let nonce = Nonce::from_bytes([9; 24]);
        let sealed = ab.seal(&nonce, b"hello tox");
        assert_eq!(sealed.len(), 9 + MAC_LEN);
        assert_eq!(ba.open(&nonce, &sealed).unwrap(), b"hello tox");
    }

    #[test]
    fn tampering_wrong_nonce_and_short_input_fail() {
        let (alice, bob) = pair(2);
        let key = SharedKey::precompute(bob.public(), alice.secret()).unwrap();
        let nonce = Nonce::from_bytes([1; 24]);
        let mut sealed = key.seal(&nonce, b"payload");
        let mut other = nonce;
        other.increment();
        assert_eq!(key.open(&other, &sealed), Err(CryptoError::Decrypt));
        sealed[MAC_LEN] ^= 1;
        assert_eq!(key.open(&nonce, &sealed), Err(CryptoError::Decrypt));
        assert_eq!(key.open(&nonce, &sealed[..MAC_LEN - 1]), Err(CryptoError::TooShort));
        // An empty plaintext still carries a MAC.
        let empty = key.seal(&nonce, b"");
        assert_eq!(key.open(&nonce, &empty).unwrap(), b"");
    }

    #[test]
    fn failed_open_leaves_the_buffer_alone() {
        let key = SharedKey::from_bytes([3; 32]);
        let nonce = Nonce::ZERO;
        let mut sealed = key.seal(&nonce, b"abcdef");
        sealed[0] ^= 0x80;
        let before = sealed.clone();
        assert!(key.open_in_place(&nonce, &mut sealed).is_err());
        assert_eq!(sealed, before);
    }

    proptest! {
        #[test]
        fn detached_and_easy_layouts_agree(plain in proptest::collection::vec(any::<u8>(), 0..1500), key in any::<[u8; 32]>(), nonce in any::<[u8; 24]>()) {
            let key = SharedKey::from_bytes(key);
            let nonce = Nonce::from_bytes(nonce);
            let sealed = key.seal(&nonce, &plain);
            let mut body = plain.clone();
            let mac = key.seal_in_place_detached(&nonce, &mut body);
            prop_assert_eq!(&sealed[..MAC_LEN], &mac[..]);
            prop_assert_eq!(&sealed[MAC_LEN..], &body[..]);
            key.open_in_place_detached(&nonce, &mut body, &mac).unwrap();
            prop_assert_eq!(body, plain);
        }
    }
}
