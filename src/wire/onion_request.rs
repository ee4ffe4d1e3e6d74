//! Onion requests (0x80, 0x81, 0x82): a payload for an announce node
//! wrapped in three layers of encryption, one per hop of a path, so that no
//! hop learns both who sent it and where it goes.
//!
//! What travels, hop by hop (`En` is sealed with the key of the client's
//! temporary secret key n and hop n's DHT public key; all three layers use
//! the one nonce of the packet):
//!
//! | from → to         | bytes                                                                |
//! |-------------------|----------------------------------------------------------------------|
//! | client → hop 1    | `[0x80][nonce 24][temp pk 1 32][E1(layer 1)]`                        |
//! | hop 1 → hop 2     | `[0x81][nonce 24][temp pk 2 32][E2(layer 2)][RETURN_1 59]`           |
//! | hop 2 → hop 3     | `[0x82][nonce 24][temp pk 3 32][E3(layer 3)][RETURN_2 118]`          |
//! | hop 3 → dest      | `[payload][RETURN_3 177]` ([`OnionExit`]; the payload starts with its kind) |
//! | client → TCP relay | TCP packet 8: `[8][nonce 24][IP_Port hop 2 19][temp pk 2 32][E2(layer 2)]` |
//!
//! | layer | plaintext                                                   |
//! |-------|-------------------------------------------------------------|
//! | 1     | `[IP_Port hop 2 19][temp pk 2 32][E2(layer 2)]` ([`OnionForwardLayer`]) |
//! | 2     | `[IP_Port hop 3 19][temp pk 3 32][E3(layer 3)]` ([`OnionForwardLayer`]) |
//! | 3     | `[IP_Port destination 19][payload]` ([`OnionExitLayer`])    |
//!
//! Each hop appends a return block so that the answer can find its way back
//! ([`super::onion_response`]): `[nonce 24][MAC 16][ciphertext]`, sealed
//! with a symmetric key only that hop knows, over the address the packet came
//! from and the previous hop's block:
//!
//! | block    | bytes | plaintext                               |
//! |----------|-------|-----------------------------------------|
//! | RETURN_1 | 59    | `[IP_Port of the client 19]` ([`ReturnAddr`]) |
//! | RETURN_2 | 118   | `[IP_Port of hop 1 19][RETURN_1 59]`    |
//! | RETURN_3 | 177   | `[IP_Port of hop 2 19][RETURN_2 118]`   |
//!
//! IP_Ports are the fixed 19-byte [`OnionIpPort`]. The temporary key pairs,
//! the nonce and the hops' symmetric keys come from the caller (and its RNG);
//! [`OnionPath`] holds what a client precomputes for one path.
//!
//! Facts from c-toxcore 0.2.18 `onion.c` (golden bytes in the tests come
//! from its `create_onion_packet` and `create_onion_packet_tcp`):
//! - `create_onion_packet` draws one nonce and seals all three layers with
//!   it; it refuses an empty payload and one longer than
//!   `ONION_MAX_DATA_SIZE` = 1400 - 226 = 1174 bytes
//!   ([`MAX_ONION_PAYLOAD_LEN`]). `create_onion_path` makes the keys: layer 1
//!   uses the client's **DHT** key pair (`public_key1` is its DHT public
//!   key), layers 2 and 3 fresh random key pairs, one per path.
//!   [`OnionPath::new`] takes any three key pairs, so the caller decides.
//! - `create_onion_packet_tcp` writes the TCP form above without its id
//!   byte (`TCP_client.c` `send_onion_request` adds 8); layer 1 is left out
//!   since the relay reads hop 2's address in the clear. `TCP_server.c`
//!   `handle_TCP_packet` passes the bytes after the nonce to `onion_send_1`,
//!   which refuses fewer than 154 or more than 1335 of them.
//! - `handle_send_initial`, `handle_send_1`, `handle_send_2` drop packets
//!   over `ONION_MAX_PACKET_SIZE` = 1400 bytes and at or under 226, 218 and
//!   210 bytes (`1 + ONION_SEND_1/2/3`: at least one payload byte), then
//!   require the plaintext to fill the packet. Each sends the rest of the
//!   layer on with the same nonce, taken from the received packet, and
//!   appends its return block under a random nonce (`random_nonce`) and its
//!   `secret_symmetric_key` (new every 2 hours, `change_symmetric_key`).
//! - Every next-hop address goes through `ipport_unpack` with the family
//!   check on: families 2 and 10 only ([`OnionIpPort`]).
//! - `handle_send_2` (hop 3) forwards only payloads whose first byte is
//!   0x83 (announce request) or 0x85 (onion data request): not 0x87, the
//!   announce request with group data. We refuse to build anything else.
//! - Return blocks are `ONION_RETURN_1/2/3` = 59, 118 and 177 bytes (`onion.h`).
//!   Only the hop that wrote one reads it, so its plaintext is that hop's
//!   business; c-toxcore writes the `IP_Port` the packet came from, and a TCP
//!   relay (`TCP_server.c` `con_id_to_ip_port`) writes family
//!   `TCP_CLIENT_FAMILY` = 11 with its connection number and identifier,
//!   which `handle_recv_1` reads back with the family check off.
//!
//! Spec: <https://toktok.ltd/spec.html#onion>.

use std::fmt;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes};

use super::onion_ip_port::{ONION_IP_PORT_LEN, OnionIpPort};
use super::packed_node::PackedNode;
use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, KeyPair, MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// Kind of the packet a client sends to hop 1 (`NET_PACKET_ONION_SEND_INITIAL`).
pub const ONION_REQUEST_0_KIND: u8 = 0x80;
/// Kind of the packet hop 1 sends to hop 2 (`NET_PACKET_ONION_SEND_1`).
pub const ONION_REQUEST_1_KIND: u8 = 0x81;
/// Kind of the packet hop 2 sends to hop 3 (`NET_PACKET_ONION_SEND_2`).
pub const ONION_REQUEST_2_KIND: u8 = 0x82;
/// Id of the TCP relay packet that carries [`OnionRequestTcp`].
pub const TCP_ONION_REQUEST_ID: u8 = 8;

/// Longest onion packet a node accepts, in either direction (`ONION_MAX_PACKET_SIZE`).
pub const MAX_ONION_PACKET_LEN: usize = 1400;
/// Length of hop 1's return block (`ONION_RETURN_1`).
pub const ONION_RETURN_1_LEN: usize = NONCE_LEN + MAC_LEN + ONION_IP_PORT_LEN;
/// Length of hop 2's return block (`ONION_RETURN_2`).
pub const ONION_RETURN_2_LEN: usize = NONCE_LEN + MAC_LEN + ONION_IP_PORT_LEN + ONION_RETURN_1_LEN;
/// Length of hop 3's return block (`ONION_RETURN_3`).
pub const ONION_RETURN_3_LEN: usize = NONCE_LEN + MAC_LEN + ONION_IP_PORT_LEN + ONION_RETURN_2_LEN;

/// What one layer adds around the next: an IP_Port, a temporary key and a
/// MAC (`ONION_SEND_BASE`).
const LAYER_OVERHEAD: usize = ONION_IP_PORT_LEN + PUBLIC_KEY_LEN + MAC_LEN;
/// Kind, nonce and temporary key in front of every onion request.
const HEADER_LEN: usize = 1 + NONCE_LEN + PUBLIC_KEY_LEN;
/// Everything of a 0x80 packet but the payload (`1 + ONION_SEND_1`).
const REQUEST_0_OVERHEAD: usize = 1 + NONCE_LEN + 3 * LAYER_OVERHEAD;
/// Everything of a 0x81 packet but the payload (`1 + ONION_SEND_2`).
const REQUEST_1_OVERHEAD: usize = 1 + NONCE_LEN + 2 * LAYER_OVERHEAD + ONION_RETURN_1_LEN;
/// Everything of a 0x82 packet but the payload (`1 + ONION_SEND_3`).
const REQUEST_2_OVERHEAD: usize = 1 + NONCE_LEN + LAYER_OVERHEAD + ONION_RETURN_2_LEN;
/// Everything of the TCP form but the payload.
const TCP_OVERHEAD: usize = NONCE_LEN + 2 * LAYER_OVERHEAD + ONION_IP_PORT_LEN;

/// Longest payload a client can send along a path (`ONION_MAX_DATA_SIZE`).
pub const MAX_ONION_PAYLOAD_LEN: usize = MAX_ONION_PACKET_LEN - REQUEST_0_OVERHEAD;
/// The payload kinds hop 3 forwards: announce request and onion data request.
pub const EXIT_PAYLOAD_KINDS: [u8; 2] = [0x83, 0x85];

/// Why a sealed part of an onion packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The MAC did not verify (or the key was unusable).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// It opened, but the plaintext is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A payload an onion packet cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OnionPayloadError {
    /// Nothing to send: c-toxcore refuses empty payloads.
    #[error("onion payload is empty")]
    Empty,
    /// Longer than the packet allows.
    #[error("onion payload is {len} bytes; at most {max} fit")]
    TooLong {
        /// The payload's length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// A kind the hops would not pass on.
    #[error("onion payload kind {0:#04x} is not one the path passes on")]
    Kind(u8),
}

/// Checks a payload's length and first byte.
pub(super) fn check_payload(payload: &[u8], max: usize, kinds: &[u8]) -> Result<(), OnionPayloadError> {
    let Some(&kind) = payload.first() else {
        return Err(OnionPayloadError::Empty);
    };
    if payload.len() > max {
        return Err(OnionPayloadError::TooLong { len: payload.len(), max });
    }
    if !kinds.contains(&kind) {
        return Err(OnionPayloadError::Kind(kind));
    }
    Ok(())
}

/// Seals `buf[MAC_LEN..]` in place and writes its MAC into `buf[..MAC_LEN]`.
fn seal_tail(key: &SharedKey, nonce: &Nonce, buf: &mut [u8]) {
    let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
    let mac = key.seal_in_place_detached(nonce, body);
    mac_slot.copy_from_slice(&mac);
}

/// Where a hop sent a request from, as it writes it into its return block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnAddr {
    /// A UDP peer (the client, or the previous hop), as an [`OnionIpPort`].
    Udp(SocketAddr),
    /// A client connected to this node's TCP relay (hop 1 only). Written as
    /// c-toxcore's relay does, with family 11 (`TCP_CLIENT_FAMILY`): the
    /// connection number in address bytes 0..4, the connection's identifier
    /// in bytes 8..16 (both big-endian here; only the relay reads them), the
    /// port zero.
    TcpClient {
        /// The relay's connection number.
        conn_id: u32,
        /// A value that tells this connection from an earlier one in the same slot.
        identifier: u64,
    },
}

/// c-toxcore's `TCP_CLIENT_FAMILY`.
const TCP_CLIENT_FAMILY: u8 = 11;

impl ReturnAddr {
    /// Reads the 19 bytes.
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let raw: [u8; ONION_IP_PORT_LEN] = r.array("return address")?;
        let mut r = Reader::new(Bytes::copy_from_slice(&raw));
        if raw.first() == Some(&TCP_CLIENT_FAMILY) {
            r.u8("return address family")?;
            let conn_id = r.u32_be("return connection number")?;
            r.array::<4>("return address padding")?;
            let identifier = r.u64_be("return connection identifier")?;
            return Ok(Self::TcpClient { conn_id, identifier });
        }
        Ok(Self::Udp(OnionIpPort::decode(&mut r)?.addr))
    }

    /// Writes the 19 bytes.
    fn encode(&self, buf: &mut impl BufMut) {
        match *self {
            Self::Udp(addr) => OnionIpPort::new(addr).encode(buf),
            Self::TcpClient { conn_id, identifier } => {
                buf.put_u8(TCP_CLIENT_FAMILY);
                buf.put_u32(conn_id);
                buf.put_bytes(0, 4);
                buf.put_u64(identifier);
                buf.put_u16(0);
            }
        }
    }
}

/// A return block: `[nonce 24][MAC 16][ciphertext]`, opaque to all but the
/// hop that sealed it. `LEN` is 59, 118 or 177 ([`OnionReturn1`],
/// [`OnionReturn2`], [`OnionReturn3`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OnionReturn<const LEN: usize>([u8; LEN]);

/// Hop 1's return block: the client's address.
pub type OnionReturn1 = OnionReturn<ONION_RETURN_1_LEN>;
/// Hop 2's return block: hop 1's address and [`OnionReturn1`].
pub type OnionReturn2 = OnionReturn<ONION_RETURN_2_LEN>;
/// Hop 3's return block: hop 2's address and [`OnionReturn2`].
pub type OnionReturn3 = OnionReturn<ONION_RETURN_3_LEN>;

impl<const LEN: usize> OnionReturn<LEN> {
    /// Wraps the bytes of a block.
    pub const fn from_bytes(bytes: [u8; LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// Reads a block off `r`.
    pub fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Self(r.array("onion return block")?))
    }

    /// Writes the block.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    /// Seals `[addr 19][inner]` into a block of `LEN` bytes. Only the three
    /// block types call it, each with an `inner` that makes the sizes agree.
    fn seal(key: &SharedKey, nonce: &Nonce, addr: &ReturnAddr, inner: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(LEN);
        buf.put_slice(nonce.as_bytes());
        buf.put_bytes(0, MAC_LEN);
        addr.encode(&mut buf);
        buf.put_slice(inner);
        seal_tail(key, nonce, &mut buf[NONCE_LEN..]);
        let mut block = [0u8; LEN];
        block.copy_from_slice(&buf);
        Self(block)
    }

    /// Checks the MAC and returns a reader over the plaintext.
    fn open(&self, key: &SharedKey) -> Result<Reader, OpenError> {
        let mut r = Reader::new(Bytes::copy_from_slice(&self.0));
        let nonce = Nonce::from_bytes(r.array("onion return nonce")?);
        Ok(Reader::new(key.open(&nonce, &r.rest())?))
    }
}

impl<const LEN: usize> fmt::Debug for OnionReturn<LEN> {
    /// The length only: the bytes are ciphertext.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionReturn<{LEN}>(..)")
    }
}

impl OnionReturn1 {
    /// Hop 1's block: where the request came from, sealed with the hop's
    /// symmetric key under a fresh random nonce.
    pub fn seal_addr(key: &SharedKey, nonce: &Nonce, from: ReturnAddr) -> Self {
        Self::seal(key, nonce, &from, &[])
    }

    /// Opens hop 1's own block: where to send the response.
    pub fn open_addr(&self, key: &SharedKey) -> Result<ReturnAddr, OpenError> {
        let mut r = self.open(key)?;
        let addr = ReturnAddr::decode(&mut r)?;
        r.finish()?;
        Ok(addr)
    }
}

impl OnionReturn2 {
    /// Hop 2's block: hop 1's address and hop 1's block.
    pub fn seal_addr(key: &SharedKey, nonce: &Nonce, from: SocketAddr, inner: &OnionReturn1) -> Self {
        Self::seal(key, nonce, &ReturnAddr::Udp(from), inner.as_bytes())
    }

    /// Opens hop 2's own block: hop 1's address and hop 1's block.
    pub fn open_addr(&self, key: &SharedKey) -> Result<(SocketAddr, OnionReturn1), OpenError> {
        let mut r = self.open(key)?;
        let addr = OnionIpPort::decode(&mut r)?.addr;
        let inner = OnionReturn1::decode(&mut r)?;
        r.finish()?;
        Ok((addr, inner))
    }
}

impl OnionReturn3 {
    /// Hop 3's block: hop 2's address and hop 2's block.
    pub fn seal_addr(key: &SharedKey, nonce: &Nonce, from: SocketAddr, inner: &OnionReturn2) -> Self {
        Self::seal(key, nonce, &ReturnAddr::Udp(from), inner.as_bytes())
    }

    /// Opens hop 3's own block: hop 2's address and hop 2's block.
    pub fn open_addr(&self, key: &SharedKey) -> Result<(SocketAddr, OnionReturn2), OpenError> {
        let mut r = self.open(key)?;
        let addr = OnionIpPort::decode(&mut r)?.addr;
        let inner = OnionReturn2::decode(&mut r)?;
        r.finish()?;
        Ok((addr, inner))
    }
}

/// One path as a client holds it (c-toxcore's `Onion_Path`): the three
/// nodes, and for each the temporary public key shown to it and the key
/// precomputed from that key pair and the node's DHT key.
#[derive(Debug, Clone)]
pub struct OnionPath {
    nodes: [PackedNode; 3],
    temp_keys: [PublicKey; 3],
    keys: [SharedKey; 3],
}

impl OnionPath {
    /// Precomputes a path through `nodes` (hop 1 first), showing hop n the
    /// public half of `temp_keys[n]`. Fails on a node whose key is a
    /// low-order point. Hops 2 and 3 are reached over UDP whatever their
    /// protocol says; hop 1 may be a TCP relay (use
    /// [`tcp_request`](Self::tcp_request) then).
    pub fn new(nodes: [PackedNode; 3], temp_keys: [&KeyPair; 3]) -> Result<Self, CryptoError> {
        let [k1, k2, k3] = temp_keys;
        let keys = [
            SharedKey::precompute(&nodes[0].public_key, k1.secret())?,
            SharedKey::precompute(&nodes[1].public_key, k2.secret())?,
            SharedKey::precompute(&nodes[2].public_key, k3.secret())?,
        ];
        Ok(Self { nodes, temp_keys: [*k1.public(), *k2.public(), *k3.public()], keys })
    }

    /// The three nodes, hop 1 first.
    pub const fn nodes(&self) -> &[PackedNode; 3] {
        &self.nodes
    }

    /// The 0x80 packet that carries `payload` to `dest` along this path, as
    /// `create_onion_packet` makes it: all three layers sealed with `nonce`.
    /// The payload must be 1 to 1174 bytes and start with 0x83 or 0x85.
    pub fn request(&self, nonce: Nonce, dest: SocketAddr, payload: &[u8]) -> Result<OnionRequest0, OnionPayloadError> {
        check_payload(payload, MAX_ONION_PAYLOAD_LEN, &EXIT_PAYLOAD_KINDS)?;
        let sealed = self.seal_layers(&nonce, dest, payload, true);
        Ok(OnionRequest0 { nonce, temp_pk: self.temp_keys[0], payload: sealed.into() })
    }

    /// The TCP form for a path whose hop 1 is a TCP relay, as
    /// `create_onion_packet_tcp` makes it. Same payload rules as
    /// [`request`](Self::request).
    pub fn tcp_request(
        &self,
        nonce: Nonce,
        dest: SocketAddr,
        payload: &[u8],
    ) -> Result<OnionRequestTcp, OnionPayloadError> {
        check_payload(payload, MAX_ONION_PAYLOAD_LEN, &EXIT_PAYLOAD_KINDS)?;
        let sealed = self.seal_layers(&nonce, dest, payload, false);
        let layer = OnionForwardLayer { next: self.nodes[1].addr, temp_pk: self.temp_keys[1], payload: sealed.into() };
        Ok(OnionRequestTcp { nonce, layer })
    }

    /// Writes the layers inside out into one buffer and seals each in place:
    /// `[MAC1][IP_Port 2][pk 2]` (only with `outer`), then
    /// `[MAC2][IP_Port 3][pk 3][MAC3][IP_Port dest][payload]`.
    fn seal_layers(&self, nonce: &Nonce, dest: SocketAddr, payload: &[u8], outer: bool) -> Vec<u8> {
        let mut buf = Vec::with_capacity(3 * LAYER_OVERHEAD - PUBLIC_KEY_LEN + payload.len());
        if outer {
            buf.put_bytes(0, MAC_LEN);
            OnionIpPort::new(self.nodes[1].addr).encode(&mut buf);
            buf.put_slice(self.temp_keys[1].as_bytes());
        }
        let layer2 = buf.len();
        buf.put_bytes(0, MAC_LEN);
        OnionIpPort::new(self.nodes[2].addr).encode(&mut buf);
        buf.put_slice(self.temp_keys[2].as_bytes());
        let layer3 = buf.len();
        buf.put_bytes(0, MAC_LEN);
        OnionIpPort::new(dest).encode(&mut buf);
        buf.put_slice(payload);
        seal_tail(&self.keys[2], nonce, &mut buf[layer3..]);
        seal_tail(&self.keys[1], nonce, &mut buf[layer2..]);
        if outer {
            seal_tail(&self.keys[0], nonce, &mut buf);
        }
        buf
    }
}

/// Reads `[kind][nonce][temp pk][sealed][return block of RET bytes]`, with
/// the total length in `min..=1400`.
fn decode_request<const RET: usize>(
    packet: Bytes,
    kind: u8,
    min: usize,
    what: &'static str,
) -> Result<(Nonce, PublicKey, Bytes, OnionReturn<RET>), DecodeError> {
    let mut r = Reader::new(packet);
    if r.remaining() > MAX_ONION_PACKET_LEN {
        return Err(DecodeError::TrailingBytes(r.remaining() - MAX_ONION_PACKET_LEN));
    }
    if r.remaining() < min {
        return Err(DecodeError::UnexpectedEnd { what, needed: min, available: r.remaining() });
    }
    if r.u8("onion request kind")? != kind {
        return Err(DecodeError::Invalid("onion request kind"));
    }
    let nonce = Nonce::from_bytes(r.array("onion request nonce")?);
    let temp_pk = PublicKey::from_bytes(r.array("onion request temporary key")?);
    let sealed = r.bytes("onion request layer", r.remaining().saturating_sub(RET))?;
    let ret = OnionReturn::decode(&mut r)?;
    r.finish()?;
    Ok((nonce, temp_pk, sealed, ret))
}

/// Opens a layer sealed under `nonce`.
fn open_layer(key: &SharedKey, nonce: &Nonce, sealed: &[u8]) -> Result<Bytes, CryptoError> {
    key.open(nonce, sealed).map(Bytes::from)
}

/// An onion request from the client to hop 1 (0x80), its layer still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionRequest0 {
    /// The nonce of all three layers.
    pub nonce: Nonce,
    /// The temporary public key layer 1 was sealed with.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of layer 1]`.
    pub payload: Bytes,
}

impl OnionRequest0 {
    /// Shortest packet a hop accepts: one byte of payload.
    pub const MIN_LEN: usize = REQUEST_0_OVERHEAD + 1;

    /// Opens layer 1 with the key precomputed from [`temp_pk`](Self::temp_pk)
    /// and this node's DHT secret key.
    pub fn open(&self, key: &SharedKey) -> Result<OnionForwardLayer, OpenError> {
        Ok(OnionForwardLayer::decode(open_layer(key, &self.nonce, &self.payload)?)?)
    }

    /// Reads a whole datagram: 227 to 1400 bytes, as hop 1 accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (nonce, temp_pk, payload, OnionReturn([])) =
            decode_request::<0>(packet.into(), ONION_REQUEST_0_KIND, Self::MIN_LEN, "onion request 0x80")?;
        Ok(Self { nonce, temp_pk, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_REQUEST_0_KIND);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(self.temp_pk.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// An onion request from hop 1 to hop 2 (0x81).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionRequest1 {
    /// The nonce of all three layers.
    pub nonce: Nonce,
    /// The temporary public key layer 2 was sealed with.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of layer 2]`.
    pub payload: Bytes,
    /// Hop 1's return block.
    pub ret: OnionReturn1,
}

impl OnionRequest1 {
    /// Shortest packet a hop accepts: one byte of payload.
    pub const MIN_LEN: usize = REQUEST_1_OVERHEAD + 1;

    /// Opens layer 2 with the key precomputed from [`temp_pk`](Self::temp_pk)
    /// and this node's DHT secret key.
    pub fn open(&self, key: &SharedKey) -> Result<OnionForwardLayer, OpenError> {
        Ok(OnionForwardLayer::decode(open_layer(key, &self.nonce, &self.payload)?)?)
    }

    /// Reads a whole datagram: 219 to 1400 bytes, as hop 2 accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (nonce, temp_pk, payload, ret) =
            decode_request(packet.into(), ONION_REQUEST_1_KIND, Self::MIN_LEN, "onion request 0x81")?;
        Ok(Self { nonce, temp_pk, payload, ret })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_REQUEST_1_KIND);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(self.temp_pk.as_bytes());
        buf.put_slice(&self.payload);
        self.ret.encode(buf);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len() + ONION_RETURN_1_LEN
    }
}

/// An onion request from hop 2 to hop 3 (0x82).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionRequest2 {
    /// The nonce of all three layers.
    pub nonce: Nonce,
    /// The temporary public key layer 3 was sealed with.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of layer 3]`.
    pub payload: Bytes,
    /// Hop 2's return block.
    pub ret: OnionReturn2,
}

impl OnionRequest2 {
    /// Shortest packet a hop accepts: one byte of payload.
    pub const MIN_LEN: usize = REQUEST_2_OVERHEAD + 1;

    /// Opens layer 3 with the key precomputed from [`temp_pk`](Self::temp_pk)
    /// and this node's DHT secret key. Fails, as c-toxcore's hop 3 drops
    /// the packet, unless the payload is an announce or onion data request.
    pub fn open(&self, key: &SharedKey) -> Result<OnionExitLayer, OpenError> {
        Ok(OnionExitLayer::decode(open_layer(key, &self.nonce, &self.payload)?)?)
    }

    /// Reads a whole datagram: 211 to 1400 bytes, as hop 3 accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (nonce, temp_pk, payload, ret) =
            decode_request(packet.into(), ONION_REQUEST_2_KIND, Self::MIN_LEN, "onion request 0x82")?;
        Ok(Self { nonce, temp_pk, payload, ret })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_REQUEST_2_KIND);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(self.temp_pk.as_bytes());
        buf.put_slice(&self.payload);
        self.ret.encode(buf);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len() + ONION_RETURN_2_LEN
    }
}

/// The plaintext of layer 1 or 2: where to send next, and the next layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionForwardLayer {
    /// The next hop (IPv4-mapped addresses come back as IPv4).
    pub next: SocketAddr,
    /// The temporary public key the next layer was sealed with.
    pub temp_pk: PublicKey,
    /// `[MAC 16][ciphertext of the next layer]`.
    pub payload: Bytes,
}

impl OnionForwardLayer {
    /// Reads a whole plaintext: an IP_Port of family 2 or 10, a key and at
    /// least a MAC. (The next hop checks the length of what it receives.)
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let next = OnionIpPort::decode(&mut r)?.addr;
        let temp_pk = PublicKey::from_bytes(r.array("onion layer temporary key")?);
        if r.remaining() < MAC_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "onion layer payload",
                needed: MAC_LEN,
                available: r.remaining(),
            });
        }
        Ok(Self { next, temp_pk, payload: r.rest() })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        OnionIpPort::new(self.next).encode(buf);
        buf.put_slice(self.temp_pk.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        ONION_IP_PORT_LEN + PUBLIC_KEY_LEN + self.payload.len()
    }

    /// Hop 1's packet for [`next`](Self::next): `nonce` is the one the
    /// request came with, `ret` the block hop 1 sealed for its sender.
    pub fn into_request1(self, nonce: Nonce, ret: OnionReturn1) -> OnionRequest1 {
        OnionRequest1 { nonce, temp_pk: self.temp_pk, payload: self.payload, ret }
    }

    /// Hop 2's packet for [`next`](Self::next).
    pub fn into_request2(self, nonce: Nonce, ret: OnionReturn2) -> OnionRequest2 {
        OnionRequest2 { nonce, temp_pk: self.temp_pk, payload: self.payload, ret }
    }
}

/// The plaintext of layer 3: the destination and what to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionExitLayer {
    /// The destination (IPv4-mapped addresses come back as IPv4).
    pub dest: SocketAddr,
    /// The payload, starting with its kind: 0x83 or 0x85.
    pub payload: Bytes,
}

impl OnionExitLayer {
    /// Reads a whole plaintext: an IP_Port of family 2 or 10 and a payload
    /// of kind 0x83 or 0x85 (`handle_send_2`).
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let dest = OnionIpPort::decode(&mut r)?.addr;
        let payload = r.rest();
        match payload.first() {
            None => Err(DecodeError::UnexpectedEnd { what: "onion exit payload", needed: 1, available: 0 }),
            Some(kind) if !EXIT_PAYLOAD_KINDS.contains(kind) => Err(DecodeError::Invalid("onion exit payload kind")),
            Some(_) => Ok(Self { dest, payload }),
        }
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        OnionIpPort::new(self.dest).encode(buf);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        ONION_IP_PORT_LEN + self.payload.len()
    }

    /// What hop 3 sends to [`dest`](Self::dest), with the block it sealed.
    pub fn into_exit(self, ret: OnionReturn3) -> OnionExit {
        OnionExit { payload: self.payload, ret }
    }
}

/// What hop 3 sends to the destination: `[payload][RETURN_3 177]`. The
/// destination answers with an [`OnionResponse3`](super::onion_response::OnionResponse3)
/// carrying the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionExit {
    /// The payload, starting with its kind (an announce or onion data request).
    pub payload: Bytes,
    /// Hop 3's return block.
    pub ret: OnionReturn3,
}

impl OnionExit {
    /// Reads a whole datagram: a payload of at least one byte, the block,
    /// at most 1400 bytes in all. The payload's kind is left to its decoder.
    pub fn decode(datagram: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(datagram);
        if r.remaining() > MAX_ONION_PACKET_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - MAX_ONION_PACKET_LEN));
        }
        if r.remaining() <= ONION_RETURN_3_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "onion exit payload",
                needed: ONION_RETURN_3_LEN + 1,
                available: r.remaining(),
            });
        }
        let payload = r.bytes("onion exit payload", r.remaining() - ONION_RETURN_3_LEN)?;
        let ret = OnionReturn::decode(&mut r)?;
        r.finish()?;
        Ok(Self { payload, ret })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.payload);
        self.ret.encode(buf);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        self.payload.len() + ONION_RETURN_3_LEN
    }
}

/// The onion request a client sends to a TCP relay that is its hop 1: the
/// body of TCP packet 8, after the id byte. The relay reads layer 1 in the
/// clear and forwards it as hop 1 does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionRequestTcp {
    /// The nonce of the remaining layers.
    pub nonce: Nonce,
    /// Hop 2's address, key and the sealed layer 2.
    pub layer: OnionForwardLayer,
}

impl OnionRequestTcp {
    /// Shortest body the relay accepts: one byte of payload.
    pub const MIN_LEN: usize = TCP_OVERHEAD + 1;
    /// Longest body the relay accepts (`onion_send_1`: 1335 bytes after the nonce).
    pub const MAX_LEN: usize =
        NONCE_LEN + MAX_ONION_PACKET_LEN + ONION_IP_PORT_LEN - (1 + NONCE_LEN + ONION_RETURN_1_LEN);

    /// Reads a whole body: 178 to 1359 bytes, as c-toxcore's relay accepts.
    pub fn decode(body: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        if r.remaining() > Self::MAX_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - Self::MAX_LEN));
        }
        if r.remaining() < Self::MIN_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "TCP onion request",
                needed: Self::MIN_LEN,
                available: r.remaining(),
            });
        }
        let nonce = Nonce::from_bytes(r.array("TCP onion request nonce")?);
        let layer = OnionForwardLayer::decode(r.rest())?;
        Ok(Self { nonce, layer })
    }

    /// Writes the body (without the TCP packet id).
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.nonce.as_bytes());
        self.layer.encode(buf);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        NONCE_LEN + self.layer.encoded_len()
    }

    /// The relay's packet for hop 2, with the block it sealed for the client
    /// (a [`ReturnAddr::TcpClient`]).
    pub fn into_request1(self, ret: OnionReturn1) -> OnionRequest1 {
        self.layer.into_request1(self.nonce, ret)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::packed_node::normalize_addr;
    use crate::wire::test_support::{arb_nonce, arb_public_key, arb_socket_addr, damage, encoded, golden};

    /// The golden path's nodes: secret keys counting up from 0x61, 0x62, 0x63.
    fn node_keys() -> [KeyPair; 3] {
        [golden::key_pair(0x61), golden::key_pair(0x62), golden::key_pair(0x63)]
    }

    /// The golden path's temporary keys: from 0x81, 0x82, 0x83.
    fn temp_keys() -> [KeyPair; 3] {
        [golden::key_pair(0x81), golden::key_pair(0x82), golden::key_pair(0x83)]
    }

    fn node_addrs() -> [SocketAddr; 3] {
        [
            "192.0.2.1:33445".parse().unwrap(),
            "198.51.100.2:33446".parse().unwrap(),
            "[2001:db8::3]:33447".parse().unwrap(),
        ]
    }

    fn path_via(addrs: [SocketAddr; 3]) -> OnionPath {
        let nodes = node_keys();
        let temp = temp_keys();
        OnionPath::new(std::array::from_fn(|i| PackedNode::udp(addrs[i], *nodes[i].public())), temp.each_ref()).unwrap()
    }

    fn dest() -> SocketAddr {
        "203.0.113.4:33448".parse().unwrap()
    }

    /// `[0x83, 0, 1, .., 15]`: what the golden packets carry.
    fn payload() -> Vec<u8> {
        std::iter::once(0x83).chain(0..16).collect()
    }

    /// The key hop `hop` opens its layer with.
    fn hop_key(hop: usize, temp_pk: &PublicKey) -> SharedKey {
        SharedKey::precompute(temp_pk, node_keys()[hop].secret()).unwrap()
    }

    /// The symmetric key hop `hop` seals its return blocks with.
    fn return_key(hop: usize) -> SharedKey {
        SharedKey::from_bytes([0x11 * (hop as u8 + 1); 32])
    }

    fn return_nonce(hop: usize) -> Nonce {
        Nonce::from_bytes([0xc0 + hop as u8; 24])
    }

    // c-toxcore 0.2.18's `create_onion_packet` and `create_onion_packet_tcp`
    // (Debian's libtoxcore.a) with an `Onion_Path` made of the keys and
    // addresses above, destination 203.0.113.4:33448, `payload()` and an RNG
    // whose every draw counts up from 0xa0 (so the nonce is `a0 a1 .. b7`).
    const GOLDEN_0X80: [u8; 243] = hex!(
        "80a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e"
        "482fa578c103f06c77ca7b7ead3609547455743de21b7e5016258b59338d6f098071f96c5009d6eb79c62b53a969562e"
        "b61c18f5a323acabab8192b804fb27337d816534c1ddb4fbd7a2fc5feea8d346623753d46a0a2f08de79dbf66da4410d"
        "476efe7790143ae07a7ac4dd18fea806c99d12e3996d1e452a15a0ac8e48a4b5191d2f0d8f5f87ae5aacc7726551dcc3"
        "e859f5e0ae2bbe7f2bb4bdf5b83ea7e84107765f2ea623c00caf4e27e71c3e93c7184003b247cfaed151cc88cb03d00a"
        "af7cc7"
    );
    const GOLDEN_TCP: [u8; 194] = hex!(
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7" // nonce
        "02c6336402000000000000000000000000 82a6"         // hop 2: 198.51.100.2:33446, in the clear
        "b16e7150a191f75488a3e9a9b4b3f8e334f096b87d7bea974c8f6afd0d26254c" // temporary key 2
        "2d59c96b2f558cac4f45814fbda29b6a979754f42ed6581802e39d58e6c9864c3c8e9ccfce522679b6ec94dd5ff92537"
        "2b2fb9775ecee260ca36afa5cac3a6b808bd802810a5c580eaeac591c22f568d78ef71150fce8b83dd04004aec6891d5"
        "372ef381515ecc7ad829cd3c2e94446dab814ca0435520"
    );

    #[test]
    fn sizes_match_c_toxcore_onion_h() {
        // ONION_RETURN_1/2/3, ONION_MAX_DATA_SIZE, 1 + ONION_SEND_1/2/3 (+1).
        assert_eq!((ONION_RETURN_1_LEN, ONION_RETURN_2_LEN, ONION_RETURN_3_LEN), (59, 118, 177));
        assert_eq!(MAX_ONION_PAYLOAD_LEN, 1174);
        assert_eq!((OnionRequest0::MIN_LEN, OnionRequest1::MIN_LEN, OnionRequest2::MIN_LEN), (227, 219, 211));
        assert_eq!((OnionRequestTcp::MIN_LEN, OnionRequestTcp::MAX_LEN), (178, 1359));
    }

    #[test]
    fn matches_c_toxcore_create_onion_packet() {
        let path = path_via(node_addrs());
        let ours = path.request(golden::nonce(), dest(), &payload()).unwrap();
        assert_eq!(encoded!(ours), GOLDEN_0X80);
        let packet = OnionRequest0::decode(GOLDEN_0X80.to_vec()).unwrap();
        assert_eq!(packet, ours);
        assert_eq!(packet.temp_pk, *temp_keys()[0].public());
        // Each hop peels its layer; the same nonce opens all three.
        let layer1 = packet.open(&hop_key(0, &packet.temp_pk)).unwrap();
        assert_eq!(layer1.next, node_addrs()[1]);
        assert_eq!(layer1.temp_pk, *temp_keys()[1].public());
        let layer2 = OnionForwardLayer::decode(
            SharedKey::precompute(&layer1.temp_pk, node_keys()[1].secret())
                .unwrap()
                .open(&packet.nonce, &layer1.payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(layer2.next, node_addrs()[2]);
        let exit =
            OnionExitLayer::decode(hop_key(2, &layer2.temp_pk).open(&packet.nonce, &layer2.payload).unwrap()).unwrap();
        assert_eq!(exit, OnionExitLayer { dest: dest(), payload: payload().into() });
    }

    #[test]
    fn matches_c_toxcore_create_onion_packet_tcp() {
        let path = path_via(node_addrs());
        let ours = path.tcp_request(golden::nonce(), dest(), &payload()).unwrap();
        assert_eq!(encoded!(ours), GOLDEN_TCP);
        let body = OnionRequestTcp::decode(GOLDEN_TCP.to_vec()).unwrap();
        assert_eq!(body, ours);
        assert_eq!(body.layer.next, node_addrs()[1]);
        // The relay forwards it as hop 1 forwards layer 1.
        let client = ReturnAddr::TcpClient { conn_id: 3, identifier: 0x0102_0304_0506_0708 };
        let request1 = body.into_request1(OnionReturn1::seal_addr(&return_key(0), &return_nonce(0), client));
        let layer2 = request1.open(&hop_key(1, &request1.temp_pk)).unwrap();
        let request2 = layer2.into_request2(request1.nonce, OnionReturn2::from_bytes([0; ONION_RETURN_2_LEN]));
        let exit = request2.open(&hop_key(2, &request2.temp_pk)).unwrap();
        assert_eq!((exit.dest, &exit.payload[..]), (dest(), &payload()[..]));
        assert_eq!(request1.ret.open_addr(&return_key(0)), Ok(client));
    }

    #[test]
    fn hops_peel_and_return_blocks_nest() {
        let client: SocketAddr = "192.0.2.200:40000".parse().unwrap();
        let addrs = node_addrs();
        let path = path_via(addrs);
        let payload = payload();
        let request0 = path.request(golden::nonce(), dest(), &payload).unwrap();
        let bytes = encoded!(request0);
        assert_eq!(bytes.len(), 226 + payload.len());

        // Hop 1.
        let received = OnionRequest0::decode(bytes).unwrap();
        let layer1 = received.open(&hop_key(0, &received.temp_pk)).unwrap();
        let ret1 = OnionReturn1::seal_addr(&return_key(0), &return_nonce(0), ReturnAddr::Udp(client));
        let request1 = layer1.clone().into_request1(received.nonce, ret1);
        let bytes = encoded!(request1);
        assert_eq!(bytes.len(), 218 + payload.len());
        assert_eq!(bytes[0], ONION_REQUEST_1_KIND);
        assert_eq!(bytes[bytes.len() - ONION_RETURN_1_LEN..], ret1.as_bytes()[..]);

        // Hop 2.
        let received = OnionRequest1::decode(bytes).unwrap();
        assert_eq!(received, request1);
        let layer2 = received.open(&hop_key(1, &received.temp_pk)).unwrap();
        assert_eq!(layer2.next, addrs[2]);
        let ret2 = OnionReturn2::seal_addr(&return_key(1), &return_nonce(1), addrs[0], &received.ret);
        let request2 = layer2.into_request2(received.nonce, ret2);
        let bytes = encoded!(request2);
        assert_eq!(bytes.len(), 210 + payload.len());

        // Hop 3.
        let received = OnionRequest2::decode(bytes).unwrap();
        assert_eq!(received, request2);
        let layer3 = received.open(&hop_key(2, &received.temp_pk)).unwrap();
        assert_eq!(layer3.dest, dest());
        let ret3 = OnionReturn3::seal_addr(&return_key(2), &return_nonce(2), addrs[1], &received.ret);
        let exit = layer3.into_exit(ret3);
        let bytes = encoded!(exit);
        assert_eq!(bytes.len(), payload.len() + ONION_RETURN_3_LEN);
        assert_eq!(bytes[..payload.len()], payload[..]);
        let received = OnionExit::decode(bytes).unwrap();
        assert_eq!(received, exit);

        // The blocks open in the reverse order, each at its own hop.
        assert_eq!(received.ret.open_addr(&return_key(2)), Ok((addrs[1], ret2)));
        assert_eq!(ret2.open_addr(&return_key(1)), Ok((addrs[0], ret1)));
        assert_eq!(ret1.open_addr(&return_key(0)), Ok(ReturnAddr::Udp(client)));
        // Only there.
        assert_eq!(ret2.open_addr(&return_key(0)), Err(OpenError::Crypto(CryptoError::Decrypt)));
        // And a hop cannot open another's layer.
        assert!(matches!(request1.open(&hop_key(0, &request1.temp_pk)), Err(OpenError::Crypto(_))));
    }

    #[test]
    fn return_blocks_by_hand() {
        let key = return_key(0);
        let nonce = return_nonce(0);
        let v4 = OnionReturn1::seal_addr(&key, &nonce, ReturnAddr::Udp("192.0.2.1:33445".parse().unwrap()));
        let (nonce_part, sealed) = v4.as_bytes().split_at(NONCE_LEN);
        assert_eq!(nonce_part, nonce.as_bytes());
        assert_eq!(key.open(&nonce, sealed).unwrap(), hex!("02 c0000201 000000000000000000000000 82a5"));

        let tcp = ReturnAddr::TcpClient { conn_id: 7, identifier: 0x0102_0304_0506_0708 };
        let block = OnionReturn1::seal_addr(&key, &nonce, tcp);
        let sealed = &block.as_bytes()[NONCE_LEN..];
        assert_eq!(key.open(&nonce, sealed).unwrap(), hex!("0b 00000007 00000000 0102030405060708 0000"));
        assert_eq!(block.open_addr(&key), Ok(tcp));
        assert_eq!(format!("{block:?}"), "OnionReturn<59>(..)");

        // A family other than 2, 10 and 11 does not open.
        let mut plain = hex!("0c 00000007 00000000 0102030405060708 0000").to_vec();
        let mut bad = nonce.as_bytes().to_vec();
        key.seal_into(&nonce, &plain, &mut bad);
        let bad = OnionReturn1::from_bytes(bad.try_into().unwrap());
        assert_eq!(bad.open_addr(&key), Err(OpenError::Decode(DecodeError::Invalid("onion IP_Port family"))));
        // Hops 2 and 3 require a UDP address: a relay's client cannot be there.
        plain[0] = 0x0b;
        plain.extend_from_slice(v4.as_bytes());
        let mut bad = nonce.as_bytes().to_vec();
        key.seal_into(&nonce, &plain, &mut bad);
        let bad = OnionReturn2::from_bytes(bad.try_into().unwrap());
        assert_eq!(bad.open_addr(&key), Err(OpenError::Decode(DecodeError::Invalid("onion IP_Port family"))));
    }

    #[test]
    fn payloads_are_checked() {
        let path = path_via(node_addrs());
        let nonce = golden::nonce();
        assert_eq!(path.request(nonce, dest(), &[]), Err(OnionPayloadError::Empty));
        let mut longest = vec![0x85; MAX_ONION_PAYLOAD_LEN];
        let request = path.request(nonce, dest(), &longest).unwrap();
        assert_eq!(request.encoded_len(), MAX_ONION_PACKET_LEN);
        assert_eq!(OnionRequest0::decode(encoded!(request)), Ok(request));
        longest.push(0);
        assert_eq!(path.request(nonce, dest(), &longest), Err(OnionPayloadError::TooLong { len: 1175, max: 1174 }));
        assert_eq!(
            path.tcp_request(nonce, dest(), &longest).unwrap_err(),
            OnionPayloadError::TooLong { len: 1175, max: 1174 }
        );
        // Hop 3 passes on announce and onion data requests only: not 0x87.
        for kind in [0x84, 0x86, 0x87, 0x00] {
            assert_eq!(path.request(nonce, dest(), &[kind, 1, 2]), Err(OnionPayloadError::Kind(kind)));
        }
        let mut plain = encoded!(OnionIpPort::new(dest()));
        plain.push(0x87);
        assert_eq!(OnionExitLayer::decode(plain.clone()), Err(DecodeError::Invalid("onion exit payload kind")));
        plain.pop();
        assert!(matches!(OnionExitLayer::decode(plain), Err(DecodeError::UnexpectedEnd { .. })));
    }

    #[test]
    fn lengths_are_checked_as_the_hops_check_them() {
        let packet = |kind: u8, len: usize| {
            let mut bytes = vec![kind];
            bytes.resize(len, 0);
            bytes
        };
        for (kind, min) in [(0x80, 227), (0x81, 219), (0x82, 211)] {
            let decode = |bytes: Vec<u8>| match kind {
                0x80 => OnionRequest0::decode(bytes).map(drop),
                0x81 => OnionRequest1::decode(bytes).map(drop),
                _ => OnionRequest2::decode(bytes).map(drop),
            };
            assert_eq!(decode(packet(kind, min)), Ok(()));
            assert!(matches!(decode(packet(kind, min - 1)), Err(DecodeError::UnexpectedEnd { .. })));
            assert_eq!(decode(packet(kind, 1400)), Ok(()));
            assert_eq!(decode(packet(kind, 1401)), Err(DecodeError::TrailingBytes(1)));
            assert_eq!(decode(packet(kind ^ 0x03, min)), Err(DecodeError::Invalid("onion request kind")));
        }
        // The hop addresses inside must be UDP; a TCP relay's body too.
        let mut body = encoded!(path_via(node_addrs()).tcp_request(golden::nonce(), dest(), &payload()).unwrap());
        body[NONCE_LEN] = 130;
        assert_eq!(OnionRequestTcp::decode(body.clone()), Err(DecodeError::Invalid("onion IP_Port family")));
        body[NONCE_LEN] = 2;
        body.truncate(177);
        assert!(matches!(OnionRequestTcp::decode(body.clone()), Err(DecodeError::UnexpectedEnd { .. })));
        body.resize(1359, 0);
        assert!(OnionRequestTcp::decode(body.clone()).is_ok());
        body.push(0);
        assert_eq!(OnionRequestTcp::decode(body), Err(DecodeError::TrailingBytes(1)));
        assert!(OnionExit::decode(vec![0x83; 177]).is_err());
        assert!(OnionExit::decode(vec![0x83; 178]).is_ok());
        assert_eq!(OnionExit::decode(vec![0x83; 1401]), Err(DecodeError::TrailingBytes(1)));
    }

    fn arb_exit_payload() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(EXIT_PAYLOAD_KINDS.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..MAX_ONION_PAYLOAD_LEN),
        )
            .prop_map(|(kind, rest)| std::iter::once(kind).chain(rest).collect())
    }

    proptest! {
        #[test]
        fn round_trips_through_three_hops(
            addrs in proptest::array::uniform3(arb_socket_addr()),
            dest in arb_socket_addr(),
            nonce in arb_nonce(),
            payload in arb_exit_payload(),
            client in arb_socket_addr(),
        ) {
            let path = path_via(addrs);
            let request0 = OnionRequest0::decode(encoded!(path.request(nonce, dest, &payload).unwrap())).unwrap();
            let layer1 = request0.open(&hop_key(0, &request0.temp_pk)).unwrap();
            prop_assert_eq!(layer1.next, normalize_addr(addrs[1]));
            let ret1 = OnionReturn1::seal_addr(&return_key(0), &return_nonce(0), ReturnAddr::Udp(client));
            let request1 = OnionRequest1::decode(encoded!(layer1.into_request1(nonce, ret1))).unwrap();
            let layer2 = request1.open(&hop_key(1, &request1.temp_pk)).unwrap();
            prop_assert_eq!(layer2.next, normalize_addr(addrs[2]));
            let ret2 = OnionReturn2::seal_addr(&return_key(1), &return_nonce(1), addrs[0], &ret1);
            let request2 = OnionRequest2::decode(encoded!(layer2.into_request2(nonce, ret2))).unwrap();
            let layer3 = request2.open(&hop_key(2, &request2.temp_pk)).unwrap();
            prop_assert_eq!(layer3.dest, normalize_addr(dest));
            prop_assert_eq!(&layer3.payload[..], &payload[..]);
            let ret3 = OnionReturn3::seal_addr(&return_key(2), &return_nonce(2), addrs[1], &ret2);
            let exit = OnionExit::decode(encoded!(layer3.into_exit(ret3))).unwrap();
            let (hop2, back2) = exit.ret.open_addr(&return_key(2)).unwrap();
            let (hop1, back1) = back2.open_addr(&return_key(1)).unwrap();
            prop_assert_eq!((hop2, hop1), (normalize_addr(addrs[1]), normalize_addr(addrs[0])));
            prop_assert_eq!(back1.open_addr(&return_key(0)), Ok(ReturnAddr::Udp(normalize_addr(client))));

            // The TCP form carries the same layers.
            let tcp = OnionRequestTcp::decode(encoded!(path.tcp_request(nonce, dest, &payload).unwrap())).unwrap();
            prop_assert_eq!(tcp.layer.next, normalize_addr(addrs[1]));
            let via_relay = tcp.into_request1(ret1).open(&hop_key(1, &request1.temp_pk)).unwrap();
            prop_assert_eq!(via_relay.next, normalize_addr(addrs[2]));
        }

        #[test]
        fn relay_returns_round_trip(conn_id in any::<u32>(), identifier in any::<u64>(), key in any::<[u8; 32]>(), nonce in arb_nonce()) {
            let key = SharedKey::from_bytes(key);
            let addr = ReturnAddr::TcpClient { conn_id, identifier };
            prop_assert_eq!(OnionReturn1::seal_addr(&key, &nonce, addr).open_addr(&key), Ok(addr));
        }

        #[test]
        fn damaged_input_never_panics(payload in arb_exit_payload(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let path = path_via(node_addrs());
            let request0 = path.request(nonce, dest(), &payload).unwrap();
            if let Ok(damaged) = OnionRequest0::decode(damage(encoded!(request0), flip, bit, cut)) {
                let _ = damaged.open(&hop_key(0, &damaged.temp_pk));
            }
            let layer1 = request0.open(&hop_key(0, &request0.temp_pk)).unwrap();
            let _ = OnionForwardLayer::decode(damage(encoded!(layer1), flip, bit, cut));
            let ret1 = OnionReturn1::seal_addr(&return_key(0), &nonce, ReturnAddr::Udp(dest()));
            let request1 = layer1.into_request1(nonce, ret1);
            if let Ok(damaged) = OnionRequest1::decode(damage(encoded!(request1), flip, bit, cut)) {
                let _ = damaged.open(&hop_key(1, &damaged.temp_pk));
                let _ = damaged.ret.open_addr(&return_key(0));
            }
            let layer2 = request1.open(&hop_key(1, &request1.temp_pk)).unwrap();
            let request2 = layer2.into_request2(nonce, OnionReturn2::seal_addr(&return_key(1), &nonce, dest(), &ret1));
            if let Ok(damaged) = OnionRequest2::decode(damage(encoded!(request2), flip, bit, cut)) {
                let _ = damaged.open(&hop_key(2, &damaged.temp_pk));
                let _ = damaged.ret.open_addr(&return_key(1));
            }
            let layer3 = request2.open(&hop_key(2, &request2.temp_pk)).unwrap();
            let _ = OnionExitLayer::decode(damage(encoded!(layer3), flip, bit, cut));
            let exit = layer3.into_exit(OnionReturn3::from_bytes([7; ONION_RETURN_3_LEN]));
            let _ = OnionExit::decode(damage(encoded!(exit), flip, bit, cut));
            let tcp = path.tcp_request(nonce, dest(), &payload).unwrap();
            let _ = OnionRequestTcp::decode(damage(encoded!(tcp), flip, bit, cut));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500), key in arb_public_key()) {
            let _ = OnionRequest0::decode(bytes.clone());
            let _ = OnionRequest1::decode(bytes.clone());
            let _ = OnionRequest2::decode(bytes.clone());
            let _ = OnionRequestTcp::decode(bytes.clone());
            let _ = OnionExit::decode(bytes.clone());
            let _ = OnionForwardLayer::decode(bytes.clone());
            let _ = OnionExitLayer::decode(bytes.clone());
            let mut r = Reader::new(bytes);
            if let Ok(block) = OnionReturn3::decode(&mut r) {
                let _ = block.open_addr(&SharedKey::from_bytes(*key.as_bytes()));
            }
        }
    }
}
