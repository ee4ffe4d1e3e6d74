//! Nodes response (0x04): up to four nodes close to the key a
//! [nodes request](super::nodes_request) searched for; the plaintext of a
//! DHT packet of kind 0x04.
//!
//! | bytes   | field                                                   |
//! |---------|---------------------------------------------------------|
//! | 1       | number of nodes, 0 to 4                                 |
//! | 39 / 51 | each node in the [packed node format](super::packed_node) |
//! | 8       | ping id, copied from the request                        |
//!
//! Facts from c-toxcore 0.2.18 `DHT.c`:
//! - `sendnodes_ipv6` packs at most `MAX_SENT_NODES` = 4 nodes (`DHT.h`),
//!   UDP only (`get_close_nodes`), then echoes the request's 8 ping-id bytes
//!   as they came. With no nodes to give it still answers, with count 0.
//! - `handle_sendnodes_core` drops a response whose count exceeds 4, whose
//!   nodes do not fill exactly the bytes between the count and the ping id,
//!   that holds a TCP node (`unpack_nodes` with `tcp_enabled = false`), or
//!   whose ping id its `dht_ping_array` does not hold for that key and
//!   address. It also drops a response with **no** nodes (`data_size == 0`),
//!   so the empty answers it sends itself are ignored by its peers.
//!
//! We refuse the same malformed inputs (count over 4, a TCP node, bytes left
//! over) and accept count 0, which is well formed; the DHT decides whether
//! an empty answer counts. The ping id is read and written big-endian,
//! which keeps its bytes.
//!
//! Spec: <https://toktok.ltd/spec.html#nodes-response-0x04>.

use bytes::{BufMut, Bytes};

use super::dht_packet::{DhtPacketKind, DhtPayload};
use super::packed_node::{PACKED_NODE_IPV6_LEN, PackedNode, Protocol};
use super::{DecodeError, Reader};

/// Most nodes a response carries (c-toxcore `MAX_SENT_NODES`).
pub const MAX_NODES: usize = 4;

/// Why nodes cannot go in a nodes response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodesResponseError {
    /// More than [`MAX_NODES`] nodes.
    #[error("a nodes response carries at most 4 nodes, not {0}")]
    TooMany(usize),
    /// A TCP relay: the DHT lists UDP nodes only.
    #[error("a nodes response carries UDP nodes only")]
    TcpNode,
}

/// A nodes response's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodesResponse {
    nodes: Vec<PackedNode>,
    /// The id of the request being answered.
    pub ping_id: u64,
}

impl NodesResponse {
    /// Shortest plaintext: count 0 and the ping id.
    pub const MIN_LEN: usize = 1 + 8;
    /// Longest plaintext: four IPv6 nodes.
    pub const MAX_LEN: usize = Self::MIN_LEN + MAX_NODES * PACKED_NODE_IPV6_LEN;

    /// A response listing `nodes`: at most four, all UDP.
    pub fn new(nodes: Vec<PackedNode>, ping_id: u64) -> Result<Self, NodesResponseError> {
        if nodes.len() > MAX_NODES {
            return Err(NodesResponseError::TooMany(nodes.len()));
        }
        if nodes.iter().any(|node| node.protocol != Protocol::Udp) {
            return Err(NodesResponseError::TcpNode);
        }
        Ok(Self { nodes, ping_id })
    }

    /// The nodes, at most four, all UDP.
    pub fn nodes(&self) -> &[PackedNode] {
        &self.nodes
    }

    /// Takes the nodes out.
    pub fn into_nodes(self) -> Vec<PackedNode> {
        self.nodes
    }

    /// Reads a whole plaintext.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let count = usize::from(r.u8("nodes response count")?);
        if count > MAX_NODES {
            return Err(DecodeError::Invalid("nodes response count (more than 4)"));
        }
        let nodes = PackedNode::decode_list(&mut r, count)?;
        if nodes.iter().any(|node| node.protocol != Protocol::Udp) {
            return Err(DecodeError::Invalid("nodes response node (TCP)"));
        }
        let ping_id = r.u64_be("ping id")?;
        r.finish()?;
        Ok(Self { nodes, ping_id })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        // `new` and `decode` hold the count to 4.
        buf.put_u8(self.nodes.len() as u8);
        PackedNode::encode_list(&self.nodes, buf);
        buf.put_u64(self.ping_id);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        Self::MIN_LEN + PackedNode::list_encoded_len(&self.nodes)
    }
}

impl DhtPayload for NodesResponse {
    const KIND: DhtPacketKind = DhtPacketKind::NodesResponse;

    fn encoded_len(&self) -> usize {
        NodesResponse::encoded_len(self)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        NodesResponse::encode(self, buf);
    }

    fn decode(plaintext: Bytes) -> Result<Self, DecodeError> {
        NodesResponse::decode(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::{PublicKey, SharedKey};
    use crate::wire::dht_packet::DhtPacket;
    use crate::wire::packed_node::normalize_addr;
    use crate::wire::packed_node::tests::arb_packed_node;
    use crate::wire::test_support::{damage, golden};

    fn arb_udp_node() -> impl Strategy<Value = PackedNode> {
        arb_packed_node().prop_map(|node| PackedNode { protocol: Protocol::Udp, ..node })
    }

    fn arb_response() -> impl Strategy<Value = NodesResponse> {
        (proptest::collection::vec(arb_udp_node(), 0..=MAX_NODES), any::<u64>())
            .prop_map(|(nodes, ping_id)| NodesResponse::new(nodes, ping_id).unwrap())
    }

    fn encode(response: &NodesResponse) -> Vec<u8> {
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out.len(), response.encoded_len());
        out
    }

    #[test]
    fn plaintext_by_hand() {
        let node = PackedNode::udp("10.1.2.3:33445".parse().unwrap(), PublicKey::from_bytes([0x5a; 32]));
        let response = NodesResponse::new(vec![node], 0x0102_0304_0506_0708).unwrap();
        let mut bytes = vec![0x01, 0x02, 10, 1, 2, 3, 0x82, 0xa5];
        bytes.extend_from_slice(&[0x5a; 32]);
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(encode(&response), bytes);
        assert_eq!(NodesResponse::decode(bytes), Ok(response));

        let empty = NodesResponse::new(Vec::new(), 0x0102_0304_0506_0708).unwrap();
        let bytes = [0x00, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(encode(&empty), bytes);
        assert_eq!(NodesResponse::decode(bytes.to_vec()), Ok(empty));
    }

    #[test]
    fn malformed_responses_fail() {
        let udp = PackedNode::udp("10.1.2.3:33445".parse().unwrap(), PublicKey::from_bytes([0x5a; 32]));
        let tcp = PackedNode { protocol: Protocol::Tcp, ..udp };
        assert_eq!(NodesResponse::new(vec![udp; 5], 1), Err(NodesResponseError::TooMany(5)));
        assert_eq!(NodesResponse::new(vec![udp, tcp], 1), Err(NodesResponseError::TcpNode));

        let mut five = vec![5u8];
        (0..5).for_each(|_| udp.encode(&mut five));
        five.extend_from_slice(&[0; 8]);
        assert_eq!(NodesResponse::decode(five), Err(DecodeError::Invalid("nodes response count (more than 4)")));

        let mut with_tcp = vec![1u8];
        tcp.encode(&mut with_tcp);
        with_tcp.extend_from_slice(&[0; 8]);
        assert_eq!(NodesResponse::decode(with_tcp), Err(DecodeError::Invalid("nodes response node (TCP)")));

        // A count that promises more nodes than there are, or fewer.
        let good = encode(&NodesResponse::new(vec![udp, udp], 9).unwrap());
        let mut more = good.clone();
        more[0] = 3;
        assert!(NodesResponse::decode(more).is_err());
        let mut fewer = good;
        fewer[0] = 1;
        assert_eq!(NodesResponse::decode(fewer), Err(DecodeError::TrailingBytes(39)));
    }

    #[test]
    fn matches_c_toxcore() {
        // c-toxcore's `dht_create_packet` sealing what `sendnodes_ipv6`
        // builds: one node, 192.0.2.1:33445 with Bob's key, and the ping id.
        let golden_packet = hex!(
            "04"
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "682e23a3ccfc1f0ae8d6d5d67701c7d2b4cd951c5ee93e03850fecdfcb3d689710a2a01c7e3bceb18e54093e"
            "6893690ff3f0f202833d548abca06000ebd27d43"
        );
        let (alice, bob) = (golden::alice(), golden::bob());
        let node = PackedNode::udp("192.0.2.1:33445".parse().unwrap(), *bob.public());
        let expected = NodesResponse::new(vec![node], golden::PING_ID).unwrap();
        let packet = DhtPacket::decode(golden_packet.to_vec()).unwrap();
        assert_eq!(packet.kind, DhtPacketKind::NodesResponse);
        let key = SharedKey::precompute(&packet.sender, bob.secret()).unwrap();
        assert_eq!(NodesResponse::decode(packet.open(&key).unwrap()), Ok(expected.clone()));

        let ours = DhtPacket::seal_payload(*alice.public(), &golden::shared(), golden::nonce(), &expected);
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes, golden_packet);
    }

    proptest! {
        #[test]
        fn round_trips(response in arb_response()) {
            let bytes = encode(&response);
            prop_assert!((NodesResponse::MIN_LEN..=NodesResponse::MAX_LEN).contains(&bytes.len()));
            let back = NodesResponse::decode(bytes.clone()).unwrap();
            prop_assert_eq!(back.ping_id, response.ping_id);
            // Mapped addresses come back as IPv4; the bytes are the same.
            let normalized: Vec<_> =
                response.nodes().iter().map(|node| PackedNode { addr: normalize_addr(node.addr), ..*node }).collect();
            prop_assert_eq!(back.nodes(), &normalized[..]);
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn damaged_input_never_panics(response in arb_response(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = NodesResponse::decode(damage(encode(&response), flip, bit, cut));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..250)) {
            let _ = NodesResponse::decode(bytes);
        }
    }
}
