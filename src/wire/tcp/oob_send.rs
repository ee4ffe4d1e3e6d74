//! Out-of-band send (TCP packet 6): data for the client with this key, if
//! it is connected to the relay, without a routed connection (c-toxcore
//! sends net_crypto cookie requests and handshakes this way). The relay
//! passes it on as an [`OobRecv`](super::OobRecv); the sender never learns
//! whether it arrived. c-toxcore's relay ends the connection when the data
//! is empty or longer than 1024 bytes.
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 1      | 6                      |
//! | 32     | destination public key |
//! | 1-1024 | data                   |

super::shapes::key_and_data_packet! {
    /// An out-of-band send.
    OobSend {
        id: OOB_SEND,
        what: "OOB send",
        /// The key of the client to deliver to.
        key: dest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::crypto::PublicKey;
    use crate::wire::DecodeError;
    use crate::wire::test_support::encoded;

    #[test]
    fn by_hand() {
        let packet = OobSend::new(PublicKey::from_bytes([3; 32]), Bytes::from_static(b"hi")).unwrap();
        let mut bytes = vec![6];
        bytes.extend([3; 32]);
        bytes.extend(b"hi");
        assert_eq!(encoded!(packet), bytes);
        assert_eq!(OobSend::decode(bytes), Ok(packet));
    }

    #[test]
    fn empty_or_too_long_data_is_refused() {
        let pk = PublicKey::from_bytes([3; 32]);
        assert!(OobSend::new(pk, Bytes::new()).is_none());
        assert!(OobSend::new(pk, Bytes::from(vec![0; 1025])).is_none());
        assert!(OobSend::new(pk, Bytes::from(vec![0; 1024])).is_some());
        let mut bytes = vec![6];
        bytes.extend([3; 32]);
        assert!(OobSend::decode(bytes.clone()).is_err());
        bytes.extend([0; 1025]);
        assert_eq!(OobSend::decode(bytes), Err(DecodeError::TrailingBytes(1)));
    }
}
