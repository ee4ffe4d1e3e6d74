//! Routing request (TCP packet 0): "connect me to the client with this key".
//!
//! | bytes | field                          |
//! |-------|--------------------------------|
//! | 1     | 0                              |
//! | 32    | the peer's (DHT) public key    |
//!
//! The relay answers with a [`RoutingResponse`](super::RoutingResponse)
//! and, once the peer asked for us too, a
//! [`ConnectNotification`](super::ConnectNotification) to both. c-toxcore
//! (`TCP_server.c` `handle_TCP_packet`) ends the connection when the packet
//! is not exactly 33 bytes.

use bytes::{BufMut, Bytes};

use super::{expect_id, id, public_key};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};
use crate::wire::{DecodeError, Reader};

/// A routing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingRequest {
    /// Whom to connect to.
    pub peer: PublicKey,
}

impl RoutingRequest {
    /// Length: id and key.
    pub const LEN: usize = 1 + PUBLIC_KEY_LEN;

    /// A request for `peer`.
    pub const fn new(peer: PublicKey) -> Self {
        Self { peer }
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::ROUTING_REQUEST, "routing request id")?;
        let peer = public_key(&mut r, "routing request key")?;
        r.finish()?;
        Ok(Self { peer })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::ROUTING_REQUEST);
        buf.put_slice(self.peer.as_bytes());
    }

    /// Always 33.
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
        let request = RoutingRequest::new(PublicKey::from_bytes([7; 32]));
        let mut bytes = vec![0u8];
        bytes.extend([7; 32]);
        assert_eq!(encoded!(request), bytes);
        assert_eq!(RoutingRequest::decode(bytes.clone()), Ok(request));
        bytes.push(0);
        assert_eq!(RoutingRequest::decode(bytes), Err(DecodeError::TrailingBytes(1)));
        assert!(RoutingRequest::decode(vec![0u8; 32]).is_err());
    }
}
