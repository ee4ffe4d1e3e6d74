//! Out-of-band receive (TCP packet 7): data another client sent us with
//! an [`OobSend`](super::OobSend). c-toxcore's client ends the connection
//! when the data is empty; a relay never sends more than 1024 bytes of it.
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 1      | 7                      |
//! | 32     | sender's public key |
//! | 1-1024 | data                   |

super::shapes::key_and_data_packet! {
    /// An out-of-band recv.
    OobRecv {
        id: OOB_RECV,
        what: "OOB recv",
        /// The key of the client that sent it.
        key: sender,
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
        let packet = OobRecv::new(PublicKey::from_bytes([3; 32]), Bytes::from_static(b"hi")).unwrap();
        let mut bytes = vec![7];
        bytes.extend([3; 32]);
        bytes.extend(b"hi");
        assert_eq!(encoded!(packet), bytes);
        assert_eq!(OobRecv::decode(bytes), Ok(packet));
    }

    #[test]
    fn empty_or_too_long_data_is_refused() {
        let pk = PublicKey::from_bytes([3; 32]);
        assert!(OobRecv::new(pk, Bytes::new()).is_none());
        assert!(OobRecv::new(pk, Bytes::from(vec![0; 1025])).is_none());
        assert!(OobRecv::new(pk, Bytes::from(vec![0; 1024])).is_some());
        let mut bytes = vec![7];
        bytes.extend([3; 32]);
        assert!(OobRecv::decode(bytes.clone()).is_err());
        bytes.extend([0; 1025]);
        assert_eq!(OobRecv::decode(bytes), Err(DecodeError::TrailingBytes(1)));
    }
}
