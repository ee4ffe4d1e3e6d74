//! The crypto facade: the only module that touches a crypto library.
//!
//! Tox uses NaCl's `crypto_box` (X25519 + XSalsa20-Poly1305) everywhere: DHT
//! packets, the onion, net_crypto sessions and TCP relays all encrypt with a
//! key precomputed once per peer (`crypto_box_beforenm`) and a 24-byte nonce.
//! We reach libsodium, the library c-toxcore itself uses, through
//! `libsodium-sys-stable`; docs/decisions/0001-crypto.md says why.
//!
//! What this module offers:
//! - [`PublicKey`], [`SecretKey`] (zeroized on drop, redacted in `Debug`),
//!   [`KeyPair`], generated from a caller's RNG so that the sans-IO core and
//!   the simulator stay deterministic;
//! - [`SharedKey`]: a precomputed key, refused for low-order peer keys, that
//!   seals and opens in the NaCl "easy" layout (`[MAC 16][ciphertext]`), in
//!   place with a detached MAC when that saves a copy;
//! - [`Nonce`] with the big-endian increments Tox uses;
//! - [`AeadKey`]: AEGIS-256, the faster data cipher two tuntox peers with
//!   AES hardware agree on for a session (not part of Tox; see
//!   [`aegis_data`](crate::wire::aegis_data));
//! - [`sha256`], [`sha512`], [`ct_eq`] and [`fill_random`] (the OS-grade
//!   generator, for the driver that seeds the core's RNG).
//!
//! Spec: <https://toktok.ltd/spec.html#crypto>.

mod aead;
mod hash;
mod keys;
mod nonce;
mod shared;
mod sodium;

pub use aead::{AEAD_KEY_LEN, AEAD_NONCE_LEN, AEAD_TAG_LEN, AeadKey, aes_hardware};
pub use hash::{sha256, sha512};
pub use keys::{KeyPair, PUBLIC_KEY_LEN, PublicKey, SECRET_KEY_LEN, SecretKey};
pub use nonce::{NONCE_LEN, Nonce};
pub use shared::{MAC_LEN, SHARED_KEY_LEN, SharedKey};
pub use sodium::{SodiumRng, ct_eq, fill_random};

/// What can go wrong in a crypto operation. Small and `Copy`: it sits on hot
/// paths and never carries key or packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The peer's public key is a low-order point: the shared secret would be
    /// all zeros, so anyone could read the traffic.
    #[error("peer public key is a low-order point")]
    LowOrderKey,
    /// The MAC did not verify: wrong key, wrong nonce, or altered bytes.
    #[error("decryption failed: authentication tag mismatch")]
    Decrypt,
    /// The sealed input is shorter than a MAC.
    #[error("sealed data shorter than the {MAC_LEN}-byte MAC")]
    TooShort,
    /// libsodium could not be initialised.
    #[error("libsodium failed to initialise")]
    Init,
}
