//! The announce store: where clients announce themselves so that friends
//! can find them without learning their IP address (c-toxcore's
//! `onion_announce.c`).
//!
//! An announce request (0x83) reaches us as the exit of an onion path,
//! with hop 3's return block after it. Its sender proves it received our
//! previous answer by quoting a *ping id* we derived from its key, hop 3's
//! address and the time (so requests cannot be replayed from elsewhere);
//! with a valid ping id the sender is stored for 5 minutes, with its data
//! key and the return block to reach it. Whoever then searches that key
//! gets the data key back, and can send onion data (0x85) for the stored
//! client, which we pass on along the stored return path as 0x86.
//!
//! The ping id is ours to define (only we check it): SHA-256 over a random
//! secret, the current 5-minute slot, the sender key and hop 3's address;
//! the previous slot's id is accepted too, as c-toxcore's timed auth does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::crypto::{KeyPair, Nonce, PublicKey, ct_eq, sha256};
use crate::proto::addr::is_lan;
use crate::proto::dht::client::cmp_distance;
use crate::proto::dht::{Dht, Transmit};
use crate::proto::key_cache::KeyCache;
use crate::wire::onion_announce_request::{AnnounceForm, OnionAnnounceRequest};
use crate::wire::onion_announce_response::{
    AnnounceResponsePayload, AnnounceStatus, MAX_ANNOUNCE_NODES, OnionAnnounceResponse,
};
use crate::wire::onion_data_request::OnionDataRequest;
use crate::wire::onion_request::{OnionExit, OnionReturn3};
use crate::wire::onion_response::OnionResponse3;

/// Clients stored at most (ONION_ANNOUNCE_MAX_ENTRIES).
pub const MAX_ENTRIES: usize = 160;
/// How long an announcement is kept (ONION_ANNOUNCE_TIMEOUT), and the length
/// of a ping id's time slot.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Entry {
    public_key: PublicKey,
    data_pk: PublicKey,
    ret_addr: SocketAddr,
    ret: OnionReturn3,
    announced: Instant,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Announce requests answered.
    pub requests_answered: u64,
    /// Clients stored (new or refreshed).
    pub stored: u64,
    /// Onion data requests passed on to a stored client.
    pub data_forwarded: u64,
    /// Packets that did not decode or decrypt, or data for unknown keys.
    pub dropped: u64,
}

/// The announce store.
#[derive(Debug)]
pub struct AnnounceStore {
    keys: KeyPair,
    key_cache: KeyCache,
    ping_secret: [u8; 32],
    epoch: Option<Instant>,
    entries: Vec<Entry>,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    stats: AnnounceStats,
}

impl AnnounceStore {
    /// A store answering with our DHT key pair; randomness from `seed`.
    pub fn new(dht_keys: KeyPair, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut ping_secret = [0u8; 32];
        rng.fill_bytes(&mut ping_secret);
        Self {
            keys: dht_keys,
            key_cache: KeyCache::new(512),
            ping_secret,
            epoch: None,
            entries: Vec::new(),
            rng,
            transmits: VecDeque::new(),
            stats: AnnounceStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> AnnounceStats {
        self.stats
    }

    /// How many clients are stored (live or not yet replaced).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn ping_id(&self, slot: u64, key: &PublicKey, from: SocketAddr) -> [u8; 32] {
        let mut data = Vec::with_capacity(32 + 8 + 32 + 18);
        data.extend_from_slice(&self.ping_secret);
        data.extend_from_slice(&slot.to_be_bytes());
        data.extend_from_slice(key.as_bytes());
        match from.ip() {
            std::net::IpAddr::V4(ip) => data.extend_from_slice(&ip.octets()),
            std::net::IpAddr::V6(ip) => data.extend_from_slice(&ip.octets()),
        }
        data.extend_from_slice(&from.port().to_be_bytes());
        sha256(&data)
    }

    fn slot(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        (now - epoch).as_secs() / ANNOUNCE_TIMEOUT.as_secs()
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries.iter().enumerate().filter(move |(_, e)| now < e.announced + ANNOUNCE_TIMEOUT)
    }

    fn find(&self, key: &PublicKey, now: Instant) -> Option<usize> {
        self.live(now).find(|(_, e)| e.public_key == *key).map(|(i, _)| i)
    }

    /// Stores (or refreshes) a client; returns its index, or None when the
    /// store is full of clients closer to our key.
    fn store(&mut self, entry: Entry, now: Instant) -> Option<usize> {
        if let Some(i) = self.find(&entry.public_key, now) {
            self.entries[i] = entry;
            return Some(i);
        }
        if let Some(i) = self.entries.iter().position(|e| now >= e.announced + ANNOUNCE_TIMEOUT) {
            self.entries[i] = entry;
            return Some(i);
        }
        if self.entries.len() < MAX_ENTRIES {
            self.entries.push(entry);
            return Some(self.entries.len() - 1);
        }
        let own = *self.keys.public();
        let (far, farthest) = self
            .entries
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| cmp_distance(&own, &a.public_key, &b.public_key))?;
        if cmp_distance(&own, &entry.public_key, &farthest.public_key).is_lt() {
            self.entries[far] = entry;
            return Some(far);
        }
        None
    }

    /// Handles an onion exit datagram (an 0x83/0x87 announce request or an
    /// 0x85 data request, followed by hop 3's return block) from hop 3 at
    /// `from`. `dht` supplies the nodes a response lists.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: Bytes, dht: &Dht) {
        let handled = match data.first() {
            Some(0x83 | 0x87) => self.handle_announce(now, from, data, dht),
            Some(0x85) => self.handle_data(now, data),
            _ => return,
        };
        if handled.is_none() {
            self.stats.dropped += 1;
        }
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, data: Bytes, dht: &Dht) -> Option<()> {
        let exit = OnionExit::decode(data).ok()?;
        let request = OnionAnnounceRequest::decode(exit.payload).ok()?;
        let key = self.key_cache.get(&request.sender_pk, self.keys.secret()).ok()?.clone();
        let payload = request.open(&key).ok()?;
        let slot = self.slot(now);
        let current = self.ping_id(slot, &request.sender_pk, from);
        let valid = ct_eq(&payload.ping_id, &current)
            || (slot > 0 && ct_eq(&payload.ping_id, &self.ping_id(slot - 1, &request.sender_pk, from)));
        let index = if valid {
            let entry = Entry {
                public_key: request.sender_pk,
                data_pk: payload.data_pk,
                ret_addr: from,
                ret: exit.ret,
                announced: now,
            };
            let stored = self.store(entry, now);
            if stored.is_some() {
                self.stats.stored += 1;
            }
            stored
        } else {
            self.find(&payload.searched_pk, now)
        };
        let status = match index.map(|i| &self.entries[i]) {
            None => AnnounceStatus::NotStored { ping_id: current },
            Some(e) if e.public_key == request.sender_pk && e.data_pk != payload.data_pk => {
                AnnounceStatus::NotStored { ping_id: current }
            }
            Some(e) if e.public_key == request.sender_pk => AnnounceStatus::Announced { ping_id: current },
            Some(e) => AnnounceStatus::Found { data_pk: e.data_pk },
        };
        let nodes = dht.closest_nodes(&payload.searched_pk, MAX_ANNOUNCE_NODES, is_lan(from.ip()), now);
        let plain = match request.form {
            AnnounceForm::Old => AnnounceResponsePayload::new(status, nodes).ok()?,
            AnnounceForm::New => AnnounceResponsePayload::with_extra(status, nodes, Bytes::new()).ok()?,
        };
        let nonce = Nonce::random(&mut self.rng);
        let response = OnionAnnounceResponse::seal(payload.sendback, &key, nonce, &plain);
        let mut body = BytesMut::with_capacity(response.encoded_len());
        response.encode(&mut body);
        let back = OnionResponse3::new(exit.ret, body.freeze()).ok()?;
        self.send(from, &back);
        self.stats.requests_answered += 1;
        Some(())
    }

    fn handle_data(&mut self, now: Instant, data: Bytes) -> Option<()> {
        let exit = OnionExit::decode(data).ok()?;
        let request = OnionDataRequest::decode(exit.payload).ok()?;
        let entry = &self.entries[self.find(&request.receiver_pk, now)?];
        let (ret_addr, ret) = (entry.ret_addr, entry.ret);
        let forward = request.into_response();
        let mut body = BytesMut::with_capacity(forward.encoded_len());
        forward.encode(&mut body);
        let back = OnionResponse3::new(ret, body.freeze()).ok()?;
        self.send(ret_addr, &back);
        self.stats.data_forwarded += 1;
        Some(())
    }

    fn send(&mut self, dst: SocketAddr, response: &OnionResponse3) {
        let mut buf = BytesMut::with_capacity(response.encoded_len());
        response.encode(&mut buf);
        self.transmits.push_back(Transmit { dst, payload: buf.freeze() });
    }
}
