//! Crypto data (0x1b): every packet of an established net_crypto session,
//! lossless and lossy alike, sealed with the session key.
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | 0x1b                                                         |
//! | 2     | the two low bytes of the nonce, big-endian                   |
//! | 16    | MAC                                                          |
//! | 4     | encrypted: `buffer_start`, u32 big-endian                    |
//! | 4     | encrypted: `packet_number`, u32 big-endian                   |
//! | 0..7  | encrypted: zero padding                                      |
//! | 1     | encrypted: packet id (see [`packet_id`])                     |
//! | ...   | encrypted: data                                              |
//!
//! At most 1400 bytes: the packet id and data together (the *payload*) are
//! 1 to [`MAX_CRYPTO_DATA_SIZE`] = 1373 bytes. The padding makes the payload
//! plus padding a multiple of 8 bytes short of 1373, so packet lengths give
//! less away.
//!
//! Nonces: each side seals its first packet with the base nonce it sent in
//! its [handshake](super::crypto_handshake) and adds one for every data
//! packet after it, whatever it carries. Only the two low bytes travel; the
//! receiver rebuilds the rest from its receive nonce (the base nonce the
//! peer sent, moved forward as packets arrive): [`packet_nonce`] and
//! [`resync_recv_nonce`] are the rules. A packet more than about 21845
//! nonces behind the receive nonce no longer opens.
//!
//! `buffer_start` is the first packet number the sender has not received
//! yet (an acknowledgement of everything before it); `packet_number` is the
//! number of a lossless packet, or for any other payload the next number the
//! sender will give a lossless packet (the end of its send buffer).
//!
//! Building a packet costs one copy of the payload with [`seal`], none with
//! [`seal_in_place`] (the caller writes the payload at [`DATA_HEADROOM`]);
//! [`open_in_place`] decrypts in the caller's buffer. Nothing allocates.
//!
//! Facts from c-toxcore 0.2.18 `net_crypto.c` and `net_crypto.h`:
//! - `send_data_packet_helper` refuses a payload of 0 or more than
//!   `MAX_CRYPTO_DATA_SIZE` (1400 - 27 = 1373) bytes and pads with
//!   `(MAX_CRYPTO_DATA_SIZE - length) % CRYPTO_MAX_PADDING` (8) zero bytes
//!   (`PACKET_ID_PADDING`); `send_data_packet` writes the nonce's low two
//!   bytes, seals with `conn->sent_nonce` and then increments it.
//! - `handle_data_packet_core` drops packets of more than
//!   `MAX_CRYPTO_PACKET_SIZE` (1400) bytes or at most
//!   `CRYPTO_DATA_PACKET_MIN_SIZE` (27), and a plaintext that is all padding
//!   after the two numbers. `handle_data_packet` rebuilds the nonce as
//!   `recv_nonce + (num - low16(recv_nonce))` (16-bit wrapping difference,
//!   192-bit add) and, once the packet has opened, moves `recv_nonce`
//!   forward by `DATA_NUM_THRESHOLD` (21845) if that difference was more
//!   than twice it.
//! - What the packet id means is in `handle_data_packet_core` (see
//!   [`PayloadKind::of`]); ids 3 to 15 and 255 are dropped.
//!
//! Spec: <https://toktok.ltd/spec.html#net-crypto> (the data packet and its padding).

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::{DecodeError, Reader};
use crate::crypto::{CryptoError, MAC_LEN, Nonce, SharedKey};

/// The packet kind.
pub const CRYPTO_DATA_KIND: u8 = 0x1b;
/// Longest data packet (`MAX_CRYPTO_PACKET_SIZE`).
pub const MAX_CRYPTO_PACKET_LEN: usize = 1400;
/// What a data packet adds to its payload and padding: kind, nonce bytes,
/// MAC and the two numbers (`CRYPTO_DATA_PACKET_MIN_SIZE`).
pub const CRYPTO_DATA_OVERHEAD: usize = CLEAR_LEN + 8;
/// Longest payload, packet id included (`MAX_CRYPTO_DATA_SIZE`): what
/// `TOX_MAX_CUSTOM_PACKET_SIZE` promises an application.
pub const MAX_CRYPTO_DATA_SIZE: usize = MAX_CRYPTO_PACKET_LEN - CRYPTO_DATA_OVERHEAD;
/// The padding is less than this (`CRYPTO_MAX_PADDING`).
pub const CRYPTO_MAX_PADDING: usize = 8;
/// Packets a send or receive buffer holds (`CRYPTO_PACKET_BUFFER_SIZE`): a
/// lossless packet number more than this ahead of the receiver's
/// `buffer_start` is dropped, and a sender never has more outstanding.
pub const CRYPTO_PACKET_BUFFER_SIZE: u32 = 32768;
/// The receive nonce moves forward by this much when a packet arrives more
/// than twice this far ahead of it (`DATA_NUM_THRESHOLD`).
pub const DATA_NUM_THRESHOLD: u16 = 21845;
/// Where [`seal_in_place`] expects the payload: room for the overhead and
/// the longest padding in front of it.
pub const DATA_HEADROOM: usize = CRYPTO_DATA_OVERHEAD + CRYPTO_MAX_PADDING - 1;

/// Kind, nonce bytes and MAC: the part before the ciphertext.
const CLEAR_LEN: usize = 1 + 2 + MAC_LEN;

/// Packet ids: the first byte of a data packet's payload. net_crypto
/// handles 0 to 2 itself, friend_connection 16 to 18, Messenger the rest.
pub mod packet_id {
    use std::ops::RangeInclusive;

    /// Padding before the payload, never a payload's first byte
    /// (`PACKET_ID_PADDING`).
    pub const PADDING: u8 = 0;
    /// Asks for lost lossless packets; sent like a lossy packet
    /// (`PACKET_ID_REQUEST`; see [`packet_request`](crate::wire::packet_request)).
    pub const REQUEST: u8 = 1;
    /// Ends the session at once (`PACKET_ID_KILL`).
    pub const KILL: u8 = 2;
    /// friend_connection's keep-alive, empty, every 8 s; 32 s without any
    /// packet ends a friend connection (`friend_connection.h` `PACKET_ID_ALIVE`).
    pub const ALIVE: u8 = 16;
    /// friend_connection: up to 3 packed TCP relays the sender is on
    /// (`PACKET_ID_SHARE_RELAYS`).
    pub const SHARE_RELAYS: u8 = 17;
    /// friend_connection: a friend request forwarded for another node
    /// (`PACKET_ID_FRIEND_REQUESTS`).
    pub const FRIEND_REQUESTS: u8 = 18;
    /// Messenger: the sender is ready; every other lossless Messenger packet
    /// is dropped until this arrives (`net_crypto.h` `PACKET_ID_ONLINE`).
    pub const ONLINE: u8 = 24;
    /// Messenger: the sender is going offline (`PACKET_ID_OFFLINE`).
    pub const OFFLINE: u8 = 25;
    /// Ids of lossless packets (`PACKET_ID_RANGE_LOSSLESS_*`).
    pub const LOSSLESS: RangeInclusive<u8> = 16..=191;
    /// Lossless ids left to applications (`tox_friend_send_lossless_packet`).
    pub const LOSSLESS_CUSTOM: RangeInclusive<u8> = 160..=191;
    /// Ids of lossy packets (`PACKET_ID_RANGE_LOSSY_*`).
    pub const LOSSY: RangeInclusive<u8> = 192..=254;
    /// Lossy ids Messenger hands to toxav's RTP handlers and, with none
    /// registered, drops (`Messenger.c` `m_handle_lossy_packet`).
    pub const LOSSY_AV: RangeInclusive<u8> = 192..=199;
    /// Lossy ids that reach an application's `friend_lossy_packet` callback.
    pub const LOSSY_CUSTOM: RangeInclusive<u8> = 200..=254;
}

/// What net_crypto does with a payload, by its packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// A request for lost packets (id 1).
    Request,
    /// The end of the session (id 2).
    Kill,
    /// Ordered and retransmitted (ids 16 to 191).
    Lossless,
    /// Delivered at once or never (ids 192 to 254).
    Lossy,
}

impl PayloadKind {
    /// The kind of a payload with this id, or `None` for ids c-toxcore
    /// drops (0, which is padding, 3 to 15 and 255).
    pub const fn of(id: u8) -> Option<Self> {
        match id {
            packet_id::REQUEST => Some(Self::Request),
            packet_id::KILL => Some(Self::Kill),
            16..=191 => Some(Self::Lossless),
            192..=254 => Some(Self::Lossy),
            _ => None,
        }
    }
}

/// The two numbers at the front of every data packet's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataHeader {
    /// The first packet number the sender has not received: the peer may
    /// forget every packet before it.
    pub buffer_start: u32,
    /// A lossless packet's number; for any other payload, the sender's next
    /// lossless packet number.
    pub packet_number: u32,
}

impl DataHeader {
    /// A header.
    pub const fn new(buffer_start: u32, packet_number: u32) -> Self {
        Self { buffer_start, packet_number }
    }
}

/// Zero bytes in front of a payload of `payload_len` bytes (at most
/// [`MAX_CRYPTO_DATA_SIZE`]).
pub const fn padding_len(payload_len: usize) -> usize {
    MAX_CRYPTO_DATA_SIZE.saturating_sub(payload_len) % CRYPTO_MAX_PADDING
}

/// Length of the packet carrying a payload of `payload_len` bytes.
pub const fn packet_len(payload_len: usize) -> usize {
    CRYPTO_DATA_OVERHEAD + padding_len(payload_len) + payload_len
}

/// How far a packet whose nonce ends in `low` is ahead of `recv_nonce`, as
/// c-toxcore counts it: the 16-bit wrapping difference of the low bytes.
pub fn nonce_offset(recv_nonce: &Nonce, low: u16) -> u16 {
    low.wrapping_sub(recv_nonce.low_u16())
}

/// The full nonce of a packet whose nonce ends in `low`:
/// `recv_nonce + nonce_offset(recv_nonce, low)`, carrying through all 24
/// bytes.
pub fn packet_nonce(recv_nonce: &Nonce, low: u16) -> Nonce {
    let mut nonce = *recv_nonce;
    nonce.increment_by(nonce_offset(recv_nonce, low));
    nonce
}

/// Moves the receive nonce forward by [`DATA_NUM_THRESHOLD`] if a packet
/// that opened was more than twice that far ahead of it; returns whether it
/// moved. Call it only for packets that opened.
pub fn resync_recv_nonce(recv_nonce: &mut Nonce, offset: u16) -> bool {
    if offset > 2 * DATA_NUM_THRESHOLD {
        recv_nonce.increment_by(DATA_NUM_THRESHOLD);
        true
    } else {
        false
    }
}

/// Why a data packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataSealError {
    /// The payload is empty or longer than [`MAX_CRYPTO_DATA_SIZE`].
    #[error("payload of {0} bytes; 1 to {MAX_CRYPTO_DATA_SIZE} fit")]
    PayloadLen(usize),
    /// The payload starts with 0, which the receiver would take for padding.
    #[error("payload starts with the padding id 0")]
    PaddingId,
    /// The output buffer cannot hold the packet.
    #[error("buffer of {available} bytes; the packet needs {needed}")]
    BufferTooSmall {
        /// Bytes the packet needs (for [`seal_in_place`], from the start of the buffer).
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

/// Why a data packet could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataOpenError {
    /// Not a data packet of a possible length.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The MAC did not verify: another key, a nonce too far from the receive
    /// nonce, or altered bytes.
    #[error("data packet does not open")]
    Decrypt,
    /// Nothing but padding after the two numbers.
    #[error("data packet holds only padding")]
    OnlyPadding,
}

impl From<CryptoError> for DataOpenError {
    fn from(_: CryptoError) -> Self {
        Self::Decrypt
    }
}

pub(super) fn check_payload(payload: &[u8]) -> Result<(), DataSealError> {
    match payload.first() {
        None => Err(DataSealError::PayloadLen(0)),
        Some(_) if payload.len() > MAX_CRYPTO_DATA_SIZE => Err(DataSealError::PayloadLen(payload.len())),
        Some(&packet_id::PADDING) => Err(DataSealError::PaddingId),
        Some(_) => Ok(()),
    }
}

/// Writes the two numbers and `padding` zeros at the front of a plaintext
/// whose payload is already at its end (both data packet kinds).
pub(super) fn write_front(body: &mut [u8], header: DataHeader, padding: usize) {
    let mut front = &mut body[..8 + padding];
    front.put_u32(header.buffer_start);
    front.put_u32(header.packet_number);
    front.put_bytes(0, padding);
}

/// Checks a data packet's kind and length as c-toxcore does for 0x1b:
/// more than `overhead` and at most `max` bytes; returns its nonce bytes.
/// The names go into the errors.
pub(super) fn check_frame(
    packet: &[u8],
    kind: u8,
    overhead: usize,
    max: usize,
    (packet_name, kind_name): (&'static str, &'static str),
) -> Result<u16, DecodeError> {
    if packet.len() <= overhead {
        return Err(DecodeError::UnexpectedEnd { what: packet_name, needed: overhead + 1, available: packet.len() });
    }
    if packet.len() > max {
        return Err(DecodeError::TrailingBytes(packet.len() - max));
    }
    match packet {
        [k, high, low, ..] if *k == kind => Ok(u16::from_be_bytes([*high, *low])),
        _ => Err(DecodeError::Invalid(kind_name)),
    }
}

/// Writes the numbers and `padding` zeros at the front of `body` (the
/// plaintext, payload already at its end), seals it, fills `clear` (kind,
/// nonce bytes, MAC) and increments the send nonce.
fn finish(
    key: &SharedKey,
    send_nonce: &mut Nonce,
    header: DataHeader,
    padding: usize,
    clear: &mut [u8; CLEAR_LEN],
    body: &mut [u8],
) {
    write_front(body, header, padding);
    let mac = key.seal_in_place_detached(send_nonce, body);
    let mut out = &mut clear[..];
    out.put_u8(CRYPTO_DATA_KIND);
    out.put_u16(send_nonce.low_u16());
    out.put_slice(&mac);
    send_nonce.increment();
}

/// Seals `payload` (`[packet id][data]`) into the front of `out` with the
/// send nonce, then increments the nonce. Returns the packet's length.
pub fn seal(
    key: &SharedKey,
    send_nonce: &mut Nonce,
    header: DataHeader,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, DataSealError> {
    check_payload(payload)?;
    let len = packet_len(payload.len());
    let available = out.len();
    let packet = out.get_mut(..len).ok_or(DataSealError::BufferTooSmall { needed: len, available })?;
    let (clear, body) = packet.split_first_chunk_mut::<CLEAR_LEN>().ok_or(DataSealError::PayloadLen(0))?;
    let padding = padding_len(payload.len());
    body[8 + padding..].copy_from_slice(payload);
    finish(key, send_nonce, header, padding, clear, body);
    Ok(len)
}

/// Seals a payload of `payload_len` bytes that the caller has written at
/// `buf[DATA_HEADROOM..]`, building the packet around it without moving
/// it, then increments the send nonce. Returns where in `buf` the packet
/// is: it starts up to 7 bytes in, as the padding needs.
pub fn seal_in_place(
    key: &SharedKey,
    send_nonce: &mut Nonce,
    header: DataHeader,
    buf: &mut [u8],
    payload_len: usize,
) -> Result<Range<usize>, DataSealError> {
    if payload_len == 0 || payload_len > MAX_CRYPTO_DATA_SIZE {
        return Err(DataSealError::PayloadLen(payload_len));
    }
    let end = DATA_HEADROOM + payload_len;
    let available = buf.len();
    let payload = buf.get(DATA_HEADROOM..end).ok_or(DataSealError::BufferTooSmall { needed: end, available })?;
    check_payload(payload)?;
    let padding = padding_len(payload_len);
    let start = DATA_HEADROOM - CRYPTO_DATA_OVERHEAD - padding;
    let packet = buf.get_mut(start..end).ok_or(DataSealError::BufferTooSmall { needed: end, available })?;
    let (clear, body) = packet.split_first_chunk_mut::<CLEAR_LEN>().ok_or(DataSealError::PayloadLen(0))?;
    finish(key, send_nonce, header, padding, clear, body);
    Ok(start..end)
}

/// A data packet opened in place by [`open_in_place`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenedData {
    /// The two numbers.
    pub header: DataHeader,
    /// The packet id: never 0.
    pub id: u8,
    /// Where in the packet buffer the data after the packet id is.
    pub data: Range<usize>,
}

impl OpenedData {
    /// Where the payload, packet id and data, is (what c-toxcore passes to
    /// its handlers and keeps in its receive buffer).
    pub fn payload(&self) -> Range<usize> {
        self.data.start - 1..self.data.end
    }
}

/// Reads the kind and nonce bytes and checks the length as c-toxcore does:
/// more than 27 and at most 1400 bytes.
fn check_packet(packet: &[u8]) -> Result<u16, DecodeError> {
    let names = ("crypto data packet", "crypto data kind");
    check_frame(packet, CRYPTO_DATA_KIND, CRYPTO_DATA_OVERHEAD, MAX_CRYPTO_PACKET_LEN, names)
}

/// Splits an opened plaintext: the numbers, then the padding, the id and
/// the data. Returns the header, the id and where the data starts.
pub(super) fn split_plaintext(plain: &[u8]) -> Result<(DataHeader, u8, usize), DataOpenError> {
    let short = DecodeError::UnexpectedEnd { what: "crypto data numbers", needed: 8, available: plain.len() };
    let (buffer_start, rest) = plain.split_first_chunk::<4>().ok_or(short)?;
    let (packet_number, rest) = rest.split_first_chunk::<4>().ok_or(short)?;
    let header = DataHeader::new(u32::from_be_bytes(*buffer_start), u32::from_be_bytes(*packet_number));
    let padding = rest.iter().take_while(|&&byte| byte == packet_id::PADDING).count();
    let id = *rest.get(padding).ok_or(DataOpenError::OnlyPadding)?;
    Ok((header, id, 8 + padding + 1))
}

/// Opens a data packet in its buffer: rebuilds the nonce from
/// `recv_nonce`, checks the MAC, decrypts in place, moves `recv_nonce`
/// forward as c-toxcore does ([`resync_recv_nonce`]) and strips the padding.
/// On a MAC failure neither the buffer nor `recv_nonce` changes.
pub fn open_in_place(key: &SharedKey, recv_nonce: &mut Nonce, packet: &mut [u8]) -> Result<OpenedData, DataOpenError> {
    let low = check_packet(packet)?;
    let (clear, body) = packet.split_first_chunk_mut::<CLEAR_LEN>().ok_or(DataOpenError::Decrypt)?;
    let offset = nonce_offset(recv_nonce, low);
    let nonce = packet_nonce(recv_nonce, low);
    let mac = clear.last_chunk::<MAC_LEN>().ok_or(DataOpenError::Decrypt)?;
    key.open_in_place_detached(&nonce, body, mac)?;
    resync_recv_nonce(recv_nonce, offset);
    let (header, id, data_at) = split_plaintext(body)?;
    Ok(OpenedData { header, id, data: CLEAR_LEN + data_at..CLEAR_LEN + body.len() })
}

/// A data packet, its payload still sealed: for callers that hold the
/// datagram as [`Bytes`]. [`open_in_place`] is the allocation-free path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CryptoData {
    /// The two low bytes of the nonce.
    pub nonce_low: u16,
    /// `[MAC 16][ciphertext]`.
    pub payload: Bytes,
}

/// A data packet's plaintext, opened by [`CryptoData::open`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataPacket {
    /// The two numbers.
    pub header: DataHeader,
    /// The packet id: never 0.
    pub id: u8,
    /// The data after the packet id.
    pub data: Bytes,
}

impl CryptoData {
    /// Reads a whole datagram: 28 to 1400 bytes.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let packet = packet.into();
        let nonce_low = check_packet(&packet)?;
        let mut r = Reader::new(packet);
        r.bytes("crypto data kind and nonce", 3)?;
        Ok(Self { nonce_low, payload: r.rest() })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(CRYPTO_DATA_KIND);
        buf.put_u16(self.nonce_low);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        3 + self.payload.len()
    }

    /// Opens the packet as [`open_in_place`] does, into a copy.
    pub fn open(&self, key: &SharedKey, recv_nonce: &mut Nonce) -> Result<DataPacket, DataOpenError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        let opened = open_in_place(key, recv_nonce, &mut buf)?;
        let data = buf.freeze().slice(opened.data);
        Ok(DataPacket { header: opened.header, id: opened.id, data })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::sha512;
    use crate::wire::test_support::{arb_nonce, damage, session};

    fn nonce_ending(high: [u8; 22], low: u16) -> Nonce {
        let mut bytes = [0u8; 24];
        bytes[..22].copy_from_slice(&high);
        bytes[22..].copy_from_slice(&low.to_be_bytes());
        Nonce::from_bytes(bytes)
    }

    fn sealed(key: &SharedKey, nonce: Nonce, header: DataHeader, payload: &[u8]) -> Vec<u8> {
        let mut nonce = nonce;
        let mut out = vec![0u8; MAX_CRYPTO_PACKET_LEN];
        let len = seal(key, &mut nonce, header, payload, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn constants_match_c_toxcore() {
        assert_eq!(CRYPTO_DATA_OVERHEAD, 27);
        assert_eq!(MAX_CRYPTO_DATA_SIZE, 1373);
        assert_eq!(DATA_HEADROOM, 34);
        assert_eq!(padding_len(1373), 0);
        assert_eq!(padding_len(1372), 1);
        assert_eq!(padding_len(1366), 7);
        assert_eq!(padding_len(1365), 0);
        assert_eq!(padding_len(1), 4);
        assert_eq!(packet_len(1), 32);
        assert_eq!(packet_len(1373), 1400);
        for len in 1..=MAX_CRYPTO_DATA_SIZE {
            assert_eq!((MAX_CRYPTO_DATA_SIZE - len - padding_len(len)) % 8, 0);
        }
    }

    #[test]
    fn payload_kinds() {
        assert_eq!(PayloadKind::of(packet_id::PADDING), None);
        assert_eq!(PayloadKind::of(packet_id::REQUEST), Some(PayloadKind::Request));
        assert_eq!(PayloadKind::of(packet_id::KILL), Some(PayloadKind::Kill));
        for id in 3..=15 {
            assert_eq!(PayloadKind::of(id), None);
        }
        for id in [packet_id::ALIVE, packet_id::SHARE_RELAYS, packet_id::ONLINE, packet_id::OFFLINE, 160, 191] {
            assert_eq!(PayloadKind::of(id), Some(PayloadKind::Lossless));
            assert!(packet_id::LOSSLESS.contains(&id));
        }
        for id in [192, 199, 200, 254] {
            assert_eq!(PayloadKind::of(id), Some(PayloadKind::Lossy));
            assert!(packet_id::LOSSY.contains(&id));
        }
        assert_eq!(PayloadKind::of(255), None);
        assert!(packet_id::LOSSY_CUSTOM.contains(&200) && !packet_id::LOSSY_CUSTOM.contains(&199));
        assert!(packet_id::LOSSLESS_CUSTOM.contains(&160) && !packet_id::LOSSLESS_CUSTOM.contains(&159));
    }

    #[test]
    fn nonce_rebuilt_across_the_16_bit_wrap() {
        let recv = nonce_ending([0; 22], 0xfff0);
        // Ahead by 0x15, past the wrap: the carry reaches byte 21.
        assert_eq!(nonce_offset(&recv, 0x0005), 0x15);
        let mut expected = [0u8; 24];
        expected[21] = 1;
        expected[23] = 5;
        assert_eq!(packet_nonce(&recv, 0x0005), Nonce::from_bytes(expected));
        // The same low bytes: the receive nonce itself.
        assert_eq!(packet_nonce(&recv, 0xfff0), recv);
        // "Behind" is read as almost 65536 ahead, as in c-toxcore.
        assert_eq!(nonce_offset(&recv, 0xffef), 0xffff);
        let mut far = [0u8; 24];
        far[21] = 1;
        far[22] = 0xff;
        far[23] = 0xef;
        assert_eq!(packet_nonce(&recv, 0xffef), Nonce::from_bytes(far));
        // The carry runs through all 24 bytes and wraps at the top.
        let top = nonce_ending([0xff; 22], 0xffff);
        assert_eq!(packet_nonce(&top, 0x0000), Nonce::ZERO);
        assert_eq!(packet_nonce(&top, 0x0001), nonce_ending([0; 22], 1));
    }

    #[test]
    fn receive_nonce_resyncs_past_two_thresholds() {
        let start = nonce_ending([7; 22], 0xfffe);
        let mut recv = start;
        assert!(!resync_recv_nonce(&mut recv, 2 * DATA_NUM_THRESHOLD));
        assert_eq!(recv, start);
        assert!(resync_recv_nonce(&mut recv, 2 * DATA_NUM_THRESHOLD + 1));
        let mut expected = start;
        expected.increment_by(21845);
        assert_eq!(recv, expected);
        // 0xfffe + 21845 wraps the low bytes to 0x5553 and carries.
        assert_eq!(recv.low_u16(), 0x5553);
        assert_eq!(recv.as_bytes()[21], 8);
        assert!(resync_recv_nonce(&mut recv, u16::MAX));
    }

    #[test]
    fn packets_far_ahead_open_and_move_the_receive_nonce() {
        let key = SharedKey::from_bytes([9; 32]);
        let base = nonce_ending([3; 22], 0xff00);
        let mut send = base;
        send.increment_by(50_000);
        let mut packet = sealed(&key, send, DataHeader::new(1, 2), &[200, 1]);
        let mut recv = base;
        let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
        assert_eq!((opened.header, opened.id), (DataHeader::new(1, 2), 200));
        let mut moved = base;
        moved.increment_by(DATA_NUM_THRESHOLD);
        assert_eq!(recv, moved);
        // A packet from before the new receive nonce by more than the 16
        // bits reach no longer opens, and changes nothing.
        let mut old = sealed(&key, base, DataHeader::new(0, 0), &[200]);
        let before = old.clone();
        assert_eq!(open_in_place(&key, &mut recv, &mut old), Err(DataOpenError::Decrypt));
        assert_eq!((recv, old), (moved, before));
    }

    #[test]
    fn layout_by_hand() {
        let key = SharedKey::from_bytes([0x55; 32]);
        let nonce = nonce_ending([0x22; 22], 0x1234);
        let mut send = nonce;
        let mut out = [0u8; 64];
        let len =
            seal(&key, &mut send, DataHeader::new(0x0102_0304, 0x0506_0708), &[160, 0xaa, 0xbb], &mut out).unwrap();
        assert_eq!(len, 32);
        assert_eq!(send, nonce_ending([0x22; 22], 0x1235));
        assert_eq!(out[..3], [0x1b, 0x12, 0x34]);
        let plain = key.open(&nonce, &out[3..len]).unwrap();
        // (1373 - 3) % 8 = 2 bytes of padding.
        assert_eq!(plain, [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 160, 0xaa, 0xbb]);

        let mut recv = nonce;
        let mut packet = out[..len].to_vec();
        let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
        assert_eq!(opened, OpenedData { header: DataHeader::new(0x0102_0304, 0x0506_0708), id: 160, data: 30..32 });
        assert_eq!(packet[opened.payload()], [160, 0xaa, 0xbb]);
        assert_eq!(recv, nonce);

        let mut recv = nonce;
        let owned = CryptoData::decode(out[..len].to_vec()).unwrap();
        assert_eq!(owned.nonce_low, 0x1234);
        let mut re = Vec::new();
        owned.encode(&mut re);
        assert_eq!(re, out[..len]);
        let opened = owned.open(&key, &mut recv).unwrap();
        assert_eq!(opened.id, 160);
        assert_eq!(opened.data, &[0xaa, 0xbb][..]);
    }

    #[test]
    fn seal_refuses_what_cannot_be_sent() {
        let key = SharedKey::from_bytes([1; 32]);
        let mut nonce = Nonce::ZERO;
        let mut out = [0u8; 1500];
        let header = DataHeader::new(0, 0);
        assert_eq!(seal(&key, &mut nonce, header, &[], &mut out), Err(DataSealError::PayloadLen(0)));
        assert_eq!(seal(&key, &mut nonce, header, &[160; 1374], &mut out), Err(DataSealError::PayloadLen(1374)));
        assert_eq!(seal(&key, &mut nonce, header, &[0, 1], &mut out), Err(DataSealError::PaddingId));
        assert_eq!(
            seal(&key, &mut nonce, header, &[160; 10], &mut out[..34]),
            Err(DataSealError::BufferTooSmall { needed: 40, available: 34 })
        );
        assert_eq!(seal(&key, &mut nonce, header, &[160; 1373], &mut out), Ok(1400));
        assert_eq!(
            seal_in_place(&key, &mut nonce, header, &mut out[..40], 7),
            Err(DataSealError::BufferTooSmall { needed: 41, available: 40 })
        );
        assert_eq!(seal_in_place(&key, &mut nonce, header, &mut out, 0), Err(DataSealError::PayloadLen(0)));
        // Only the packet that was built used a nonce.
        assert_eq!(nonce, nonce_ending([0; 22], 1));
    }

    #[test]
    fn open_checks_length_kind_and_padding() {
        let key = SharedKey::from_bytes([1; 32]);
        let mut recv = Nonce::ZERO;
        let mut short = vec![0x1b; 27];
        assert!(matches!(open_in_place(&key, &mut recv, &mut short), Err(DataOpenError::Decode(_))));
        let mut long = vec![0x1b; 1401];
        assert_eq!(
            open_in_place(&key, &mut recv, &mut long),
            Err(DataOpenError::Decode(DecodeError::TrailingBytes(1)))
        );
        let mut wrong = sealed(&key, Nonce::ZERO, DataHeader::new(0, 0), &[160]);
        wrong[0] = 0x1a;
        assert_eq!(
            open_in_place(&key, &mut recv, &mut wrong),
            Err(DataOpenError::Decode(DecodeError::Invalid("crypto data kind")))
        );
        // A plaintext of the numbers and zeros only: c-toxcore drops it.
        let mut plain = vec![0u8; 8 + 5];
        plain[3] = 1;
        let mut padding_only = vec![0x1b, 0, 0];
        key.seal_into(&Nonce::ZERO, &plain, &mut padding_only);
        assert_eq!(open_in_place(&key, &mut recv, &mut padding_only), Err(DataOpenError::OnlyPadding));
        assert!(CryptoData::decode(vec![0x1b; 27]).is_err());
        assert!(CryptoData::decode(vec![0x1b; 28]).is_ok());
    }

    #[test]
    fn in_place_matches_copying() {
        let key = SharedKey::from_bytes([4; 32]);
        let nonce = nonce_ending([5; 22], 7);
        for len in [1, 2, 7, 8, 9, 100, 1365, 1366, 1372, 1373] {
            let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_add(200).max(1)).collect();
            let header = DataHeader::new(len as u32, !0);
            let expected = sealed(&key, nonce, header, &payload);
            let mut buf = vec![0xee; DATA_HEADROOM + len];
            buf[DATA_HEADROOM..].copy_from_slice(&payload);
            let mut send = nonce;
            let range = seal_in_place(&key, &mut send, header, &mut buf, len).unwrap();
            assert_eq!(buf[range.clone()], expected[..], "payload of {len}");
            assert_eq!(range.start, 7 - padding_len(len));
            let mut recv = nonce;
            let opened = open_in_place(&key, &mut recv, &mut buf[range.clone()]).unwrap();
            assert_eq!(buf[range][opened.payload()], payload[..]);
        }
    }

    #[test]
    fn matches_c_toxcore() {
        let key = session::session_key();
        let b_key = SharedKey::precompute(session::a_session().public(), session::b_session().secret()).unwrap();
        let at = |base: Nonce, offset: u16| {
            let mut nonce = base;
            nonce.increment_by(offset);
            nonce
        };

        // B opens A's lossless packet 0, ten packets after A's base nonce.
        let mut recv = session::A_BASE_NONCE;
        let mut packet = session::DATA_A_LOSSLESS.to_vec();
        let opened = open_in_place(&b_key, &mut recv, &mut packet).unwrap();
        assert_eq!(opened.header, DataHeader::new(0, 0));
        assert_eq!((opened.id, &packet[opened.data.clone()]), (160, &[0, 0][..]));
        assert_eq!(recv, session::A_BASE_NONCE);
        let ours = sealed(&key, at(session::A_BASE_NONCE, 10), DataHeader::new(0, 0), &[160, 0, 0]);
        assert_eq!(ours, session::DATA_A_LOSSLESS);

        // The lossy one carries A's next lossless number, 301.
        let mut packet = session::DATA_A_LOSSY.to_vec();
        let opened = open_in_place(&b_key, &mut recv, &mut packet).unwrap();
        assert_eq!(opened.header, DataHeader::new(0, 301));
        assert_eq!(packet[opened.payload()], [200, 0xde, 0xad, 0x01]);
        let ours = sealed(&key, at(session::A_BASE_NONCE, 311), DataHeader::new(0, 301), &[200, 0xde, 0xad, 0x01]);
        assert_eq!(ours, session::DATA_A_LOSSY);

        // The full-size one: no padding, 1400 bytes.
        let payload: Vec<u8> = (0..1373).map(|i| if i == 0 { 161 } else { i as u8 }).collect();
        let ours = sealed(&key, at(session::A_BASE_NONCE, 310), DataHeader::new(0, 300), &payload);
        assert_eq!(ours.len(), 1400);
        assert_eq!(ours[..40], session::DATA_A_FULL_HEAD);
        assert_eq!(sha512(&ours), session::DATA_A_FULL_SHA512);

        // B's first packet, at its base nonce: an empty request, with B's
        // next lossless number 0.
        let mut recv = session::B_BASE_NONCE;
        let mut packet = session::DATA_B_FIRST.to_vec();
        let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
        assert_eq!((opened.header, opened.id, opened.data.len()), (DataHeader::new(0, 0), packet_id::REQUEST, 0));
        assert_eq!(sealed(&b_key, session::B_BASE_NONCE, DataHeader::new(0, 0), &[1]), session::DATA_B_FIRST);
    }

    proptest! {
        #[test]
        fn round_trips(
            nonce in arb_nonce(),
            header in any::<(u32, u32)>().prop_map(|(s, n)| DataHeader::new(s, n)),
            id in 1u8..=255,
            data in proptest::collection::vec(any::<u8>(), 0..MAX_CRYPTO_DATA_SIZE),
            key in any::<[u8; 32]>(),
            ahead in any::<u16>(),
        ) {
            let key = SharedKey::from_bytes(key);
            let mut payload = vec![id];
            payload.extend_from_slice(&data);
            // The receive nonce is `ahead` packets behind the sender's.
            let mut send = nonce;
            send.increment_by(ahead);
            let mut packet = sealed(&key, send, header, &payload);
            prop_assert_eq!(packet.len(), packet_len(payload.len()));
            let mut recv = nonce;
            let opened = open_in_place(&key, &mut recv, &mut packet).unwrap();
            prop_assert_eq!(opened.header, header);
            prop_assert_eq!(opened.id, id);
            prop_assert_eq!(&packet[opened.data], &data[..]);
            let mut expected = nonce;
            if ahead > 2 * DATA_NUM_THRESHOLD {
                expected.increment_by(DATA_NUM_THRESHOLD);
            }
            prop_assert_eq!(recv, expected);
        }

        #[test]
        fn damaged_input_never_panics(nonce in arb_nonce(), len in 1usize..=MAX_CRYPTO_DATA_SIZE, flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([7; 32]);
            let packet = sealed(&key, nonce, DataHeader::new(1, 2), &vec![160; len]);
            let mut damaged = damage(packet, flip, bit, cut);
            let mut recv = nonce;
            prop_assert!(open_in_place(&key, &mut recv, &mut damaged).is_err());
            prop_assert_eq!(recv, nonce);
            if let Ok(owned) = CryptoData::decode(damaged) {
                prop_assert!(owned.open(&key, &mut recv).is_err());
            }
        }

        #[test]
        fn arbitrary_input_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..1500), nonce in arb_nonce()) {
            let key = SharedKey::from_bytes([7; 32]);
            let mut recv = nonce;
            let _ = CryptoData::decode(bytes.clone());
            let _ = open_in_place(&key, &mut recv, &mut bytes);
        }
    }
}
