//! Pong (TCP packet 5): the answer to a [`Ping`](super::Ping), with its id.
//! c-toxcore ends a connection whose pong carries the id 0.
//!
//! | bytes | field   |
//! |-------|---------|
//! | 1     | 5       |
//! | 8     | ping id |

super::shapes::ping_id_packet! {
    /// A pong.
    Pong {
        id: PONG,
        what: "pong",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_support::encoded;

    #[test]
    fn by_hand() {
        let packet = Pong::new(0x0102_0304_0506_0708);
        assert_eq!(encoded!(packet), [5, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Pong::decode(vec![5, 1, 2, 3, 4, 5, 6, 7, 8]), Ok(packet));
        assert!(Pong::decode(vec![5, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(Pong::decode(vec![5; 10]).is_err());
    }
}
