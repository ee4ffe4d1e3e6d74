//! Proptest strategies and helpers shared by the codec tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use proptest::sample::Index;

use crate::crypto::{Nonce, PublicKey};

/// Any public key.
pub fn arb_public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
}

/// Any nonce.
pub fn arb_nonce() -> impl Strategy<Value = Nonce> {
    any::<[u8; 24]>().prop_map(Nonce::from_bytes)
}

/// Any IPv4 or IPv6 socket address (flow info and scope zero, as the wire
/// carries neither), IPv4-mapped IPv6 addresses included.
pub fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// Damages an encoding: flips one bit somewhere, then cuts it short
/// somewhere (possibly at its full length, leaving only the flip).
pub fn damage(mut bytes: Vec<u8>, flip_at: Index, bit: u8, cut_at: Index) -> Vec<u8> {
    if !bytes.is_empty() {
        let at = flip_at.index(bytes.len());
        bytes[at] ^= 1 << (bit % 8);
    }
    let keep = cut_at.index(bytes.len() + 1);
    bytes.truncate(keep);
    bytes
}

/// The fixed inputs under which the golden packets in these tests were made
/// by c-toxcore 0.2.18 itself: a small C program linked against Debian's
/// `libtoxcore.a` (0.2.18-1) called `dht_create_packet`, `pack_nodes` and
/// `create_request` with these keys and an RNG whose bytes count up from
/// 0xa0, so every nonce is `a0 a1 .. b7`. Ping ids were the `uint64_t`
/// 0x0123456789abcdef, copied in host (little-endian) order as c-toxcore
/// does, so the wire carries `ef cd ab 89 67 45 23 01`.
pub mod golden {
    use crate::crypto::{KeyPair, Nonce, SecretKey, SharedKey};

    /// The sender: secret key bytes 1, 2, .., 32.
    pub fn alice() -> KeyPair {
        KeyPair::from_secret(SecretKey::from_bytes(std::array::from_fn(|i| i as u8 + 1)))
    }

    /// The receiver: secret key bytes 0x40, 0x41, .., 0x5f.
    pub fn bob() -> KeyPair {
        KeyPair::from_secret(SecretKey::from_bytes(std::array::from_fn(|i| i as u8 + 0x40)))
    }

    /// The key Alice sealed with (and Bob opens with).
    pub fn shared() -> SharedKey {
        SharedKey::precompute(bob().public(), alice().secret()).unwrap()
    }

    /// The nonce every golden packet carries.
    pub fn nonce() -> Nonce {
        Nonce::from_bytes(std::array::from_fn(|i| 0xa0 + i as u8))
    }

    /// The ping id as our big-endian read sees the bytes c-toxcore wrote.
    pub const PING_ID: u64 = 0xefcd_ab89_6745_2301;
}
