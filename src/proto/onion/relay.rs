//! Relaying onion packets for others: our side of every onion path that
//! goes through us (c-toxcore's `onion.c`).
//!
//! Requests travel client -> hop 1 -> hop 2 -> hop 3 -> destination, each
//! hop peeling one layer sealed for its DHT key and appending a *return
//! block*: where the packet came from (and the previous hop's block),
//! sealed with a symmetric key only this node knows. Responses travel back
//! the same way, each hop opening its block to learn where to send them.
//! Hop 3 only lets announce (0x83) and onion data (0x85) requests out, and
//! hops pass back only announce (0x84) and data (0x86) responses, as
//! c-toxcore does.
//!
//! The symmetric key changes every two hours (KEY_REFRESH_INTERVAL); the
//! previous key still opens blocks, so responses in flight at the change
//! are not lost (c-toxcore drops them).
//!
//! Spec: <https://toktok.ltd/spec.html#onion>.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::crypto::{KeyPair, Nonce, SharedKey};
use crate::proto::dht::Transmit;
use crate::proto::key_cache::KeyCache;
use crate::wire::onion_request::{
    EXIT_PAYLOAD_KINDS, OnionRequest0, OnionRequest1, OnionRequest2, OnionRequestTcp, OnionReturn1, OnionReturn2,
    OnionReturn3, ReturnAddr,
};
use crate::wire::onion_response::{OnionResponse1, OnionResponse2, OnionResponse3, RESPONSE_PAYLOAD_KINDS};

/// How often the return-block key changes (KEY_REFRESH_INTERVAL).
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// A response that goes back to a client connected to our TCP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpReturn {
    /// The relay's connection number for that client.
    pub conn_id: u32,
    /// The connection's identifier (tells a reused slot from the old one).
    pub identifier: u64,
    /// The response (an announce or data response).
    pub payload: Bytes,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Requests passed on.
    pub requests_relayed: u64,
    /// Responses passed back.
    pub responses_relayed: u64,
    /// Packets that did not decode, decrypt or pass the payload filter.
    pub dropped: u64,
}

/// The onion relay.
#[derive(Debug)]
pub struct OnionRelay {
    keys: KeyPair,
    key_cache: KeyCache,
    secret: SharedKey,
    previous_secret: Option<SharedKey>,
    secret_since: Option<Instant>,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    tcp_returns: VecDeque<TcpReturn>,
    stats: RelayStats,
}

impl OnionRelay {
    /// A relay using our DHT key pair; randomness from `seed`.
    pub fn new(dht_keys: KeyPair, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let secret = SharedKey::generate(&mut rng);
        Self {
            keys: dht_keys,
            key_cache: KeyCache::new(512),
            secret,
            previous_secret: None,
            secret_since: None,
            rng,
            transmits: VecDeque::new(),
            tcp_returns: VecDeque::new(),
            stats: RelayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next response for a client of our TCP relay.
    pub fn poll_tcp_return(&mut self) -> Option<TcpReturn> {
        self.tcp_returns.pop_front()
    }

    fn rotate_secret(&mut self, now: Instant) {
        match self.secret_since {
            None => self.secret_since = Some(now),
            Some(since) if now >= since + KEY_REFRESH_INTERVAL => {
                let fresh = SharedKey::generate(&mut self.rng);
                self.previous_secret = Some(std::mem::replace(&mut self.secret, fresh));
                self.secret_since = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Handles a UDP datagram of kind 0x80-0x82 or 0x8c-0x8e; others are
    /// ignored.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        self.rotate_secret(now);
        let handled = match data.first() {
            Some(0x80) => self.handle_request0(from, data),
            Some(0x81) => self.handle_request1(from, data),
            Some(0x82) => self.handle_request2(from, data),
            Some(0x8c) => self.handle_response3(data),
            Some(0x8d) => self.handle_response2(data),
            Some(0x8e) => self.handle_response1(data),
            _ => return,
        };
        match handled {
            Some(()) => {}
            None => self.stats.dropped += 1,
        }
    }

    /// A client of our TCP relay sent an onion request (TCP packet 8): we
    /// are its hop 1.
    pub fn handle_tcp_request(&mut self, now: Instant, conn_id: u32, identifier: u64, body: Bytes) {
        self.rotate_secret(now);
        let Ok(request) = OnionRequestTcp::decode(body) else {
            self.stats.dropped += 1;
            return;
        };
        let nonce = Nonce::random(&mut self.rng);
        let ret = OnionReturn1::seal_addr(&self.secret, &nonce, ReturnAddr::TcpClient { conn_id, identifier });
        let next = request.layer.next;
        let forward = request.into_request1(ret);
        self.send(next, |buf| forward.encode(buf), forward.encoded_len());
        self.stats.requests_relayed += 1;
    }

    fn handle_request0(&mut self, from: SocketAddr, data: Bytes) -> Option<()> {
        let request = OnionRequest0::decode(data).ok()?;
        let key = self.key_cache.get(&request.temp_pk, self.keys.secret()).ok()?;
        let layer = request.open(key).ok()?;
        let nonce = Nonce::random(&mut self.rng);
        let ret = OnionReturn1::seal_addr(&self.secret, &nonce, ReturnAddr::Udp(from));
        let next = layer.next;
        let forward = layer.into_request1(request.nonce, ret);
        self.send(next, |buf| forward.encode(buf), forward.encoded_len());
        self.stats.requests_relayed += 1;
        Some(())
    }

    fn handle_request1(&mut self, from: SocketAddr, data: Bytes) -> Option<()> {
        let request = OnionRequest1::decode(data).ok()?;
        let key = self.key_cache.get(&request.temp_pk, self.keys.secret()).ok()?;
        let layer = request.open(key).ok()?;
        let nonce = Nonce::random(&mut self.rng);
        let ret = OnionReturn2::seal_addr(&self.secret, &nonce, from, &request.ret);
        let next = layer.next;
        let forward = layer.into_request2(request.nonce, ret);
        self.send(next, |buf| forward.encode(buf), forward.encoded_len());
        self.stats.requests_relayed += 1;
        Some(())
    }

    fn handle_request2(&mut self, from: SocketAddr, data: Bytes) -> Option<()> {
        let request = OnionRequest2::decode(data).ok()?;
        let key = self.key_cache.get(&request.temp_pk, self.keys.secret()).ok()?;
        let layer = request.open(key).ok()?;
        if !layer.payload.first().is_some_and(|k| EXIT_PAYLOAD_KINDS.contains(k)) {
            return None;
        }
        let nonce = Nonce::random(&mut self.rng);
        let ret = OnionReturn3::seal_addr(&self.secret, &nonce, from, &request.ret);
        let dest = layer.dest;
        let exit = layer.into_exit(ret);
        self.send(dest, |buf| exit.encode(buf), exit.encoded_len());
        self.stats.requests_relayed += 1;
        Some(())
    }

    /// Opens a return block with the current key, or the previous one.
    fn open<T>(&self, open: impl Fn(&SharedKey) -> Option<T>) -> Option<T> {
        open(&self.secret).or_else(|| self.previous_secret.as_ref().and_then(&open))
    }

    fn handle_response3(&mut self, data: Bytes) -> Option<()> {
        let response = OnionResponse3::decode(data).ok()?;
        if !response.payload.first().is_some_and(|k| RESPONSE_PAYLOAD_KINDS.contains(k)) {
            return None;
        }
        let (to, back) = self.open(|key| response.open(key).ok())?;
        self.send(to, |buf| back.encode(buf), back.encoded_len());
        self.stats.responses_relayed += 1;
        Some(())
    }

    fn handle_response2(&mut self, data: Bytes) -> Option<()> {
        let response = OnionResponse2::decode(data).ok()?;
        if !response.payload.first().is_some_and(|k| RESPONSE_PAYLOAD_KINDS.contains(k)) {
            return None;
        }
        let (to, back) = self.open(|key| response.open(key).ok())?;
        self.send(to, |buf| back.encode(buf), back.encoded_len());
        self.stats.responses_relayed += 1;
        Some(())
    }

    fn handle_response1(&mut self, data: Bytes) -> Option<()> {
        let response = OnionResponse1::decode(data).ok()?;
        if !response.payload.first().is_some_and(|k| RESPONSE_PAYLOAD_KINDS.contains(k)) {
            return None;
        }
        let (to, payload) = self.open(|key| response.open(key).ok())?;
        match to {
            ReturnAddr::Udp(addr) => self.transmits.push_back(Transmit { dst: addr, payload }),
            ReturnAddr::TcpClient { conn_id, identifier } => {
                self.tcp_returns.push_back(TcpReturn { conn_id, identifier, payload });
            }
        }
        self.stats.responses_relayed += 1;
        Some(())
    }

    fn send(&mut self, dst: SocketAddr, encode: impl FnOnce(&mut BytesMut), len: usize) {
        let mut buf = BytesMut::with_capacity(len);
        encode(&mut buf);
        self.transmits.push_back(Transmit { dst, payload: buf.freeze() });
    }
}
