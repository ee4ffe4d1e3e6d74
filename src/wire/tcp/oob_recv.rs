//! Out-of-band receive (TCP packet 7): data another client sent us with
//! an [`OobSend`](super::OobSend). c-toxcore's client ends the connection
//! when the data is empty; a relay never sends more than 1024 bytes of it.
//!
//! | bytes  | field                  |
//! |--------|------------------------|
//! | 1      | 7                      |
//! | 32     | sender's public key |
//! | 1-1024 | data                   |

use bytes::{BufMut, Bytes};

use super::{MAX_OOB_DATA_LEN, expect_id, id, public_key};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};
use crate::wire::{DecodeError, Reader};

/// An out-of-band recv.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OobRecv {
    /// The key of the client that sent it.
    pub sender: PublicKey,
    /// The data, 1 to 1024 bytes.
    pub data: Bytes,
}

impl OobRecv {
    /// A packet; `None` when `data` is empty or over 1024 bytes.
    pub fn new(sender: PublicKey, data: Bytes) -> Option<Self> {
        (1..=MAX_OOB_DATA_LEN).contains(&data.len()).then_some(Self { sender, data })
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::OOB_RECV, "OOB recv id")?;
        let sender = public_key(&mut r, "OOB recv key")?;
        let data = r.rest();
        if data.is_empty() {
            return Err(DecodeError::UnexpectedEnd { what: "OOB recv data", needed: 1, available: 0 });
        }
        if data.len() > MAX_OOB_DATA_LEN {
            return Err(DecodeError::TrailingBytes(data.len() - MAX_OOB_DATA_LEN));
        }
        Ok(Self { sender, data })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::OOB_RECV);
        buf.put_slice(self.sender.as_bytes());
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
