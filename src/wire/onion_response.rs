//! Onion responses (0x8c, 0x8d, 0x8e): an answer from the destination of an
//! [onion request](super::onion_request) back along the path it came by.
//! Each hop opens its own return block, which names the previous hop (or
//! the client) and holds that hop's block, and passes the payload on.
//!
//! | from → to        | bytes                                  |
//! |------------------|----------------------------------------|
//! | dest → hop 3     | `[0x8c][RETURN_3 177][payload]`        |
//! | hop 3 → hop 2    | `[0x8d][RETURN_2 118][payload]`        |
//! | hop 2 → hop 1    | `[0x8e][RETURN_1 59][payload]`         |
//! | hop 1 → client   | `[payload]` over UDP; a TCP relay sends TCP packet 9: `[9][payload]` |
//!
//! The payload starts with its kind: 0x84 (announce response) or 0x86
//! (onion data response). Return blocks are described in
//! [`super::onion_request`].
//!
//! Facts from c-toxcore 0.2.18 `onion.c`:
//! - `send_onion_response` (the destination) writes `[0x8c][RETURN_3][payload]`
//!   for a payload of 1 to `ONION_RESPONSE_MAX_DATA_SIZE` = 1400 - 178 =
//!   1222 bytes ([`MAX_ONION_RESPONSE_PAYLOAD_LEN`]).
//! - `handle_recv_3`, `handle_recv_2` and `handle_recv_1` drop packets over
//!   1400 bytes or without a payload byte, and, before any decryption,
//!   payloads that do not start with 0x84 (`NET_PACKET_ANNOUNCE_RESPONSE_OLD`)
//!   or 0x86 (`NET_PACKET_ONION_DATA_RESPONSE`): the 0x88 announce response
//!   never travels back. Then each opens its block and requires exactly the
//!   address and the next block inside; hops 3 and 2 require an address of
//!   family 2 or 10, hop 1 accepts any and hands non-UDP ones to its TCP
//!   relay (`TCP_server.c` `handle_onion_recv_1`, which sends `[9][payload]`).
//!
//! Spec: <https://toktok.ltd/spec.html#onion>.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes};

use super::onion_request::{
    MAX_ONION_PACKET_LEN, ONION_RETURN_1_LEN, ONION_RETURN_2_LEN, ONION_RETURN_3_LEN, OnionPayloadError, OnionReturn,
    OnionReturn1, OnionReturn2, OnionReturn3, OpenError, ReturnAddr, check_payload,
};
use super::{DecodeError, Reader};
use crate::crypto::SharedKey;

/// Kind of the response the destination sends to hop 3 (`NET_PACKET_ONION_RECV_3`).
pub const ONION_RESPONSE_3_KIND: u8 = 0x8c;
/// Kind of the response hop 3 sends to hop 2 (`NET_PACKET_ONION_RECV_2`).
pub const ONION_RESPONSE_2_KIND: u8 = 0x8d;
/// Kind of the response hop 2 sends to hop 1 (`NET_PACKET_ONION_RECV_1`).
pub const ONION_RESPONSE_1_KIND: u8 = 0x8e;
/// Id of the TCP relay packet that gives a client its response payload.
pub const TCP_ONION_RESPONSE_ID: u8 = 9;

/// Longest payload a destination can send back (`ONION_RESPONSE_MAX_DATA_SIZE`).
pub const MAX_ONION_RESPONSE_PAYLOAD_LEN: usize = MAX_ONION_PACKET_LEN - (1 + ONION_RETURN_3_LEN);
/// The payload kinds the hops pass back: announce response and onion data response.
pub const RESPONSE_PAYLOAD_KINDS: [u8; 2] = [0x84, 0x86];

/// Reads `[kind][return block of RET bytes][payload]`, at most 1400 bytes,
/// the payload at least one byte of an allowed kind.
fn decode_response<const RET: usize>(
    packet: Bytes,
    kind: u8,
    what: &'static str,
) -> Result<(OnionReturn<RET>, Bytes), DecodeError> {
    let mut r = Reader::new(packet);
    if r.remaining() > MAX_ONION_PACKET_LEN {
        return Err(DecodeError::TrailingBytes(r.remaining() - MAX_ONION_PACKET_LEN));
    }
    if r.remaining() <= 1 + RET {
        return Err(DecodeError::UnexpectedEnd { what, needed: 1 + RET + 1, available: r.remaining() });
    }
    if r.u8("onion response kind")? != kind {
        return Err(DecodeError::Invalid("onion response kind"));
    }
    let ret = OnionReturn::decode(&mut r)?;
    let payload = r.rest();
    match payload.first() {
        Some(kind) if RESPONSE_PAYLOAD_KINDS.contains(kind) => Ok((ret, payload)),
        _ => Err(DecodeError::Invalid("onion response payload kind")),
    }
}

/// The destination's answer, to hop 3 (0x8c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionResponse3 {
    /// The block hop 3 appended to the request.
    pub ret: OnionReturn3,
    /// The answer, starting with its kind (0x84 or 0x86).
    pub payload: Bytes,
}

impl OnionResponse3 {
    /// An answer along the path `ret` came by: 1 to 1222 bytes of kind 0x84 or 0x86.
    pub fn new(ret: OnionReturn3, payload: Bytes) -> Result<Self, OnionPayloadError> {
        check_payload(&payload, MAX_ONION_RESPONSE_PAYLOAD_LEN, &RESPONSE_PAYLOAD_KINDS)?;
        Ok(Self { ret, payload })
    }

    /// Hop 3 opens its block with its symmetric key: where to send the
    /// answer next (hop 2), and what to send there.
    pub fn open(&self, key: &SharedKey) -> Result<(SocketAddr, OnionResponse2), OpenError> {
        let (to, ret) = self.ret.open_addr(key)?;
        Ok((to, OnionResponse2 { ret, payload: self.payload.clone() }))
    }

    /// Reads a whole datagram (179 to 1400 bytes).
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (ret, payload) = decode_response(packet.into(), ONION_RESPONSE_3_KIND, "onion response 0x8c")?;
        Ok(Self { ret, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_RESPONSE_3_KIND);
        self.ret.encode(buf);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + ONION_RETURN_3_LEN + self.payload.len()
    }
}

/// The answer from hop 3 to hop 2 (0x8d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionResponse2 {
    /// The block hop 2 appended to the request.
    pub ret: OnionReturn2,
    /// The answer.
    pub payload: Bytes,
}

impl OnionResponse2 {
    /// Hop 2 opens its block: where to send the answer next (hop 1), and
    /// what to send there.
    pub fn open(&self, key: &SharedKey) -> Result<(SocketAddr, OnionResponse1), OpenError> {
        let (to, ret) = self.ret.open_addr(key)?;
        Ok((to, OnionResponse1 { ret, payload: self.payload.clone() }))
    }

    /// Reads a whole datagram (120 to 1400 bytes).
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (ret, payload) = decode_response(packet.into(), ONION_RESPONSE_2_KIND, "onion response 0x8d")?;
        Ok(Self { ret, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_RESPONSE_2_KIND);
        self.ret.encode(buf);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + ONION_RETURN_2_LEN + self.payload.len()
    }
}

/// The answer from hop 2 to hop 1 (0x8e).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionResponse1 {
    /// The block hop 1 appended to the request.
    pub ret: OnionReturn1,
    /// The answer.
    pub payload: Bytes,
}

impl OnionResponse1 {
    /// Hop 1 opens its block: the client to give the payload to, over UDP
    /// or over its TCP relay.
    pub fn open(&self, key: &SharedKey) -> Result<(ReturnAddr, Bytes), OpenError> {
        Ok((self.ret.open_addr(key)?, self.payload.clone()))
    }

    /// Reads a whole datagram (61 to 1400 bytes).
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let (ret, payload) = decode_response(packet.into(), ONION_RESPONSE_1_KIND, "onion response 0x8e")?;
        Ok(Self { ret, payload })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(ONION_RESPONSE_1_KIND);
        self.ret.encode(buf);
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + ONION_RETURN_1_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::{CryptoError, Nonce};
    use crate::wire::onion_request::ONION_RETURN_3_LEN;
    use crate::wire::test_support::{arb_nonce, arb_socket_addr, damage, encoded};

    fn key(hop: u8) -> SharedKey {
        SharedKey::from_bytes([0x11 * hop; 32])
    }

    /// The blocks three hops would have appended for `client`, and the hop addresses.
    fn returns(client: ReturnAddr, hops: [SocketAddr; 2], nonce: &Nonce) -> (OnionReturn1, OnionReturn2, OnionReturn3) {
        let ret1 = OnionReturn1::seal_addr(&key(1), nonce, client);
        let ret2 = OnionReturn2::seal_addr(&key(2), nonce, hops[0], &ret1);
        let ret3 = OnionReturn3::seal_addr(&key(3), nonce, hops[1], &ret2);
        (ret1, ret2, ret3)
    }

    fn hops() -> [SocketAddr; 2] {
        ["192.0.2.1:33445".parse().unwrap(), "[2001:db8::2]:33446".parse().unwrap()]
    }

    // What a c-toxcore 0.2.18 announce node (`new_onion_announce`, Debian's
    // libtoxcore.a) sent back for an announce request that arrived with the
    // return block 0x30, 0x31, .., 0xe0: `send_onion_response` around the
    // 0x84 response of `onion_announce_response`'s golden test.
    const GOLDEN_0X8C: [u8; 338] = hex!(
        "8c303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e"
        "5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e"
        "8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbe"
        "bfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe084efcdab8967452301a0a1a2a3a4"
        "a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7ccba1ff6556c26e46609401a7c08e02c28075b00704c99f8b762507de8"
        "dd2c29a8e12b46f00f7da767abef608c47e73c79a22ffce03a561635f5c5b8074218c3ea80d1d6123210ebad0ceed83d"
        "8ef73e7408a370097895fdab4e4ae857f4ca7be2ab488c68f6b8f4bf06ed7d9ed6ffbd07acf0cc78797a4a09715c0562"
        "af8f"
    );

    #[test]
    fn matches_c_toxcore_send_onion_response() {
        let response = OnionResponse3::decode(GOLDEN_0X8C.to_vec()).unwrap();
        let block: [u8; ONION_RETURN_3_LEN] = std::array::from_fn(|i| 0x30 + i as u8);
        assert_eq!(response.ret, OnionReturn3::from_bytes(block));
        assert_eq!(response.payload.len(), 160);
        assert_eq!(response.payload[0], 0x84);
        let ours = OnionResponse3::new(OnionReturn3::from_bytes(block), response.payload.clone()).unwrap();
        assert_eq!(encoded!(ours), GOLDEN_0X8C);
    }

    #[test]
    fn answers_travel_back_hop_by_hop() {
        let client = ReturnAddr::Udp("203.0.113.9:40000".parse().unwrap());
        let nonce = Nonce::from_bytes([0x5a; 24]);
        let (ret1, ret2, ret3) = returns(client, hops(), &nonce);
        let payload = Bytes::from_static(&[0x86, 1, 2, 3]);

        let response3 = OnionResponse3::new(ret3, payload.clone()).unwrap();
        let bytes = encoded!(response3);
        assert_eq!((bytes[0], bytes.len()), (ONION_RESPONSE_3_KIND, 1 + 177 + 4));
        let (to, response2) = OnionResponse3::decode(bytes).unwrap().open(&key(3)).unwrap();
        assert_eq!((to, response2.ret), (hops()[1], ret2));

        let bytes = encoded!(response2);
        assert_eq!((bytes[0], bytes.len()), (ONION_RESPONSE_2_KIND, 1 + 118 + 4));
        let (to, response1) = OnionResponse2::decode(bytes).unwrap().open(&key(2)).unwrap();
        assert_eq!((to, response1.ret), (hops()[0], ret1));

        let bytes = encoded!(response1);
        assert_eq!((bytes[0], bytes.len()), (ONION_RESPONSE_1_KIND, 1 + 59 + 4));
        assert_eq!(OnionResponse1::decode(bytes).unwrap().open(&key(1)), Ok((client, payload)));

        // A hop's block opens only with that hop's key.
        assert_eq!(response3.open(&key(2)).unwrap_err(), OpenError::Crypto(CryptoError::Decrypt));
    }

    #[test]
    fn a_relay_gets_its_client_back() {
        let client = ReturnAddr::TcpClient { conn_id: 17, identifier: 99 };
        let (ret1, _, _) = returns(client, hops(), &Nonce::ZERO);
        let response1 = OnionResponse1 { ret: ret1, payload: Bytes::from_static(&[0x84, 0]) };
        assert_eq!(response1.open(&key(1)).unwrap().0, client);
    }

    #[test]
    fn payloads_and_lengths_are_checked() {
        let ret3 = OnionReturn3::from_bytes([1; ONION_RETURN_3_LEN]);
        assert_eq!(MAX_ONION_RESPONSE_PAYLOAD_LEN, 1222);
        assert_eq!(OnionResponse3::new(ret3, Bytes::new()), Err(OnionPayloadError::Empty));
        let longest = OnionResponse3::new(ret3, vec![0x84; 1222].into()).unwrap();
        assert_eq!(longest.encoded_len(), MAX_ONION_PACKET_LEN);
        assert_eq!(
            OnionResponse3::new(ret3, vec![0x84; 1223].into()),
            Err(OnionPayloadError::TooLong { len: 1223, max: 1222 })
        );
        // The 0x88 announce response does not travel back (handle_recv_*).
        assert_eq!(OnionResponse3::new(ret3, vec![0x88; 9].into()), Err(OnionPayloadError::Kind(0x88)));

        let packet = |kind: u8, ret: usize, payload: &[u8]| {
            let mut bytes = vec![kind];
            bytes.resize(1 + ret, 0);
            bytes.extend_from_slice(payload);
            bytes
        };
        for (kind, ret) in [(0x8c, 177), (0x8d, 118), (0x8e, 59)] {
            let decode = |bytes: Vec<u8>| match kind {
                0x8c => OnionResponse3::decode(bytes).map(|r| r.payload),
                0x8d => OnionResponse2::decode(bytes).map(|r| r.payload),
                _ => OnionResponse1::decode(bytes).map(|r| r.payload),
            };
            assert_eq!(decode(packet(kind, ret, &[0x86])), Ok(Bytes::from_static(&[0x86])));
            assert!(matches!(decode(packet(kind, ret, &[])), Err(DecodeError::UnexpectedEnd { .. })));
            assert_eq!(decode(packet(kind, ret, &[0x88])), Err(DecodeError::Invalid("onion response payload kind")));
            assert_eq!(decode(packet(kind + 1, ret, &[0x84])), Err(DecodeError::Invalid("onion response kind")));
            let longest = vec![0x84; MAX_ONION_PACKET_LEN - 1 - ret];
            assert!(decode(packet(kind, ret, &longest)).is_ok());
            let too_long = vec![0x84; MAX_ONION_PACKET_LEN - ret];
            assert_eq!(decode(packet(kind, ret, &too_long)), Err(DecodeError::TrailingBytes(1)));
        }
    }

    fn arb_payload() -> impl Strategy<Value = Bytes> {
        (
            proptest::sample::select(RESPONSE_PAYLOAD_KINDS.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..MAX_ONION_RESPONSE_PAYLOAD_LEN),
        )
            .prop_map(|(kind, rest)| std::iter::once(kind).chain(rest).collect())
    }

    proptest! {
        #[test]
        fn round_trips(client in arb_socket_addr(), hop1 in arb_socket_addr(), hop2 in arb_socket_addr(), nonce in arb_nonce(), payload in arb_payload()) {
            let (ret1, ret2, ret3) = returns(ReturnAddr::Udp(client), [hop1, hop2], &nonce);
            let response3 = OnionResponse3::new(ret3, payload.clone()).unwrap();
            let back3 = OnionResponse3::decode(encoded!(response3)).unwrap();
            prop_assert_eq!(&back3, &response3);
            let (_, response2) = back3.open(&key(3)).unwrap();
            prop_assert_eq!(response2.ret, ret2);
            let back2 = OnionResponse2::decode(encoded!(response2)).unwrap();
            let (_, response1) = back2.open(&key(2)).unwrap();
            prop_assert_eq!(response1.ret, ret1);
            let back1 = OnionResponse1::decode(encoded!(response1)).unwrap();
            prop_assert_eq!(back1.open(&key(1)).unwrap().1, payload);
        }

        #[test]
        fn damaged_input_never_panics(nonce in arb_nonce(), payload in arb_payload(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let (ret1, ret2, ret3) = returns(ReturnAddr::Udp(hops()[0]), hops(), &nonce);
            if let Ok(damaged) = OnionResponse3::decode(damage(encoded!(OnionResponse3 { ret: ret3, payload: payload.clone() }), flip, bit, cut)) {
                let _ = damaged.open(&key(3));
            }
            if let Ok(damaged) = OnionResponse2::decode(damage(encoded!(OnionResponse2 { ret: ret2, payload: payload.clone() }), flip, bit, cut)) {
                let _ = damaged.open(&key(2));
            }
            if let Ok(damaged) = OnionResponse1::decode(damage(encoded!(OnionResponse1 { ret: ret1, payload }), flip, bit, cut)) {
                let _ = damaged.open(&key(1));
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = OnionResponse3::decode(bytes.clone());
            let _ = OnionResponse2::decode(bytes.clone());
            let _ = OnionResponse1::decode(bytes);
        }
    }
}
