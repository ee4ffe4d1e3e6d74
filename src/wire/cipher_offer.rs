//! Cipher offer (lossless packet id 0x9f): the data ciphers besides Tox's
//! own that the sender can open. Not part of Tox. A tuntox session sends
//! it as its first lossless packet when it can use AEGIS-256
//! ([`aegis_data`](super::aegis_data)); a session seals with AEGIS-256
//! only after the peer's offer named it.
//!
//! | bytes | field                                                      |
//! |-------|------------------------------------------------------------|
//! | 1     | packet id 0x9f                                             |
//! | 1     | ciphers: bit 0 AEGIS-256 data packets (0x1c); the other bits are reserved, sent as 0 and ignored |
//! | ...   | reserved for later versions: ignored                       |
//!
//! The id is a Messenger id no Tox client uses (the "normal" lossless
//! range is 16 to 159; c-toxcore 0.2.18 uses up to 100). c-toxcore drops
//! it: Messenger's `m_handle_packet` passes ids it does not know to
//! `handle_custom_lossless_packet`, which refuses ids outside 160 to 191,
//! and nothing is sent back. Earlier tuntox versions drop it too (the
//! friend layer ignores ids it does not know). So the offer costs a peer
//! that cannot use it one ignored packet, and such a peer never receives
//! a 0x1c packet.

use super::DecodeError;

/// The packet id.
pub const CIPHER_OFFER_ID: u8 = 0x9f;

/// Bit of the ciphers byte: AEGIS-256 data packets.
const AEGIS_256: u8 = 1;

/// The ciphers a peer can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CipherOffer {
    /// AEGIS-256 data packets (0x1c).
    pub aegis256: bool,
}

impl CipherOffer {
    /// The lossless payload: id, then the ciphers byte.
    pub const fn encode(self) -> [u8; 2] {
        [CIPHER_OFFER_ID, if self.aegis256 { AEGIS_256 } else { 0 }]
    }

    /// Reads a lossless payload that starts with [`CIPHER_OFFER_ID`].
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        match payload {
            [CIPHER_OFFER_ID, ciphers, ..] => Ok(Self { aegis256: ciphers & AEGIS_256 != 0 }),
            [CIPHER_OFFER_ID] => {
                Err(DecodeError::UnexpectedEnd { what: "cipher offer ciphers", needed: 1, available: 0 })
            }
            _ => Err(DecodeError::Invalid("cipher offer id")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::crypto_data::{PayloadKind, packet_id};

    #[test]
    fn bytes() {
        assert_eq!(CipherOffer { aegis256: true }.encode(), [0x9f, 0x01]);
        assert_eq!(CipherOffer { aegis256: false }.encode(), [0x9f, 0x00]);
        assert_eq!(CipherOffer::decode(&[0x9f, 0x01]), Ok(CipherOffer { aegis256: true }));
        // Reserved bits and later fields are ignored.
        assert_eq!(CipherOffer::decode(&[0x9f, 0xfe, 7, 7]), Ok(CipherOffer { aegis256: false }));
        assert_eq!(CipherOffer::decode(&[0x9f, 0xff]), Ok(CipherOffer { aegis256: true }));
        assert!(CipherOffer::decode(&[0x9f]).is_err());
        assert!(CipherOffer::decode(&[]).is_err());
        assert!(CipherOffer::decode(&[160, 1]).is_err());
    }

    #[test]
    fn the_id_is_lossless_and_below_the_custom_range() {
        assert_eq!(PayloadKind::of(CIPHER_OFFER_ID), Some(PayloadKind::Lossless));
        assert!(!packet_id::LOSSLESS_CUSTOM.contains(&CIPHER_OFFER_ID));
        for known in [packet_id::ALIVE, packet_id::SHARE_RELAYS, packet_id::FRIEND_REQUESTS, packet_id::ONLINE] {
            assert_ne!(known, CIPHER_OFFER_ID);
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            let _ = CipherOffer::decode(&bytes);
        }
    }
}
