//! The 24-byte `crypto_box` nonce and the increments Tox applies to it.
//!
//! c-toxcore treats a nonce as one 192-bit big-endian number: `increment`
//! adds 1 (net_crypto and TCP relay connections do so once per packet) and
//! `increment_by` adds a 16-bit value at the low end (net_crypto rebuilds a
//! peer's nonce from the two bytes each data packet carries). Both wrap at
//! 2^192 to zero, as c-toxcore's `increment_nonce` does.

use std::fmt;

use rand_core::CryptoRng;

/// Length of a nonce in bytes.
pub const NONCE_LEN: usize = 24;

/// A `crypto_box` nonce. Not secret, but never reused with the same key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// The all-zero nonce.
    pub const ZERO: Self = Self([0; NONCE_LEN]);

    /// Wraps 24 bytes.
    pub const fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a nonce from the first 24 bytes of `bytes`, if there are that many.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.get(..NONCE_LEN)?.try_into().ok()?))
    }

    /// A random nonce from a cryptographic RNG.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }

    /// Adds 1, big-endian, wrapping to zero after all ones.
    pub fn increment(&mut self) {
        for byte in self.0.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                return;
            }
        }
    }

    /// Adds a 16-bit number at the low end, big-endian, carrying through all
    /// 24 bytes and wrapping to zero (c-toxcore's `increment_nonce_number`).
    pub fn increment_by(&mut self, amount: u16) {
        let mut carry = u32::from(amount);
        for byte in self.0.iter_mut().rev() {
            if carry == 0 {
                return;
            }
            let sum = u32::from(*byte) + (carry & 0xff);
            *byte = sum as u8;
            carry = (carry >> 8) + (sum >> 8);
        }
    }

    /// The two low bytes, big-endian: what a net_crypto data packet carries.
    pub fn low_u16(&self) -> u16 {
        u16::from_be_bytes([self.0[NONCE_LEN - 2], self.0[NONCE_LEN - 1]])
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nonce(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn as_u192(nonce: &Nonce) -> (u64, u128) {
        let b = nonce.as_bytes();
        (u64::from_be_bytes(b[..8].try_into().unwrap()), u128::from_be_bytes(b[8..].try_into().unwrap()))
    }

    fn add_u192((hi, lo): (u64, u128), amount: u128) -> (u64, u128) {
        let (lo, carry) = lo.overflowing_add(amount);
        (hi.wrapping_add(u64::from(carry)), lo)
    }

    #[test]
    fn increment_carries_and_wraps() {
        let mut n = Nonce::from_bytes([0; 24]);
        n.increment();
        assert_eq!(n.as_bytes()[23], 1);

        let mut bytes = [0u8; 24];
        bytes[22] = 0x01;
        bytes[23] = 0xff;
        let mut n = Nonce::from_bytes(bytes);
        n.increment();
        assert_eq!(&n.as_bytes()[21..], &[0, 2, 0]);

        let mut n = Nonce::from_bytes([0xff; 24]);
        n.increment();
        assert_eq!(n, Nonce::ZERO);
    }

    #[test]
    fn increment_by_carries_and_wraps() {
        let mut bytes = [0u8; 24];
        bytes[23] = 0xff;
        bytes[22] = 0xff;
        bytes[21] = 0x07;
        let mut n = Nonce::from_bytes(bytes);
        n.increment_by(0x0102);
        assert_eq!(&n.as_bytes()[20..], &[0, 0x08, 0x01, 0x01]);

        let mut n = Nonce::from_bytes([0xff; 24]);
        n.increment_by(2);
        let mut expected = [0u8; 24];
        expected[23] = 1;
        assert_eq!(n, Nonce::from_bytes(expected));
        assert_eq!(n.low_u16(), 1);
    }

    proptest! {
        #[test]
        fn increments_match_192_bit_addition(bytes in any::<[u8; 24]>(), amount in any::<u16>()) {
            let start = Nonce::from_bytes(bytes);
            let mut one = start;
            one.increment();
            prop_assert_eq!(as_u192(&one), add_u192(as_u192(&start), 1));
            let mut many = start;
            many.increment_by(amount);
            prop_assert_eq!(as_u192(&many), add_u192(as_u192(&start), u128::from(amount)));
        }
    }
}
