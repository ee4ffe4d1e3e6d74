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

    #[test]
    fn too_long_packets_are_refused() {
        let (mut client, _, _) = pair();
        let body = Bytes::from(vec![1u8; 2100]);
        let packet = TcpPacket::Forwarding(body);
        assert_eq!(client.sealer.seal_packet(&packet, &mut BytesMut::new()), Err(FrameCryptoError::TooLong));
    }
}
