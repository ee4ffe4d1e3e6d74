//! Pong (TCP packet 5): the answer to a [`Ping`](super::Ping), with its id.
//! c-toxcore ends a connection whose pong carries the id 0.
//!
//! | bytes | field   |
//! |-------|---------|
//! | 1     | 5       |
//! | 8     | ping id |

use bytes::{BufMut, Bytes};

use super::{expect_id, id};
use crate::wire::{DecodeError, Reader};

/// A pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pong {
    /// The id (0 is not a valid one).
    pub ping_id: u64,
}

impl Pong {
    /// Length: id byte and ping id.
    pub const LEN: usize = 1 + 8;

    /// A pong with this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::PONG, "pong id")?;
        let ping_id = r.u64_be("pong ping id")?;
        r.finish()?;
        Ok(Self { ping_id })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::PONG);
        buf.put_u64(self.ping_id);
    }

    /// Always 9.
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
        let packet = Pong::new(0x0102_0304_0506_0708);
        assert_eq!(encoded!(packet), [5, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Pong::decode(vec![5, 1, 2, 3, 4, 5, 6, 7, 8]), Ok(packet));
        assert!(Pong::decode(vec![5, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(Pong::decode(vec![5; 10]).is_err());
    }
}
