//! AEGIS-256, the data cipher two tuntox peers may agree on for a
//! net_crypto session instead of XSalsa20-Poly1305
//! ([`aegis_data`](crate::wire::aegis_data); docs/decisions/0006-aegis-data.md).
//!
//! On AES hardware it seals a full-size packet about ten times faster than
//! XSalsa20-Poly1305 (docs/BENCHMARKS.md), which is what a port forward or
//! the VPN spends most of its CPU on otherwise. Keys are derived from the
//! session's shared key, one per direction, with keyed BLAKE2b; nonces are
//! 32 bytes and tags 32 bytes, as libsodium's `crypto_aead_aegis256` has them.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{CryptoError, PublicKey, SharedKey, sodium};

/// Length of an AEGIS-256 key.
pub const AEAD_KEY_LEN: usize = 32;
/// Length of an AEGIS-256 nonce.
pub const AEAD_NONCE_LEN: usize = 32;
/// Length of an AEGIS-256 tag: what sealing adds.
pub const AEAD_TAG_LEN: usize = 32;

/// Whether AEGIS-256 runs on AES instructions on this machine. Peers offer
/// it only then: the portable fallback is slower than XSalsa20-Poly1305.
pub fn aes_hardware() -> bool {
    sodium::has_aes_hardware()
}

/// An AEGIS-256 key. Zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AeadKey([u8; AEAD_KEY_LEN]);

impl AeadKey {
    /// A key from its bytes.
    pub const fn from_bytes(bytes: [u8; AEAD_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key for one direction of a session: BLAKE2b-256 keyed with the
    /// session's shared key, over `label`, the sender's session public key
    /// and the receiver's. Both ends derive the same key for a direction
    /// and different keys for the two directions.
    pub fn derive(shared: &SharedKey, label: &[u8], sender: &PublicKey, receiver: &PublicKey) -> Self {
        let mut input = Vec::with_capacity(label.len() + 64);
        input.extend_from_slice(label);
        input.extend_from_slice(sender.as_bytes());
        input.extend_from_slice(receiver.as_bytes());
        Self(sodium::blake2b_256_keyed(shared.bytes(), &input))
    }

    /// Encrypts `buf` in place, authenticating `ad` with it, and returns the tag.
    pub fn seal_in_place_detached(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
    ) -> [u8; AEAD_TAG_LEN] {
        sodium::aegis256_seal(&self.0, nonce, ad, buf)
    }

    /// Checks `tag` over `buf` and `ad` and decrypts `buf` in place. On
    /// failure `buf` holds zeros, never the ciphertext's plaintext.
    pub fn open_in_place_detached(
        &self,
        nonce: &[u8; AEAD_NONCE_LEN],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> Result<(), CryptoError> {
        sodium::aegis256_open(&self.0, nonce, ad, buf, tag)
    }
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn derived_keys_agree_per_direction_and_differ_across() {
        let shared = SharedKey::from_bytes([7; 32]);
        let (a, b) = (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
        let a_to_b = AeadKey::derive(&shared, b"label", &a, &b);
        let again = AeadKey::derive(&shared, b"label", &a, &b);
        let b_to_a = AeadKey::derive(&shared, b"label", &b, &a);
        assert_eq!(a_to_b.0, again.0);
        assert_ne!(a_to_b.0, b_to_a.0);
        assert_ne!(a_to_b.0, AeadKey::derive(&shared, b"other", &a, &b).0);
        assert_ne!(a_to_b.0, AeadKey::derive(&SharedKey::from_bytes([8; 32]), b"label", &a, &b).0);
    }

    #[test]
    fn keyed_blake2b_matches_an_independent_implementation() {
        // BLAKE2b with a 32-byte digest keyed with bytes 00..1f, as Python's
        // hashlib computes it (`blake2b(data, key=bytes(range(32)),
        // digest_size=32)`): pins the binding's argument order and lengths.
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            sodium::blake2b_256_keyed(&key, b""),
            hex!("4e51e7a913fc80137da52880fecca175bf81e117d5c68126dc2774033517ea0d")
        );
        assert_eq!(
            sodium::blake2b_256_keyed(&key, b"tuntox"),
            hex!("ff1a227505e15ed39adca74ebe853bbcb1295092d3988081093f7cd2fbb5b22f")
        );
    }

    /// Test vectors 3 and 5 of AEGIS-256 (32-byte tags) from the IRTF
    /// draft "The AEGIS Family of Authenticated Encryption Algorithms".
    #[test]
    fn draft_test_vectors() {
        let mut key = [0u8; 32];
        key[..2].copy_from_slice(&[0x10, 0x01]);
        let mut nonce = [0u8; 32];
        nonce[..3].copy_from_slice(&[0x10, 0x00, 0x02]);
        let key = AeadKey::from_bytes(key);

        let ad = hex!("0001020304050607");
        let mut buf = hex!("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").to_vec();
        let tag = key.seal_in_place_detached(&nonce, &ad, &mut buf);
        assert_eq!(buf, hex!("f373079ed84b2709faee373584585d60accd191db310ef5d8b11833df9dec711"));
        assert_eq!(tag, hex!("b7d28d0c3c0ebd409fd22b44160503073a547412da0854bfb9723020dab8da1a"));

        let ad = hex!("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829");
        let mut buf = hex!("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637").to_vec();
        let tag = key.seal_in_place_detached(&nonce, &ad, &mut buf);
        assert_eq!(buf, hex!("57754a7d09963e7c787583a2e7b859bb24fa1e04d49fd550b2511a358e3bca252a9b1b8b30cc4a67"));
        assert_eq!(tag, hex!("a3aca270c006094d71c20e6910b5161c0826df233d08919a566ec2c05990f734"));
        key.open_in_place_detached(&nonce, &ad, &mut buf, &tag).unwrap();
        assert_eq!(buf, hex!("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"));

        // Vector 7: one ciphertext bit changed must not verify.
        let mut buf = hex!("f373079ed84b2709faee37358459").to_vec();
        let tag = hex!("8c1cc703c81281bee3f6d9966e14948b4a175b2efbdc31e61a98b4465235c2d9");
        assert_eq!(
            key.open_in_place_detached(&nonce, &hex!("0001020304050607"), &mut buf, &tag),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn tampering_and_wrong_nonce_fail_and_leave_no_plaintext() {
        let key = AeadKey::from_bytes([3; 32]);
        let nonce = [4; 32];
        let mut buf = b"attack at dawn".to_vec();
        let tag = key.seal_in_place_detached(&nonce, b"ad", &mut buf);
        let sealed = buf.clone();
        let mut other = nonce;
        other[31] ^= 1;
        let mut copy = sealed.clone();
        assert_eq!(key.open_in_place_detached(&other, b"ad", &mut copy, &tag), Err(CryptoError::Decrypt));
        assert!(copy.iter().all(|&b| b == 0));
        let mut copy = sealed.clone();
        assert_eq!(key.open_in_place_detached(&nonce, b"AD", &mut copy, &tag), Err(CryptoError::Decrypt));
        let mut copy = sealed.clone();
        copy[0] ^= 1;
        assert_eq!(key.open_in_place_detached(&nonce, b"ad", &mut copy, &tag), Err(CryptoError::Decrypt));
        let mut bad_tag = tag;
        bad_tag[31] ^= 1;
        let mut copy = sealed.clone();
        assert_eq!(key.open_in_place_detached(&nonce, b"ad", &mut copy, &bad_tag), Err(CryptoError::Decrypt));
        let mut copy = sealed;
        key.open_in_place_detached(&nonce, b"ad", &mut copy, &tag).unwrap();
        assert_eq!(copy, b"attack at dawn");
    }

    proptest! {
        #[test]
        fn round_trips(plain in proptest::collection::vec(any::<u8>(), 0..1500), key in any::<[u8; 32]>(), nonce in any::<[u8; 32]>(), ad in proptest::collection::vec(any::<u8>(), 0..40)) {
            let key = AeadKey::from_bytes(key);
            let mut buf = plain.clone();
            let tag = key.seal_in_place_detached(&nonce, &ad, &mut buf);
            if !plain.is_empty() {
                prop_assert_ne!(&buf, &plain);
            }
            key.open_in_place_detached(&nonce, &ad, &mut buf, &tag).unwrap();
            prop_assert_eq!(buf, plain);
        }
    }
}
