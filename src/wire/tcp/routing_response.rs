//! Routing response (TCP packet 1): the relay's answer to a
//! [`RoutingRequest`](super::RoutingRequest).
//!
//! | bytes | field                                                   |
//! |-------|---------------------------------------------------------|
//! | 1     | 1                                                       |
//! | 1     | the connection id (16-255) for the peer, or 0: refused |
//! | 32    | the key the request named                               |
//!
//! A relay refuses a request for the client's own key and one that finds
//! all 240 slots taken. c-toxcore's client (`TCP_client.c`
//! `handle_TCP_client_routing_response`) ends the connection when the
//! packet is not 34 bytes and ignores an id below 16, so any byte is kept
//! here as it came ([`rpid`](RoutingResponse::rpid)).

use bytes::{BufMut, Bytes};

use super::{ConnectionId, expect_id, id, public_key};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};
use crate::wire::{DecodeError, Reader};

/// A routing response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingResponse {
    /// The id byte: a [`ConnectionId`] when 16 or more, refused below.
    pub rpid: u8,
    /// The key of the request.
    pub peer: PublicKey,
}

impl RoutingResponse {
    /// Length: id, connection id and key.
    pub const LEN: usize = 2 + PUBLIC_KEY_LEN;

    /// An answer: the connection for `peer`, or `None` for refused.
    pub fn new(connection: Option<ConnectionId>, peer: PublicKey) -> Self {
        Self { rpid: connection.map_or(0, ConnectionId::get), peer }
    }

    /// The connection, unless refused.
    pub const fn connection(&self) -> Option<ConnectionId> {
        ConnectionId::from_byte(self.rpid)
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::ROUTING_RESPONSE, "routing response id")?;
        let rpid = r.u8("routing response connection id")?;
        let peer = public_key(&mut r, "routing response key")?;
        r.finish()?;
        Ok(Self { rpid, peer })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::ROUTING_RESPONSE);
        buf.put_u8(self.rpid);
        buf.put_slice(self.peer.as_bytes());
    }

    /// Always 34.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support::encoded;

    #[test]
    fn by_hand() {
        let pk = PublicKey::from_bytes([9; 32]);
        let accepted = RoutingResponse::new(ConnectionId::from_slot(3), pk);
        let mut bytes = vec![1u8, 19];
        bytes.extend([9; 32]);
        assert_eq!(encoded!(accepted), bytes);
        assert_eq!(RoutingResponse::decode(bytes), Ok(accepted));
        assert_eq!(accepted.connection().map(ConnectionId::slot), Some(3));

        let refused = RoutingResponse::new(None, pk);
        assert_eq!(encoded!(refused)[1], 0);
        assert_eq!(refused.connection(), None);
        let odd = RoutingResponse { rpid: 5, peer: pk };
        assert_eq!(odd.connection(), None);
        assert!(RoutingResponse::decode(vec![1u8; 33]).is_err());
    }
}
