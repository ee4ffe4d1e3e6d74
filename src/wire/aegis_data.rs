//! AEGIS data (0x1c): a net_crypto data packet sealed with AEGIS-256
//! instead of XSalsa20-Poly1305. Not part of Tox: a tuntox session switches
//! its outgoing packets to it once the peer has offered it
//! ([`cipher_offer`](super::cipher_offer)), so only a tuntox peer that asked
//! for it ever receives one; c-toxcore never sends or receives it.
//! docs/protocol.md ("AEGIS-256 data packets") and
//! docs/decisions/0006-aegis-data.md say why and how.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | 0x1c                                                         |
//! | 2     | the two low bytes of the nonce, big-endian                   |
//! | 32    | AEGIS-256 tag                                                |
//! | 4     | encrypted: `buffer_start`, u32 big-endian                    |
//! | 4     | encrypted: `packet_number`, u32 big-endian                   |
//! | 0..7  | encrypted: zero padding                                      |
//! | 1     | encrypted: packet id                                         |
//! | ...   | encrypted: data                                              |
//!
//! Everything but the cipher is as in [`crypto_data`] (0x1b): the
//! plaintext, its padding and limits (a payload of 1 to 1373 bytes, so at
//! most 1416 bytes in all, 16 more than 0x1b for the longer tag), and the
//! nonce. Both kinds draw from the session's one nonce counter, so a nonce
//! is used once whichever kind it seals, and the receiver rebuilds it from
//! the two low bytes the same way.
//!
//! The cipher: AEGIS-256 under the key of the packet's direction (derived
//! from the session's shared key; see
//! [`Session`](crate::proto::net_crypto::session::Session)), with the
//! 24-byte net_crypto nonce followed by eight zero bytes as its 32-byte
//! nonce, and the three clear bytes (kind and nonce bytes) as associated
//! data.

use std::ops::Range;

use bytes::BufMut;

use super::DecodeError;
use super::crypto_data::{
    self, DataHeader, DataOpenError, DataSealError, MAX_CRYPTO_DATA_SIZE, OpenedData, nonce_offset, packet_nonce,
    padding_len, resync_recv_nonce,
};
use crate::crypto::{AEAD_NONCE_LEN, AEAD_TAG_LEN, AeadKey, Nonce};

/// The packet kind.
pub const AEGIS_DATA_KIND: u8 = 0x1c;
/// What a packet adds to its payload and padding: kind, nonce bytes, tag
/// and the two numbers.
pub const AEGIS_DATA_OVERHEAD: usize = CLEAR_LEN + 8;
/// Longest packet: a payload of [`MAX_CRYPTO_DATA_SIZE`] bytes.
pub const MAX_AEGIS_PACKET_LEN: usize = AEGIS_DATA_OVERHEAD + MAX_CRYPTO_DATA_SIZE;

/// Kind, nonce bytes and tag: the part before the ciphertext.
const CLEAR_LEN: usize = 1 + 2 + AEAD_TAG_LEN;
/// The clear bytes the tag also covers: kind and nonce bytes.
const AD_LEN: usize = 3;

/// Length of the packet carrying a payload of `payload_len` bytes.
pub const fn packet_len(payload_len: usize) -> usize {
    AEGIS_DATA_OVERHEAD + padding_len(payload_len) + payload_len
}

/// The AEGIS-256 nonce for a net_crypto nonce: its 24 bytes, then zeros.
fn aead_nonce(nonce: &Nonce) -> [u8; AEAD_NONCE_LEN] {
    let mut out = [0u8; AEAD_NONCE_LEN];
    out[..24].copy_from_slice(nonce.as_bytes());
    out
}

/// Seals `payload` (`[packet id][data]`) into the front of `out` with the
/// send nonce, then increments the nonce. Returns the packet's length.
pub fn seal(
    key: &AeadKey,
    send_nonce: &mut Nonce,
    header: DataHeader,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, DataSealError> {
    crypto_data::check_payload(payload)?;
    let len = packet_len(payload.len());
    let available = out.len();
    let packet = out.get_mut(..len).ok_or(DataSealError::BufferTooSmall { needed: len, available })?;
    let (clear, body) = packet.split_first_chunk_mut::<CLEAR_LEN>().ok_or(DataSealError::PayloadLen(0))?;
    let padding = padding_len(payload.len());
    body[8 + padding..].copy_from_slice(payload);
    crypto_data::write_front(body, header, padding);
    let mut ad = &mut clear[..AD_LEN];
    ad.put_u8(AEGIS_DATA_KIND);
    ad.put_u16(send_nonce.low_u16());
    let (ad, tag_slot) = clear.split_at_mut(AD_LEN);
    let tag = key.seal_in_place_detached(&aead_nonce(send_nonce), ad, body);
    tag_slot.copy_from_slice(&tag);
    send_nonce.increment();
    Ok(len)
}

/// Reads the nonce bytes after checking kind and length: more than
/// [`AEGIS_DATA_OVERHEAD`] and at most [`MAX_AEGIS_PACKET_LEN`] bytes.
fn check_packet(packet: &[u8]) -> Result<u16, DecodeError> {
    let names = ("AEGIS data packet", "AEGIS data kind");
    crypto_data::check_frame(packet, AEGIS_DATA_KIND, AEGIS_DATA_OVERHEAD, MAX_AEGIS_PACKET_LEN, names)
}

/// Opens a packet in its buffer: rebuilds the nonce from `recv_nonce`,
/// checks the tag, decrypts in place, moves `recv_nonce` forward as for
/// 0x1b and strips the padding. When the tag does not verify, `recv_nonce`
/// is unchanged and the ciphertext is zeroed.
pub fn open_in_place(key: &AeadKey, recv_nonce: &mut Nonce, packet: &mut [u8]) -> Result<OpenedData, DataOpenError> {
    let low = check_packet(packet)?;
    let (clear, body) = packet.split_first_chunk_mut::<CLEAR_LEN>().ok_or(DataOpenError::Decrypt)?;
    let offset = nonce_offset(recv_nonce, low);
    let nonce = packet_nonce(recv_nonce, low);
    let (ad, tag) = clear.split_at(AD_LEN);
    let tag: &[u8; AEAD_TAG_LEN] = tag.try_into().map_err(|_| DataOpenError::Decrypt)?;
    key.open_in_place_detached(&aead_nonce(&nonce), ad, body, tag)?;
    resync_recv_nonce(recv_nonce, offset);
    let (header, id, data_at) = crypto_data::split_plaintext(body)?;
    Ok(OpenedData { header, id, data: data_range(data_at, body.len()) })
}

fn data_range(data_at: usize, body_len: usize) -> Range<usize> {
    CLEAR_LEN + data_at..CLEAR_LEN + body_len
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::crypto_data::{CRYPTO_DATA_OVERHEAD, DATA_NUM_THRESHOLD, packet_id};
    use crate::wire::test_support::{arb_nonce, damage};

    fn zero() -> Nonce {
        Nonce::ZERO
    }

    fn sealed(key: &AeadKey, nonce: Nonce, header: DataHeader, payload: &[u8]) -> Vec<u8> {
        let mut nonce = nonce;
        let mut out = vec![0u8; MAX_AEGIS_PACKET_LEN];
        let len = seal(key, &mut nonce, header, payload, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn sizes_are_those_of_0x1b_plus_the_longer_tag() {
        assert_eq!(AEGIS_DATA_OVERHEAD, CRYPTO_DATA_OVERHEAD + 16);
        assert_eq!(MAX_AEGIS_PACKET_LEN, 1416);
        for len in [1, 7, 8, 1365, 1372, 1373] {
            assert_eq!(packet_len(len), crypto_data::packet_len(len) + 16);
        }
    }

    #[test]
    fn layout_by_hand() {
        let key = AeadKey::from_bytes([0x55; 32]);
        let mut nonce_bytes = [0x22; 24];
        nonce_bytes[22..].copy_from_slice(&[0x12, 0x34]);
        let nonce = Nonce::from_bytes(nonce_bytes);
        let mut send = nonce;
        let mut out = [0u8; 80];
        let len =
            seal(&key, &mut send, DataHeader::new(0x0102_0304, 0x0506_0708), &[160, 0xaa, 0xbb], &mut out).unwrap();
        assert_eq!(len, 48);
        let mut next = nonce;
        next.increment();
        assert_eq!(send, next);
        assert_eq!(out[..3], [0x1c, 0x12, 0x34]);
        // The plaintext, opened with the AEGIS-256 primitive directly: the
        // Tox nonce and 8 zero bytes, the clear bytes as associated data.
        let mut aead_nonce = [0u8; 32];
        aead_nonce[..24].copy_from_slice(nonce.as_bytes());
        let tag: [u8; 32] = out[3..35].try_into().unwrap();
        let mut body = out[35..len].to_vec();
        key.open_in_place_detached(&aead_nonce, &out[..3], &mut body, &tag).unwrap();
        // (1373 - 3) % 8 = 2 bytes of padding.
        assert_eq!(body, [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 160, 0xaa, 0xbb]);

        let mut recv = nonce;
        let mut packet = out[..len].to_vec();
        let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
        assert_eq!(opened, OpenedData { header: DataHeader::new(0x0102_0304, 0x0506_0708), id: 160, data: 46..48 });
        assert_eq!(packet[opened.payload()], [160, 0xaa, 0xbb]);
        assert_eq!(recv, nonce);
    }

    #[test]
    fn the_clear_bytes_are_authenticated() {
        let key = AeadKey::from_bytes([1; 32]);
        let packet = sealed(&key, Nonce::ZERO, DataHeader::new(0, 0), &[160, 1]);
        // Another kind byte: refused before decryption.
        let mut wrong = packet.clone();
        wrong[0] = crypto_data::CRYPTO_DATA_KIND;
        assert_eq!(
            open_in_place(&key, &mut zero(), &mut wrong),
            Err(DataOpenError::Decode(DecodeError::Invalid("AEGIS data kind")))
        );
        // Other nonce bytes: another nonce, and another associated datum.
        let mut moved = packet;
        moved[2] ^= 1;
        let mut recv = Nonce::ZERO;
        assert_eq!(open_in_place(&key, &mut recv, &mut moved), Err(DataOpenError::Decrypt));
        assert_eq!(recv, Nonce::ZERO);
    }

    #[test]
    fn another_key_or_a_0x1b_key_does_not_open() {
        let key = AeadKey::from_bytes([1; 32]);
        let other = AeadKey::from_bytes([2; 32]);
        let mut packet = sealed(&key, Nonce::ZERO, DataHeader::new(0, 0), &[200, 1, 2, 3]);
        assert_eq!(open_in_place(&other, &mut zero(), &mut packet), Err(DataOpenError::Decrypt));
        // And 0x1b's opener refuses the kind.
        let tox_key = crate::crypto::SharedKey::from_bytes([1; 32]);
        let mut packet = sealed(&key, Nonce::ZERO, DataHeader::new(0, 0), &[200, 1, 2, 3]);
        assert!(crypto_data::open_in_place(&tox_key, &mut zero(), &mut packet).is_err());
    }

    #[test]
    fn refuses_what_cannot_be_sent_or_received() {
        let key = AeadKey::from_bytes([1; 32]);
        let mut nonce = Nonce::ZERO;
        let mut out = [0u8; 1500];
        let header = DataHeader::new(0, 0);
        assert_eq!(seal(&key, &mut nonce, header, &[], &mut out), Err(DataSealError::PayloadLen(0)));
        assert_eq!(seal(&key, &mut nonce, header, &[160; 1374], &mut out), Err(DataSealError::PayloadLen(1374)));
        assert_eq!(seal(&key, &mut nonce, header, &[packet_id::PADDING, 1], &mut out), Err(DataSealError::PaddingId));
        assert_eq!(
            seal(&key, &mut nonce, header, &[160; 10], &mut out[..50]),
            Err(DataSealError::BufferTooSmall { needed: 56, available: 50 })
        );
        assert_eq!(nonce, Nonce::ZERO, "no nonce spent on a refusal");
        assert_eq!(seal(&key, &mut nonce, header, &[160; 1373], &mut out), Ok(1416));
        let mut short = vec![AEGIS_DATA_KIND; AEGIS_DATA_OVERHEAD];
        assert!(matches!(open_in_place(&key, &mut zero(), &mut short), Err(DataOpenError::Decode(_))));
        let mut long = vec![AEGIS_DATA_KIND; MAX_AEGIS_PACKET_LEN + 1];
        assert_eq!(
            open_in_place(&key, &mut zero(), &mut long),
            Err(DataOpenError::Decode(DecodeError::TrailingBytes(1)))
        );
    }

    proptest! {
        #[test]
        fn round_trips(
            nonce in arb_nonce(),
            header in any::<(u32, u32)>().prop_map(|(s, n)| DataHeader::new(s, n)),
            id in 1u8..=255,
            data in proptest::collection::vec(any::<u8>(), 0..MAX_CRYPTO_DATA_SIZE),
            key in any::<[u8; 32]>(),
            ahead in any::<u16>(),
        ) {
            let key = AeadKey::from_bytes(key);
            let mut payload = vec![id];
            payload.extend_from_slice(&data);
            let mut send = nonce;
            send.increment_by(ahead);
            let mut packet = sealed(&key, send, header, &payload);
            prop_assert_eq!(packet.len(), packet_len(payload.len()));
            let mut recv = nonce;
            let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
            prop_assert_eq!(opened.header, header);
            prop_assert_eq!(opened.id, id);
            prop_assert_eq!(&packet[opened.data], &data[..]);
            let mut expected = nonce;
            if ahead > 2 * DATA_NUM_THRESHOLD {
                expected.increment_by(DATA_NUM_THRESHOLD);
            }
            prop_assert_eq!(recv, expected);
        }

        #[test]
        fn damaged_input_never_panics_or_opens(nonce in arb_nonce(), len in 1usize..=MAX_CRYPTO_DATA_SIZE, flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = AeadKey::from_bytes([7; 32]);
            let packet = sealed(&key, nonce, DataHeader::new(1, 2), &vec![160; len]);
            let mut damaged = damage(packet, flip, bit, cut);
            let mut recv = nonce;
            prop_assert!(open_in_place(&key, &mut recv, &mut damaged).is_err());
            prop_assert_eq!(recv, nonce);
        }

        #[test]
        fn arbitrary_input_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..1500), nonce in arb_nonce()) {
            let key = AeadKey::from_bytes([7; 32]);
            let mut recv = nonce;
            let _ = open_in_place(&key, &mut recv, &mut bytes);
        }
    }
}
