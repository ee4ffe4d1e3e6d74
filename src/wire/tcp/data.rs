//! Routed data (TCP packets 16-255): a packet for (from the relay: from)
//! the peer behind a connection id. The relay rewrites the id to the one
//! the peer knows the link by and passes the rest on unchanged; what is
//! inside (a net_crypto packet) is the peers' business.
//!
//! | bytes    | field                         |
//! |----------|-------------------------------|
//! | 1        | connection id, 16-255         |
//! | 0-2031   | the payload                   |
//!
//! c-toxcore's relay ends the connection of a client that sends on a slot
//! it never asked for, and drops data on a slot whose peer is not there.
//! c-toxcore's client ends the connection on a data packet with no payload.

use bytes::{BufMut, Bytes};

use super::{ConnectionId, MAX_PLAIN_LEN};
use crate::wire::{DecodeError, Reader};

/// A data packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Data {
    /// The link.
    pub connection: ConnectionId,
    /// The payload.
    pub payload: Bytes,
}

impl Data {
    /// A packet; `None` when it would not fit in a frame.
    pub fn new(connection: ConnectionId, payload: Bytes) -> Option<Self> {
        (payload.len() < MAX_PLAIN_LEN).then_some(Self { connection, payload })
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        let connection = ConnectionId::decode(&mut r, "data connection id")?;
        Ok(Self { connection, payload: r.rest() })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.connection.get());
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
        let packet = Data::new(ConnectionId::from_byte(17).unwrap(), Bytes::from_static(b"abc")).unwrap();
        assert_eq!(encoded!(packet), [17, b'a', b'b', b'c']);
        assert_eq!(Data::decode(vec![17, b'a', b'b', b'c']), Ok(packet));
        assert!(Data::decode(vec![15, 1]).is_err());
        assert!(Data::new(ConnectionId::from_byte(17).unwrap(), Bytes::from(vec![0; MAX_PLAIN_LEN])).is_none());
    }
}
