//! Framing of the TCP relay stream: `[length u16 BE][sealed packet]`.
//!
//! | bytes  | field                                             |
//! |--------|---------------------------------------------------|
//! | 2      | length of what follows, big-endian, 17 to 2048    |
//! | length | `[MAC 16][ciphertext]`: one sealed [`TcpPacket`](super::TcpPacket) |
//!
//! [`FrameCodec`] is a `tokio_util` codec over the sealed bytes; sealing
//! and opening with the per-direction nonces is the connection's job
//! (`proto::relay::channel`). c-toxcore (`TCP_common.c`
//! `read_TCP_length`) ends the connection on a length over 2048; a frame
//! too short to hold a MAC and an id byte cannot open or decode, which ends
//! it too, so the codec refuses those at once.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::MAX_FRAME_LEN;
use crate::crypto::MAC_LEN;

/// Shortest frame body: a MAC and the id byte.
pub const MIN_FRAME_LEN: usize = MAC_LEN + 1;

/// Why the stream is unusable.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A length field outside 17..=2048.
    #[error("frame length {0} outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN}")]
    BadLength(usize),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into sealed frames, and writes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(head) = src.get(..2) else { return Ok(None) };
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
            return Err(FrameError::BadLength(len));
        }
        if src.len() < 2 + len {
            src.reserve(2 + len - src.len());
            return Ok(None);
        }
        src.advance(2);
        Ok(Some(src.split_to(len)))
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, sealed: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = u16::try_from(sealed.len())
            .ok()
            .filter(|l| (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&usize::from(*l)))
            .ok_or(FrameError::BadLength(sealed.len()))?;
        dst.reserve(2 + sealed.len());
        dst.put_u16(len);
        dst.put_slice(sealed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn splits_frames_arriving_in_pieces() {
        let mut codec = FrameCodec;
        let mut out = BytesMut::new();
        codec.encode(&[1u8; 17][..], &mut out).unwrap();
        codec.encode(&[2u8; 2048][..], &mut out).unwrap();
        assert_eq!(&out[..2], [0, 17]);
        let mut src = BytesMut::new();
        let mut frames = Vec::new();
        for byte in out {
            src.put_u8(byte);
            while let Some(frame) = codec.decode(&mut src).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][..], [1u8; 17]);
        assert_eq!(frames[1].len(), 2048);
        assert!(src.is_empty());
    }

    #[test]
    fn bad_lengths_fail() {
        for len in [0u16, 16, 2049, 0xffff] {
            let mut src = BytesMut::from(&len.to_be_bytes()[..]);
            assert!(matches!(FrameCodec.decode(&mut src), Err(FrameError::BadLength(l)) if l == usize::from(len)));
        }
        assert!(FrameCodec.encode(&[0u8; 2049][..], &mut BytesMut::new()).is_err());
        assert!(FrameCodec.encode(&[0u8; 3][..], &mut BytesMut::new()).is_err());
    }

    proptest! {
        #[test]
        fn any_stream_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut src = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = FrameCodec.decode(&mut src) {
                prop_assert!((MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
            }
        }
    }
}
