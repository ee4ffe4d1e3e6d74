//! Ping (TCP packet 4): "still there?". The relay pings every client
//! every 30 s and drops one that has not answered with a
//! [`Pong`](super::Pong) carrying the same id within 10 s; clients ping the
//! relay the same way. The id is 8 opaque bytes (c-toxcore copies a
//! host-order `uint64_t`), read here as a big-endian `u64`; 0 means none.
//!
//! | bytes | field   |
//! |-------|---------|
//! | 1     | 4       |
//! | 8     | ping id |

super::shapes::ping_id_packet! {
    /// A ping.
    Ping {
        id: PING,
        what: "ping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support::encoded;

    #[test]
    fn by_hand() {
        let packet = Ping::new(0x0102_0304_0506_0708);
        assert_eq!(encoded!(packet), [4, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Ping::decode(vec![4, 1, 2, 3, 4, 5, 6, 7, 8]), Ok(packet));
        assert!(Ping::decode(vec![4, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(Ping::decode(vec![4; 10]).is_err());
    }
}
