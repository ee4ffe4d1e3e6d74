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

super::shapes::connection_packet! {
    /// A disconnect notification.
    DisconnectNotification {
        id: DISCONNECT_NOTIFICATION,
        what: "disconnect notification",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::ConnectionId;
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
