//! The VPN control protocol: a few small messages in custom lossless
//! packets, and the one-byte header of data packets.
//!
//! Every control packet starts with [`CONTROL_ID`], then the protocol
//! version and the message type; integers are big-endian. Every data packet
//! is [`DATA_ID`] followed by exactly one IP packet. The byte layouts are in
//! `docs/protocol.md` (section "VPN") and repeated on each type below.
//!
//! ```text
//! control packet:  0xA8 | version (1) | type | body
//! data packet:     0xD8 | IPv4 or IPv6 packet (at most the session MTU)
//! ```
//!
//! Flow: the client sends [`Hello`]; the server answers [`Assign`] or
//! [`Refuse`]. Either side may send [`Goodbye`] when it ends the session.
//! There is no keepalive: the Tox friend connection under the packets
//! already detects a lost peer and the caller reports it.
//!
//! Versions: a message's version byte is the version its sender speaks
//! (this crate speaks [`VERSION`]). A server answers a [`Hello`] in the
//! lower of the client's version and its own. Every later version keeps the
//! body layouts below and may only append fields, so decoders ignore bytes
//! after the fields they know.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::mtu::TOX_MAX_CUSTOM_PACKET;

/// The first byte of every VPN control packet (a Tox custom lossless
/// packet; the range is 160-191, and the tunnel protocol uses 0xA2).
pub const CONTROL_ID: u8 = 0xA8;
/// The first byte of every VPN data packet (a Tox custom lossy packet; the
/// range is 200-254).
pub const DATA_ID: u8 = 0xD8;
/// The control protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The most routes one message lists.
pub const MAX_ROUTES: usize = 64;
/// The longest refusal text, in bytes.
pub const MAX_TEXT: usize = 255;

const TYPE_HELLO: u8 = 1;
const TYPE_ASSIGN: u8 = 2;
const TYPE_REFUSE: u8 = 3;
const TYPE_GOODBYE: u8 = 4;

const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// A control packet that cannot be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The first byte is not [`CONTROL_ID`].
    #[error("not a VPN control packet")]
    NotControl,
    /// The packet ends inside a field.
    #[error("control packet truncated")]
    Truncated,
    /// Version 0 does not exist.
    #[error("control protocol version 0")]
    BadVersion,
    /// A message type this version does not know.
    #[error("unknown control message type {0}")]
    UnknownType(u8),
    /// An address family other than 4 or 6.
    #[error("unknown address family {0}")]
    BadFamily(u8),
    /// A prefix length beyond the address size, or host bits set in a route.
    #[error("bad prefix")]
    BadPrefix,
    /// More than [`MAX_ROUTES`] routes, or more than one address per family.
    #[error("too many entries")]
    TooMany,
    /// Refusal text that is not UTF-8.
    #[error("refusal text is not UTF-8")]
    BadText,
    /// The encoded packet would exceed what one Tox packet carries.
    #[error("control packet too long")]
    TooLong,
}

/// Why a server refuses or ends a session. Unknown codes survive as
/// [`Reason::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The server does not serve VPN clients (no `--vpn`). Code 1.
    Disabled,
    /// No version both sides speak. Code 2.
    Version,
    /// Every address of the pool is taken. Code 3.
    PoolFull,
    /// The hello was malformed or asked for something impossible. Code 4.
    BadHello,
    /// Data arrived without a session (the server restarted): send a new
    /// hello. Code 5.
    NoSession,
    /// The sender is shutting down. Code 6.
    Shutdown,
    /// A code this version does not know.
    Other(u8),
}

impl Reason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Reason::Disabled => 1,
            Reason::Version => 2,
            Reason::PoolFull => 3,
            Reason::BadHello => 4,
            Reason::NoSession => 5,
            Reason::Shutdown => 6,
            Reason::Other(code) => code,
        }
    }

    /// The reason for a wire code.
    pub fn from_code(code: u8) -> Reason {
        match code {
            1 => Reason::Disabled,
            2 => Reason::Version,
            3 => Reason::PoolFull,
            4 => Reason::BadHello,
            5 => Reason::NoSession,
            6 => Reason::Shutdown,
            other => Reason::Other(other),
        }
    }

    /// Whether a client should give up rather than ask again later.
    pub fn is_final(self) -> bool {
        matches!(self, Reason::Disabled | Reason::Version | Reason::BadHello)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Disabled => f.write_str("the VPN is not enabled on the server"),
            Reason::Version => f.write_str("no common protocol version"),
            Reason::PoolFull => f.write_str("the address pool is full"),
            Reason::BadHello => f.write_str("malformed request"),
            Reason::NoSession => f.write_str("no session"),
            Reason::Shutdown => f.write_str("shutting down"),
            Reason::Other(code) => write!(f, "reason {code}"),
        }
    }
}

/// Client to server: asks for a session.
///
/// | bytes | field |
/// |---|---|
/// | 2 | MTU the client asks for (0 = the server's) |
/// | 1 | route count N (at most 64) |
/// | N × (2 + 4 or 16) | routes the client asks for, each a [prefix](#prefixes) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The MTU asked for; 0 leaves it to the server.
    pub mtu: u16,
    /// Networks the client wants to reach through the server.
    pub routes: Vec<IpNet>,
}

/// One address given to the client, with the server's address on the same
/// network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    /// The client's address and the prefix length of the VPN network.
    pub client: IpNet,
    /// The server's address on that network.
    pub server: IpAddr,
}

/// Server to client: the session's addresses, MTU and the routes offered.
///
/// | bytes | field |
/// |---|---|
/// | 2 | MTU of the session |
/// | 1 | address count A (0-2, at most one per family) |
/// | A × (2 + 2 × (4 or 16)) | family, prefix length, client address, server address |
/// | 1 | route count N (at most 64) |
/// | N × (2 + 4 or 16) | routes the server offers, each a prefix |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// The MTU both sides use.
    pub mtu: u16,
    /// The client's addresses (an IPv4 one, an IPv6 one, or both).
    pub addresses: Vec<Address>,
    /// Everything the server routes for its clients.
    pub routes: Vec<IpNet>,
}

impl Assign {
    /// The IPv4 address, if any.
    pub fn v4(&self) -> Option<Address> {
        self.addresses.iter().copied().find(|a| a.client.addr().is_ipv4())
    }

    /// The IPv6 address, if any.
    pub fn v6(&self) -> Option<Address> {
        self.addresses.iter().copied().find(|a| a.client.addr().is_ipv6())
    }
}

/// Server to client: no session.
///
/// | bytes | field |
/// |---|---|
/// | 1 | reason code |
/// | 1 | text length T |
/// | T | text, UTF-8, for the user |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// Why.
    pub reason: Reason,
    /// A sentence for the user.
    pub text: String,
}

/// Either side: the session ends.
///
/// | bytes | field |
/// |---|---|
/// | 1 | reason code |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goodbye {
    /// Why.
    pub reason: Reason,
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1.
    Hello(Hello),
    /// Type 2.
    Assign(Assign),
    /// Type 3.
    Refuse(Refuse),
    /// Type 4.
    Goodbye(Goodbye),
}

/// A decoded control packet: the sender's version and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The version the sender speaks.
    pub version: u8,
    /// The message.
    pub message: Message,
}

impl Control {
    /// A message in this crate's version.
    pub fn new(message: Message) -> Self {
        Control { version: VERSION, message }
    }

    /// Decodes a whole control packet (starting with [`CONTROL_ID`]).
    /// Bytes after the known fields are ignored (later versions append).
    pub fn decode(mut buf: &[u8]) -> Result<Control, ControlError> {
        if get_u8(&mut buf)? != CONTROL_ID {
            return Err(ControlError::NotControl);
        }
        let version = get_u8(&mut buf)?;
        if version == 0 {
            return Err(ControlError::BadVersion);
        }
        let message = match get_u8(&mut buf)? {
            TYPE_HELLO => {
                let mtu = get_u16(&mut buf)?;
                let routes = get_routes(&mut buf)?;
                Message::Hello(Hello { mtu, routes })
            }
            TYPE_ASSIGN => {
                let mtu = get_u16(&mut buf)?;
                let count = usize::from(get_u8(&mut buf)?);
                if count > 2 {
                    return Err(ControlError::TooMany);
                }
                let mut addresses: Vec<Address> = Vec::with_capacity(count);
                for _ in 0..count {
                    let (family, len) = (get_u8(&mut buf)?, get_u8(&mut buf)?);
                    let client = get_addr(&mut buf, family)?;
                    let server = get_addr(&mut buf, family)?;
                    let client = IpNet::new(client, len).map_err(|_| ControlError::BadPrefix)?;
                    if addresses.iter().any(|a| a.client.addr().is_ipv4() == client.addr().is_ipv4()) {
                        return Err(ControlError::TooMany);
                    }
                    addresses.push(Address { client, server });
                }
                let routes = get_routes(&mut buf)?;
                Message::Assign(Assign { mtu, addresses, routes })
            }
            TYPE_REFUSE => {
                let reason = Reason::from_code(get_u8(&mut buf)?);
                let len = usize::from(get_u8(&mut buf)?);
                let text = take(&mut buf, len)?;
                let text = std::str::from_utf8(text).map_err(|_| ControlError::BadText)?.to_owned();
                Message::Refuse(Refuse { reason, text })
            }
            TYPE_GOODBYE => Message::Goodbye(Goodbye { reason: Reason::from_code(get_u8(&mut buf)?) }),
            other => return Err(ControlError::UnknownType(other)),
        };
        Ok(Control { version, message })
    }

    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        3 + match &self.message {
            Message::Hello(h) => 2 + routes_len(&h.routes),
            Message::Assign(a) => {
                2 + 1
                    + a.addresses.iter().map(|x| 2 + 2 * addr_len(x.client.addr())).sum::<usize>()
                    + routes_len(&a.routes)
            }
            Message::Refuse(r) => 2 + r.text.len(),
            Message::Goodbye(_) => 1,
        }
    }

    /// Encodes the packet, checking every limit the decoder checks.
    pub fn encode(&self) -> Result<Bytes, ControlError> {
        let len = self.encoded_len();
        if len > TOX_MAX_CUSTOM_PACKET {
            return Err(ControlError::TooLong);
        }
        let mut buf = BytesMut::with_capacity(len);
        buf.put_u8(CONTROL_ID);
        if self.version == 0 {
            return Err(ControlError::BadVersion);
        }
        buf.put_u8(self.version);
        match &self.message {
            Message::Hello(h) => {
                buf.put_u8(TYPE_HELLO);
                buf.put_u16(h.mtu);
                put_routes(&mut buf, &h.routes)?;
            }
            Message::Assign(a) => {
                buf.put_u8(TYPE_ASSIGN);
                buf.put_u16(a.mtu);
                let v4 = a.addresses.iter().filter(|x| x.client.addr().is_ipv4()).count();
                if v4 > 1 || a.addresses.len() - v4 > 1 {
                    return Err(ControlError::TooMany);
                }
                buf.put_u8(a.addresses.len() as u8);
                for x in &a.addresses {
                    if x.client.addr().is_ipv4() != x.server.is_ipv4() {
                        return Err(ControlError::BadFamily(0));
                    }
                    buf.put_u8(family(x.client.addr()));
                    buf.put_u8(x.client.prefix_len());
                    put_addr(&mut buf, x.client.addr());
                    put_addr(&mut buf, x.server);
                }
                put_routes(&mut buf, &a.routes)?;
            }
            Message::Refuse(r) => {
                if r.text.len() > MAX_TEXT {
                    return Err(ControlError::TooLong);
                }
                buf.put_u8(TYPE_REFUSE);
                buf.put_u8(r.reason.code());
                buf.put_u8(r.text.len() as u8);
                buf.put_slice(r.text.as_bytes());
            }
            Message::Goodbye(g) => {
                buf.put_u8(TYPE_GOODBYE);
                buf.put_u8(g.reason.code());
            }
        }
        debug_assert_eq!(buf.len(), len);
        Ok(buf.freeze())
    }
}

/// What a server that does not serve VPN clients tells them.
pub const DISABLED_TEXT: &str = "this tuntox server does not serve VPN clients (no --vpn)";

/// The answer of a server without a VPN to a control packet: a Refuse
/// ([`Reason::Disabled`]) when `packet` is a Hello, else nothing. Such a
/// server needs no [`crate::Engine`] (nor a pool or a device) for it.
pub fn refuse_when_disabled(packet: &[u8]) -> Option<Bytes> {
    match Control::decode(packet) {
        Ok(Control { message: Message::Hello(_), .. }) => {
            let refuse = Refuse { reason: Reason::Disabled, text: DISABLED_TEXT.to_owned() };
            Control::new(Message::Refuse(refuse)).encode().ok()
        }
        _ => None,
    }
}

/// A refusal text cut to [`MAX_TEXT`] bytes on a character boundary.
pub fn refusal_text(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

fn addr_len(addr: IpAddr) -> usize {
    if addr.is_ipv4() { 4 } else { 16 }
}

fn routes_len(routes: &[IpNet]) -> usize {
    1 + routes.iter().map(|r| 2 + addr_len(r.addr())).sum::<usize>()
}

fn put_addr(buf: &mut BytesMut, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => buf.put_slice(&a.octets()),
        IpAddr::V6(a) => buf.put_slice(&a.octets()),
    }
}

fn put_routes(buf: &mut BytesMut, routes: &[IpNet]) -> Result<(), ControlError> {
    if routes.len() > MAX_ROUTES {
        return Err(ControlError::TooMany);
    }
    buf.put_u8(routes.len() as u8);
    for route in routes {
        if route.trunc() != *route {
            return Err(ControlError::BadPrefix);
        }
        buf.put_u8(family(route.addr()));
        buf.put_u8(route.prefix_len());
        put_addr(buf, route.addr());
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], ControlError> {
    if buf.len() < n {
        return Err(ControlError::Truncated);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn get_u8(buf: &mut &[u8]) -> Result<u8, ControlError> {
    if buf.remaining() < 1 {
        return Err(ControlError::Truncated);
    }
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut &[u8]) -> Result<u16, ControlError> {
    if buf.remaining() < 2 {
        return Err(ControlError::Truncated);
    }
    Ok(buf.get_u16())
}

fn get_addr(buf: &mut &[u8], family: u8) -> Result<IpAddr, ControlError> {
    match family {
        FAMILY_V4 => {
            let b = take(buf, 4)?;
            Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        }
        FAMILY_V6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(take(buf, 16)?);
            Ok(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        other => Err(ControlError::BadFamily(other)),
    }
}

fn get_routes(buf: &mut &[u8]) -> Result<Vec<IpNet>, ControlError> {
    let count = usize::from(get_u8(buf)?);
    if count > MAX_ROUTES {
        return Err(ControlError::TooMany);
    }
    let mut routes = Vec::with_capacity(count);
    for _ in 0..count {
        let (family, len) = (get_u8(buf)?, get_u8(buf)?);
        let net = match get_addr(buf, family)? {
            IpAddr::V4(a) => IpNet::V4(Ipv4Net::new(a, len).map_err(|_| ControlError::BadPrefix)?),
            IpAddr::V6(a) => IpNet::V6(Ipv6Net::new(a, len).map_err(|_| ControlError::BadPrefix)?),
        };
        if net.trunc() != net {
            return Err(ControlError::BadPrefix);
        }
        routes.push(net);
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn hello_bytes() {
        let hello =
            Control::new(Message::Hello(Hello { mtu: 1280, routes: vec![net("192.168.1.0/24"), net("fd00:1::/48")] }));
        let bytes = hello.encode().unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0xA8, 1, 1,             // id, version, hello
            0x05, 0x00,             // mtu 1280
            2,                      // two routes
            4, 24, 192, 168, 1, 0,  // 192.168.1.0/24
            6, 48, 0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // fd00:1::/48
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(bytes.len(), hello.encoded_len());
        assert_eq!(Control::decode(&bytes).unwrap(), hello);
    }

    #[test]
    fn a_server_without_vpn_refuses_hellos_only() {
        let hello = Control::new(Message::Hello(Hello { mtu: 0, routes: vec![] })).encode().unwrap();
        let answer = refuse_when_disabled(&hello).expect("a refusal");
        let Control { message: Message::Refuse(refuse), .. } = Control::decode(&answer).unwrap() else {
            panic!("not a refuse")
        };
        assert_eq!((refuse.reason, refuse.text.as_str()), (Reason::Disabled, DISABLED_TEXT));
        let goodbye = Control::new(Message::Goodbye(Goodbye { reason: Reason::Shutdown })).encode().unwrap();
        assert_eq!(refuse_when_disabled(&goodbye), None);
        assert_eq!(refuse_when_disabled(&[0xA8, 1]), None);
    }

    #[test]
    fn assign_bytes() {
        let assign = Control::new(Message::Assign(Assign {
            mtu: 1372,
            addresses: vec![
                Address { client: net("10.7.0.2/24"), server: "10.7.0.1".parse().unwrap() },
                Address { client: net("fd12::2/64"), server: "fd12::1".parse().unwrap() },
            ],
            routes: vec![net("0.0.0.0/0")],
        }));
        let bytes = assign.encode().unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0xA8, 1, 2,
            0x05, 0x5C,                              // mtu 1372
            2,                                       // two addresses
            4, 24, 10, 7, 0, 2, 10, 7, 0, 1,         // 10.7.0.2/24, server 10.7.0.1
            6, 64, 0xfd, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
                   0xfd, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            1, 4, 0, 0, 0, 0, 0,                     // one route: 0.0.0.0/0
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(Control::decode(&bytes).unwrap(), assign);
    }

    #[test]
    fn refuse_and_goodbye_bytes() {
        let refuse = Control::new(Message::Refuse(Refuse { reason: Reason::Disabled, text: "off".into() }));
        assert_eq!(&refuse.encode().unwrap()[..], &[0xA8, 1, 3, 1, 3, b'o', b'f', b'f']);
        let bye = Control::new(Message::Goodbye(Goodbye { reason: Reason::Shutdown }));
        assert_eq!(&bye.encode().unwrap()[..], &[0xA8, 1, 4, 6]);
        assert_eq!(
            Control::decode(&[0xA8, 1, 4, 99]).unwrap().message,
            Message::Goodbye(Goodbye { reason: Reason::Other(99) })
        );
    }

    #[test]
    fn decode_rejects() {
        assert_eq!(Control::decode(&[]), Err(ControlError::Truncated));
        assert_eq!(Control::decode(&[0xA2, 1, 1]), Err(ControlError::NotControl));
        assert_eq!(Control::decode(&[0xA8, 0, 4, 6]), Err(ControlError::BadVersion));
        assert_eq!(Control::decode(&[0xA8, 1, 9]), Err(ControlError::UnknownType(9)));
        assert_eq!(Control::decode(&[0xA8, 1, 1, 5, 0, 1, 5, 8, 1, 2, 3, 4]), Err(ControlError::BadFamily(5)));
        // 10.0.0.1/8 has host bits set.
        assert_eq!(Control::decode(&[0xA8, 1, 1, 5, 0, 1, 4, 8, 10, 0, 0, 1]), Err(ControlError::BadPrefix));
        assert_eq!(Control::decode(&[0xA8, 1, 1, 5, 0, 1, 4, 33, 0, 0, 0, 0]), Err(ControlError::BadPrefix));
        assert_eq!(Control::decode(&[0xA8, 1, 1, 5, 0, 65]), Err(ControlError::TooMany));
        assert_eq!(Control::decode(&[0xA8, 1, 3, 1, 2, 0xff, 0xfe]), Err(ControlError::BadText));
        assert_eq!(Control::decode(&[0xA8, 1, 3, 1, 2, b'a']), Err(ControlError::Truncated));
        // Two IPv4 addresses in one assignment.
        let two_v4 = [0xA8, 1, 2, 5, 0, 2, 4, 24, 10, 0, 0, 2, 10, 0, 0, 1, 4, 24, 10, 0, 0, 3, 10, 0, 0, 1, 0];
        assert_eq!(Control::decode(&two_v4), Err(ControlError::TooMany));
    }

    #[test]
    fn later_versions_may_append() {
        let packet = [0xA8, 7, 4, 6, 0xEE, 0xEE];
        let decoded = Control::decode(&packet).unwrap();
        assert_eq!(decoded.version, 7);
        assert_eq!(decoded.message, Message::Goodbye(Goodbye { reason: Reason::Shutdown }));
    }

    #[test]
    fn encode_checks_limits() {
        let routes = vec![net("10.0.0.0/8"); MAX_ROUTES + 1];
        assert_eq!(Control::new(Message::Hello(Hello { mtu: 0, routes })).encode(), Err(ControlError::TooMany));
        let sloppy = vec![net("10.0.0.1/8")];
        assert_eq!(
            Control::new(Message::Hello(Hello { mtu: 0, routes: sloppy })).encode(),
            Err(ControlError::BadPrefix)
        );
        let long = Refuse { reason: Reason::Disabled, text: "x".repeat(256) };
        assert_eq!(Control::new(Message::Refuse(long)).encode(), Err(ControlError::TooLong));
        assert_eq!(refusal_text(&"é".repeat(200)).len(), 254);
        // The largest legal message fits a Tox packet.
        let routes = vec![net("fd00::/8"); MAX_ROUTES];
        let big = Control::new(Message::Hello(Hello { mtu: 0, routes }));
        assert!(big.encode().unwrap().len() <= TOX_MAX_CUSTOM_PACKET);
    }

    #[test]
    fn reasons_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(Reason::from_code(code).code(), code);
        }
        assert!(Reason::Disabled.is_final() && !Reason::PoolFull.is_final());
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap()).trunc()),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap()).trunc()),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u16>(), prop::collection::vec(arb_net(), 0..8))
                .prop_map(|(mtu, routes)| Message::Hello(Hello { mtu, routes })),
            (any::<u16>(), any::<u32>(), 0u8..=32, any::<u128>(), prop::collection::vec(arb_net(), 0..8)).prop_map(
                |(mtu, a4, l4, a6, routes)| Message::Assign(Assign {
                    mtu,
                    addresses: vec![
                        Address {
                            client: IpNet::new(Ipv4Addr::from(a4).into(), l4).unwrap(),
                            server: Ipv4Addr::from(a4 ^ 1).into()
                        },
                        Address {
                            client: IpNet::new(Ipv6Addr::from(a6).into(), 64).unwrap(),
                            server: Ipv6Addr::from(a6 ^ 1).into()
                        },
                    ],
                    routes
                })
            ),
            (any::<u8>(), "\\PC{0,40}")
                .prop_map(|(c, text)| Message::Refuse(Refuse { reason: Reason::from_code(c), text })),
            any::<u8>().prop_map(|c| Message::Goodbye(Goodbye { reason: Reason::from_code(c) })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(message in arb_message(), version in 1u8..=255) {
            let control = Control { version, message };
            let bytes = control.encode().unwrap();
            prop_assert_eq!(bytes.len(), control.encoded_len());
            prop_assert_eq!(Control::decode(&bytes).unwrap(), control);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Control::decode(&bytes);
        }

        #[test]
        fn decode_survives_damage(message in arb_message(), cut in any::<prop::sample::Index>(),
                                  flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let bytes = Control::new(message).encode().unwrap().to_vec();
            let _ = Control::decode(&bytes[..cut.index(bytes.len() + 1)]);
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            if let Ok(decoded) = Control::decode(&flipped) {
                // Whatever decodes re-encodes to something that decodes the same.
                let again = decoded.encode().unwrap();
                prop_assert_eq!(Control::decode(&again).unwrap(), decoded);
            }
        }
    }
}
