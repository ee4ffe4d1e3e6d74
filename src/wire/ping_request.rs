//! Ping request (0x00): "are you there?", the plaintext of a DHT packet of
//! kind 0x00.
//!
//! | bytes | field                                                  |
//! |-------|--------------------------------------------------------|
//! | 1     | 0x00: the request flag                                 |
//! | 8     | ping id, echoed by the [response](super::ping_response) |
//!
//! Sealed in a [`DhtPacket`](super::dht_packet::DhtPacket), the whole
//! datagram is 1 + 32 + 24 + 16 + 9 = 82 bytes. The flag byte repeats the
//! packet kind inside the encryption: since both directions share one key,
//! without it a request could be bounced back as a valid response.
//!
//! The ping id is opaque: c-toxcore 0.2.18 (`ping.c` `ping_send_request`)
//! copies a `uint64_t` from its ping array in host byte order, and
//! `handle_ping_response` looks the echoed bytes up again. We read and write
//! it as a big-endian `u64`, which returns the same 8 bytes; only its
//! numeric value differs from the one c-toxcore logs. `handle_ping_request`
//! drops a plaintext that is not exactly 9 bytes or has another flag.
//!
//! Spec: <https://toktok.ltd/spec.html#ping-request-0x00>.

use bytes::{BufMut, Bytes};

use super::dht_packet::{DhtPacketKind, DhtPayload};
use super::ping_response::PingResponse;
use super::{DecodeError, Reader};

/// A ping request's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingRequest {
    /// The id the response must echo.
    pub ping_id: u64,
}

impl PingRequest {
    /// Plaintext length: flag and ping id.
    pub const LEN: usize = 1 + 8;
    /// The flag byte of a request.
    pub const FLAG: u8 = 0x00;

    /// A request with this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// The response that answers this request.
    pub const fn response(&self) -> PingResponse {
        PingResponse::new(self.ping_id)
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        if r.u8("ping request flag")? != Self::FLAG {
            return Err(DecodeError::Invalid("ping request flag"));
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

impl DhtPayload for PingRequest {
    const KIND: DhtPacketKind = DhtPacketKind::PingRequest;

    fn encoded_len(&self) -> usize {
        Self::LEN
    }

    fn encode(&self, buf: &mut impl BufMut) {
        PingRequest::encode(self, buf);
    }

    fn decode(plaintext: Bytes) -> Result<Self, DecodeError> {
        PingRequest::decode(plaintext)
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
    use crate::wire::test_support::{damage, golden};

    fn encode(ping: &PingRequest) -> Vec<u8> {
        let mut out = Vec::new();
        ping.encode(&mut out);
        assert_eq!(out.len(), ping.encoded_len());
        out
    }

    #[test]
    fn plaintext_by_hand() {
        let ping = PingRequest::new(0x0102_0304_0506_0708);
        let bytes = [0x00, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(encode(&ping), bytes);
        assert_eq!(PingRequest::decode(bytes.to_vec()), Ok(ping));
        assert_eq!(ping.response().ping_id, ping.ping_id);
    }

    #[test]
    fn wrong_flag_or_length_fails() {
        assert_eq!(PingRequest::decode(vec![0x01; 9]), Err(DecodeError::Invalid("ping request flag")));
        assert!(matches!(PingRequest::decode(vec![0x00; 8]), Err(DecodeError::UnexpectedEnd { .. })));
        assert_eq!(PingRequest::decode(vec![0x00; 10]), Err(DecodeError::TrailingBytes(1)));
        assert!(PingRequest::decode(Vec::new()).is_err());
    }

    #[test]
    fn matches_c_toxcore() {
        // c-toxcore's `dht_create_packet` sealing the 9 bytes `ping_send_request` builds.
        let golden_packet = hex!(
            "00"
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c" // Alice's public key
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"                 // nonce
            "804678a93d0c5ef4caebfc7e95117e68b52098b7d58ff985fd"               // MAC + ciphertext
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let packet = DhtPacket::decode(golden_packet.to_vec()).unwrap();
        assert_eq!(packet.sender, *alice.public());
        let key = SharedKey::precompute(&packet.sender, bob.secret()).unwrap();
        let plain = packet.open(&key).unwrap();
        assert_eq!(plain, &hex!("00 efcdab8967452301")[..]);
        assert_eq!(PingRequest::decode(plain), Ok(PingRequest::new(golden::PING_ID)));

        let ours = DhtPacket::seal_payload(
            *alice.public(),
            &golden::shared(),
            golden::nonce(),
            &PingRequest::new(golden::PING_ID),
        );
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes, golden_packet);
    }

    proptest! {
        #[test]
        fn round_trips(ping_id in any::<u64>()) {
            let ping = PingRequest::new(ping_id);
            prop_assert_eq!(PingRequest::decode(encode(&ping)), Ok(ping));
        }

        #[test]
        fn damaged_input_never_panics(ping_id in any::<u64>(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = PingRequest::decode(damage(encode(&PingRequest::new(ping_id)), flip, bit, cut));
        }
    }
}
