//! Curve25519 key types.
//!
//! Tox gives each node two key pairs: the long-term one (its identity, the
//! first 32 bytes of its Tox ID) and a DHT key pair made fresh at every start.
//! Both are plain `crypto_box` key pairs.

use std::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::sodium;

/// Length of a public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a secret key in bytes.
pub const SECRET_KEY_LEN: usize = 32;

/// A Curve25519 public key. Not secret: `Debug` and `Display` show it in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Wraps 32 bytes. Any value is accepted here; low-order points are
    /// refused when a shared key is computed from them.
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Reads a key from the first 32 bytes of `bytes`, if there are that many.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; PUBLIC_KEY_LEN] = bytes.get(..PUBLIC_KEY_LEN)?.try_into().ok()?;
        Some(Self(array))
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    /// Uppercase hex, as Tox clients print keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    /// The first 8 hex digits: enough to tell keys apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:02X}{:02X}{:02X}{:02X}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A Curve25519 secret key. Zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; SECRET_KEY_LEN]);

impl SecretKey {
    /// Wraps 32 bytes (any value is a valid X25519 scalar; it is clamped when used).
    pub const fn from_bytes(bytes: [u8; SECRET_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh secret key from a cryptographic RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; SECRET_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        let key = Self(bytes);
        bytes.zeroize();
        key
    }

    /// The raw bytes, for the identity file and for the FFI layer.
    pub const fn as_bytes(&self) -> &[u8; SECRET_KEY_LEN] {
        &self.0
    }

    /// The matching public key (`crypto_scalarmult_base`).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(sodium::scalarmult_base(&self.0))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        sodium::ct_eq(&self.0, &other.0)
    }
}

impl Eq for SecretKey {}

/// A public key with its secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    public: PublicKey,
    secret: SecretKey,
}

impl KeyPair {
    /// A fresh key pair, as `crypto_box_keypair` makes one: 32 random bytes
    /// of secret and their base-point multiple.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(SecretKey::generate(rng))
    }

    /// The key pair of a known secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        Self { public: secret.public_key(), secret }
    }

    /// The public half.
    pub const fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The secret half.
    pub const fn secret(&self) -> &SecretKey {
        &self.secret
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).field("secret", &self.secret).finish()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn secret_key_debug_is_redacted() {
        let secret = SecretKey::from_bytes([0xAB; 32]);
        let shown = format!("{secret:?} {:?}", KeyPair::from_secret(secret.clone()));
        assert!(!shown.contains("AB") && !shown.contains("ab") && !shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn generation_is_deterministic_for_a_seed_and_differs_across_seeds() {
        let a = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(7));
        let b = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(7));
        let c = KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a.public(), c.public());
        assert_eq!(a.secret().public_key(), *a.public());
    }

    #[test]
    fn public_key_prints_uppercase_hex() {
        let key = PublicKey::from_bytes([0x0f; 32]);
        assert_eq!(key.to_string(), "0F".repeat(32));
        assert_eq!(format!("{key:?}"), "PublicKey(0F0F0F0F…)");
        assert_eq!(PublicKey::from_slice(&[0x0f; 40]), Some(key));
        assert_eq!(PublicKey::from_slice(&[0x0f; 31]), None);
    }
}
