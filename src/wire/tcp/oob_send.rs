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

use bytes::{BufMut, Bytes};

use super::{MAX_OOB_DATA_LEN, expect_id, id, public_key};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};
use crate::wire::{DecodeError, Reader};

/// An out-of-band send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OobSend {
    /// The key of the client to deliver to.
    pub dest: PublicKey,
    /// The data, 1 to 1024 bytes.
    pub data: Bytes,
}

impl OobSend {
    /// A packet; `None` when `data` is empty or over 1024 bytes.
    pub fn new(dest: PublicKey, data: Bytes) -> Option<Self> {
        (1..=MAX_OOB_DATA_LEN).contains(&data.len()).then_some(Self { dest, data })
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::OOB_SEND, "OOB send id")?;
        let dest = public_key(&mut r, "OOB send key")?;
        let data = r.rest();
        if data.is_empty() {
            return Err(DecodeError::UnexpectedEnd { what: "OOB send data", needed: 1, available: 0 });
        }
        if data.len() > MAX_OOB_DATA_LEN {
            return Err(DecodeError::TrailingBytes(data.len() - MAX_OOB_DATA_LEN));
        }
        Ok(Self { dest, data })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::OOB_SEND);
        buf.put_slice(self.dest.as_bytes());
        buf.put_slice(&self.data);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + PUBLIC_KEY_LEN + self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
