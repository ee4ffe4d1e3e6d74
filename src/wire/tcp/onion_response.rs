//! Onion response over TCP (TCP packet 9): what came back along an onion
//! path whose hop 1 is the relay: an announce response (0x84) or onion data
//! response (0x86), whole.
//!
//! | bytes  | field            |
//! |--------|------------------|
//! | 1      | 9                |
//! | 1+     | the response     |
//!
//! c-toxcore's relay ends the connection of a client that sends one.

use bytes::{BufMut, Bytes};

use super::{expect_id, id};
use crate::wire::{DecodeError, Reader};

/// An onion response for a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpOnionResponse {
    /// The response datagram (its first byte is its kind).
    pub payload: Bytes,
}

impl TcpOnionResponse {
    /// A packet for a non-empty response.
    pub fn new(payload: Bytes) -> Option<Self> {
        (!payload.is_empty()).then_some(Self { payload })
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::ONION_RESPONSE, "TCP onion response id")?;
        let payload = r.rest();
        Self::new(payload).ok_or(DecodeError::UnexpectedEnd { what: "TCP onion response", needed: 1, available: 0 })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::ONION_RESPONSE);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support::encoded;

    #[test]
    fn by_hand() {
        let packet = TcpOnionResponse::new(Bytes::from_static(&[0x84, 1, 2])).unwrap();
        assert_eq!(encoded!(packet), [9, 0x84, 1, 2]);
        assert_eq!(TcpOnionResponse::decode(vec![9, 0x84, 1, 2]), Ok(packet));
        assert!(TcpOnionResponse::decode(vec![9]).is_err());
    }
}
