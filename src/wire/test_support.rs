//! Proptest strategies and helpers shared by the codec tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use proptest::sample::Index;

use crate::crypto::{Nonce, PublicKey};
use crate::wire::cookie::{COOKIE_LEN, Cookie};

/// Any public key.
pub fn arb_public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
}

/// Any nonce.
pub fn arb_nonce() -> impl Strategy<Value = Nonce> {
    any::<[u8; 24]>().prop_map(Nonce::from_bytes)
}

/// Any 112 bytes as a net_crypto cookie.
pub fn arb_cookie() -> impl Strategy<Value = Cookie> {
    proptest::collection::vec(any::<u8>(), COOKIE_LEN).prop_map(|bytes| Cookie::from_bytes(bytes.try_into().unwrap()))
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

/// Encodes a value with its `encode` into a `Vec<u8>`, checking that
/// `encoded_len` says how much it wrote.
macro_rules! encoded {
    ($value:expr) => {{
        let value = &$value;
        let mut out = ::std::vec::Vec::new();
        value.encode(&mut out);
        assert_eq!(out.len(), value.encoded_len(), "encoded_len disagrees with encode");
        out
    }};
}
pub(crate) use encoded;

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

    /// A key pair whose secret key bytes count up from `first` (Alice is
    /// `key_pair(0x01)`, Bob `key_pair(0x40)`): how the onion golden
    /// programs made the keys of path nodes, temporary and data keys.
    pub fn key_pair(first: u8) -> KeyPair {
        KeyPair::from_secret(SecretKey::from_bytes(std::array::from_fn(|i| first.wrapping_add(i as u8))))
    }
}

/// A whole net_crypto session made by c-toxcore 0.2.18 itself: a throwaway C
/// program linked against Debian's `libtoxcore.a` (0.2.18-1) ran two
/// `Net_Crypto` instances, A and B, over loopback UDP. libsodium's random
/// generator was replaced by a seeded one (so every key and nonce below is
/// one of its outputs, matched up by opening the packets) and the clock
/// started at 1000 s and stepped 50 ms per round. A called
/// `new_crypto_connection` to B; B accepted in its new-connection callback.
/// Both sent their handshakes and empty request packets; then A wrote 300
/// three-byte lossless packets `[160, k as u8, (k >> 8) as u8]` with
/// `write_cryptpacket` (the network dropped packet numbers 1 and 290), one
/// of 1373 bytes, and one lossy packet with `send_lossy_cryptpacket`.
/// The packets here are what `sendto` was given.
pub mod session {
    use hex_literal::hex;

    use crate::crypto::{KeyPair, Nonce, SecretKey, SharedKey};

    fn pair(secret: [u8; 32]) -> KeyPair {
        KeyPair::from_secret(SecretKey::from_bytes(secret))
    }

    /// A's long-term key pair.
    pub fn a_real() -> KeyPair {
        pair(hex!("f25bd306a1f5944acbb4de9e6b0d00537a3185c44c9f171c91ae6c25ebcd311b"))
    }

    /// A's DHT key pair.
    pub fn a_dht() -> KeyPair {
        pair(hex!("1886dcc92fc05f1b8b831b7123d3a58c0b5ca1097012a3af682d5866d3234f34"))
    }

    /// A's cookie key (`secret_symmetric_key`).
    pub fn a_cookie_key() -> SharedKey {
        SharedKey::from_bytes(hex!("379cf73333b382ed7d7a65e7ecf265d2fe77aff47c4c141aff18308d21b93540"))
    }

    /// A's session key pair.
    pub fn a_session() -> KeyPair {
        pair(hex!("2120a26d10316f83586e9a8735be9ba2642f2e7f490dfc669b4ffe4268a137b2"))
    }

    /// A's base nonce: its first data packet is sealed with it.
    pub const A_BASE_NONCE: Nonce = Nonce::from_bytes(hex!("95ac39ddba62cf2ad061ee3bc34931d4552c53155c5be4ee"));

    /// B's long-term key pair.
    pub fn b_real() -> KeyPair {
        pair(hex!("2c778664fc0c2207afa3dfbfcbabe21a463f4861f023417b37347838147a1585"))
    }

    /// B's DHT key pair.
    pub fn b_dht() -> KeyPair {
        pair(hex!("aefad2b8986e5b88ed6d39ea9441bffb51396a153b20346c791d1656e28f6a04"))
    }

    /// B's cookie key.
    pub fn b_cookie_key() -> SharedKey {
        SharedKey::from_bytes(hex!("14612ca3f09ea35c9979d54da4452f5b63605c35e9c377e03980189c5713e802"))
    }

    /// B's session key pair.
    pub fn b_session() -> KeyPair {
        pair(hex!("0923635a879829b791d5edbcf694a31cf5f708b4a395ffde00897d73f7d5cf16"))
    }

    /// B's base nonce.
    pub const B_BASE_NONCE: Nonce = Nonce::from_bytes(hex!("665ab89f7112ec9f418a3484c566f6be46ecd1aa7cfde37b"));

    /// The session key both sides derive from the session keys.
    pub fn session_key() -> SharedKey {
        SharedKey::precompute(b_session().public(), a_session().secret()).unwrap()
    }

    /// The echo id A's cookie request carried, as bytes (a host-order `uint64_t`).
    pub const ECHO_ID: [u8; 8] = hex!("6da444f78ca9597a");
    /// The nonce of A's cookie request.
    pub const COOKIE_REQUEST_NONCE: Nonce = Nonce::from_bytes(hex!("15ca79fe9d1125e4e8d8484bc6a348965f9e7b3f57ad0cf3"));
    /// The nonce of the cookie B made for A in its cookie response.
    pub const B_COOKIE_NONCE: Nonce = Nonce::from_bytes(hex!("45957f708cc5fc6b0c793b90e920b2967368fce024de5433"));
    /// The nonce of B's cookie response.
    pub const COOKIE_RESPONSE_NONCE: Nonce =
        Nonce::from_bytes(hex!("9c3678b427a8dcd9ed98194abac03c10f8baa3c1f4216d51"));
    /// The nonce of the cookie A made for B in its handshake.
    pub const A_COOKIE_NONCE: Nonce = Nonce::from_bytes(hex!("876264771b90994692f336b84a7fd7c91f2fa9fb214c1f40"));
    /// The nonce of A's handshake.
    pub const A_HANDSHAKE_NONCE: Nonce = Nonce::from_bytes(hex!("42c1e298aa29d353e69a28c7b787f6db60a665dda880ede2"));
    /// The nonce of the cookie B made for A in its handshake.
    pub const B_HANDSHAKE_COOKIE_NONCE: Nonce =
        Nonce::from_bytes(hex!("01bc6572a593c515ab0a2926d4253b72b8eceee936704116"));
    /// The nonce of B's handshake.
    pub const B_HANDSHAKE_NONCE: Nonce = Nonce::from_bytes(hex!("24f35c64dd6e7af38ada3e923d6fc10545fb3d47ae4e0802"));

    /// A to B, 0.05 s in: A asks B for a cookie.
    pub const COOKIE_REQUEST: [u8; 145] = hex!(
        "18cdf48783b0425a0a8486f912e0ebe4db40876e3e3dfbee1cd021a572b34e3f4015ca79fe9d1125e4e8d8484bc6a348"
        "965f9e7b3f57ad0cf3ebde508a1936127cc012af364c9f1a3ed26282f6895a5c3a9278d176830d8769a25dfcd237e83e"
        "14ec5f6acd6b71c102e04c3a27e2e9c94b0acc540ba102b1984f72396ea07fc244b43e124355d9be2ed0fb86b7137584"
        "6b"
    );
    /// B to A: the cookie, sealed with the same DHT shared key.
    pub const COOKIE_RESPONSE: [u8; 161] = hex!(
        "199c3678b427a8dcd9ed98194abac03c10f8baa3c1f4216d51b7eaa30670a1194e88629e57493e5f24b8a2917bceae70"
        "57c4b3cacf92d7e1e9e1a82ec66e27c73ab3dd7a661a04f96ee4871b24cf5671e5e310f521fc736e4e609618efcc8208"
        "32fda825b44c42ba2d48a799ad14bf17104b84d827914dcc4349cc9d846731f3fa3fde5b1ab29e75f06bf3974ac5702f"
        "f8d1151d761a6476138d3b4f44f652f1a5"
    );
    /// A to B: A's handshake, answering B's cookie.
    pub const HANDSHAKE_A_TO_B: [u8; 385] = hex!(
        "1a45957f708cc5fc6b0c793b90e920b2967368fce024de54333cac5e96e9fd25f3f55eaa96efcb5c434de925b45dc792"
        "4a739ca1e746baeb3ff1943b3482f1ac1a0911d1c4f4e1f6842fb3622dd239aa9f0f68b648d97f6016399b644980fde8"
        "1c0bd14e3d4cd48d63ef71d4de15f1dc6642c1e298aa29d353e69a28c7b787f6db60a665dda880ede2cebddbe9d46b9f"
        "f7fc060520e522416cacae7059f3d2174f7fbd79e2b025537b9ac1c7b203181b2bda54eec4ad4e84b47bbb4e8db9df5e"
        "78433ffc10dd1a9500a590bddd5c7685cd5f1234fb6ef6bd9866ed923f37ce3b2e98582d655fd1bbe39c3050b13610f0"
        "245b7d8c0c65a20677a0f4ce58273080798feccc239824098df3a998deaf050a14b3fb92e7a82848c0a51f5be709ce0e"
        "8e9a85f7b61217a6b20512d0f2cc5eae4daf5d5df179f5fadb23fa7f2b45aebaa9058bd3d798dd314e47851d55d3aa22"
        "60752931ffefc6d9f78695c491f4fae69d4e7f7005770ebf9b890ee8978e5625cebb2a807eba7fb7e3168a57ac09aeaa"
        "bc"
    );
    /// B to A: B's handshake, answering the cookie in A's.
    pub const HANDSHAKE_B_TO_A: [u8; 385] = hex!(
        "1a876264771b90994692f336b84a7fd7c91f2fa9fb214c1f400d0c5e58ce2f4bd81fe78f5e26feb1e5c58233bf14aae3"
        "e55bddfbb86d496cc15ffcb386797fd577eebdaf1a8ac54c05806c0e1d038a3df6584a80dbf56a46fe43c9bb3d9dbf6d"
        "9ec9722cac1e4c18d0c8f0189be96adf3b24f35c64dd6e7af38ada3e923d6fc10545fb3d47ae4e0802def9fcf051ad7d"
        "9c431b18dc28ab92ff5bc3d47e34dff46d1e78c79633b9cf7af56e6543cc41ae8c9b828c3ee4c854fc01aa0bafb222e4"
        "c84fbc325bf43dcfe54b3d789f55b7e15b1565299b6e1d838d0600503a4e09aaa96ac6d863c31f414f1135ada61eb3ce"
        "db30a2b4d89f70533bf91dfb6fc41622dc3a7bbc8a523b1c6f463522d3a831e36b216750051a0be8061067ecb68f83a3"
        "385b42312292aa5338752843710d29a5e20b58800176c8ef2eda539da168d4658b72a2fd8acf69b6a09f18e1a6aa6c89"
        "b59a0c9b2ec50a603bb86e843ff1212d4330f6adf9dd148afd6e1c2ac36b8c433062cd27d788f6309af7dae85be9c3b9"
        "68"
    );
    /// B to A: B's first data packet, an empty request (nonce offset 0).
    pub const DATA_B_FIRST: [u8; 32] = hex!("1be37bafa54751227893eae6effcd42aaeda80502db0a44b5fe1ace879f82c02");
    /// A to B: lossless `[160, 0, 0]`, packet number 0 (nonce offset 10).
    pub const DATA_A_LOSSLESS: [u8; 32] = hex!("1be4f8a0522e96ffdc8146b7ce4b60ab46bfe29eec2acd0a22e985eb9c47f87c");
    /// A to B: lossy `[200, 0xde, 0xad, 0x01]` (nonce offset 311).
    pub const DATA_A_LOSSY: [u8; 32] = hex!("1be6257c4aba1bbef50401a7c932fc48939521b7831560a2051daa21f4ec3aaf");
    /// B to A: B's request for the two packets dropped (nonce offset 10),
    /// once all the others had arrived.
    pub const DATA_B_REQUEST: [u8; 32] = hex!("1be385ab160ed885e86d1e6917b642389ca0099b8192ed7f0f19e56cbfd3f0f5");
    /// A to B, after B's request: packet 1 again (nonce offset 313).
    pub const DATA_A_RESENT_1: [u8; 32] = hex!("1be627406c4d873a1edf0b123be1e12de1e53a69bb649e6d627272e93062ddb8");
    /// A to B, after B's request: packet 290 again (nonce offset 314).
    pub const DATA_A_RESENT_290: [u8; 32] = hex!("1be628b57c0ac6c15579d004eed5ae86a6ee388dacf8302deee6e22f3c9ac4ab");
    /// A to B: lossless, 1373 bytes (no padding): 161, then byte i is
    /// `i as u8`; packet number 300, nonce offset 310. Its first 40 bytes ..
    pub const DATA_A_FULL_HEAD: [u8; 40] =
        hex!("1be624725642ce3a5c4264de7ebba2797c063cd3035b329abf63cdc65bd163b55baba41161d43091");
    /// .. and the SHA-512 of all 1400.
    pub const DATA_A_FULL_SHA512: [u8; 64] = hex!(
        "692cba98116f1ef3e807de3a405fef577f10e29b82de06bd64afbb4cd79f24a2"
        "0b69a82e2e0fde6c72055b5c3efb041c2ec7b7d0c5ac07552798623c0ce22083"
    );
}
