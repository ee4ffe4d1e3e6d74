//! Onion announce response (0x84, and 0x88 with group data): an announce
//! node's answer to an [announce request](super::onion_announce_request),
//! sent back along the request's path as the payload of an
//! [onion response](super::onion_response).
//!
//! | bytes   | field                                                         |
//! |---------|---------------------------------------------------------------|
//! | 1       | 0x84 (0x88)                                                   |
//! | 8       | sendback, copied from the request                             |
//! | 24      | nonce, random per packet                                      |
//! | 16      | MAC                                                           |
//! | 1       | encrypted: is_stored, 0, 1 or 2 (see [`AnnounceStatus`])       |
//! | 32      | encrypted: a ping id, or the searched key's data public key   |
//! | 1       | (0x88 only) encrypted: the number of nodes                    |
//! | 0..=204 | encrypted: up to 4 nodes close to the searched key, in the [packed node format](super::packed_node), UDP only |
//! | ...     | (0x88 only) encrypted: extra data                             |
//!
//! The payload is sealed with the same key as the request: the node's DHT
//! secret key with the request's sender key. The sendback is in the clear so
//! that the client can tell which request (and so which key) it answers.
//!
//! Facts from c-toxcore 0.2.18:
//! - `onion_announce.c` `make_announce_payload_helper`: 0 = not stored here,
//!   followed by the ping id to send next time; 2 = the sender is stored
//!   (announced) here with that data key, followed by the ping id; 1 = the
//!   searched key is stored here by someone else, followed by its data key.
//!   A stored sender whose data key changed gets 0.
//! - `handle_announce_request_common` packs at most `MAX_SENT_NODES` = 4
//!   nodes from `get_close_nodes` (UDP only), an empty list included, and
//!   answers 0x88 with a node count byte before them (`want_node_count`) and
//!   0x84 without one. Golden bytes below come from a running 0.2.18
//!   announce node (`new_onion_announce`) answering our requests.
//! - `onion_client.c` `handle_announce_response` accepts 0x84 only (no 0x88
//!   handler exists; `onion.c` does not pass 0x88 back along paths), of
//!   `ONION_ANNOUNCE_RESPONSE_MIN_SIZE` = 82 to `_MAX_SIZE` = 626 bytes;
//!   the plaintext must fill the packet. It reads nodes with `unpack_nodes`
//!   with TCP off and at most 4, ignoring anything after the fourth node and
//!   dropping the nodes (not the status) when one is malformed.
//!   `client_add_to_list` treats 1 in answer to a self-announce as stored
//!   only if the key is its own data key, and drops values of 2 or more when
//!   searching for a friend.
//!
//! We refuse any other is_stored value, more than 4 nodes, a TCP node and
//! bytes after the nodes of an 0x84 (c-toxcore never sends them).
//!
//! Spec: <https://toktok.ltd/spec.html#onion> ("announce response packet").

use bytes::{BufMut, Bytes};

use super::onion_announce_request::{AnnounceForm, ONION_PING_ID_LEN};
use super::onion_request::OpenError;
use super::packed_node::{PACKED_NODE_IPV6_LEN, PackedNode, Protocol};
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// Kind of the announce response 0.2.18 clients read (`NET_PACKET_ANNOUNCE_RESPONSE_OLD`).
pub const ANNOUNCE_RESPONSE_KIND: u8 = 0x84;
/// Kind of the announce response with group data (`NET_PACKET_ANNOUNCE_RESPONSE`).
pub const ANNOUNCE_RESPONSE_NEW_KIND: u8 = 0x88;
/// Most nodes a response lists (`MAX_SENT_NODES`).
pub const MAX_ANNOUNCE_NODES: usize = 4;

/// What the node says about the searched key (the is_stored byte and the
/// 32 bytes after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceStatus {
    /// 0: not stored here; announce again with this ping id to be stored.
    NotStored {
        /// The ping id for the next request.
        ping_id: [u8; ONION_PING_ID_LEN],
    },
    /// 1: someone announced the searched key here; this is their data key.
    Found {
        /// The key to seal onion data for the searched key with.
        data_pk: PublicKey,
    },
    /// 2: the sender is announced here; keep announcing with this ping id.
    Announced {
        /// The ping id for the next request.
        ping_id: [u8; ONION_PING_ID_LEN],
    },
}

impl AnnounceStatus {
    /// The is_stored byte.
    pub const fn is_stored(&self) -> u8 {
        match self {
            Self::NotStored { .. } => 0,
            Self::Found { .. } => 1,
            Self::Announced { .. } => 2,
        }
    }

    /// The 32 bytes after it.
    pub const fn bytes(&self) -> &[u8; 32] {
        match self {
            Self::NotStored { ping_id } | Self::Announced { ping_id } => ping_id,
            Self::Found { data_pk } => data_pk.as_bytes(),
        }
    }
}

/// Why a response plaintext cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceResponseError {
    /// More than four nodes.
    #[error("an announce response lists at most 4 nodes, not {0}")]
    TooManyNodes(usize),
    /// A TCP relay: responses list DHT nodes only.
    #[error("an announce response lists UDP nodes only")]
    TcpNode,
    /// The packet would be longer than a client accepts.
    #[error("announce response would be {0} bytes; at most {max} fit", max = OnionAnnounceResponse::MAX_LEN)]
    TooLong(usize),
}

/// An announce response's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnnounceResponsePayload {
    /// Stored or not, with the ping id or the data key.
    pub status: AnnounceStatus,
    nodes: Vec<PackedNode>,
    extra: Option<Bytes>,
}

impl AnnounceResponsePayload {
    /// Length of the is_stored byte and the 32 bytes after it.
    pub const MIN_LEN: usize = 1 + ONION_PING_ID_LEN;
    /// Longest 0x84 plaintext: four IPv6 nodes.
    pub const MAX_OLD_LEN: usize = Self::MIN_LEN + MAX_ANNOUNCE_NODES * PACKED_NODE_IPV6_LEN;

    /// An 0x84 plaintext: at most four nodes, all UDP.
    pub fn new(status: AnnounceStatus, nodes: Vec<PackedNode>) -> Result<Self, AnnounceResponseError> {
        Self::check_nodes(&nodes)?;
        Ok(Self { status, nodes, extra: None })
    }

    /// An 0x88 plaintext: a node count, the nodes and the group extra data.
    pub fn with_extra(
        status: AnnounceStatus,
        nodes: Vec<PackedNode>,
        extra: Bytes,
    ) -> Result<Self, AnnounceResponseError> {
        Self::check_nodes(&nodes)?;
        let payload = Self { status, nodes, extra: Some(extra) };
        let len = OnionAnnounceResponse::HEADER_LEN + MAC_LEN + payload.encoded_len();
        if len > OnionAnnounceResponse::MAX_LEN {
            return Err(AnnounceResponseError::TooLong(len));
        }
        Ok(payload)
    }

    fn check_nodes(nodes: &[PackedNode]) -> Result<(), AnnounceResponseError> {
        if nodes.len() > MAX_ANNOUNCE_NODES {
            return Err(AnnounceResponseError::TooManyNodes(nodes.len()));
        }
        if nodes.iter().any(|node| node.protocol != Protocol::Udp) {
            return Err(AnnounceResponseError::TcpNode);
        }
        Ok(())
    }

    /// The nodes close to the searched key: at most four, all UDP.
    pub fn nodes(&self) -> &[PackedNode] {
        &self.nodes
    }

    /// The group extra data of an 0x88; `None` for an 0x84.
    pub fn extra(&self) -> Option<&Bytes> {
        self.extra.as_ref()
    }

    /// The form this plaintext travels in: 0x88 when it has extra data.
    pub fn form(&self) -> AnnounceForm {
        if self.extra.is_some() { AnnounceForm::New } else { AnnounceForm::Old }
    }

    /// Reads a whole plaintext of `form`.
    pub fn decode(form: AnnounceForm, plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        let is_stored = r.u8("announce response is_stored")?;
        let bytes: [u8; 32] = r.array("announce response ping id or data key")?;
        let status = match is_stored {
            0 => AnnounceStatus::NotStored { ping_id: bytes },
            1 => AnnounceStatus::Found { data_pk: PublicKey::from_bytes(bytes) },
            2 => AnnounceStatus::Announced { ping_id: bytes },
            _ => return Err(DecodeError::Invalid("announce response is_stored")),
        };
        let (nodes, extra) = match form {
            AnnounceForm::Old => {
                let nodes = PackedNode::decode_up_to(&mut r, MAX_ANNOUNCE_NODES)?;
                r.finish()?;
                (nodes, None)
            }
            AnnounceForm::New => {
                let count = usize::from(r.u8("announce response node count")?);
                if count > MAX_ANNOUNCE_NODES {
                    return Err(DecodeError::Invalid("announce response node count (more than 4)"));
                }
                (PackedNode::decode_list(&mut r, count)?, Some(r.rest()))
            }
        };
        if nodes.iter().any(|node| node.protocol != Protocol::Udp) {
            return Err(DecodeError::Invalid("announce response node (TCP)"));
        }
        Ok(Self { status, nodes, extra })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.status.is_stored());
        buf.put_slice(self.status.bytes());
        if self.extra.is_some() {
            // `new` and `with_extra` hold the count to 4.
            buf.put_u8(self.nodes.len() as u8);
        }
        PackedNode::encode_list(&self.nodes, buf);
        if let Some(extra) = &self.extra {
            buf.put_slice(extra);
        }
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let extra = self.extra.as_ref().map_or(0, |extra| 1 + extra.len());
        Self::MIN_LEN + PackedNode::list_encoded_len(&self.nodes) + extra
    }
}

/// An announce response, its payload still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionAnnounceResponse {
    /// 0x84 or 0x88.
    pub form: AnnounceForm,
    /// The request's sendback, echoed.
    pub sendback: u64,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext]`.
    pub payload: Bytes,
}

impl OnionAnnounceResponse {
    /// Kind, sendback and nonce.
    pub const HEADER_LEN: usize = 1 + 8 + NONCE_LEN;
    /// Shortest response a client accepts (`ONION_ANNOUNCE_RESPONSE_MIN_SIZE`).
    pub const MIN_LEN: usize = Self::HEADER_LEN + MAC_LEN + AnnounceResponsePayload::MIN_LEN;
    /// Longest response a client accepts (`ONION_ANNOUNCE_RESPONSE_MAX_SIZE`:
    /// 136 bytes per node, room for group data).
    pub const MAX_LEN: usize = Self::MIN_LEN + 136 * MAX_ANNOUNCE_NODES;

    /// Seals `payload` for the request's sender; `key` is the one the
    /// request was opened with. The form follows the payload's.
    pub fn seal(sendback: u64, key: &SharedKey, nonce: Nonce, payload: &AnnounceResponsePayload) -> Self {
        let mut buf = Vec::with_capacity(MAC_LEN + payload.encoded_len());
        buf.put_bytes(0, MAC_LEN);
        payload.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Self { form: payload.form(), sendback, nonce, payload: buf.into() }
    }

    /// Checks the MAC and reads the plaintext; `key` is precomputed from the
    /// node's DHT public key and the secret key the request was sent with.
    pub fn open(&self, key: &SharedKey) -> Result<AnnounceResponsePayload, OpenError> {
        let plain = key.open(&self.nonce, &self.payload)?;
        Ok(AnnounceResponsePayload::decode(self.form, plain)?)
    }

    /// Reads a whole response: 82 to 626 bytes, as c-toxcore's client accepts.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.remaining() > Self::MAX_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - Self::MAX_LEN));
        }
        if r.remaining() < Self::MIN_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "announce response",
                needed: Self::MIN_LEN,
                available: r.remaining(),
            });
        }
        let form = AnnounceForm::from_response_kind(r.u8("announce response kind")?)
            .ok_or(DecodeError::Invalid("announce response kind"))?;
        let sendback = r.u64_be("announce response sendback")?;
        let nonce = Nonce::from_bytes(r.array("announce response nonce")?);
        Ok(Self { form, sendback, nonce, payload: r.rest() })
    }

    /// Writes the response.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.form.response_kind());
        buf.put_u64(self.sendback);
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        Self::HEADER_LEN + self.payload.len()
    }
}

// The 32 bytes after is_stored are a ping id or a key; c-toxcore relies on
// the two being the same size (`onion_announce.c` static_assert).
const _: () = assert!(ONION_PING_ID_LEN == PUBLIC_KEY_LEN);

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::crypto::KeyPair;
    use crate::wire::packed_node::normalize_addr;
    use crate::wire::packed_node::tests::arb_packed_node;
    use crate::wire::test_support::{arb_nonce, damage, encoded, golden};

    // A c-toxcore 0.2.18 announce node (`new_dht` + `new_onion_announce`
    // from Debian's libtoxcore.a on 127.0.0.1, its DHT secret key
    // ce, cf, .., ed, two nodes in its DHT, its RNG counting up from 0xa0)
    // answered three announce requests sent to it as they leave hop 3:
    // 0. Alice announces herself with a zero ping id: not stored, ping id;
    // 1. again with that ping id: announced;
    // 2. a searcher (secret key from 0xa1) looks for Alice: found, her data key.
    // The sendbacks were the `uint64_t`s 0x0123456789abcdef + 0, 1, 2.

    /// The announce node's DHT key pair.
    pub(crate) fn node() -> KeyPair {
        golden::key_pair(0xce)
    }

    /// The key the searcher sent its request with.
    pub(crate) fn searcher() -> KeyPair {
        golden::key_pair(0xa1)
    }

    /// The ping id the node gave Alice.
    const PING_ID: [u8; 32] = hex!("e8cbbec31d8de6950ecbb30e38202586a1887874b0be93800dd8582e829b0fc9");

    pub(crate) const GOLDEN_NOT_STORED: [u8; 160] = hex!(
        "84" "efcdab8967452301" "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
        "ccba1ff6556c26e46609401a7c08e02c28075b00704c99f8b762507de8dd2c29a8e12b46f00f7da767abef608c47e73c"
        "79a22ffce03a561635f5c5b8074218c3ea80d1d6123210ebad0ceed83d8ef73e7408a370097895fdab4e4ae857f4ca7b"
        "e2ab488c68f6b8f4bf06ed7d9ed6ffbd07acf0cc78797a4a09715c0562af8f"
    );
    const GOLDEN_ANNOUNCED: [u8; 160] = hex!(
        "84" "f0cdab8967452301" "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
        "0b1153252bac970709bf8e98e0e2a88c2a075b00704c99f8b762507de8dd2c29a8e12b46f00f7da767abef608c47e73c"
        "79a22ffce03a561635f5c5b8074218c3ea80d1d6123210ebad0ceed83d8ef73e7408a370097895fdab4e4ae857f4ca7b"
        "e2ab488c68f6b8f4bf06ed7d9ed6ffbd07acf0cc78797a4a09715c0562af8f"
    );
    const GOLDEN_FOUND: [u8; 160] = hex!(
        "84" "f1cdab8967452301" "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
        "64a05a4988c316567e5a372f73d17b7c03637bf1e00d3ef69aa1825615b94db1a3f3ad9647b6eaaadb55007c89482843"
        "d8c9de196195eb7dc0ce1c90972e6d69fbdf65113455dec590c3a3ee179373e13e392b2bf4a81febcc8bb363dbda466c"
        "99890933219648709cb163328f8ac4e944a12764dc1c37102d8362d69a582a"
    );

    /// The nodes the announce node knew: `addto_lists` with keys from 0x20 and 0x10.
    fn close_nodes() -> Vec<PackedNode> {
        vec![
            PackedNode::udp("198.51.100.9:443".parse().unwrap(), *golden::key_pair(0x20).public()),
            PackedNode::udp("192.0.2.1:33445".parse().unwrap(), *golden::key_pair(0x10).public()),
        ]
    }

    #[test]
    fn matches_a_c_toxcore_announce_node() {
        let data_pk = *golden::key_pair(0x91).public();
        let cases = [
            (&GOLDEN_NOT_STORED, golden::alice(), 0, AnnounceStatus::NotStored { ping_id: PING_ID }),
            (&GOLDEN_ANNOUNCED, golden::alice(), 1, AnnounceStatus::Announced { ping_id: PING_ID }),
            (&GOLDEN_FOUND, searcher(), 2, AnnounceStatus::Found { data_pk }),
        ];
        for (golden_response, sender, round, status) in cases {
            let response = OnionAnnounceResponse::decode(golden_response.to_vec()).unwrap();
            assert_eq!(response.form, AnnounceForm::Old);
            assert_eq!(response.sendback, golden::PING_ID + (round << 56));
            let key = SharedKey::precompute(node().public(), sender.secret()).unwrap();
            let expected = AnnounceResponsePayload::new(status, close_nodes()).unwrap();
            assert_eq!(response.open(&key), Ok(expected.clone()));

            let ours = OnionAnnounceResponse::seal(response.sendback, &key, golden::nonce(), &expected);
            assert_eq!(encoded!(ours), golden_response[..]);
        }
    }

    #[test]
    fn plaintexts_by_hand() {
        let node = PackedNode::udp("10.1.2.3:33445".parse().unwrap(), PublicKey::from_bytes([0x5a; 32]));
        let mut node_bytes = vec![0x02, 10, 1, 2, 3, 0x82, 0xa5];
        node_bytes.extend_from_slice(&[0x5a; 32]);

        let old = AnnounceResponsePayload::new(AnnounceStatus::Announced { ping_id: [7; 32] }, vec![node]).unwrap();
        let mut bytes = vec![2];
        bytes.extend_from_slice(&[7; 32]);
        bytes.extend_from_slice(&node_bytes);
        assert_eq!(encoded!(old), bytes);
        assert_eq!(AnnounceResponsePayload::decode(AnnounceForm::Old, bytes), Ok(old));

        // 0x88: a node count before the nodes, extra data after them.
        let found = AnnounceStatus::Found { data_pk: PublicKey::from_bytes([8; 32]) };
        let new = AnnounceResponsePayload::with_extra(found, vec![node], Bytes::from_static(b"group")).unwrap();
        assert_eq!(new.form(), AnnounceForm::New);
        let mut bytes = vec![1];
        bytes.extend_from_slice(&[8; 32]);
        bytes.push(1);
        bytes.extend_from_slice(&node_bytes);
        bytes.extend_from_slice(b"group");
        assert_eq!(encoded!(new), bytes);
        assert_eq!(AnnounceResponsePayload::decode(AnnounceForm::New, bytes), Ok(new.clone()));
        let key = SharedKey::from_bytes([1; 32]);
        let sealed = OnionAnnounceResponse::seal(9, &key, Nonce::ZERO, &new);
        let bytes = encoded!(sealed);
        assert_eq!(bytes[0], ANNOUNCE_RESPONSE_NEW_KIND);
        assert_eq!(OnionAnnounceResponse::decode(bytes).unwrap().open(&key), Ok(new));

        // No nodes at all is fine.
        let bare = AnnounceResponsePayload::new(AnnounceStatus::NotStored { ping_id: [0; 32] }, Vec::new()).unwrap();
        let sealed = OnionAnnounceResponse::seal(9, &key, Nonce::ZERO, &bare);
        assert_eq!(sealed.encoded_len(), OnionAnnounceResponse::MIN_LEN);
        assert_eq!(OnionAnnounceResponse::decode(encoded!(sealed)).unwrap().open(&key), Ok(bare));
    }

    #[test]
    fn malformed_responses_fail() {
        let udp = PackedNode::udp("10.1.2.3:33445".parse().unwrap(), PublicKey::from_bytes([0x5a; 32]));
        let tcp = PackedNode { protocol: Protocol::Tcp, ..udp };
        let status = AnnounceStatus::NotStored { ping_id: [0; 32] };
        assert_eq!(AnnounceResponsePayload::new(status, vec![udp; 5]), Err(AnnounceResponseError::TooManyNodes(5)));
        assert_eq!(AnnounceResponsePayload::new(status, vec![tcp]), Err(AnnounceResponseError::TcpNode));
        assert_eq!(
            AnnounceResponsePayload::with_extra(status, vec![], vec![0; 626 - 82].into()),
            Err(AnnounceResponseError::TooLong(627))
        );
        assert!(AnnounceResponsePayload::with_extra(status, vec![], vec![0; 626 - 83].into()).is_ok());

        let plain = |is_stored: u8, nodes: &[PackedNode]| {
            let mut bytes = vec![is_stored];
            bytes.extend_from_slice(&[0; 32]);
            PackedNode::encode_list(nodes, &mut bytes);
            AnnounceResponsePayload::decode(AnnounceForm::Old, bytes)
        };
        assert!(plain(2, &[udp; 4]).is_ok());
        assert_eq!(plain(3, &[]), Err(DecodeError::Invalid("announce response is_stored")));
        assert_eq!(plain(0, &[udp; 5]), Err(DecodeError::TrailingBytes(39)));
        assert_eq!(plain(0, &[udp, tcp]), Err(DecodeError::Invalid("announce response node (TCP)")));
        let mut new = vec![0; 33];
        new.push(5);
        assert_eq!(
            AnnounceResponsePayload::decode(AnnounceForm::New, new),
            Err(DecodeError::Invalid("announce response node count (more than 4)"))
        );

        let packet = |kind: u8, len: usize| {
            let mut bytes = vec![kind];
            bytes.resize(len, 0);
            OnionAnnounceResponse::decode(bytes)
        };
        assert!(packet(0x84, 82).is_ok());
        assert!(matches!(packet(0x84, 81), Err(DecodeError::UnexpectedEnd { .. })));
        assert!(packet(0x88, 626).is_ok());
        assert_eq!(packet(0x84, 627), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(packet(0x86, 100), Err(DecodeError::Invalid("announce response kind")));
        assert_eq!((ANNOUNCE_RESPONSE_KIND, ANNOUNCE_RESPONSE_NEW_KIND), (0x84, 0x88));
        assert_eq!(AnnounceForm::Old.response_kind(), ANNOUNCE_RESPONSE_KIND);
        assert_eq!(AnnounceForm::New.response_kind(), ANNOUNCE_RESPONSE_NEW_KIND);
    }

    fn arb_status() -> impl Strategy<Value = AnnounceStatus> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|ping_id| AnnounceStatus::NotStored { ping_id }),
            any::<[u8; 32]>().prop_map(|bytes| AnnounceStatus::Found { data_pk: PublicKey::from_bytes(bytes) }),
            any::<[u8; 32]>().prop_map(|ping_id| AnnounceStatus::Announced { ping_id }),
        ]
    }

    fn arb_payload() -> impl Strategy<Value = AnnounceResponsePayload> {
        let nodes = proptest::collection::vec(
            arb_packed_node().prop_map(|node| PackedNode { protocol: Protocol::Udp, ..node }),
            0..=MAX_ANNOUNCE_NODES,
        );
        let extra = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300));
        (arb_status(), nodes, extra).prop_map(|(status, nodes, extra)| match extra {
            None => AnnounceResponsePayload::new(status, nodes).unwrap(),
            Some(extra) => AnnounceResponsePayload::with_extra(status, nodes, extra.into()).unwrap(),
        })
    }

    fn normalized(payload: &AnnounceResponsePayload) -> Vec<SocketAddr> {
        payload.nodes().iter().map(|node| normalize_addr(node.addr)).collect()
    }

    proptest! {
        #[test]
        fn round_trips(payload in arb_payload(), sendback in any::<u64>(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let key = SharedKey::from_bytes(key);
            let response = OnionAnnounceResponse::seal(sendback, &key, nonce, &payload);
            let bytes = encoded!(response);
            prop_assert!((OnionAnnounceResponse::MIN_LEN..=OnionAnnounceResponse::MAX_LEN).contains(&bytes.len()));
            let back = OnionAnnounceResponse::decode(bytes).unwrap();
            prop_assert_eq!(&back, &response);
            let opened = back.open(&key).unwrap();
            prop_assert_eq!(opened.status, payload.status);
            prop_assert_eq!(opened.extra(), payload.extra());
            prop_assert_eq!(normalized(&opened), normalized(&payload));
            prop_assert_eq!(encoded!(opened), encoded!(payload));
        }

        #[test]
        fn damaged_input_never_panics(payload in arb_payload(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let key = SharedKey::from_bytes([5; 32]);
            let response = OnionAnnounceResponse::seal(1, &key, nonce, &payload);
            if let Ok(damaged) = OnionAnnounceResponse::decode(damage(encoded!(response), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
            let _ = AnnounceResponsePayload::decode(payload.form(), damage(encoded!(payload), flip, bit, cut));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = OnionAnnounceResponse::decode(bytes.clone());
            let _ = AnnounceResponsePayload::decode(AnnounceForm::Old, bytes.clone());
            let _ = AnnounceResponsePayload::decode(AnnounceForm::New, bytes);
        }
    }
}
