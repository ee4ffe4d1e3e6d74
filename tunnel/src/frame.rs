//! Frames of the tuntox protocol, version 2 (magic `0xA26B`), as C tuntox
//! sends them, plus our extensions. The full byte-by-byte description is
//! `tunnel/PROTOCOL.md`; this module is its codec and holds no state.
//!
//! Every frame is one Tox lossless custom packet (at most 1373 bytes, first
//! byte `0xA2`): an 8-byte big-endian header and a payload of at most 1365
//! bytes.
//!
//! | offset | size | field       | notes                                         |
//! |--------|------|-------------|-----------------------------------------------|
//! | 0      | 2    | magic       | `A2 6B`; `A2 6A` is version 1 and is refused  |
//! | 2      | 2    | type        | see [`kind`]                                  |
//! | 4      | 2    | connid      | tunnel id; REQUESTTUNNEL: destination port    |
//! | 6      | 2    | data_length | payload length, at most 1365                  |
//! | 8      | n    | payload     | bytes past `8 + data_length` are ignored      |
//!
//! The receiver rules are C tuntox's (`parse_lossless_packet` in its main.c):
//! drop a packet shorter than 8 bytes, with another magic, shorter than
//! `8 + data_length`, or whose `data_length` exceeds 1365.
//!
//! Decoding never panics and never indexes untrusted input; payloads stay
//! [`Bytes`] slices of the received packet (no copy).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The version 2 magic, C tuntox's `PROTOCOL_MAGIC_V2`.
pub const MAGIC: u16 = 0xA26B;
/// The version 1 magic (tuntox 0.0.10.1 and earlier), recognised and refused.
pub const MAGIC_V1: u16 = 0xA26A;
/// Header length, C tuntox's `PROTOCOL_BUFFER_OFFSET`.
pub const HEADER_LEN: usize = 8;
/// The largest frame: Tox's `TOX_MAX_CUSTOM_PACKET_SIZE`.
pub const MAX_FRAME_LEN: usize = 1373;
/// The largest payload (1365).
pub const MAX_PAYLOAD: usize = MAX_FRAME_LEN - HEADER_LEN;

/// Frame types (the header's `type` field).
pub mod kind {
    /// Answer to [`PING`]; echoes its payload.
    pub const PONG: u16 = 0x0100;
    /// Round-trip probe; any payload.
    pub const PING: u16 = 0x0108;
    /// Stream bytes of a tunnel.
    pub const TCP: u16 = 0x0600;
    /// End of a tunnel's stream (C tuntox: the whole tunnel closes).
    pub const TCP_FIN: u16 = 0x0601;
    /// Client asks the server to open a tunnel to a host and port.
    pub const REQUEST_TUNNEL: u16 = 0x0602;
    /// Server refuses a request (defined by C tuntox, never sent by it).
    pub const DENY_TUNNEL: u16 = 0x0604;
    /// Server opened the tunnel.
    pub const ACK_TUNNEL: u16 = 0x0610;
    /// Extension: the receiver of a tunnel's bytes grants more credit.
    pub const WINDOW: u16 = 0x0680;
    /// Extension: abort a tunnel in both directions.
    pub const RESET: u16 = 0x0681;
}

/// Marker that opens an [`Extension`] block: ASCII `TR`.
pub const EXT_MAGIC: [u8; 2] = *b"TR";
/// The extension block version we speak.
pub const EXT_VERSION: u8 = 1;

/// Our extension block, appended where C tuntox does not look: after a NUL
/// that ends the host name of a REQUESTTUNNEL, and after the forward id of an
/// ACKTUNNEL. See PROTOCOL.md §7.
///
/// | offset | size | field   | notes                                        |
/// |--------|------|---------|----------------------------------------------|
/// | 0      | 2    | magic   | `54 52` (`TR`)                               |
/// | 2      | 1    | version | 1; a higher version is read as version 1     |
/// | 3      | 1    | flags   | bit 0 [`FLOW`], bit 1 [`HALF_CLOSE`]         |
/// | 4      | 4    | window  | bytes the sender accepts before a WINDOW     |
/// | 8      | ...  | (future)| ignored                                      |
///
/// [`FLOW`]: Extension::FLOW
/// [`HALF_CLOSE`]: Extension::HALF_CLOSE
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extension {
    /// Feature bits: [`Extension::FLOW`], [`Extension::HALF_CLOSE`].
    pub flags: u8,
    /// The announcer's receive window for this tunnel, in bytes.
    pub window: u32,
}

impl Extension {
    /// Encoded length.
    pub const LEN: usize = 8;
    /// Credit-based flow control: WINDOW frames.
    pub const FLOW: u8 = 0x01;
    /// TCP_FIN closes one direction only; RESET aborts.
    pub const HALF_CLOSE: u8 = 0x02;

    /// Whether both sides' blocks carry `flag`.
    pub fn both(ours: Option<Self>, theirs: Option<Self>, flag: u8) -> bool {
        matches!((ours, theirs), (Some(a), Some(b)) if a.flags & b.flags & flag != 0)
    }

    fn put(&self, buf: &mut impl BufMut) {
        buf.put_slice(&EXT_MAGIC);
        buf.put_u8(EXT_VERSION);
        buf.put_u8(self.flags);
        buf.put_u32(self.window);
    }

    /// Reads a block; `None` when `b` does not hold one (C tuntox peers).
    fn parse(mut b: &[u8]) -> Option<Self> {
        if b.len() < Self::LEN || b[..2] != EXT_MAGIC || b[2] == 0 {
            return None;
        }
        b.advance(3);
        Some(Self { flags: b.get_u8(), window: b.get_u32() })
    }
}

/// Why a server refused a tunnel, sent in DENYTUNNEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The rules file does not allow this destination (or the role refuses).
    NotAllowed,
    /// The host name did not resolve.
    ResolveFailed,
    /// The destination refused the connection.
    ConnectionRefused,
    /// The connection attempt timed out.
    Timeout,
    /// The destination's network or host is unreachable.
    Unreachable,
    /// The server has too many tunnels open.
    TooManyTunnels,
    /// The request itself is invalid (bad host name).
    BadRequest,
    /// The connection failed for another reason.
    Failed,
    /// Any other failure; also a code we do not know.
    Other(u8),
}

impl DenyReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Self::NotAllowed => 1,
            Self::ResolveFailed => 2,
            Self::ConnectionRefused => 3,
            Self::Timeout => 4,
            Self::Unreachable => 5,
            Self::TooManyTunnels => 6,
            Self::BadRequest => 7,
            Self::Failed => 8,
            Self::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NotAllowed,
            2 => Self::ResolveFailed,
            3 => Self::ConnectionRefused,
            4 => Self::Timeout,
            5 => Self::Unreachable,
            6 => Self::TooManyTunnels,
            7 => Self::BadRequest,
            8 => Self::Failed,
            other => Self::Other(other),
        }
    }

    /// The SOCKS5 reply code (RFC 1928 §6) that says the same.
    pub fn socks_reply(self) -> u8 {
        use crate::socks::{
            REPLY_CONNECTION_REFUSED, REPLY_GENERAL_FAILURE, REPLY_HOST_UNREACHABLE, REPLY_NOT_ALLOWED,
        };
        match self {
            Self::NotAllowed => REPLY_NOT_ALLOWED,
            Self::ResolveFailed | Self::Timeout | Self::Unreachable => REPLY_HOST_UNREACHABLE,
            Self::ConnectionRefused => REPLY_CONNECTION_REFUSED,
            Self::TooManyTunnels | Self::BadRequest | Self::Failed | Self::Other(_) => REPLY_GENERAL_FAILURE,
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed => f.write_str("not allowed by the server's rules"),
            Self::ResolveFailed => f.write_str("host name did not resolve"),
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::Timeout => f.write_str("connection timed out"),
            Self::Unreachable => f.write_str("destination unreachable"),
            Self::TooManyTunnels => f.write_str("server has too many tunnels"),
            Self::BadRequest => f.write_str("invalid request"),
            Self::Failed => f.write_str("connection failed"),
            Self::Other(code) => write!(f, "refused (code {code})"),
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// PING (0x0108): connid 0, any payload.
    Ping(Bytes),
    /// PONG (0x0100): connid 0, the PING's payload.
    Pong(Bytes),
    /// REQUESTTUNNEL (0x0602): connid = port; payload = forward_id, host,
    /// and (ours) a NUL and an [`Extension`].
    RequestTunnel {
        /// Destination TCP port (the header's connid).
        port: u16,
        /// The client's id for this request, echoed in the answer.
        forward_id: u32,
        /// Host name or IP literal as sent (not validated here; no NUL).
        host: Bytes,
        /// Our extension block, absent from C tuntox clients.
        ext: Option<Extension>,
    },
    /// ACKTUNNEL (0x0610): connid = the new tunnel id; payload = forward_id
    /// and (ours) an [`Extension`].
    AckTunnel {
        /// The tunnel id chosen by the server.
        tunnel: u16,
        /// The request's forward id.
        forward_id: u32,
        /// Our extension block, absent from C tuntox servers.
        ext: Option<Extension>,
    },
    /// DENYTUNNEL (0x0604): connid 0; payload = forward_id, reason code,
    /// UTF-8 text.
    DenyTunnel {
        /// The request's forward id.
        forward_id: u32,
        /// Why.
        reason: DenyReason,
        /// Human-readable detail (may be empty).
        message: Bytes,
    },
    /// TCP (0x0600): stream bytes.
    Tcp {
        /// Tunnel id.
        tunnel: u16,
        /// The bytes.
        data: Bytes,
    },
    /// TCP_FIN (0x0601): end of stream.
    TcpFin {
        /// Tunnel id.
        tunnel: u16,
    },
    /// WINDOW (0x0680, extension): more credit for the tunnel's sender.
    Window {
        /// Tunnel id.
        tunnel: u16,
        /// Additional bytes the sender may send.
        increment: u32,
    },
    /// RESET (0x0681, extension): abort the tunnel.
    Reset {
        /// Tunnel id.
        tunnel: u16,
    },
}

/// Why a packet is not a frame we accept. Small and `Copy`: it never holds
/// packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than 8 bytes.
    #[error("packet of {len} bytes is shorter than the 8-byte header")]
    TooShort {
        /// Packet length.
        len: usize,
    },
    /// The peer speaks protocol version 1.
    #[error("peer speaks tuntox protocol version 1 (magic 0xA26A); it must be upgraded to version 2")]
    Version1,
    /// Not a tuntox frame.
    #[error("bad magic 0x{0:04X}, expected 0xA26B")]
    BadMagic(u16),
    /// The packet ends before the declared payload does.
    #[error("declared {declared} payload bytes, packet holds {available}")]
    Truncated {
        /// `data_length`.
        declared: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// `data_length` above 1365.
    #[error("declared payload of {declared} bytes exceeds 1365")]
    TooLong {
        /// `data_length`.
        declared: usize,
    },
    /// A type we do not know (C tuntox ignores these too).
    #[error("unknown frame type 0x{0:04X}")]
    UnknownType(u16),
    /// A known type whose payload is malformed.
    #[error("malformed frame of type 0x{kind:04X}: {reason}")]
    Malformed {
        /// The frame type.
        kind: u16,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why a frame cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Payload above 1365 bytes.
    #[error("payload of {0} bytes exceeds 1365")]
    TooLong(usize),
    /// A host name with a NUL byte cannot be sent (NUL starts the extension).
    #[error("host name contains a NUL byte")]
    NulInHost,
}

/// Writes a header into the first 8 bytes of `buf`.
///
/// # Panics
/// If `buf` is shorter than 8 bytes (a caller bug, never input-driven).
pub fn write_header(buf: &mut [u8], kind: u16, connid: u16, data_length: u16) {
    let mut h = &mut buf[..HEADER_LEN];
    h.put_u16(MAGIC);
    h.put_u16(kind);
    h.put_u16(connid);
    h.put_u16(data_length);
}

impl Frame {
    /// The header's type field.
    pub fn kind(&self) -> u16 {
        match self {
            Self::Ping(_) => kind::PING,
            Self::Pong(_) => kind::PONG,
            Self::RequestTunnel { .. } => kind::REQUEST_TUNNEL,
            Self::AckTunnel { .. } => kind::ACK_TUNNEL,
            Self::DenyTunnel { .. } => kind::DENY_TUNNEL,
            Self::Tcp { .. } => kind::TCP,
            Self::TcpFin { .. } => kind::TCP_FIN,
            Self::Window { .. } => kind::WINDOW,
            Self::Reset { .. } => kind::RESET,
        }
    }

    fn connid(&self) -> u16 {
        match self {
            Self::Ping(_) | Self::Pong(_) | Self::DenyTunnel { .. } => 0,
            Self::RequestTunnel { port, .. } => *port,
            Self::AckTunnel { tunnel, .. }
            | Self::Tcp { tunnel, .. }
            | Self::TcpFin { tunnel }
            | Self::Window { tunnel, .. }
            | Self::Reset { tunnel } => *tunnel,
        }
    }

    fn payload_len(&self) -> usize {
        let ext_len = |ext: &Option<Extension>| ext.map_or(0, |_| Extension::LEN);
        match self {
            Self::Ping(p) | Self::Pong(p) => p.len(),
            Self::RequestTunnel { host, ext, .. } => 4 + host.len() + ext.map_or(0, |_| 1 + Extension::LEN),
            Self::AckTunnel { ext, .. } => 4 + ext_len(ext),
            Self::DenyTunnel { message, .. } => 5 + message.len(),
            Self::Tcp { data, .. } => data.len(),
            Self::TcpFin { .. } | Self::Reset { .. } => 0,
            Self::Window { .. } => 4,
        }
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Appends the encoded frame to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let len = self.payload_len();
        if len > MAX_PAYLOAD {
            return Err(EncodeError::TooLong(len));
        }
        if let Self::RequestTunnel { host, .. } = self
            && host.contains(&0)
        {
            return Err(EncodeError::NulInHost);
        }
        let mut header = [0; HEADER_LEN];
        write_header(&mut header, self.kind(), self.connid(), len as u16);
        buf.put_slice(&header);
        match self {
            Self::Ping(p) | Self::Pong(p) => buf.put_slice(p),
            Self::RequestTunnel { forward_id, host, ext, .. } => {
                buf.put_u32(*forward_id);
                buf.put_slice(host);
                if let Some(ext) = ext {
                    buf.put_u8(0);
                    ext.put(buf);
                }
            }
            Self::AckTunnel { forward_id, ext, .. } => {
                buf.put_u32(*forward_id);
                if let Some(ext) = ext {
                    ext.put(buf);
                }
            }
            Self::DenyTunnel { forward_id, reason, message } => {
                buf.put_u32(*forward_id);
                buf.put_u8(reason.code());
                buf.put_slice(message);
            }
            Self::Tcp { data, .. } => buf.put_slice(data),
            Self::TcpFin { .. } | Self::Reset { .. } => {}
            Self::Window { increment, .. } => buf.put_u32(*increment),
        }
        Ok(())
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes one packet. Payload fields are slices of `packet`.
    pub fn decode(packet: &Bytes) -> Result<Self, DecodeError> {
        let mut h = packet.as_ref();
        if h.len() < HEADER_LEN {
            return Err(DecodeError::TooShort { len: h.len() });
        }
        let magic = h.get_u16();
        if magic == MAGIC_V1 {
            return Err(DecodeError::Version1);
        }
        if magic != MAGIC {
            return Err(DecodeError::BadMagic(magic));
        }
        let kind = h.get_u16();
        let connid = h.get_u16();
        let declared = usize::from(h.get_u16());
        let available = packet.len() - HEADER_LEN;
        if available < declared {
            return Err(DecodeError::Truncated { declared, available });
        }
        if declared > MAX_PAYLOAD {
            return Err(DecodeError::TooLong { declared });
        }
        let payload = packet.slice(HEADER_LEN..HEADER_LEN + declared);
        let malformed = |reason| DecodeError::Malformed { kind, reason };
        let frame = match kind {
            kind::PING => Self::Ping(payload),
            kind::PONG => Self::Pong(payload),
            kind::REQUEST_TUNNEL => {
                if payload.len() < 4 {
                    return Err(malformed("shorter than the 4-byte forward id"));
                }
                let forward_id = payload.slice(..4).get_u32();
                let rest = payload.slice(4..);
                // C tuntox copies the host with strncpy, so it stops at a NUL.
                let (host, ext) = match rest.iter().position(|&b| b == 0) {
                    Some(nul) => (rest.slice(..nul), Extension::parse(&rest[nul + 1..])),
                    None => (rest, None),
                };
                Self::RequestTunnel { port: connid, forward_id, host, ext }
            }
            kind::ACK_TUNNEL => {
                if payload.len() < 4 {
                    return Err(malformed("shorter than the 4-byte forward id"));
                }
                let forward_id = payload.slice(..4).get_u32();
                Self::AckTunnel { tunnel: connid, forward_id, ext: Extension::parse(&payload[4..]) }
            }
            kind::DENY_TUNNEL => {
                if payload.len() < 4 {
                    return Err(malformed("shorter than the 4-byte forward id"));
                }
                let forward_id = payload.slice(..4).get_u32();
                let reason = payload.get(4).map_or(DenyReason::Other(0), |&c| DenyReason::from_code(c));
                let message = if payload.len() > 5 { payload.slice(5..) } else { Bytes::new() };
                Self::DenyTunnel { forward_id, reason, message }
            }
            kind::TCP => Self::Tcp { tunnel: connid, data: payload },
            kind::TCP_FIN => Self::TcpFin { tunnel: connid },
            kind::WINDOW => {
                if payload.len() < 4 {
                    return Err(malformed("shorter than the 4-byte increment"));
                }
                Self::Window { tunnel: connid, increment: payload.slice(..4).get_u32() }
            }
            kind::RESET => Self::Reset { tunnel: connid },
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<_>>().into()
    }

    fn roundtrip(frame: Frame, bytes: &str) {
        let wire = hex(bytes);
        assert_eq!(frame.to_bytes().unwrap(), wire, "{frame:?}");
        assert_eq!(frame.encoded_len(), wire.len());
        assert_eq!(Frame::decode(&wire).unwrap(), frame);
    }

    #[test]
    fn exact_bytes_of_every_frame_type() {
        // C tuntox -p sends exactly this (research §1).
        roundtrip(Frame::Ping(Bytes::from_static(b"Hello")), "a2 6b 01 08 00 00 00 05 48 65 6c 6c 6f");
        roundtrip(Frame::Pong(Bytes::from_static(b"Hello")), "a2 6b 01 00 00 00 00 05 48 65 6c 6c 6f");
        // REQUESTTUNNEL 127.0.0.1:22, forward id 0x01020304, as C tuntox.
        roundtrip(
            Frame::RequestTunnel {
                port: 22,
                forward_id: 0x0102_0304,
                host: Bytes::from_static(b"127.0.0.1"),
                ext: None,
            },
            "a2 6b 06 02 00 16 00 0d 01 02 03 04 31 32 37 2e 30 2e 30 2e 31",
        );
        // ... and ours: NUL, "TR", version 1, flags 3, window 0x00100000.
        roundtrip(
            Frame::RequestTunnel {
                port: 443,
                forward_id: 7,
                host: Bytes::from_static(b"a.b"),
                ext: Some(Extension { flags: 3, window: 0x0010_0000 }),
            },
            "a2 6b 06 02 01 bb 00 10 00 00 00 07 61 2e 62 00 54 52 01 03 00 10 00 00",
        );
        roundtrip(
            Frame::AckTunnel { tunnel: 0xbeef, forward_id: 0x0102_0304, ext: None },
            "a2 6b 06 10 be ef 00 04 01 02 03 04",
        );
        roundtrip(
            Frame::AckTunnel { tunnel: 1, forward_id: 9, ext: Some(Extension { flags: 1, window: 65536 }) },
            "a2 6b 06 10 00 01 00 0c 00 00 00 09 54 52 01 01 00 01 00 00",
        );
        roundtrip(
            Frame::DenyTunnel {
                forward_id: 5,
                reason: DenyReason::ConnectionRefused,
                message: Bytes::from_static(b"no"),
            },
            "a2 6b 06 04 00 00 00 07 00 00 00 05 03 6e 6f",
        );
        roundtrip(Frame::Tcp { tunnel: 0x1234, data: Bytes::from_static(b"hi") }, "a2 6b 06 00 12 34 00 02 68 69");
        roundtrip(Frame::TcpFin { tunnel: 0x1234 }, "a2 6b 06 01 12 34 00 00");
        roundtrip(Frame::Window { tunnel: 2, increment: 0x8000 }, "a2 6b 06 80 00 02 00 04 00 00 80 00");
        roundtrip(Frame::Reset { tunnel: 2 }, "a2 6b 06 81 00 02 00 00");
    }

    #[test]
    fn receiver_rules_match_c_tuntox() {
        assert_eq!(Frame::decode(&hex("a2 6b 01 08 00 00 00")), Err(DecodeError::TooShort { len: 7 }));
        assert_eq!(Frame::decode(&hex("a2 6a 01 08 00 00 00 00")), Err(DecodeError::Version1));
        assert!(DecodeError::Version1.to_string().contains("version 1"));
        assert_eq!(Frame::decode(&hex("a2 6c 01 08 00 00 00 00")), Err(DecodeError::BadMagic(0xa26c)));
        assert_eq!(
            Frame::decode(&hex("a2 6b 06 00 00 01 00 03 61 62")),
            Err(DecodeError::Truncated { declared: 3, available: 2 })
        );
        let mut long = hex("a2 6b 06 00 00 01 05 56").to_vec();
        long.resize(8 + 1366, 0);
        assert_eq!(Frame::decode(&long.into()), Err(DecodeError::TooLong { declared: 1366 }));
        // Trailing bytes past data_length are ignored.
        assert_eq!(
            Frame::decode(&hex("a2 6b 06 00 00 01 00 01 61 62 63")),
            Ok(Frame::Tcp { tunnel: 1, data: Bytes::from_static(b"a") })
        );
        assert_eq!(Frame::decode(&hex("a2 6b 07 77 00 00 00 00")), Err(DecodeError::UnknownType(0x0777)));
        assert!(matches!(Frame::decode(&hex("a2 6b 06 10 00 01 00 03 00 00 01")), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn extension_is_where_c_tuntox_does_not_look() {
        // An ACK with trailing bytes that are not our block: no extension.
        let f = Frame::decode(&hex("a2 6b 06 10 00 01 00 06 00 00 00 09 ff ff")).unwrap();
        assert_eq!(f, Frame::AckTunnel { tunnel: 1, forward_id: 9, ext: None });
        // A request whose host is followed by NUL and junk: host up to the NUL.
        let f = Frame::decode(&hex("a2 6b 06 02 00 50 00 08 00 00 00 01 68 00 78 79")).unwrap();
        assert_eq!(f, Frame::RequestTunnel { port: 80, forward_id: 1, host: Bytes::from_static(b"h"), ext: None });
        // Version 0 is not a block; later versions and extra bytes are read as version 1.
        let f = Frame::decode(&hex("a2 6b 06 10 00 01 00 0d 00 00 00 09 54 52 07 01 00 00 00 10 ee")).unwrap();
        assert_eq!(f, Frame::AckTunnel { tunnel: 1, forward_id: 9, ext: Some(Extension { flags: 1, window: 16 }) });
        let f = Frame::decode(&hex("a2 6b 06 10 00 01 00 0c 00 00 00 09 54 52 00 01 00 00 00 10")).unwrap();
        assert_eq!(f, Frame::AckTunnel { tunnel: 1, forward_id: 9, ext: None });
    }

    #[test]
    fn deny_without_reason_and_encode_limits() {
        let f = Frame::decode(&hex("a2 6b 06 04 00 00 00 04 00 00 00 05")).unwrap();
        assert_eq!(f, Frame::DenyTunnel { forward_id: 5, reason: DenyReason::Other(0), message: Bytes::new() });
        assert_eq!(Frame::Tcp { tunnel: 1, data: vec![0; 1366].into() }.to_bytes(), Err(EncodeError::TooLong(1366)));
        assert_eq!(
            Frame::RequestTunnel { port: 1, forward_id: 1, host: Bytes::from_static(b"a\0b"), ext: None }.to_bytes(),
            Err(EncodeError::NulInHost)
        );
        for code in 0..=255 {
            assert_eq!(DenyReason::from_code(code).code(), code);
        }
    }

    fn any_ext() -> impl Strategy<Value = Option<Extension>> {
        proptest::option::of((any::<u8>(), any::<u32>()).prop_map(|(flags, window)| Extension { flags, window }))
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from);
        let host = proptest::collection::vec(1u8..=255, 0..300).prop_map(Bytes::from);
        prop_oneof![
            bytes(MAX_PAYLOAD).prop_map(Frame::Ping),
            bytes(MAX_PAYLOAD).prop_map(Frame::Pong),
            (any::<u16>(), any::<u32>(), host, any_ext())
                .prop_map(|(port, forward_id, host, ext)| Frame::RequestTunnel { port, forward_id, host, ext }),
            (any::<u16>(), any::<u32>(), any_ext()).prop_map(|(tunnel, forward_id, ext)| Frame::AckTunnel {
                tunnel,
                forward_id,
                ext
            }),
            (any::<u32>(), any::<u8>(), bytes(300)).prop_map(|(forward_id, code, message)| Frame::DenyTunnel {
                forward_id,
                reason: DenyReason::from_code(code),
                message
            }),
            (any::<u16>(), bytes(MAX_PAYLOAD + 1)).prop_map(|(tunnel, data)| Frame::Tcp { tunnel, data }),
            any::<u16>().prop_map(|tunnel| Frame::TcpFin { tunnel }),
            (any::<u16>(), any::<u32>()).prop_map(|(tunnel, increment)| Frame::Window { tunnel, increment }),
            any::<u16>().prop_map(|tunnel| Frame::Reset { tunnel }),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(frame in any_frame()) {
            match frame.to_bytes() {
                Ok(wire) => {
                    prop_assert_eq!(wire.len(), frame.encoded_len());
                    prop_assert!(wire.len() <= MAX_FRAME_LEN);
                    prop_assert_eq!(wire[0], 0xA2);
                    prop_assert_eq!(Frame::decode(&wire), Ok(frame));
                }
                Err(EncodeError::TooLong(n)) => prop_assert!(n > MAX_PAYLOAD),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        #[test]
        fn decode_never_panics(packet in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Frame::decode(&packet.into());
        }

        #[test]
        fn truncated_or_flipped_frames_never_panic(frame in any_frame(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            if let Ok(wire) = frame.to_bytes() {
                let _ = Frame::decode(&wire.slice(..cut % (wire.len() + 1)));
                let mut flipped = wire.to_vec();
                let i = flip.0 % flipped.len();
                flipped[i] ^= flip.1;
                let _ = Frame::decode(&flipped.into());
            }
        }
    }
}
