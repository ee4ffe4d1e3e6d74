//! Cookie request (0x18): the first packet of a net_crypto session, asking
//! the peer for a [cookie](super::cookie). The plaintext of a DHT packet of
//! kind 0x18.
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 32    | requester's real (long-term) public key                   |
//! | 32    | padding: zeros                                            |
//! | 8     | echo id, returned in the [response](super::cookie_response) |
//!
//! Sealed in a [`DhtPacket`](super::dht_packet::DhtPacket) from the
//! requester's DHT key to the peer's DHT key, the datagram is
//! 1 + 32 + 24 + 16 + 72 = 145 bytes. The peer answers at once, with the
//! same shared key, and keeps nothing: the cookie it returns carries the
//! requester's real key (from this plaintext) and DHT key (from the packet
//! header).
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c`:
//! - `create_cookie_request` writes the real key, 32 zero bytes and the
//!   `uint64_t` `cookie_request_number` (random per connection) copied in
//!   host byte order; like the DHT ping id, the echo id is opaque: we read
//!   and write it as a big-endian `u64`, which keeps its bytes.
//! - `handle_cookie_request` accepts exactly `COOKIE_REQUEST_LENGTH` = 145
//!   bytes; `create_cookie_response` ignores the padding, and so does
//!   [`CookieRequest::decode`].
//! - Over a TCP relay the request goes out of band, and
//!   `tcp_oob_handle_cookie_request` drops it unless the header's DHT key is
//!   the key the relay names as its sender.
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> ("cookie request packet").

use bytes::{BufMut, Bytes};

use super::dht_packet::{COOKIE_REQUEST_PLAINTEXT_LEN, DHT_PACKET_HEADER_LEN, DhtPacketKind, DhtPayload};
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, PUBLIC_KEY_LEN, PublicKey};

/// A cookie request's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookieRequest {
    /// The requester's real (long-term) public key.
    pub real_pk: PublicKey,
    /// The id the response must echo.
    pub echo_id: u64,
}

impl CookieRequest {
    /// Plaintext length: key, padding and echo id.
    pub const LEN: usize = COOKIE_REQUEST_PLAINTEXT_LEN;
    /// Length of the whole datagram.
    pub const PACKET_LEN: usize = DHT_PACKET_HEADER_LEN + MAC_LEN + Self::LEN;

    /// A request from the holder of `real_pk`.
    pub const fn new(real_pk: PublicKey, echo_id: u64) -> Self {
        Self { real_pk, echo_id }
    }

    /// Reads a whole plaintext. The padding is not checked.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let real_pk = PublicKey::from_bytes(r.array("cookie request real key")?);
        r.bytes("cookie request padding", PUBLIC_KEY_LEN)?;
        let echo_id = r.u64_be("cookie request echo id")?;
        r.finish()?;
        Ok(Self { real_pk, echo_id })
    }

    /// Writes the plaintext, padding zeroed.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.real_pk.as_bytes());
        buf.put_bytes(0, PUBLIC_KEY_LEN);
        buf.put_u64(self.echo_id);
    }

    /// What [`encode`](Self::encode) writes: always 72 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

impl DhtPayload for CookieRequest {
    const KIND: DhtPacketKind = DhtPacketKind::CookieRequest;

    fn encoded_len(&self) -> usize {
        Self::LEN
    }

    fn encode(&self, buf: &mut impl BufMut) {
        CookieRequest::encode(self, buf);
    }

    fn decode(plaintext: Bytes) -> Result<Self, DecodeError> {
        CookieRequest::decode(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::SharedKey;
    use crate::wire::dht_packet::DhtPacket;
    use crate::wire::test_support::{arb_public_key, damage, session};

    fn encode(request: &CookieRequest) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(out.len(), request.encoded_len());
        out
    }

    #[test]
    fn plaintext_by_hand() {
        let request = CookieRequest::new(PublicKey::from_bytes([0x11; 32]), 0x0102_0304_0506_0708);
        let mut bytes = vec![0x11; 32];
        bytes.extend_from_slice(&[0; 32]);
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(encode(&request), bytes);
        assert_eq!(CookieRequest::decode(bytes.clone()), Ok(request));
        // c-toxcore does not look at the padding.
        bytes[40] = 0xff;
        assert_eq!(CookieRequest::decode(bytes.clone()), Ok(request));
        bytes.push(0);
        assert_eq!(CookieRequest::decode(bytes.clone()), Err(DecodeError::TrailingBytes(1)));
        bytes.truncate(71);
        assert!(matches!(CookieRequest::decode(bytes), Err(DecodeError::UnexpectedEnd { .. })));
        assert_eq!(CookieRequest::PACKET_LEN, 145);
    }

    #[test]
    fn matches_c_toxcore() {
        let (a_real, a_dht, b_dht) = (session::a_real(), session::a_dht(), session::b_dht());
        let packet = DhtPacket::decode(session::COOKIE_REQUEST.to_vec()).unwrap();
        assert_eq!(packet.kind, DhtPacketKind::CookieRequest);
        assert_eq!(packet.sender, *a_dht.public());
        assert_eq!(packet.nonce, session::COOKIE_REQUEST_NONCE);
        let key = SharedKey::precompute(&packet.sender, b_dht.secret()).unwrap();
        let plain = packet.open(&key).unwrap();
        assert_eq!(plain[32..64], [0; 32]);
        assert_eq!(plain[64..], session::ECHO_ID);
        let request = CookieRequest::decode(plain).unwrap();
        assert_eq!(request.real_pk, *a_real.public());
        assert_eq!(request.echo_id.to_be_bytes(), session::ECHO_ID);

        let to_b = SharedKey::precompute(b_dht.public(), a_dht.secret()).unwrap();
        let ours = DhtPacket::seal_payload(*a_dht.public(), &to_b, session::COOKIE_REQUEST_NONCE, &request);
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes, session::COOKIE_REQUEST);
    }

    proptest! {
        #[test]
        fn round_trips(real_pk in arb_public_key(), echo_id in any::<u64>()) {
            let request = CookieRequest::new(real_pk, echo_id);
            prop_assert_eq!(CookieRequest::decode(encode(&request)), Ok(request));
        }

        #[test]
        fn damaged_input_never_panics(real_pk in arb_public_key(), echo_id in any::<u64>(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = CookieRequest::decode(damage(encode(&CookieRequest::new(real_pk, echo_id)), flip, bit, cut));
        }
    }
}
