//! NAT-PMP (RFC 6886): the external address request and UDP/TCP mapping
//! requests, and the gateway's answers. Sent to the default gateway's UDP
//! port 5351; the answer comes back to the request's source port.
//!
//! Requests:
//!
//! | bytes | external address (op 0) | map (op 1 UDP, 2 TCP)                 |
//! |-------|-------------------------|---------------------------------------|
//! | 1     | version 0               | version 0                             |
//! | 1     | op 0                    | op                                    |
//! | 2     |                         | reserved, 0                           |
//! | 2     |                         | internal port                         |
//! | 2     |                         | suggested external port (0: any)      |
//! | 4     |                         | lifetime in seconds (0: delete)       |
//!
//! Responses carry op + 128, a result code and the seconds since the
//! gateway's table started (its "epoch"):
//!
//! | bytes | external address (op 128) | map (op 129, 130)                  |
//! |-------|---------------------------|------------------------------------|
//! | 1     | version 0                 | version 0                          |
//! | 1     | 128                       | 128 + op                           |
//! | 2     | result code               | result code                        |
//! | 4     | epoch seconds             | epoch seconds                      |
//! | 4     | external IPv4 address     | internal port                      |
//! | 2+4   |                           | mapped external port, lifetime     |
//!
//! A NAT-PMP gateway answers a PCP request (version 2) with a version 0
//! packet whose result is 1, "unsupported version" (RFC 6887 appendix A):
//! [`Response::decode`] reads that as [`Response::UnsupportedVersion`].
//! All integers are big-endian.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes};

use crate::wire::{DecodeError, Reader};

/// The gateway's port for NAT-PMP and PCP requests.
pub const SERVER_PORT: u16 = 5351;
/// Length of a map request.
pub const MAP_REQUEST_LEN: usize = 12;
/// The result code of success.
pub const SUCCESS: u16 = 0;
/// The result code of a version the gateway does not speak.
pub const UNSUPPORTED_VERSION: u16 = 1;

/// The transport a mapping is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (op 1).
    Udp,
    /// TCP (op 2).
    Tcp,
}

impl Transport {
    fn op(self) -> u8 {
        match self {
            Self::Udp => 1,
            Self::Tcp => 2,
        }
    }
}

/// A request to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// "What is your external address?"
    ExternalAddress,
    /// Map (or with lifetime 0, unmap) a port.
    Map {
        /// UDP or TCP.
        transport: Transport,
        /// Our port on this host.
        internal_port: u16,
        /// The external port we would like (0: any).
        external_port: u16,
        /// Seconds the mapping should last; 0 deletes it.
        lifetime: u32,
    },
}

impl Request {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::ExternalAddress => 2,
            Self::Map { .. } => MAP_REQUEST_LEN,
        }
    }

    /// Writes the request.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match *self {
            Self::ExternalAddress => buf.put_slice(&[0, 0]),
            Self::Map { transport, internal_port, external_port, lifetime } => {
                buf.put_u8(0);
                buf.put_u8(transport.op());
                buf.put_u16(0);
                buf.put_u16(internal_port);
                buf.put_u16(external_port);
                buf.put_u32(lifetime);
            }
        }
    }

    /// The request as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        Bytes::from(buf)
    }
}

/// A gateway's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The answer to [`Request::ExternalAddress`].
    ExternalAddress {
        /// 0 on success (see [`result_text`]).
        result: u16,
        /// Seconds since the gateway's mapping table started.
        epoch: u32,
        /// The gateway's external address (0.0.0.0 when it has none).
        addr: Ipv4Addr,
    },
    /// The answer to [`Request::Map`].
    Map {
        /// UDP or TCP.
        transport: Transport,
        /// 0 on success (see [`result_text`]).
        result: u16,
        /// Seconds since the gateway's mapping table started.
        epoch: u32,
        /// Our port the mapping leads to.
        internal_port: u16,
        /// The external port granted.
        external_port: u16,
        /// Seconds granted (may be less than asked).
        lifetime: u32,
    },
    /// A NAT-PMP gateway's answer to a request of another version (a PCP
    /// request): it speaks NAT-PMP only.
    UnsupportedVersion,
}

impl Response {
    /// Reads a response. Anything but version 0 with a response opcode is
    /// refused; bytes after a complete response are ignored (RFC 6886 lets
    /// later versions extend it).
    pub fn decode(data: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        if r.u8("version")? != 0 {
            return Err(DecodeError::Invalid("NAT-PMP version"));
        }
        let op = r.u8("opcode")?;
        let result = r.u16_be("result code")?;
        if result == UNSUPPORTED_VERSION && op & 0x80 != 0 {
            return Ok(Self::UnsupportedVersion);
        }
        let epoch = r.u32_be("epoch")?;
        match op {
            128 => Ok(Self::ExternalAddress { result, epoch, addr: Ipv4Addr::from(r.u32_be("external address")?) }),
            129 | 130 => Ok(Self::Map {
                transport: if op == 129 { Transport::Udp } else { Transport::Tcp },
                result,
                epoch,
                internal_port: r.u16_be("internal port")?,
                external_port: r.u16_be("external port")?,
                lifetime: r.u32_be("lifetime")?,
            }),
            _ => Err(DecodeError::Invalid("NAT-PMP response opcode")),
        }
    }
}

/// What a NAT-PMP result code means (RFC 6886 section 3.5).
pub fn result_text(code: u16) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized or refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_have_the_rfc_layout() {
        assert_eq!(&Request::ExternalAddress.to_bytes()[..], &[0, 0]);
        let map =
            Request::Map { transport: Transport::Udp, internal_port: 33445, external_port: 33445, lifetime: 7200 };
        let bytes = map.to_bytes();
        assert_eq!(bytes.len(), map.encoded_len());
        assert_eq!(&bytes[..], &[0, 1, 0, 0, 0x82, 0xa5, 0x82, 0xa5, 0, 0, 0x1c, 0x20]);
        let delete = Request::Map { transport: Transport::Tcp, internal_port: 80, external_port: 0, lifetime: 0 };
        assert_eq!(&delete.to_bytes()[..], &[0, 2, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn responses_decode() {
        let external = [0, 128, 0, 0, 0, 0, 1, 0, 203, 0, 113, 7];
        assert_eq!(
            Response::decode(Bytes::copy_from_slice(&external)).unwrap(),
            Response::ExternalAddress { result: 0, epoch: 256, addr: Ipv4Addr::new(203, 0, 113, 7) }
        );
        let map = [0, 129, 0, 0, 0, 0, 0, 9, 0x82, 0xa5, 0x82, 0xa6, 0, 0, 0x0e, 0x10];
        assert_eq!(
            Response::decode(Bytes::copy_from_slice(&map)).unwrap(),
            Response::Map {
                transport: Transport::Udp,
                result: 0,
                epoch: 9,
                internal_port: 33445,
                external_port: 33446,
                lifetime: 3600
            }
        );
        let refused = [0, 130, 0, 2, 0, 0, 0, 9, 0, 80, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Response::decode(Bytes::copy_from_slice(&refused)).unwrap(),
            Response::Map { transport: Transport::Tcp, result: 2, .. }
        ));
        // The answer a NAT-PMP gateway gives a PCP request.
        let pcp_refused = [0, 129, 0, 1, 0, 0, 0, 9];
        assert_eq!(Response::decode(Bytes::copy_from_slice(&pcp_refused)).unwrap(), Response::UnsupportedVersion);
        for bad in [&[2u8, 129, 0, 0][..], &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[0, 128, 0, 0, 0, 0, 0, 0, 1]] {
            assert!(Response::decode(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(result_text(2), "not authorized or refused");
    }

    proptest! {
        #[test]
        fn decoding_never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = Response::decode(Bytes::from(data));
        }

        #[test]
        fn map_responses_round_trip(udp: bool, result in 0u16..6, epoch: u32, internal: u16, external: u16, lifetime: u32) {
            let transport = if udp { Transport::Udp } else { Transport::Tcp };
            let mut wire = vec![0, 128 + transport.op()];
            wire.extend_from_slice(&result.to_be_bytes());
            wire.extend_from_slice(&epoch.to_be_bytes());
            wire.extend_from_slice(&internal.to_be_bytes());
            wire.extend_from_slice(&external.to_be_bytes());
            wire.extend_from_slice(&lifetime.to_be_bytes());
            let decoded = Response::decode(Bytes::from(wire)).unwrap();
            if result == UNSUPPORTED_VERSION {
                prop_assert_eq!(decoded, Response::UnsupportedVersion);
            } else {
                prop_assert_eq!(decoded, Response::Map { transport, result, epoch, internal_port: internal, external_port: external, lifetime });
            }
        }
    }
}
