//! Connect notification (TCP packet 2): the peer behind a connection id
//! asked for us too, so data now flows. The relay sends one to each side.
//! c-toxcore ends the connection on a packet that is not 2 bytes and (as a
//! client) on an id below 16; as a relay it ignores the packet.
//!
//! | bytes | field                 |
//! |-------|-----------------------|
//! | 1     | 2                     |
//! | 1     | connection id, 16-255 |

use bytes::{BufMut, Bytes};

use super::{ConnectionId, expect_id, id};
use crate::wire::{DecodeError, Reader};

/// A connect notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectNotification {
    /// The connection.
    pub connection: ConnectionId,
}

impl ConnectNotification {
    /// Length: two bytes.
    pub const LEN: usize = 2;

    /// A notification about `connection`.
    pub const fn new(connection: ConnectionId) -> Self {
        Self { connection }
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::CONNECT_NOTIFICATION, "connect notification id")?;
        let connection = ConnectionId::decode(&mut r, "connect notification connection id")?;
        r.finish()?;
        Ok(Self { connection })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::CONNECT_NOTIFICATION);
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
        let packet = ConnectNotification::new(ConnectionId::from_byte(42).unwrap());
        assert_eq!(encoded!(packet), [2, 42]);
        assert_eq!(ConnectNotification::decode(vec![2, 42]), Ok(packet));
        assert!(ConnectNotification::decode(vec![2, 15]).is_err());
        assert!(ConnectNotification::decode(vec![2, 42, 0]).is_err());
        assert!(ConnectNotification::decode(vec![2]).is_err());
    }
}
