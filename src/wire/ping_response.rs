//! Ping response (0x01): "I am here", the plaintext of a DHT packet of kind
//! 0x01, answering a [ping request](super::ping_request).
//!
//! | bytes | field                                   |
//! |-------|-----------------------------------------|
//! | 1     | 0x01: the response flag                 |
//! | 8     | ping id, copied from the request        |
//!
//! Sealed in a [`DhtPacket`](super::dht_packet::DhtPacket), the datagram is
//! 82 bytes, like the request. c-toxcore 0.2.18 (`ping.c`
//! `ping_send_response`) echoes the request's 8 bytes as they came;
//! `handle_ping_response` drops a plaintext that is not exactly 9 bytes,
//! has another flag, or carries an id its ping array does not hold for that
//! key and address (then the node is added to its lists). The id is read
//! and written as a big-endian `u64`, which keeps the bytes as they were.
//!
//! Spec: <https://toktok.ltd/spec.html#ping-response-0x01>.

use bytes::{BufMut, Bytes};

use super::dht_packet::{DhtPacketKind, DhtPayload};
use super::{DecodeError, Reader};

/// A ping response's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingResponse {
    /// The id of the request being answered.
    pub ping_id: u64,
}

impl PingResponse {
    /// Plaintext length: flag and ping id.
    pub const LEN: usize = 1 + 8;
    /// The flag byte of a response.
    pub const FLAG: u8 = 0x01;

    /// A response echoing this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        if r.u8("ping response flag")? != Self::FLAG {
            return Err(DecodeError::Invalid("ping response flag"));
        }
        let ping_id = r.u64_be("ping id")?;
        r.finish()?;
        Ok(Self { ping_id })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(Self::FLAG);
        buf.put_u64(self.ping_id);
    }

    /// What [`encode`](Self::encode) writes: always 9 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

impl DhtPayload for PingResponse {
    const KIND: DhtPacketKind = DhtPacketKind::PingResponse;

    fn encoded_len(&self) -> usize {
        Self::LEN
    }

    fn encode(&self, buf: &mut impl BufMut) {
        PingResponse::encode(self, buf);
    }

    fn decode(plaintext: Bytes) -> Result<Self, DecodeError> {
        PingResponse::decode(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::SharedKey;
    use crate::wire::dht_packet::DhtPacket;
    use crate::wire::ping_request::PingRequest;
    use crate::wire::test_support::{damage, golden};

    fn encode(ping: &PingResponse) -> Vec<u8> {
        let mut out = Vec::new();
        ping.encode(&mut out);
        assert_eq!(out.len(), ping.encoded_len());
        out
    }

    #[test]
    fn plaintext_by_hand() {
        let ping = PingResponse::new(0xfedc_ba98_7654_3210);
        let bytes = [0x01, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
        assert_eq!(encode(&ping), bytes);
        assert_eq!(PingResponse::decode(bytes.to_vec()), Ok(ping));
    }

    #[test]
    fn a_request_is_not_a_response() {
        let mut request = Vec::new();
        PingRequest::new(7).encode(&mut request);
        assert_eq!(PingResponse::decode(request.clone()), Err(DecodeError::Invalid("ping response flag")));
        assert_eq!(PingRequest::decode(encode(&PingResponse::new(7))), Err(DecodeError::Invalid("ping request flag")));
        assert_eq!(PingResponse::decode(vec![0x01; 10]), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(PingResponse::decode(vec![0x01; 3]), Err(DecodeError::UnexpectedEnd { .. })));
    }

    #[test]
    fn matches_c_toxcore() {
        // c-toxcore's `dht_create_packet` sealing the 9 bytes `ping_send_response` builds.
        let golden_packet = hex!(
            "01"
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "9eb2a2a279ef04e9fe007473d1293963b42098b7d58ff985fd"
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let packet = DhtPacket::decode(golden_packet.to_vec()).unwrap();
        assert_eq!(packet.kind, DhtPacketKind::PingResponse);
        let key = SharedKey::precompute(&packet.sender, bob.secret()).unwrap();
        assert_eq!(PingResponse::decode(packet.open(&key).unwrap()), Ok(PingResponse::new(golden::PING_ID)));

        let ours = DhtPacket::seal_payload(
            *alice.public(),
            &golden::shared(),
            golden::nonce(),
            &PingResponse::new(golden::PING_ID),
        );
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes, golden_packet);
    }

    proptest! {
        #[test]
        fn round_trips(ping_id in any::<u64>()) {
            let ping = PingResponse::new(ping_id);
            prop_assert_eq!(PingResponse::decode(encode(&ping)), Ok(ping));
        }

        #[test]
        fn damaged_input_never_panics(ping_id in any::<u64>(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = PingResponse::decode(damage(encode(&PingResponse::new(ping_id)), flip, bit, cut));
        }
    }
}
