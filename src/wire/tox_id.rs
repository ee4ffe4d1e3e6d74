//! The Tox ID (Tox address): what a user hands out so others can befriend
//! them.
//!
//! | bytes | field                                            |
//! |-------|--------------------------------------------------|
//! | 32    | long-term public key                             |
//! | 4     | nospam (opaque; a friend request must carry it)  |
//! | 2     | checksum: XOR of the 36 bytes above, in pairs    |
//!
//! People see it as 76 hex characters. The nospam bytes are copied, never
//! reinterpreted as a number: they are what the friend-request packet
//! carries. Spec: <https://toktok.ltd/spec.html#tox-id>.

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRng;

use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};

/// Length of a Tox ID in bytes.
pub const TOX_ID_LEN: usize = 38;
/// Length of a Tox ID in hex characters.
pub const TOX_ID_HEX_LEN: usize = 2 * TOX_ID_LEN;

/// The 4 nospam bytes, as they appear in the Tox ID and in friend requests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NoSpam(pub [u8; 4]);

impl NoSpam {
    /// A fresh random nospam.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 4];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for NoSpam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for NoSpam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoSpam({self})")
    }
}

/// Why a string or byte array is not a Tox ID or a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// Wrong number of characters.
    #[error("expected {expected} hex characters, got {got}")]
    Length {
        /// Characters a valid value has.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// A character that is not a hex digit.
    #[error("invalid character {ch:?} at position {position}: expected hex digits 0-9 and A-F")]
    NotHex {
        /// The offending character.
        ch: char,
        /// Its position, counted from 1.
        position: usize,
    },
    /// The checksum does not match the other 36 bytes.
    #[error("checksum mismatch: not a Tox ID")]
    Checksum,
}

/// A Tox ID: public key, nospam and checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToxId {
    public_key: PublicKey,
    nospam: NoSpam,
}

impl ToxId {
    /// The ID of a key and a nospam (the checksum is computed).
    pub const fn new(public_key: PublicKey, nospam: NoSpam) -> Self {
        Self { public_key, nospam }
    }

    /// The long-term public key.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The nospam bytes.
    pub const fn nospam(&self) -> NoSpam {
        self.nospam
    }

    /// The 38 bytes, checksum included.
    pub fn to_bytes(&self) -> [u8; TOX_ID_LEN] {
        let mut out = [0u8; TOX_ID_LEN];
        out[..PUBLIC_KEY_LEN].copy_from_slice(self.public_key.as_bytes());
        out[PUBLIC_KEY_LEN..PUBLIC_KEY_LEN + 4].copy_from_slice(&self.nospam.0);
        let checksum = checksum(&out[..PUBLIC_KEY_LEN + 4]);
        out[PUBLIC_KEY_LEN + 4..].copy_from_slice(&checksum);
        out
    }

    /// Reads 38 bytes, checking the checksum.
    pub fn from_bytes(bytes: &[u8; TOX_ID_LEN]) -> Result<Self, ParseIdError> {
        let (body, sum) = bytes.split_at(PUBLIC_KEY_LEN + 4);
        if checksum(body) != sum {
            return Err(ParseIdError::Checksum);
        }
        let (key, nospam) = body.split_at(PUBLIC_KEY_LEN);
        let key: [u8; PUBLIC_KEY_LEN] = key.try_into().map_err(|_| ParseIdError::Checksum)?;
        let nospam: [u8; 4] = nospam.try_into().map_err(|_| ParseIdError::Checksum)?;
        Ok(Self::new(PublicKey::from_bytes(key), NoSpam(nospam)))
    }
}

/// XOR of the bytes, two at a time: byte i goes into checksum[i % 2].
fn checksum(bytes: &[u8]) -> [u8; 2] {
    let mut sum = [0u8; 2];
    for (i, byte) in bytes.iter().enumerate() {
        sum[i % 2] ^= byte;
    }
    sum
}

impl FromStr for ToxId {
    type Err = ParseIdError;

    /// 76 hex characters in either case; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; TOX_ID_LEN] = decode_hex(s)?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for ToxId {
    /// 76 uppercase hex characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.to_bytes())
    }
}

impl fmt::Debug for ToxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ToxId({self})")
    }
}

/// Parses a public key written as 64 hex characters (either case,
/// surrounding whitespace ignored).
pub fn parse_public_key(s: &str) -> Result<PublicKey, ParseIdError> {
    decode_hex(s).map(PublicKey::from_bytes)
}

/// Decodes exactly `N` bytes of hex, with errors that say what is wrong.
pub fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseIdError> {
    let s = s.trim();
    let got = s.chars().count();
    if got != 2 * N {
        return Err(ParseIdError::Length { expected: 2 * N, got });
    }
    let mut out = [0u8; N];
    let mut digits = s
        .chars()
        .enumerate()
        .map(|(i, ch)| ch.to_digit(16).map(|d| d as u8).ok_or(ParseIdError::NotHex { ch, position: i + 1 }));
    for byte in &mut out {
        let (Some(high), Some(low)) = (digits.next(), digits.next()) else {
            return Err(ParseIdError::Length { expected: 2 * N, got });
        };
        *byte = (high? << 4) | low?;
    }
    Ok(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02X}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // What c-toxcore 0.2.18's tox_self_get_address printed for the secret key
    // with bytes 7*i+1 and tox_self_set_nospam(0x12345678); the same identity
    // as tests/data/c-toxcore-0.2.18.tox_save.
    const C_TOXCORE_ADDRESS: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

    #[test]
    fn parses_and_prints_a_real_address() {
        let id: ToxId = C_TOXCORE_ADDRESS.parse().unwrap();
        assert_eq!(id.to_string(), C_TOXCORE_ADDRESS);
        assert_eq!(id.nospam(), NoSpam([0x12, 0x34, 0x56, 0x78]));
        assert_eq!(id.public_key().to_string(), &C_TOXCORE_ADDRESS[..64]);
        // Lower case and whitespace are accepted; output is upper case.
        let lower: ToxId = format!("  {}\n", C_TOXCORE_ADDRESS.to_lowercase()).parse().unwrap();
        assert_eq!(lower, id);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let short = &C_TOXCORE_ADDRESS[..75];
        assert_eq!(short.parse::<ToxId>().unwrap_err().to_string(), "expected 76 hex characters, got 75");
        assert_eq!("NOTHEX".parse::<ToxId>().unwrap_err().to_string(), "expected 76 hex characters, got 6");
        let mut bad = C_TOXCORE_ADDRESS.to_owned();
        bad.replace_range(4..5, "G");
        assert_eq!(bad.parse::<ToxId>().unwrap_err(), ParseIdError::NotHex { ch: 'G', position: 5 });
        let mut flipped = C_TOXCORE_ADDRESS.to_owned();
        flipped.replace_range(0..1, "D");
        assert_eq!(flipped.parse::<ToxId>().unwrap_err().to_string(), "checksum mismatch: not a Tox ID");
        // Multi-byte characters are counted as characters, not bytes.
        let wide = format!("{}é", &C_TOXCORE_ADDRESS[..75]);
        assert!(matches!(wide.parse::<ToxId>(), Err(ParseIdError::NotHex { ch: 'é', position: 76 })));
    }

    #[test]
    fn public_keys_parse_from_64_hex() {
        let key = parse_public_key(&C_TOXCORE_ADDRESS[..64]).unwrap();
        assert_eq!(key.to_string(), &C_TOXCORE_ADDRESS[..64]);
        assert_eq!(parse_public_key(C_TOXCORE_ADDRESS).unwrap_err(), ParseIdError::Length { expected: 64, got: 76 });
    }

    proptest! {
        #[test]
        fn round_trips(key in any::<[u8; 32]>(), nospam in any::<[u8; 4]>()) {
            let id = ToxId::new(PublicKey::from_bytes(key), NoSpam(nospam));
            let text = id.to_string();
            prop_assert_eq!(text.len(), TOX_ID_HEX_LEN);
            prop_assert_eq!(text.parse::<ToxId>().unwrap(), id);
            prop_assert_eq!(ToxId::from_bytes(&id.to_bytes()).unwrap(), id);
        }

        #[test]
        fn any_single_byte_change_breaks_the_checksum(key in any::<[u8; 32]>(), nospam in any::<[u8; 4]>(), at in 0usize..38, flip in 1u8..) {
            let mut bytes = ToxId::new(PublicKey::from_bytes(key), NoSpam(nospam)).to_bytes();
            bytes[at] ^= flip;
            prop_assert_eq!(ToxId::from_bytes(&bytes), Err(ParseIdError::Checksum));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,100}") {
            let _ = s.parse::<ToxId>();
        }
    }
}
