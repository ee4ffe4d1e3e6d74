//! Disconnect notification (TCP packet 3). From the relay: the peer
//! behind that id left (the slot waits for it again). From a client: drop
//! that connection; the relay frees the slot and tells the peer. c-toxcore's
//! relay ends the connection of a client that names a free slot or an id
//! below 16, or sends a packet that is not 2 bytes.
//!
//! | bytes | field                 |
//! |-------|-----------------------|
//! | 1     | 3                     |
//! | 1     | connection id, 16-255 |

use bytes::{BufMut, Bytes};

use super::{ConnectionId, expect_id, id};
use crate::wire::{DecodeError, Reader};

/// A disconnect notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisconnectNotification {
    /// The connection.
    pub connection: ConnectionId,
}

impl DisconnectNotification {
    /// Length: two bytes.
    pub const LEN: usize = 2;

    /// A notification about `connection`.
    pub const fn new(connection: ConnectionId) -> Self {
        Self { connection }
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::DISCONNECT_NOTIFICATION, "disconnect notification id")?;
        let connection = ConnectionId::decode(&mut r, "disconnect notification connection id")?;
        r.finish()?;
        Ok(Self { connection })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::DISCONNECT_NOTIFICATION);
        buf.put_u8(self.connection.get());
    }

    /// Always 2.
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
        let packet = DisconnectNotification::new(ConnectionId::from_byte(42).unwrap());
        assert_eq!(encoded!(packet), [3, 42]);
        assert_eq!(DisconnectNotification::decode(vec![3, 42]), Ok(packet));
        assert!(DisconnectNotification::decode(vec![3, 15]).is_err());
        assert!(DisconnectNotification::decode(vec![3, 42, 0]).is_err());
        assert!(DisconnectNotification::decode(vec![3]).is_err());
    }
}
