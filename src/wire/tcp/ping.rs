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

use bytes::{BufMut, Bytes};

use super::{expect_id, id};
use crate::wire::{DecodeError, Reader};

/// A ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ping {
    /// The id (0 is not a valid one).
    pub ping_id: u64,
}

impl Ping {
    /// Length: id byte and ping id.
    pub const LEN: usize = 1 + 8;

    /// A ping with this id.
    pub const fn new(ping_id: u64) -> Self {
        Self { ping_id }
    }

    /// Reads a whole plaintext.
    pub fn decode(plain: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plain);
        expect_id(&mut r, id::PING, "ping id")?;
        let ping_id = r.u64_be("ping ping id")?;
        r.finish()?;
        Ok(Self { ping_id })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(id::PING);
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
        let packet = Ping::new(0x0102_0304_0506_0708);
        assert_eq!(encoded!(packet), [4, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Ping::decode(vec![4, 1, 2, 3, 4, 5, 6, 7, 8]), Ok(packet));
        assert!(Ping::decode(vec![4, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert!(Ping::decode(vec![4; 10]).is_err());
    }
}
