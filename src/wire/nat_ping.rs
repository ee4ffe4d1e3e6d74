//! NAT ping request and response: "are you online and ready to punch
//! holes?", carried inside a [DHT request](super::dht_request) to a friend's
//! DHT key.
//!
//! | bytes | field                                      |
//! |-------|--------------------------------------------|
//! | 1     | 0xfe: the NAT ping id in a DHT request     |
//! | 1     | 0x00 request, 0x01 response                |
//! | 8     | ping id (a response copies the request's)  |
//!
//! These 10 bytes are the DHT request's whole plaintext. Facts from
//! c-toxcore 0.2.18 `DHT.c`:
//! - `send_NATping` builds `[type][ping_id]` and `create_request` puts
//!   `CRYPTO_PACKET_NAT_PING` (254, `DHT.h`) in front; a request is routed
//!   through every close node that knows the friend (`route_to_friend`), a
//!   response through one (`routeone_to_friend`).
//! - The ping id is a `uint64_t` copied with `memcpy`, so it travels in the
//!   sender's **host byte order** (little-endian on every platform that
//!   matters); `handle_NATping` copies it back the same way, answers a
//!   request by echoing it, and accepts a response only if it equals the
//!   id it sent. It is opaque: we read and write it as a big-endian `u64`,
//!   which keeps the bytes, so echoes match on both sides. The numeric
//!   value c-toxcore logs is the byte-swapped one.
//! - `handle_NATping` drops anything but exactly 9 bytes after the 0xfe,
//!   and a type other than 0 or 1; so do we.
//!
//! Spec: <https://toktok.ltd/spec.html#nat-ping-packets>.

use bytes::{BufMut, Bytes};

use super::{DecodeError, Reader};

/// The id of NAT ping packets inside a DHT request (`CRYPTO_PACKET_NAT_PING`).
pub const NAT_PING_ID: u8 = 0xfe;
/// Length of either NAT ping: id, type and ping id.
pub const NAT_PING_LEN: usize = 1 + 1 + 8;

const TYPE_REQUEST: u8 = 0x00;
const TYPE_RESPONSE: u8 = 0x01;

/// A NAT ping request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatPingRequest {
    /// The id the response must echo.
    pub ping_id: u64,
}

/// A NAT ping response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatPingResponse {
    /// The id of the request being answered.
    pub ping_id: u64,
}

/// Reads `[0xfe][type][ping id]` and returns the type and the id.
fn decode_nat_ping(plaintext: Bytes) -> Result<(u8, u64), DecodeError> {
    let mut r = Reader::new(plaintext);
    if r.u8("NAT ping packet id")? != NAT_PING_ID {
        return Err(DecodeError::Invalid("NAT ping packet id"));
    }
    let kind = r.u8("NAT ping type")?;
    let ping_id = r.u64_be("NAT ping id")?;
    r.finish()?;
    Ok((kind, ping_id))
}

fn encode_nat_ping(kind: u8, ping_id: u64, buf: &mut impl BufMut) {
    buf.put_u8(NAT_PING_ID);
    buf.put_u8(kind);
    buf.put_u64(ping_id);
}

impl NatPingRequest {
    /// A request with this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// The response that answers this request.
    pub const fn response(&self) -> NatPingResponse {
        NatPingResponse::new(self.ping_id)
    }

    /// Reads a whole DHT request plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        match decode_nat_ping(plaintext.into())? {
            (TYPE_REQUEST, ping_id) => Ok(Self { ping_id }),
            _ => Err(DecodeError::Invalid("NAT ping request type")),
        }
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        encode_nat_ping(TYPE_REQUEST, self.ping_id, buf);
    }

    /// What [`encode`](Self::encode) writes: always 10 bytes.
    pub const fn encoded_len(&self) -> usize {
        NAT_PING_LEN
    }
}

impl NatPingResponse {
    /// A response echoing this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// Reads a whole DHT request plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        match decode_nat_ping(plaintext.into())? {
            (TYPE_RESPONSE, ping_id) => Ok(Self { ping_id }),
            _ => Err(DecodeError::Invalid("NAT ping response type")),
        }
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        encode_nat_ping(TYPE_RESPONSE, self.ping_id, buf);
    }

    /// What [`encode`](Self::encode) writes: always 10 bytes.
    pub const fn encoded_len(&self) -> usize {
        NAT_PING_LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::damage;

    #[test]
    fn by_hand_from_the_spec() {
        let mut out = Vec::new();
        NatPingRequest::new(0x0102_0304_0506_0708).encode(&mut out);
        assert_eq!(out, [0xfe, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(NatPingRequest::decode(out.clone()), Ok(NatPingRequest::new(0x0102_0304_0506_0708)));
        assert_eq!(NatPingResponse::decode(out), Err(DecodeError::Invalid("NAT ping response type")));

        let mut out = Vec::new();
        let response = NatPingRequest::new(0x0102_0304_0506_0708).response();
        response.encode(&mut out);
        assert_eq!(out.len(), response.encoded_len());
        assert_eq!(out, [0xfe, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(NatPingResponse::decode(out.clone()), Ok(response));
        assert_eq!(NatPingRequest::decode(out), Err(DecodeError::Invalid("NAT ping request type")));
    }

    #[test]
    fn malformed_pings_fail() {
        assert_eq!(
            NatPingRequest::decode(vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Invalid("NAT ping packet id"))
        );
        assert_eq!(
            NatPingRequest::decode(vec![0xfe, 2, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::Invalid("NAT ping request type"))
        );
        assert_eq!(
            NatPingRequest::decode(vec![0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(matches!(NatPingResponse::decode(vec![0xfe, 1, 0]), Err(DecodeError::UnexpectedEnd { .. })));
    }

    proptest! {
        #[test]
        fn round_trips(ping_id in any::<u64>()) {
            let mut out = Vec::new();
            NatPingRequest::new(ping_id).encode(&mut out);
            prop_assert_eq!(out.len(), NAT_PING_LEN);
            prop_assert_eq!(NatPingRequest::decode(out), Ok(NatPingRequest::new(ping_id)));
            let mut out = Vec::new();
            NatPingResponse::new(ping_id).encode(&mut out);
            prop_assert_eq!(NatPingResponse::decode(out), Ok(NatPingResponse::new(ping_id)));
        }

        #[test]
        fn damaged_input_never_panics(ping_id in any::<u64>(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let mut out = Vec::new();
            NatPingRequest::new(ping_id).encode(&mut out);
            let damaged = damage(out, flip, bit, cut);
            let _ = NatPingRequest::decode(damaged.clone());
            let _ = NatPingResponse::decode(damaged);
        }
    }
}
