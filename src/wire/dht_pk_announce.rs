//! DHT public key announcement (DHT-PK, inner kind 156): "this is my DHT
//! key today, and here is where to find me", sent to each friend as
//! [onion data](super::onion_data_request) or, once the friend's DHT key is
//! known, in a [DHT request](super::dht_request).
//!
//! | bytes   | field                                                       |
//! |---------|-------------------------------------------------------------|
//! | 1       | 156 (`CRYPTO_PACKET_DHTPK`)                                 |
//! | 8       | no_replay, big-endian: must grow from packet to packet      |
//! | 32      | the sender's DHT public key                                 |
//! | 0..=204 | up to 4 nodes in the [packed node format](super::packed_node): TCP relays (130/138) and DHT nodes (2/10) |
//!
//! Through the DHT it travels sealed once more with the two real keys, as
//! the data of a DHT request of inner kind 156 ([`DhtPkEnvelope`]):
//!
//! | bytes | field                                                         |
//! |-------|---------------------------------------------------------------|
//! | 32    | the sender's real public key                                  |
//! | 24    | nonce                                                         |
//! | 16    | MAC                                                           |
//! | ...   | encrypted: the DHT-PK packet above, its kind byte included    |
//!
//! Facts from c-toxcore 0.2.18 `onion_client.c`:
//! - `send_dhtpk_announce` writes `no_replay` with `net_pack_u64` (big-endian)
//!   from `mono_time_get`: Unix time in seconds, so it grows across restarts.
//!   Its nodes are up to `MAX_SENT_NODES / 2` = 2 TCP relays it is connected
//!   to (`copy_connected_tcp_relays`), then DHT nodes from its close list,
//!   4 in all, possibly none. It sends through the onion and, when it knows
//!   the friend's DHT key, through the DHT (`send_dht_dhtpk`: a fresh nonce,
//!   sealed with the real keys, DHT request inner kind 156).
//! - `handle_dhtpk_announce` takes 41 to `DHTPK_DATA_MAX_LENGTH` = 41 +
//!   4 × `sizeof(Node_format)` = 297 bytes, kind byte included, from a
//!   friend only, and drops a `no_replay` not greater than the last one. It
//!   reads at most 4 nodes with `unpack_nodes` (TCP on), ignoring bytes after
//!   the fourth; a malformed list makes it return after it has already taken
//!   the DHT key. UDP nodes get a nodes request, TCP ones go to the friend's
//!   relay list.
//! - `handle_dht_dhtpk` takes 113 to 369 bytes after the DHT request's inner
//!   kind, opens them with the real keys, and drops the packet unless the
//!   DHT key inside is the one the DHT request came from.
//!
//! We decode at most 4 nodes and refuse bytes after them (c-toxcore never
//! sends any); what to do with no_replay and the keys is the caller's.
//!
//! Spec: <https://toktok.ltd/spec.html#onion> ("DHT public key packet").

use bytes::{BufMut, Bytes};

use super::onion_request::OpenError;
use super::packed_node::{PACKED_NODE_IPV6_LEN, PackedNode};
use super::{DecodeError, Reader};
use crate::crypto::{MAC_LEN, NONCE_LEN, Nonce, PUBLIC_KEY_LEN, PublicKey, SharedKey};

/// The inner kind of a DHT-PK packet (`CRYPTO_PACKET_DHTPK`).
pub const DHT_PK_KIND: u8 = 156;
/// Most nodes a DHT-PK packet lists (`MAX_SENT_NODES`).
pub const MAX_DHT_PK_NODES: usize = 4;

/// Longest DHT-PK packet c-toxcore takes (`DHTPK_DATA_MAX_LENGTH`): room
/// for four `Node_format` structs, 64 bytes each on x86-64, not packed nodes.
const C_TOXCORE_DHT_PK_MAX_LEN: usize = DhtPkAnnounce::MIN_LEN + MAX_DHT_PK_NODES * 64;

/// More nodes than a DHT-PK packet lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a DHT-PK packet lists at most {MAX_DHT_PK_NODES} nodes, not {0}")]
pub struct TooManyNodes(pub usize);

/// A DHT-PK packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DhtPkAnnounce {
    /// Must be greater than in the last packet the friend took from us.
    pub no_replay: u64,
    /// Our DHT public key.
    pub dht_pk: PublicKey,
    nodes: Vec<PackedNode>,
}

impl DhtPkAnnounce {
    /// Shortest encoding: no nodes.
    pub const MIN_LEN: usize = 1 + 8 + PUBLIC_KEY_LEN;
    /// Longest encoding: four IPv6 nodes.
    pub const MAX_LEN: usize = Self::MIN_LEN + MAX_DHT_PK_NODES * PACKED_NODE_IPV6_LEN;

    /// A packet listing up to four nodes (TCP relays first, by convention).
    pub fn new(no_replay: u64, dht_pk: PublicKey, nodes: Vec<PackedNode>) -> Result<Self, TooManyNodes> {
        if nodes.len() > MAX_DHT_PK_NODES {
            return Err(TooManyNodes(nodes.len()));
        }
        Ok(Self { no_replay, dht_pk, nodes })
    }

    /// The nodes: TCP relays and DHT nodes, at most four.
    pub fn nodes(&self) -> &[PackedNode] {
        &self.nodes
    }

    /// Reads a whole plaintext, kind byte included.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        if r.u8("DHT-PK kind")? != DHT_PK_KIND {
            return Err(DecodeError::Invalid("DHT-PK kind"));
        }
        let no_replay = r.u64_be("DHT-PK no_replay")?;
        let dht_pk = PublicKey::from_bytes(r.array("DHT-PK DHT key")?);
        let nodes = PackedNode::decode_up_to(&mut r, MAX_DHT_PK_NODES)?;
        r.finish()?;
        Ok(Self { no_replay, dht_pk, nodes })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(DHT_PK_KIND);
        buf.put_u64(self.no_replay);
        buf.put_slice(self.dht_pk.as_bytes());
        PackedNode::encode_list(&self.nodes, buf);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        Self::MIN_LEN + PackedNode::list_encoded_len(&self.nodes)
    }
}

/// A DHT-PK packet as the data of a DHT request (after its inner kind 156),
/// sealed with the sender's real secret key and the receiver's real public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtPkEnvelope {
    /// The sender's real public key.
    pub sender_pk: PublicKey,
    /// The nonce the payload was sealed with.
    pub nonce: Nonce,
    /// `[MAC 16][ciphertext of the DHT-PK packet]`.
    pub payload: Bytes,
}

impl DhtPkEnvelope {
    /// Shortest data c-toxcore takes: a DHT-PK packet without nodes.
    pub const MIN_LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN + MAC_LEN + DhtPkAnnounce::MIN_LEN;
    /// Longest data c-toxcore takes (`DHTPK_DATA_MAX_LENGTH` + 72).
    pub const MAX_LEN: usize = PUBLIC_KEY_LEN + NONCE_LEN + MAC_LEN + C_TOXCORE_DHT_PK_MAX_LEN;

    /// Seals `announce`; `key` is precomputed from the receiver's real public
    /// key and the sender's real secret key.
    pub fn seal(sender_pk: PublicKey, key: &SharedKey, nonce: Nonce, announce: &DhtPkAnnounce) -> Self {
        let mut buf = Vec::with_capacity(MAC_LEN + announce.encoded_len());
        buf.put_bytes(0, MAC_LEN);
        announce.encode(&mut buf);
        let (mac_slot, body) = buf.split_at_mut(MAC_LEN);
        let mac = key.seal_in_place_detached(&nonce, body);
        mac_slot.copy_from_slice(&mac);
        Self { sender_pk, nonce, payload: buf.into() }
    }

    /// Checks the MAC and reads the DHT-PK packet; `key` is precomputed from
    /// [`sender_pk`](Self::sender_pk) and the receiver's real secret key.
    pub fn open(&self, key: &SharedKey) -> Result<DhtPkAnnounce, OpenError> {
        Ok(DhtPkAnnounce::decode(key.open(&self.nonce, &self.payload)?)?)
    }

    /// Reads the data after a DHT request's inner kind: 113 to 369 bytes.
    pub fn decode(data: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        if r.remaining() > Self::MAX_LEN {
            return Err(DecodeError::TrailingBytes(r.remaining() - Self::MAX_LEN));
        }
        if r.remaining() < Self::MIN_LEN {
            return Err(DecodeError::UnexpectedEnd {
                what: "DHT-PK envelope",
                needed: Self::MIN_LEN,
                available: r.remaining(),
            });
        }
        let sender_pk = PublicKey::from_bytes(r.array("DHT-PK envelope sender key")?);
        let nonce = Nonce::from_bytes(r.array("DHT-PK envelope nonce")?);
        Ok(Self { sender_pk, nonce, payload: r.rest() })
    }

    /// Writes the data (without the DHT request's inner kind).
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.sender_pk.as_bytes());
        buf.put_slice(self.nonce.as_bytes());
        buf.put_slice(&self.payload);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        PUBLIC_KEY_LEN + NONCE_LEN + self.payload.len()
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::dht_request::DHT_PK_ID;
    use crate::wire::packed_node::normalize_addr;
    use crate::wire::packed_node::tests::arb_packed_node;
    use crate::wire::test_support::{arb_nonce, arb_public_key, damage, encoded, golden};

    // Built as `send_dhtpk_announce` builds it, with c-toxcore 0.2.18's own
    // `net_pack_u64` and `pack_nodes` (Debian's libtoxcore.a): no_replay
    // 1700000000, the DHT key of secret key 0x51.., a TCP relay then two DHT
    // nodes, keys of secret keys 0x30.., 0x20.., 0x10...
    const GOLDEN: [u8; 170] = hex!(
        "9c" "000000006553f100"
        "0233f006ef4bed144ea0a5bb46c7067c7c2acec5f8cc811f3df59fdcd5ac7614"
        "82 c6336407 0d3d 34e42d4af5ef94a07a3a84201b889d4cd1a743cb27b11b6a10438a8feb8e5847"
        "0a 20010db8000000000000000000000001 01bb 358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254"
        "02 c0000201 82a5 d89e3bad79437dbed9f843418304f460ff05c7fe81fe4a9577a804cb9367ff66"
    );
    // `send_dht_dhtpk`'s envelope of it from Alice to Bob (c-toxcore's
    // `encrypt_data`, nonce a0 .. b7).
    const GOLDEN_ENVELOPE: [u8; 242] = hex!(
        "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7ca0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
        "b0b1b2b3b4b5b6b76bd9f27abc48ee4794759be436ef22a129cf551c5c8def57fcabeec113c9dab38bfe03951bd0d950"
        "52511a7f6aed1d02248beb14f06d5de647ef0dbae890537f6cf31f7b60909a405a69815caddb21958b5d06e6e46d425c"
        "0c8823aca54668f1ee07c6004b7ec9c6a436ff8620ae31295c62970fc914f9c6be9c018008ee60ddd39e6edc2175cec3"
        "59c3fdee58f0a6dbec63f68cadf42befad48382e491059beba47b845836a9e10cd9a5d47d935b79472e9cf3401fc25b5"
        "40e3"
    );

    fn golden_announce() -> DhtPkAnnounce {
        let nodes = vec![
            PackedNode::tcp("198.51.100.7:3389".parse().unwrap(), *golden::key_pair(0x30).public()),
            PackedNode::udp("[2001:db8::1]:443".parse().unwrap(), *golden::key_pair(0x20).public()),
            PackedNode::udp("192.0.2.1:33445".parse().unwrap(), *golden::key_pair(0x10).public()),
        ];
        DhtPkAnnounce::new(1_700_000_000, *golden::key_pair(0x51).public(), nodes).unwrap()
    }

    #[test]
    fn matches_c_toxcore() {
        assert_eq!(DhtPkAnnounce::decode(GOLDEN.to_vec()), Ok(golden_announce()));
        assert_eq!(encoded!(golden_announce()), GOLDEN);

        let envelope = DhtPkEnvelope::decode(GOLDEN_ENVELOPE.to_vec()).unwrap();
        assert_eq!(envelope.sender_pk, *golden::alice().public());
        let key = SharedKey::precompute(&envelope.sender_pk, golden::bob().secret()).unwrap();
        assert_eq!(envelope.open(&key), Ok(golden_announce()));
        let ours =
            DhtPkEnvelope::seal(*golden::alice().public(), &golden::shared(), golden::nonce(), &golden_announce());
        assert_eq!(encoded!(ours), GOLDEN_ENVELOPE);
        assert_eq!(DHT_PK_KIND, DHT_PK_ID);
    }

    #[test]
    fn limits() {
        assert_eq!((DhtPkAnnounce::MIN_LEN, DhtPkAnnounce::MAX_LEN), (41, 245));
        assert_eq!((DhtPkEnvelope::MIN_LEN, DhtPkEnvelope::MAX_LEN), (113, 369));
        let key = PublicKey::from_bytes([1; 32]);
        let node = golden_announce().nodes()[2];
        assert_eq!(DhtPkAnnounce::new(1, key, vec![node; 5]), Err(TooManyNodes(5)));
        let none = DhtPkAnnounce::new(1, key, Vec::new()).unwrap();
        assert_eq!(encoded!(none).len(), 41);
        assert_eq!(DhtPkAnnounce::decode(encoded!(none)), Ok(none));

        let mut five = encoded!(DhtPkAnnounce::new(1, key, vec![node; 4]).unwrap());
        node.encode(&mut five);
        assert_eq!(DhtPkAnnounce::decode(five), Err(DecodeError::TrailingBytes(39)));
        let mut cut = GOLDEN.to_vec();
        cut.pop();
        assert!(matches!(DhtPkAnnounce::decode(cut), Err(DecodeError::UnexpectedEnd { .. })));
        let mut wrong = GOLDEN.to_vec();
        wrong[0] = 155;
        assert_eq!(DhtPkAnnounce::decode(wrong), Err(DecodeError::Invalid("DHT-PK kind")));
        assert!(matches!(DhtPkAnnounce::decode(GOLDEN[..40].to_vec()), Err(DecodeError::UnexpectedEnd { .. })));

        assert!(DhtPkEnvelope::decode(vec![0; 112]).is_err());
        assert!(DhtPkEnvelope::decode(vec![0; 113]).is_ok());
        assert!(DhtPkEnvelope::decode(vec![0; 369]).is_ok());
        assert_eq!(DhtPkEnvelope::decode(vec![0; 370]), Err(DecodeError::TrailingBytes(1)));
    }

    fn arb_announce() -> impl Strategy<Value = DhtPkAnnounce> {
        (any::<u64>(), arb_public_key(), proptest::collection::vec(arb_packed_node(), 0..=MAX_DHT_PK_NODES))
            .prop_map(|(no_replay, key, nodes)| DhtPkAnnounce::new(no_replay, key, nodes).unwrap())
    }

    proptest! {
        #[test]
        fn round_trips(announce in arb_announce(), sender in arb_public_key(), nonce in arb_nonce(), key in any::<[u8; 32]>()) {
            let bytes = encoded!(announce);
            let back = DhtPkAnnounce::decode(bytes.clone()).unwrap();
            prop_assert_eq!((back.no_replay, back.dht_pk), (announce.no_replay, announce.dht_pk));
            let addrs: Vec<_> = announce.nodes().iter().map(|node| normalize_addr(node.addr)).collect();
            prop_assert_eq!(back.nodes().iter().map(|node| node.addr).collect::<Vec<_>>(), addrs);
            prop_assert_eq!(encoded!(back), bytes);

            let key = SharedKey::from_bytes(key);
            let envelope = DhtPkEnvelope::seal(sender, &key, nonce, &announce);
            let back = DhtPkEnvelope::decode(encoded!(envelope)).unwrap();
            prop_assert_eq!(&back, &envelope);
            prop_assert_eq!(encoded!(back.open(&key).unwrap()), encoded!(announce));
        }

        #[test]
        fn damaged_input_never_panics(announce in arb_announce(), nonce in arb_nonce(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = DhtPkAnnounce::decode(damage(encoded!(announce), flip, bit, cut));
            let key = SharedKey::from_bytes([3; 32]);
            let envelope = DhtPkEnvelope::seal(PublicKey::from_bytes([4; 32]), &key, nonce, &announce);
            if let Ok(damaged) = DhtPkEnvelope::decode(damage(encoded!(envelope), flip, bit, cut)) {
                let _ = damaged.open(&key);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = DhtPkAnnounce::decode(bytes.clone());
            let _ = DhtPkEnvelope::decode(bytes);
        }
    }
}
