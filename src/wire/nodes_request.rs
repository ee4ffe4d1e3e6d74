//! Nodes request (0x02): "which nodes do you know closest to this key?", the
//! plaintext of a DHT packet of kind 0x02.
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 32    | the DHT public key searched for                           |
//! | 8     | ping id, echoed by the [response](super::nodes_response)  |
//!
//! Sealed in a [`DhtPacket`](super::dht_packet::DhtPacket), the datagram is
//! 1 + 32 + 24 + 16 + 40 = 113 bytes. Unlike pings there is no flag byte:
//! a request (40 bytes) and a response (at least 9 + 39) differ in length.
//!
//! Facts from c-toxcore 0.2.18 `DHT.c`: `dht_getnodes` writes the searched
//! key and a `uint64_t` ping id copied in host order (opaque: we read and
//! write it big-endian, which keeps the bytes); `handle_getnodes` drops any
//! packet that is not exactly 113 bytes, answers with up to four nodes
//! (`sendnodes_ipv6`) and then pings the requester (`ping_add`).
//!
//! Spec: <https://toktok.ltd/spec.html#nodes-request-0x02>.

use bytes::{BufMut, Bytes};

use super::dht_packet::{DhtPacketKind, DhtPayload};
use super::{DecodeError, Reader};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};

/// A nodes request's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodesRequest {
    /// The key whose closest nodes are wanted.
    pub searched: PublicKey,
    /// The id the response must echo.
    pub ping_id: u64,
}

impl NodesRequest {
    /// Plaintext length: a key and a ping id.
    pub const LEN: usize = PUBLIC_KEY_LEN + 8;

    /// A request for the nodes closest to `searched`.
    pub const fn new(searched: PublicKey, ping_id: u64) -> Self {
        Self { searched, ping_id }
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let searched = PublicKey::from_bytes(r.array("nodes request searched key")?);
        let ping_id = r.u64_be("ping id")?;
        r.finish()?;
        Ok(Self { searched, ping_id })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.searched.as_bytes());
        buf.put_u64(self.ping_id);
    }

    /// What [`encode`](Self::encode) writes: always 40 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

impl DhtPayload for NodesRequest {
    const KIND: DhtPacketKind = DhtPacketKind::NodesRequest;

    fn encoded_len(&self) -> usize {
        Self::LEN
    }

    fn encode(&self, buf: &mut impl BufMut) {
        NodesRequest::encode(self, buf);
    }

    fn decode(plaintext: Bytes) -> Result<Self, DecodeError> {
        NodesRequest::decode(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::SharedKey;
    use crate::wire::dht_packet::DhtPacket;
    use crate::wire::test_support::{arb_public_key, damage, golden};

    fn encode(request: &NodesRequest) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(out.len(), request.encoded_len());
        out
    }

    #[test]
    fn plaintext_by_hand() {
        let request = NodesRequest::new(PublicKey::from_bytes([0xab; 32]), 0x1122_3344_5566_7788);
        let mut bytes = vec![0xab; 32];
        bytes.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        assert_eq!(encode(&request), bytes);
        assert_eq!(NodesRequest::decode(bytes.clone()), Ok(request));
        bytes.push(0);
        assert_eq!(NodesRequest::decode(bytes.clone()), Err(DecodeError::TrailingBytes(1)));
        bytes.truncate(39);
        assert!(matches!(NodesRequest::decode(bytes), Err(DecodeError::UnexpectedEnd { what: "ping id", .. })));
    }

    #[test]
    fn matches_c_toxcore() {
        // c-toxcore's `dht_create_packet` sealing what `dht_getnodes` builds:
        // Alice asks for the nodes closest to Bob's key.
        let golden_packet = hex!(
            "02"
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "1c0cdf8e960b1c094943ded5e0483139cc6964f282f3456f73bbde1dcb8b41b93fc99abf6710a6dae66bdc3800907499d47bb5024bfdd291"
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let expected = NodesRequest::new(*bob.public(), golden::PING_ID);
        let packet = DhtPacket::decode(golden_packet.to_vec()).unwrap();
        assert_eq!(packet.kind, DhtPacketKind::NodesRequest);
        let key = SharedKey::precompute(&packet.sender, bob.secret()).unwrap();
        assert_eq!(NodesRequest::decode(packet.open(&key).unwrap()), Ok(expected));

        let ours = DhtPacket::seal_payload(*alice.public(), &golden::shared(), golden::nonce(), &expected);
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes, golden_packet);
    }

    proptest! {
        #[test]
        fn round_trips(searched in arb_public_key(), ping_id in any::<u64>()) {
            let request = NodesRequest::new(searched, ping_id);
            prop_assert_eq!(NodesRequest::decode(encode(&request)), Ok(request));
        }

        #[test]
        fn damaged_input_never_panics(searched in arb_public_key(), ping_id in any::<u64>(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = NodesRequest::decode(damage(encode(&NodesRequest::new(searched, ping_id)), flip, bit, cut));
        }
    }
}
