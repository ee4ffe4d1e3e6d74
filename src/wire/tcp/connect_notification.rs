//! Connect notification (TCP packet 2): the peer behind a connection id
//! asked for us too, so data now flows. The relay sends one to each side.
//! c-toxcore ends the connection on a packet that is not 2 bytes and (as a
//! client) on an id below 16; as a relay it ignores the packet.
//!
//! | bytes | field                 |
//! |-------|-----------------------|
//! | 1     | 2                     |
//! | 1     | connection id, 16-255 |

super::shapes::connection_packet! {
    /// A connect notification.
    ConnectNotification {
        id: CONNECT_NOTIFICATION,
        what: "connect notification",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::ConnectionId;
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
