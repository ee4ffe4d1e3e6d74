//! Onion request over TCP (TCP packet 8): a client whose hop 1 is the relay.
//!
//! | bytes    | field                                                 |
//! |----------|-------------------------------------------------------|
//! | 1        | 8                                                     |
//! | 159-1359 | an [`OnionRequestTcp`] body: nonce, hop 2's address, key and layer 2 |
//!
//! The relay handles it as its onion relay handles a 0x80 datagram, with a
//! return block that names the client's connection, so the response comes
//! back as a [`TcpOnionResponse`](super::TcpOnionResponse). c-toxcore's
//! relay (`TCP_server.c` `handle_TCP_packet`) ends the connection when the
//! packet is 159 bytes or shorter and otherwise leaves the checks to
//! `onion_send_1`, which drops bad requests quietly; so the body is kept as
//! bytes here and parsed with [`request`](TcpOnionRequest::request).

use bytes::{BufMut, Bytes};

use super::{expect_id, id};
use crate::crypto::NONCE_LEN;
use crate::wire::onion_request::OnionRequestTcp;
use crate::wire::{DecodeError, Reader};

/// What c-toxcore's relay adds to the nonce for its shortest accepted
/// request: two layers' address, key and MAC (`ONION_SEND_BASE * 2`).
const SEND_BASE_TWICE: usize = 2 * (19 + 32 + 16);

/// An onion request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpOnionRequest {
    body: Bytes,
}

impl TcpOnionRequest {
    /// Shortest body the relay does not end the connection for.
    pub const MIN_BODY_LEN: usize = NONCE_LEN + SEND_BASE_TWICE + 1;

    /// The packet for a request.
    pub fn new(request: &OnionRequestTcp) -> Self {
        let mut body = Vec::with_capacity(request.encoded_len());
        request.encode(&mut body);
        Self { body: Bytes::from(body) }
    }

    /// The packet for a body of at least [`MIN_BODY_LEN`](Self::MIN_BODY_LEN) bytes.
    pub fn from_body(body: Bytes) -> Option<Self> {
        (body.len() >= Self::MIN_BODY_LEN).then_some(Self { body })
    }

    /// The body after the id.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request the body holds.
    pub fn request(&self) -> Result<OnionRequestTcp, DecodeError> {
        OnionRequestTcp::decode(self.body.clone())
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::ONION_REQUEST, "TCP onion request id")?;
        let body = r.rest();
        Self::from_body(body.clone()).ok_or(DecodeError::UnexpectedEnd {
            what: "TCP onion request",
            needed: Self::MIN_BODY_LEN,
            available: body.len(),
        })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::ONION_REQUEST);
        buf.put_slice(&self.body);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_accepted_request() {
        // c-toxcore: `length <= 1 + CRYPTO_NONCE_SIZE + ONION_SEND_BASE * 2` ends the connection.
        assert_eq!(1 + TcpOnionRequest::MIN_BODY_LEN, 1 + 24 + 134 + 1);
        let mut bytes = vec![8u8];
        bytes.extend([0; 158]);
        assert!(TcpOnionRequest::decode(bytes.clone()).is_err());
        bytes.push(0);
        let packet = TcpOnionRequest::decode(bytes).unwrap();
        assert_eq!(packet.body().len(), 159);
        // Long enough for the relay, but not an onion request: dropped later, quietly.
        assert!(packet.request().is_err());
    }
}
