//! The secure channel of a TCP relay connection: the handshake that makes
//! the session key, and sealing and opening frames with a nonce per
//! direction that goes up by one per frame (`TCP_common.c`).
//!
//! Client and relay each draw a temporary key pair and a base nonce and
//! send them in their handshake, sealed with the key of the client's and
//! the relay's long-term (DHT) key pairs. The session key is the shared key
//! of the two temporary key pairs; each side seals its frames starting
//! from the base nonce it sent and opens the other's starting from the one
//! it received. A frame that does not open ends the connection: the nonces
//! would never line up again.
//!
//! Both directions are separate values ([`Sealer`], [`Opener`]) so that a
//! connection's reader and writer can own one each.

use bytes::{BufMut, Bytes, BytesMut};
use rand_core::CryptoRng;

use crate::crypto::{CryptoError, KeyPair, MAC_LEN, Nonce, PublicKey, SharedKey};
use crate::wire::tcp::client_handshake::HandshakePayload;
use crate::wire::tcp::{ClientHandshake, MAX_FRAME_LEN, ServerHandshake, TcpPacket};

/// Why a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The sealed part did not open with our key (wrong relay key, or garbage).
    #[error("the handshake does not open")]
    Open,
    /// The peer's key is one no shared key can be made with.
    #[error("the peer's key is unusable")]
    BadKey,
}

impl From<CryptoError> for HandshakeError {
    fn from(_: CryptoError) -> Self {
        Self::Open
    }
}

/// Why a frame could not be opened or sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameCryptoError {
    /// The frame did not open with the session key and the next nonce.
    #[error("a frame does not open")]
    Open,
    /// The packet is too long for a frame.
    #[error("packet too long for a frame")]
    TooLong,
}

/// Seals our frames.
#[derive(Debug, Clone)]
pub struct Sealer {
    key: SharedKey,
    nonce: Nonce,
}

impl Sealer {
    /// Encodes `packet`, seals it with the next nonce and appends the whole
    /// frame (`[length][MAC][ciphertext]`) to `out`.
    pub fn seal_packet(&mut self, packet: &TcpPacket, out: &mut BytesMut) -> Result<(), FrameCryptoError> {
        let len = MAC_LEN + packet.encoded_len();
        let len16 = u16::try_from(len).ok().filter(|_| len <= MAX_FRAME_LEN).ok_or(FrameCryptoError::TooLong)?;
        out.reserve(2 + len);
        out.put_u16(len16);
        let mac_at = out.len();
        out.put_bytes(0, MAC_LEN);
        packet.encode(out);
        let (mac, body) = out[mac_at..].split_at_mut(MAC_LEN);
        mac.copy_from_slice(&self.key.seal_in_place_detached(&self.nonce, body));
        self.nonce.increment();
        Ok(())
    }
}

/// Opens the peer's frames.
#[derive(Debug, Clone)]
pub struct Opener {
    key: SharedKey,
    nonce: Nonce,
}

impl Opener {
    /// Opens one frame body (`[MAC][ciphertext]`, as
    /// [`FrameCodec`](crate::wire::tcp::frame::FrameCodec) yields it) in
    /// place with the next nonce and returns the plaintext.
    pub fn open_frame(&mut self, mut frame: BytesMut) -> Result<Bytes, FrameCryptoError> {
        let plain_len = self.key.open_in_place(&self.nonce, &mut frame).map_err(|_| FrameCryptoError::Open)?.len();
        self.nonce.increment();
        let mut plain = frame.split_off(MAC_LEN);
        plain.truncate(plain_len);
        Ok(plain.freeze())
    }
}

/// Both directions of an established connection.
#[derive(Debug, Clone)]
pub struct SecureChannel {
    /// Our direction.
    pub sealer: Sealer,
    /// The peer's direction.
    pub opener: Opener,
}

impl SecureChannel {
    fn new(ours: &KeyPair, theirs: &PublicKey, send_nonce: Nonce, recv_nonce: Nonce) -> Result<Self, HandshakeError> {
        let key = SharedKey::precompute(theirs, ours.secret()).map_err(|_| HandshakeError::BadKey)?;
        Ok(Self { sealer: Sealer { key: key.clone(), nonce: send_nonce }, opener: Opener { key, nonce: recv_nonce } })
    }

    /// The two halves.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

/// What the relay learns from a client's handshake.
#[derive(Debug)]
pub struct Accepted {
    /// The client's public key.
    pub client_pk: PublicKey,
    /// Our answer, to send at once.
    pub response: ServerHandshake,
    /// The session.
    pub channel: SecureChannel,
}

/// The relay's side: answers a client's handshake (`TCP_server.c`
/// `handle_TCP_handshake`). `rng` makes the temporary key pair, the base
/// nonce and the response's nonce, in that order.
pub fn accept_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &KeyPair,
    handshake: &ClientHandshake,
) -> Result<Accepted, HandshakeError> {
    let key = SharedKey::precompute(&handshake.client_pk, relay.secret()).map_err(|_| HandshakeError::BadKey)?;
    let theirs = handshake.open(&key)?;
    let temp = KeyPair::generate(rng);
    let base_nonce = Nonce::random(rng);
    let response =
        ServerHandshake::seal(&key, Nonce::random(rng), &HandshakePayload { temp_pk: *temp.public(), base_nonce });
    let channel = SecureChannel::new(&temp, &theirs.temp_pk, base_nonce, theirs.base_nonce)?;
    Ok(Accepted { client_pk: handshake.client_pk, response, channel })
}

/// A client's handshake waiting for the relay's answer.
#[derive(Debug)]
pub struct PendingHandshake {
    key: SharedKey,
    temp: KeyPair,
    base_nonce: Nonce,
}

/// The client's side, first step (`TCP_client.c` `generate_handshake`):
/// the handshake to send to the relay with key `relay_pk`. `rng` makes the
/// temporary key pair, the base nonce and the handshake's nonce, in that
/// order.
pub fn start_handshake<R: CryptoRng + ?Sized>(
    rng: &mut R,
    ours: &KeyPair,
    relay_pk: &PublicKey,
) -> Result<(ClientHandshake, PendingHandshake), HandshakeError> {
    let key = SharedKey::precompute(relay_pk, ours.secret()).map_err(|_| HandshakeError::BadKey)?;
    let temp = KeyPair::generate(rng);
    let base_nonce = Nonce::random(rng);
    let handshake = ClientHandshake::seal(
        *ours.public(),
        &key,
        Nonce::random(rng),
        &HandshakePayload { temp_pk: *temp.public(), base_nonce },
    );
    Ok((handshake, PendingHandshake { key, temp, base_nonce }))
}

impl PendingHandshake {
    /// The client's side, second step (`TCP_client.c` `handle_handshake`):
    /// the session from the relay's answer.
    pub fn finish(self, response: &ServerHandshake) -> Result<SecureChannel, HandshakeError> {
        let theirs = response.open(&self.key)?;
        SecureChannel::new(&self.temp, &theirs.temp_pk, self.base_nonce, theirs.base_nonce)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::wire::tcp::frame::FrameCodec;
    use crate::wire::tcp::{Ping, RoutingRequest};
    use tokio_util::codec::Decoder;

    fn pair() -> (SecureChannel, SecureChannel, PublicKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let relay = KeyPair::generate(&mut rng);
        let client = KeyPair::generate(&mut rng);
        let (hs, pending) = start_handshake(&mut rng, &client, relay.public()).unwrap();
        let accepted = accept_handshake(&mut rng, &relay, &hs).unwrap();
        assert_eq!(accepted.client_pk, *client.public());
        let client_channel = pending.finish(&accepted.response).unwrap();
        (client_channel, accepted.channel, *client.public())
    }

    #[test]
    fn frames_cross_both_ways_in_order() {
        let (mut client, mut relay, pk) = pair();
        let mut stream = BytesMut::new();
        for i in 1..=5u64 {
            client.sealer.seal_packet(&TcpPacket::Ping(Ping::new(i)), &mut stream).unwrap();
        }
        client.sealer.seal_packet(&TcpPacket::RoutingRequest(RoutingRequest::new(pk)), &mut stream).unwrap();
        let mut got = Vec::new();
        while let Some(frame) = FrameCodec.decode(&mut stream).unwrap() {
            got.push(TcpPacket::decode(relay.opener.open_frame(frame).unwrap()).unwrap());
        }
        assert_eq!(got.len(), 6);
        assert_eq!(got[4], TcpPacket::Ping(Ping::new(5)));

        let mut back = BytesMut::new();
        relay.sealer.seal_packet(&TcpPacket::Ping(Ping::new(9)), &mut back).unwrap();
        let frame = FrameCodec.decode(&mut back).unwrap().unwrap();
        assert_eq!(TcpPacket::decode(client.opener.open_frame(frame).unwrap()), Ok(TcpPacket::Ping(Ping::new(9))));
    }

    #[test]
    fn a_replayed_or_damaged_frame_does_not_open() {
        let (mut client, mut relay, _) = pair();
        let mut stream = BytesMut::new();
        client.sealer.seal_packet(&TcpPacket::Ping(Ping::new(1)), &mut stream).unwrap();
        let frame = FrameCodec.decode(&mut stream.clone()).unwrap().unwrap();
        relay.opener.open_frame(frame.clone()).unwrap();
        // The same frame again: the nonce has moved on.
        assert_eq!(relay.opener.open_frame(frame.clone()), Err(FrameCryptoError::Open));
        let mut bad = frame;
        bad[20] ^= 1;
        assert_eq!(relay.opener.open_frame(bad), Err(FrameCryptoError::Open));
    }

    #[test]
    fn garbage_handshakes_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let relay = KeyPair::generate(&mut rng);
        let other = KeyPair::generate(&mut rng);
        let client = KeyPair::generate(&mut rng);
        // Sealed for another relay.
        let (hs, _) = start_handshake(&mut rng, &client, other.public()).unwrap();
        assert_eq!(accept_handshake(&mut rng, &relay, &hs).unwrap_err(), HandshakeError::Open);
        // Zeros: the all-zero key is refused by the key exchange.
        let zeros = ClientHandshake::decode(vec![0u8; 128]).unwrap();
        assert!(accept_handshake(&mut rng, &relay, &zeros).is_err());
        // A response that does not open.
        let (_, pending) = start_handshake(&mut rng, &client, relay.public()).unwrap();
        let junk = ServerHandshake::decode(vec![7u8; 96]).unwrap();
        assert_eq!(pending.finish(&junk).unwrap_err(), HandshakeError::Open);
    }

    /// An RNG that hands out fixed bytes in order.
    struct Script(std::vec::IntoIter<u8>);

    impl rand_core::TryRng for Script {
        type Error = core::convert::Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_be_bytes(b))
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_be_bytes(b))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for d in dst {
                *d = self.0.next().expect("the script has enough bytes");
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for Script {}

    fn script(ranges: &[std::ops::Range<u8>]) -> Script {
        Script(ranges.iter().flat_map(|r| r.clone()).collect::<Vec<u8>>().into_iter())
    }

    /// Bytes from c-toxcore 0.2.18 itself: a throwaway C program linked
    /// against Debian's `libtoxcore.a` (0.2.18-1) ran `new_TCP_server` with
    /// Bob's secret key (`golden::bob`, bytes 0x40..) inside a network
    /// namespace, with libsodium's random generator replaced by one whose
    /// bytes count up from 0 (so the relay's temporary secret key is bytes
    /// 0..32, its base nonce 32..56 and its handshake nonce 56..80). A client
    /// built as `TCP_client.c` `generate_handshake` does (Alice's key,
    /// temporary secret key bytes 0x81.., base nonce 0x10.., handshake nonce
    /// 0xa0..) sent its handshake, a ping with id bytes 01..08 and a routing
    /// request for its own key; the relay's bytes are what it read back.
    mod c_toxcore {
        use hex_literal::hex;

        pub const CLIENT_HANDSHAKE: [u8; 128] = hex!(
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"
            "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7"
            "1273fc3619619be3404372f8748dc7ec3dfed3a45c5ca1fa0ceb4ba4cfbdad9a6c9848fdb8dc701e"
            "01884870ace5bdf42ba70c9838ade7874b74d192908a405d78361012b15a28c7"
        );
        pub const SERVER_HANDSHAKE: [u8; 96] = hex!(
            "38393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f"
            "180d364cb024dca5791ced32ea2f403f4f48800df50a777b2fccfd964ee42a49ec1ec830675b360a"
            "d21d21c6d0c3f3435897a414c7e4f9feeebccfad8301f33ddf94f7d3c90bbaaa"
        );
        pub const CLIENT_PING: [u8; 27] = hex!("0019e5abab373a69c8432f5bde669d525f0df8649312af2512cda3");
        pub const CLIENT_ROUTE_SELF: [u8; 51] = hex!(
            "003147c6ad8fa1a068c0b8bc6a478c52a484a01130e60afcd7b120cf6ff9a93bdbb3db72b191986d"
            "97d99619b4bea0d51ddd42"
        );
        pub const SERVER_PONG: [u8; 27] = hex!("0019c871d7fe249a2acc822efc70ac38457f35312b37cac7509a72");
        pub const SERVER_ROUTE_SELF: [u8; 52] = hex!(
            "0032d9fd15beb4ebd832c7f1be35d5822a66fffff5a5ac0d280f931dc3ae9053cce92d9ebb796fac"
            "de6eb0f9e1bfbf01d602bbcf"
        );
    }

    #[test]
    fn matches_c_toxcore_tcp_server() {
        use crate::wire::tcp::{Pong, RoutingResponse};
        use crate::wire::test_support::golden;

        let (alice, bob) = (golden::alice(), golden::bob());
        // Our client side makes the same handshake from the same randomness.
        let mut client_rng = script(&[0x81..0xa1, 0x10..0x28, 0xa0..0xb8]);
        let (hello, pending) = start_handshake(&mut client_rng, &alice, bob.public()).unwrap();
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        assert_eq!(bytes, c_toxcore::CLIENT_HANDSHAKE);

        // Our relay side answers it exactly as c-toxcore's did.
        let mut relay_rng = script(&[0..40, 40..80]);
        let accepted = accept_handshake(&mut relay_rng, &bob, &hello).unwrap();
        assert_eq!(accepted.client_pk, *alice.public());
        let mut answer = Vec::new();
        accepted.response.encode(&mut answer);
        assert_eq!(answer, c_toxcore::SERVER_HANDSHAKE);

        // The client's first frames, sealed with its base nonce and the next.
        let mut client =
            pending.finish(&ServerHandshake::decode(c_toxcore::SERVER_HANDSHAKE.to_vec()).unwrap()).unwrap();
        let mut out = BytesMut::new();
        client.sealer.seal_packet(&TcpPacket::Ping(Ping::new(0x0102_0304_0506_0708)), &mut out).unwrap();
        assert_eq!(&out[..], c_toxcore::CLIENT_PING);
        out.clear();
        client.sealer.seal_packet(&TcpPacket::RoutingRequest(RoutingRequest::new(*alice.public())), &mut out).unwrap();
        assert_eq!(&out[..], c_toxcore::CLIENT_ROUTE_SELF);

        // The relay's answers open on our client side: the pong, and the
        // refusal of a route to the client itself.
        let mut stream = BytesMut::from(&c_toxcore::SERVER_PONG[..]);
        stream.extend_from_slice(&c_toxcore::SERVER_ROUTE_SELF);
        let pong = client.opener.open_frame(FrameCodec.decode(&mut stream).unwrap().unwrap()).unwrap();
        assert_eq!(TcpPacket::decode(pong), Ok(TcpPacket::Pong(Pong::new(0x0102_0304_0506_0708))));
        let refused = client.opener.open_frame(FrameCodec.decode(&mut stream).unwrap().unwrap()).unwrap();
        assert_eq!(
            TcpPacket::decode(refused),
            Ok(TcpPacket::RoutingResponse(RoutingResponse::new(None, *alice.public())))
        );

        // And our relay's channel seals those answers to the same bytes.
        let mut relay = accepted.channel;
        let mut ours = BytesMut::new();
        relay.sealer.seal_packet(&TcpPacket::Pong(Pong::new(0x0102_0304_0506_0708)), &mut ours).unwrap();
        relay
            .sealer
            .seal_packet(&TcpPacket::RoutingResponse(RoutingResponse::new(None, *alice.public())), &mut ours)
            .unwrap();
        let mut theirs = c_toxcore::SERVER_PONG.to_vec();
        theirs.extend_from_slice(&c_toxcore::SERVER_ROUTE_SELF);
        assert_eq!(&ours[..], &theirs[..]);
        let mut frames = BytesMut::from(&c_toxcore::CLIENT_PING[..]);
        let ping = relay.opener.open_frame(FrameCodec.decode(&mut frames).unwrap().unwrap()).unwrap();
        assert_eq!(TcpPacket::decode(ping), Ok(TcpPacket::Ping(Ping::new(0x0102_0304_0506_0708))));
    }

    #[test]
    fn too_long_packets_are_refused() {
        let (mut client, _, _) = pair();
        let body = Bytes::from(vec![1u8; 2100]);
        let packet = TcpPacket::Forwarding(body);
        assert_eq!(client.sealer.seal_packet(&packet, &mut BytesMut::new()), Err(FrameCryptoError::TooLong));
    }
}
