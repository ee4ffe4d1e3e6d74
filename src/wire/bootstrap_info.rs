//! Bootstrap info (0xf0): ask a bootstrap node for its version and message
//! of the day. Not part of the DHT proper: only nodes that run c-toxcore's
//! bootstrap code (`tox-bootstrapd`, `DHT_bootstrap`) answer.
//!
//! Request, exactly 78 bytes:
//!
//! | bytes | field                                    |
//! |-------|------------------------------------------|
//! | 1     | 0xf0                                     |
//! | 77    | ignored by the node; we send zeros       |
//!
//! Response:
//!
//! | bytes  | field                                  |
//! |--------|----------------------------------------|
//! | 1      | 0xf0                                   |
//! | 4      | version, big-endian                    |
//! | 0-256  | message of the day                     |
//!
//! Facts from c-toxcore 0.2.18:
//! - `network.h`: `BOOTSTRAP_INFO_PACKET_ID` = 0xf0 (0xf1 in the
//!   `USE_TEST_NETWORK` build).
//! - `other/bootstrap_node_packets.c` `handle_info_request` answers only a
//!   packet of exactly `INFO_REQUEST_PACKET_LENGTH` = 78 bytes and ignores
//!   its content (`other/fun/bootstrap_node_info.py` pads with ASCII '0');
//!   the response is the id, the version that `bootstrap_set_callbacks`
//!   stored with `net_htonl` (so big-endian), and the MOTD, at most
//!   `MAX_MOTD_LENGTH` = 256 bytes (`bootstrap_node_packets.h`).
//! - `tox-bootstrapd` (`other/bootstrap_daemon/src/tox-bootstrapd.c`)
//!   passes `strlen(motd) + 1`, so its MOTD **ends with a NUL byte**, and
//!   reports `DAEMON_VERSION_NUMBER` = 1AAABBBCCC for toxcore A.B.C
//!   (`global.h`): 1000002018 for 0.2.18.
//!
//! Spec: <https://toktok.ltd/spec.html#dht-bootstrap-info-0xf0>.

use bytes::{BufMut, Bytes};

use super::{DecodeError, Reader};

/// The packet kind, for request and response alike.
pub const BOOTSTRAP_INFO_KIND: u8 = 0xf0;
/// The only request length a node answers (`INFO_REQUEST_PACKET_LENGTH`).
pub const BOOTSTRAP_INFO_REQUEST_LEN: usize = 78;
/// Longest message of the day (`MAX_MOTD_LENGTH`).
pub const MAX_MOTD_LEN: usize = 256;

/// A bootstrap info request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BootstrapInfoRequest;

impl BootstrapInfoRequest {
    /// Reads a whole datagram: the id and 77 bytes of anything.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.u8("bootstrap info kind")? != BOOTSTRAP_INFO_KIND {
            return Err(DecodeError::Invalid("bootstrap info kind"));
        }
        r.bytes("bootstrap info request padding", BOOTSTRAP_INFO_REQUEST_LEN - 1)?;
        r.finish()?;
        Ok(Self)
    }

    /// Writes the datagram, zero-padded.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(BOOTSTRAP_INFO_KIND);
        buf.put_bytes(0, BOOTSTRAP_INFO_REQUEST_LEN - 1);
    }

    /// What [`encode`](Self::encode) writes: always 78 bytes.
    pub const fn encoded_len(&self) -> usize {
        BOOTSTRAP_INFO_REQUEST_LEN
    }
}

/// A bootstrap info response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootstrapInfoResponse {
    /// The node's version number.
    pub version: u32,
    motd: Bytes,
}

impl BootstrapInfoResponse {
    /// A response; a message of the day longer than 256 bytes is cut to
    /// 256, as `tox-bootstrapd` cuts the one in its configuration.
    pub fn new(version: u32, motd: impl Into<Bytes>) -> Self {
        let mut motd = motd.into();
        motd.truncate(MAX_MOTD_LEN);
        Self { version, motd }
    }

    /// The message of the day, at most 256 bytes, as sent (c-toxcore's
    /// daemon includes a trailing NUL).
    pub fn motd(&self) -> &Bytes {
        &self.motd
    }

    /// Reads a whole datagram.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.u8("bootstrap info kind")? != BOOTSTRAP_INFO_KIND {
            return Err(DecodeError::Invalid("bootstrap info kind"));
        }
        let version = r.u32_be("bootstrap info version")?;
        if r.remaining() > MAX_MOTD_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - MAX_MOTD_LEN));
        }
        Ok(Self { version, motd: r.rest() })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(BOOTSTRAP_INFO_KIND);
        buf.put_u32(self.version);
        buf.put_slice(&self.motd);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.motd.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::damage;

    #[test]
    fn request_by_hand() {
        let mut out = Vec::new();
        BootstrapInfoRequest.encode(&mut out);
        assert_eq!(out.len(), BootstrapInfoRequest.encoded_len());
        let mut expected = vec![0xf0];
        expected.extend_from_slice(&[0; 77]);
        assert_eq!(out, expected);
        assert_eq!(BootstrapInfoRequest::decode(out), Ok(BootstrapInfoRequest));

        // bootstrap_node_info.py's request: padded with ASCII '0'.
        let mut python = vec![0xf0];
        python.extend_from_slice(&[b'0'; 77]);
        assert_eq!(BootstrapInfoRequest::decode(python.clone()), Ok(BootstrapInfoRequest));
        python.push(b'0');
        assert_eq!(BootstrapInfoRequest::decode(python.clone()), Err(DecodeError::TrailingBytes(1)));
        python.truncate(77);
        assert!(matches!(BootstrapInfoRequest::decode(python), Err(DecodeError::UnexpectedEnd { .. })));
    }

    #[test]
    fn response_by_hand() {
        // What Debian's tox-bootstrapd 0.2.18 sent for `motd = "tox"` (seen
        // on loopback in a private network namespace; it ignored 77- and
        // 79-byte requests): version 1000002018 = 0x3b9ad1e2, then the MOTD
        // with its NUL.
        let bytes = [0xf0, 0x3b, 0x9a, 0xd1, 0xe2, b't', b'o', b'x', 0];
        let response = BootstrapInfoResponse::decode(bytes.to_vec()).unwrap();
        assert_eq!(response.version, 1_000_002_018);
        assert_eq!(response.motd(), &b"tox\0"[..]);
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out.len(), response.encoded_len());
        assert_eq!(out, bytes);

        assert_eq!(BootstrapInfoResponse::decode(vec![0xf0, 0, 0, 0, 1]).unwrap().motd(), &b""[..]);
        let mut long = vec![0xf0, 0, 0, 0, 1];
        long.extend_from_slice(&[b'x'; 257]);
        assert_eq!(BootstrapInfoResponse::decode(long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(BootstrapInfoResponse::new(1, vec![b'x'; 300]).motd().len(), 256);
        assert_eq!(
            BootstrapInfoResponse::decode(vec![0xf1, 0, 0, 0, 1]),
            Err(DecodeError::Invalid("bootstrap info kind"))
        );
    }

    proptest! {
        #[test]
        fn response_round_trips(version in any::<u32>(), motd in proptest::collection::vec(any::<u8>(), 0..=MAX_MOTD_LEN)) {
            let response = BootstrapInfoResponse::new(version, motd);
            let mut out = Vec::new();
            response.encode(&mut out);
            prop_assert_eq!(out.len(), response.encoded_len());
            prop_assert_eq!(BootstrapInfoResponse::decode(out), Ok(response));
        }

        #[test]
        fn damaged_input_never_panics(version in any::<u32>(), motd in proptest::collection::vec(any::<u8>(), 0..=MAX_MOTD_LEN), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let mut out = Vec::new();
            BootstrapInfoResponse::new(version, motd).encode(&mut out);
            let _ = BootstrapInfoResponse::decode(damage(out, flip, bit, cut));
            let mut request = Vec::new();
            BootstrapInfoRequest.encode(&mut request);
            let _ = BootstrapInfoRequest::decode(damage(request, flip, bit, cut));
        }
    }
}
