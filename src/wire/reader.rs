//! A bounds-checked reader over untrusted bytes.

use bytes::{Buf, Bytes};

use super::DecodeError;

/// Reads fields off the front of a [`Bytes`], each read checked against what
/// is left, so decoders never panic on short input. Byte strings are split
/// off without copying.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Starts reading `buf`.
    pub fn new(buf: impl Into<Bytes>) -> Self {
        Self { buf: buf.into() }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True once everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, what: &'static str, needed: usize) -> Result<(), DecodeError> {
        if self.buf.len() < needed {
            Err(DecodeError::UnexpectedEnd { what, needed, available: self.buf.len() })
        } else {
            Ok(())
        }
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(what, 1)?;
        Ok(self.buf.get_u8())
    }

    /// A big-endian u16.
    pub fn u16_be(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(what, 2)?;
        Ok(self.buf.get_u16())
    }

    /// A big-endian u32.
    pub fn u32_be(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32())
    }

    /// A big-endian u64.
    pub fn u64_be(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(what, 8)?;
        Ok(self.buf.get_u64())
    }

    /// A little-endian u16 (the save file).
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(what, 2)?;
        Ok(self.buf.get_u16_le())
    }

    /// A little-endian u32 (the save file).
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32_le())
    }

    /// A fixed-size array, copied.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.need(what, N)?;
        let mut out = [0u8; N];
        self.buf.copy_to_slice(&mut out);
        Ok(out)
    }

    /// The next `len` bytes, without copying.
    pub fn bytes(&mut self, what: &'static str, len: usize) -> Result<Bytes, DecodeError> {
        self.need(what, len)?;
        Ok(self.buf.split_to(len))
    }

    /// Everything left, without copying.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless everything has been read.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes(self.buf.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3, 4, 5]));
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16_be("b").unwrap(), 0x0203);
        assert_eq!(r.u32_be("c"), Err(DecodeError::UnexpectedEnd { what: "c", needed: 4, available: 2 }));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.u16_le("d").unwrap(), 0x0504);
        assert!(r.finish().is_ok());

        let r = Reader::new(vec![0u8; 3]);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(3)));
    }
}
