//! One net_crypto session: its keys, state, buffers and congestion control.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::buffers::{Insert, LossTiming, RecvBuffer, SendBuffer};
use super::congestion::Congestion;
use super::path::{PathChoice, PathKind};
use super::replay::{self, ReplayWindow};
use crate::crypto::{AeadKey, KeyPair, Nonce, PublicKey, SharedKey};
use crate::wire::aegis_data::{self, AEGIS_DATA_KIND};
use crate::wire::cipher_offer::{CIPHER_OFFER_ID, CipherOffer};
use crate::wire::crypto_data::{self, DataHeader, MAX_CRYPTO_DATA_SIZE, PayloadKind, packet_id};
use crate::wire::packet_request::{decode_request, encode_request};

/// How often the handshake packets are resent (CRYPTO_SEND_PACKET_INTERVAL).
pub const TEMP_PACKET_INTERVAL: Duration = Duration::from_secs(1);
/// Tries before a session that does not come up is dropped (MAX_NUM_SENDPACKET_TRIES).
pub const MAX_TEMP_PACKET_TRIES: u32 = 8;
pub use super::path::UDP_DIRECT_TIMEOUT;
/// The longest gap between acknowledgements we send (CRYPTO_SEND_PACKET_INTERVAL).
pub const MAX_ACK_INTERVAL: Duration = Duration::from_secs(1);
/// Acknowledge after this many packets arrived.
pub const ACK_EVERY: u32 = 16;
/// Data queued and not yet sent is kept to about this much of the sending
/// rate ([`Session::unsent_room`])...
pub const UNSENT_TIME: Duration = Duration::from_millis(4);
/// ...but at least this many packets...
pub const MIN_UNSENT: usize = 8;
/// ...and at most this many.
pub const MAX_UNSENT: usize = 2048;
/// An established session without any packet for this long is dead (the
/// friend layer's 32 s timeout usually fires first).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(40);

/// What the AEGIS-256 direction keys are derived with: keyed BLAKE2b-256
/// ([`AeadKey::derive`]) over this label and the two session public keys.
pub const AEGIS_KEY_LABEL: &[u8] = b"tuntox net_crypto AEGIS-256 data v1";

/// The cipher a session seals its outgoing data packets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataCipher {
    /// Tox's XSalsa20-Poly1305 (0x1b), what every Tox peer speaks.
    XSalsa20Poly1305,
    /// AEGIS-256 (0x1c), once a tuntox peer offered it.
    Aegis256,
}

impl DataCipher {
    /// The name `tuntox status` shows.
    pub const fn name(self) -> &'static str {
        match self {
            Self::XSalsa20Poly1305 => "xsalsa20-poly1305",
            Self::Aegis256 => "aegis-256",
        }
    }
}

/// A session's AEGIS-256 keys, one per direction: keyed BLAKE2b-256 of
/// the session's shared key over [`AEGIS_KEY_LABEL`], the sender's session
/// public key and the receiver's ([`AeadKey::derive`]).
#[derive(Debug, Clone)]
struct AegisKeys {
    send: AeadKey,
    recv: AeadKey,
}

/// Where a session is in its life (c-toxcore's CRYPTO_CONN_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// We asked the peer for a cookie.
    CookieRequesting,
    /// We sent a handshake and wait for the peer's.
    HandshakeSent,
    /// Both handshakes done; waiting for the first data packet.
    NotConfirmed,
    /// Data flows.
    Established,
}

/// What a received data packet produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The session just became established.
    Established,
    /// A lossless packet, in order (`[id][data]`).
    Lossless(Bytes),
    /// A lossy packet (`[id][data]`).
    Lossy(Bytes),
    /// The peer closed the session.
    Killed,
}

/// Why a payload cannot be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is not established.
    #[error("the session is not established")]
    NotConnected,
    /// The send buffer is full: wait for acknowledgements.
    #[error("the send buffer is full")]
    Full,
    /// Not `[id][data]` with a lossless (16-191) or lossy (192-254) id, or too long.
    #[error("invalid packet id or length")]
    Invalid,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Data packets sent (all kinds).
    pub packets_sent: u64,
    /// Lossless packets sent again.
    pub retransmissions: u64,
    /// Data packets received and opened.
    pub packets_received: u64,
    /// Data packets that failed to open or were out of the window.
    pub packets_dropped: u64,
    /// Lossless packets received twice.
    pub duplicates: u64,
    /// AEGIS-256 data packets (0x1c) whose nonce was seen before or fell
    /// behind the replay window (dropped, also counted in `packets_dropped`).
    pub replays: u64,
    /// Data packets sent sealed with AEGIS-256 (0x1c), of `packets_sent`.
    pub aegis_sent: u64,
    /// Bytes of the data packets sent, sealed (as on the wire, without
    /// the UDP or TCP relay framing).
    pub bytes_sent: u64,
    /// Bytes of the data packets received and opened, sealed.
    pub bytes_received: u64,
}

/// A handshake packet (cookie request or handshake) resent until answered.
#[derive(Debug, Clone)]
struct TempPacket {
    packet: Bytes,
    last_sent: Option<Instant>,
    tries: u32,
}

/// One session with one peer.
#[derive(Debug)]
pub struct Session {
    /// The peer's real public key.
    pub peer: PublicKey,
    /// The peer's DHT public key.
    pub dht_pk: PublicKey,
    /// Where the session is.
    pub state: State,
    pub(super) session_keys: KeyPair,
    pub(super) shared: Option<SharedKey>,
    /// AEGIS-256 keys, when we can use it (then we offer it to the peer).
    aegis: Option<Box<AegisKeys>>,
    /// The peer offered AEGIS-256: with keys of our own, we seal with it.
    peer_aegis: bool,
    pub(super) send_nonce: Nonce,
    pub(super) recv_nonce: Nonce,
    /// The nonces of AEGIS-256 data packets received (tuntox peers only).
    replay: ReplayWindow,
    pub(super) cookie_request_id: u64,
    temp: Option<TempPacket>,
    /// The peer's direct UDP address, if known.
    pub addr: Option<SocketAddr>,
    /// Which way our packets go (direct UDP or the relays).
    path: PathChoice,
    send: SendBuffer,
    recv: RecvBuffer,
    cc: Congestion,
    last_ack_sent: Option<Instant>,
    received_since_ack: u32,
    last_progress: Option<Instant>,
    rto_backoff: u32,
    /// A tail loss probe went out since the last progress.
    probed: bool,
    /// The owner asked us to hold received lossless packets: they stay in
    /// the receive buffer, unacknowledged, so the sender slows down.
    recv_paused: bool,
    last_recv: Instant,
    lossy_out: VecDeque<Bytes>,
    /// The last packet opened moved the session on (a new lossless packet,
    /// or an acknowledgement of something new): not a replay.
    advanced: bool,
    stats: SessionStats,
}

impl Session {
    pub(super) fn new(
        peer: PublicKey,
        dht_pk: PublicKey,
        state: State,
        session_keys: KeyPair,
        send_nonce: Nonce,
        now: Instant,
    ) -> Self {
        Self {
            peer,
            dht_pk,
            state,
            session_keys,
            shared: None,
            aegis: None,
            peer_aegis: false,
            send_nonce,
            recv_nonce: Nonce::ZERO,
            replay: ReplayWindow::default(),
            cookie_request_id: 0,
            temp: None,
            addr: None,
            path: PathChoice::default(),
            send: SendBuffer::default(),
            recv: RecvBuffer::default(),
            cc: Congestion::default(),
            last_ack_sent: None,
            received_since_ack: 0,
            last_progress: None,
            rto_backoff: 0,
            probed: false,
            recv_paused: false,
            last_recv: now,
            lossy_out: VecDeque::new(),
            advanced: false,
            stats: SessionStats::default(),
        }
    }

    /// Takes the peer's session public key from its handshake: computes the
    /// shared key and, when `aegis` is on, the AEGIS-256 keys. False when
    /// the key is refused (a low-order point).
    pub(super) fn set_peer_session_key(&mut self, peer_session_pk: &PublicKey, aegis: bool) -> bool {
        let Ok(shared) = SharedKey::precompute(peer_session_pk, self.session_keys.secret()) else {
            self.shared = None;
            self.aegis = None;
            return false;
        };
        let ours = self.session_keys.public();
        self.aegis = aegis.then(|| {
            Box::new(AegisKeys {
                send: AeadKey::derive(&shared, AEGIS_KEY_LABEL, ours, peer_session_pk),
                recv: AeadKey::derive(&shared, AEGIS_KEY_LABEL, peer_session_pk, ours),
            })
        });
        self.shared = Some(shared);
        true
    }

    /// Seals with AEGIS-256 as if the peer had offered it (tests of a peer
    /// that breaks the rules).
    #[cfg(test)]
    pub(super) fn assume_peer_offers_aegis(&mut self) {
        self.peer_aegis = true;
    }

    /// The AEGIS-256 keys outgoing packets are sealed with, once both
    /// sides offered it.
    fn sealing_aegis(&self) -> Option<&AegisKeys> {
        self.aegis.as_deref().filter(|_| self.peer_aegis)
    }

    /// The cipher outgoing data packets are sealed with now.
    pub fn cipher(&self) -> DataCipher {
        match self.sealing_aegis() {
            Some(_) => DataCipher::Aegis256,
            None => DataCipher::XSalsa20Poly1305,
        }
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The congestion controller (round trip, window).
    pub fn congestion(&self) -> &Congestion {
        &self.cc
    }

    /// Lossless packets queued or in flight.
    pub fn queued(&self) -> usize {
        self.send.len()
    }

    /// How many more lossless packets may wait to be sent for the first
    /// time: enough for [`UNSENT_TIME`] at the sending rate, at least
    /// [`MIN_UNSENT`], at most [`MAX_UNSENT`].
    pub fn unsent_room(&self) -> usize {
        let target = (self.cc.send_rate() * UNSENT_TIME.as_secs_f64()) as usize;
        target.clamp(MIN_UNSENT, MAX_UNSENT).saturating_sub(self.send.unsent())
    }

    /// Whether a UDP packet arrived from the peer recently
    /// ([`UDP_DIRECT_TIMEOUT`]); the path in use is [`current_path`](Self::current_path).
    pub fn direct(&self, now: Instant) -> bool {
        self.path.heard_udp_lately(now)
    }

    /// The path our packets take, and since when (`None` until the
    /// session first sent something).
    pub fn current_path(&self) -> Option<(PathKind, Instant)> {
        self.path.current()
    }

    /// Direct paths this session gave up (one that went silent, or whose
    /// peer kept using the relay).
    pub fn direct_failures(&self) -> u64 {
        self.path.failures()
    }

    /// Chooses the path for what goes out now (`tcp`: a relay reaches the
    /// peer). When an established session moves, its congestion control
    /// starts afresh on the new path and its retransmission timer's
    /// back-off restarts.
    pub(super) fn choose_path(&mut self, now: Instant, tcp: bool) -> PathKind {
        let (path, changed) = self.path.choose(now, tcp, self.send.in_flight() > 0);
        if changed && self.state == State::Established {
            let dead = path == PathKind::Tcp;
            if dead {
                // Off a direct path that stopped working: what is in
                // flight on it is gone, and goes again through the relay
                // without waiting for timeouts (a copy that arrives after
                // all is dropped by the receiver).
                let lost = self.send.mark_all_lost();
                self.stats.retransmissions += lost as u64;
            }
            self.cc.on_path_change(now, dead);
            self.path_changed(now);
        }
        path
    }

    /// Whether a UDP probe should go now (on a relay, once a second).
    pub(super) fn probe_due(&mut self, now: Instant) -> bool {
        self.path.probe_due(now)
    }

    /// A probe for the direct path: a request packet, sealed afresh (it
    /// may be lost, so the acknowledgements it carries also go the usual
    /// way).
    pub(super) fn probe_packet(&mut self) -> Option<Bytes> {
        match self.state {
            State::Established | State::NotConfirmed => self.request_packet(),
            _ => None,
        }
    }

    pub(super) fn set_temp(&mut self, packet: Bytes) {
        self.temp = Some(TempPacket { packet, last_sent: None, tries: 0 });
    }

    /// The handshake packet to (re)send now, if one is due.
    pub(super) fn temp_due(&mut self, now: Instant) -> Option<Bytes> {
        let temp = self.temp.as_mut()?;
        if temp.last_sent.is_some_and(|t| now < t + TEMP_PACKET_INTERVAL) {
            return None;
        }
        temp.last_sent = Some(now);
        temp.tries += 1;
        Some(temp.packet.clone())
    }

    /// Whether the handshake gave up (8 tries unanswered).
    pub(super) fn handshake_failed(&self, now: Instant) -> bool {
        self.state != State::Established
            && self.temp.as_ref().is_some_and(|t| {
                t.tries >= MAX_TEMP_PACKET_TRIES && t.last_sent.is_some_and(|s| now >= s + TEMP_PACKET_INTERVAL)
            })
    }

    /// Whether an established session went silent.
    pub(super) fn timed_out(&self, now: Instant) -> bool {
        now >= self.last_recv + SESSION_TIMEOUT
    }

    /// Notes a packet from the peer over UDP at `from`.
    pub(super) fn heard_udp(&mut self, now: Instant, from: SocketAddr) {
        self.addr = Some(from);
        self.path.heard_udp(now);
    }

    /// Notes a data packet from the peer through a relay.
    pub(super) fn heard_tcp(&mut self, now: Instant) {
        self.path.heard_tcp(now);
    }

    /// Queues a lossless payload (`[id][data]`, id 16-191); returns its number.
    pub fn send_lossless(&mut self, payload: Bytes, limit: usize) -> Result<u32, SendError> {
        if self.state != State::Established {
            return Err(SendError::NotConnected);
        }
        match payload.first().copied().and_then(PayloadKind::of) {
            Some(PayloadKind::Lossless) if payload.len() <= MAX_CRYPTO_DATA_SIZE => {}
            _ => return Err(SendError::Invalid),
        }
        self.send.push(payload, limit).ok_or(SendError::Full)
    }

    /// Queues a lossy payload (`[id][data]`, id 192-254) to go out at once.
    pub fn send_lossy(&mut self, payload: Bytes) -> Result<(), SendError> {
        if self.state != State::Established {
            return Err(SendError::NotConnected);
        }
        match payload.first().copied().and_then(PayloadKind::of) {
            Some(PayloadKind::Lossy) if payload.len() <= MAX_CRYPTO_DATA_SIZE => {}
            _ => return Err(SendError::Invalid),
        }
        self.lossy_out.push_back(payload);
        Ok(())
    }

    /// Seals one data packet, with AEGIS-256 once both sides offered it.
    fn seal(&mut self, packet_number: u32, payload: &[u8]) -> Option<Bytes> {
        let header = DataHeader::new(self.recv.start(), packet_number);
        let mut out;
        // `sealing_aegis`, field by field: the nonce is borrowed mutably below.
        match self.aegis.as_deref().filter(|_| self.peer_aegis) {
            Some(keys) => {
                out = BytesMut::zeroed(aegis_data::packet_len(payload.len()));
                let len = aegis_data::seal(&keys.send, &mut self.send_nonce, header, payload, &mut out).ok()?;
                out.truncate(len);
                self.stats.aegis_sent += 1;
            }
            _ => {
                let key = self.shared.as_ref()?;
                out = BytesMut::zeroed(crypto_data::packet_len(payload.len()));
                let len = crypto_data::seal(key, &mut self.send_nonce, header, payload, &mut out).ok()?;
                out.truncate(len);
            }
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += out.len() as u64;
        Some(out.freeze())
    }

    /// A kill packet, sealed (for closing the session).
    pub(super) fn kill_packet(&mut self) -> Option<Bytes> {
        let end = self.send.end();
        self.seal(end, &[packet_id::KILL])
    }

    /// An acknowledgement: a request packet naming our holes.
    fn ack_packet(&mut self, now: Instant) -> Option<Bytes> {
        self.last_ack_sent = Some(now);
        self.received_since_ack = 0;
        self.request_packet()
    }

    /// A request packet naming our holes, sealed (what an acknowledgement
    /// sends; a probe sends one too, without counting as one).
    fn request_packet(&mut self) -> Option<Bytes> {
        let mut payload = BytesMut::with_capacity(64);
        encode_request(self.recv.start(), self.recv.end(), self.recv.missing(), &mut payload);
        let end = self.send.sent_end();
        self.seal(end, &payload)
    }

    /// Whether an acknowledgement is due.
    fn ack_due(&self, now: Instant) -> bool {
        let since = self.last_ack_sent.map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        since >= MAX_ACK_INTERVAL
            || (self.received_since_ack >= ACK_EVERY)
            || (self.received_since_ack > 0 && since >= Duration::from_millis(2))
            // Holes are reported fast: the sender resends only what was sent
            // more than a round trip ago, so early reports cost little.
            || (self.recv.has_holes() && since >= Duration::from_millis(2))
    }

    /// Produces the data packets due now: lossy ones, an acknowledgement,
    /// resends and new lossless packets as the congestion window allows.
    pub(super) fn flush(&mut self, now: Instant, out: &mut Vec<Bytes>) {
        match self.state {
            State::Established => {}
            // Confirm the session to the peer with a data packet.
            State::NotConfirmed => {
                if self.last_ack_sent.is_none_or(|t| now >= t + TEMP_PACKET_INTERVAL / 4)
                    && let Some(packet) = self.ack_packet(now)
                {
                    out.push(packet);
                }
                return;
            }
            _ => return,
        }
        while let Some(payload) = self.lossy_out.pop_front() {
            let end = self.send.sent_end();
            if let Some(packet) = self.seal(end, &payload) {
                out.push(packet);
            }
        }
        self.check_rto(now);
        if self.send.has_pending() {
            let allowed = self.cc.allowance(now, self.send.in_flight());
            let mut sent = 0;
            while sent < allowed && self.send.has_pending() {
                let state = self.cc.on_send(now, self.send.in_flight());
                let Some((number, payload)) = self.send.next_to_send(state) else { break };
                if let Some(packet) = self.seal(number, &payload) {
                    out.push(packet);
                }
                sent += 1;
            }
            self.cc.on_sent(sent);
            if self.last_progress.is_none() && self.send.in_flight() > 0 {
                self.last_progress = Some(now);
            }
        }
        if !self.send.has_pending() && self.send.in_flight() < self.cc.window() {
            self.cc.on_app_limited(self.send.in_flight());
        }
        if self.ack_due(now)
            && let Some(packet) = self.ack_packet(now)
        {
            out.push(packet);
        }
    }

    /// How long a quiet tail waits before its probe: two smoothed round
    /// trips plus the receiver's acknowledgement delay.
    fn probe_timeout(&self) -> Duration {
        (self.cc.rtt() * 2 + Duration::from_millis(4)).max(Duration::from_millis(10))
    }

    /// The retransmission timeout before any back-off: twice the base,
    /// at least 100 ms.
    fn rto(&self) -> Duration {
        (self.cc.rto_base() * 2).max(Duration::from_millis(100))
    }

    /// The path changed (a relay died, another route took over): what was
    /// in flight on the old path may be gone, and the retransmission
    /// timer's back-off, grown while no path worked, says nothing about the
    /// new one. Restart it, so a loss is resent within a few round trips.
    pub fn path_changed(&mut self, now: Instant) {
        self.rto_backoff = 0;
        self.probed = false;
        if self.send.in_flight() > 0 {
            self.last_progress = Some(now);
        }
    }

    /// Retransmission timeout: nothing acknowledged for several round trips
    /// while packets are in flight.
    fn check_rto(&mut self, now: Instant) {
        if self.send.in_flight() == 0 {
            self.last_progress = None;
            self.rto_backoff = 0;
            self.probed = false;
            return;
        }
        let Some(last_progress) = self.last_progress else {
            self.last_progress = Some(now);
            return;
        };
        // Tail loss probe: when the last packets of a burst are lost, no
        // later packet reveals the hole. With nothing new to send, resend
        // the newest packet after about two round trips, once per quiet
        // spell, so the receiver's answer lists what is missing.
        if !self.probed
            && !self.send.has_pending()
            && now >= last_progress + self.probe_timeout()
            && let Some(newest) = self.send.newest_in_flight()
        {
            self.send.mark_lost(newest);
            self.probed = true;
            self.stats.retransmissions += 1;
            return;
        }
        let rto = self.rto() * (1 << self.rto_backoff.min(6));
        if now >= last_progress + rto
            && let Some((oldest, _)) = self.send.oldest_in_flight()
        {
            self.send.mark_lost(oldest);
            if self.rto_backoff > 0 {
                self.cc.on_timeout();
            }
            self.rto_backoff += 1;
            self.last_progress = Some(now);
        }
    }

    /// A one-line summary for diagnostics.
    pub fn debug_line(&self, now: Instant) -> String {
        format!(
            "{} {} numbers {:?} state {:?} in_flight {} cc [{}] pending {} queued {} recv_since_ack {} last_ack {:?} last_progress {:?} backoff {} next {:?}",
            self.send.debug_head(),
            self.recv.debug_head(),
            self.send.debug_numbers(),
            self.state,
            self.send.in_flight(),
            self.cc.debug_summary(),
            self.send.has_pending(),
            self.send.len(),
            self.received_since_ack,
            self.last_ack_sent.map(|t| now.saturating_duration_since(t)),
            self.last_progress.map(|t| now.saturating_duration_since(t)),
            self.rto_backoff,
            self.next_wakeup(now).map(|t| t.saturating_duration_since(now)),
        )
    }

    /// When [`flush`](Self::flush) next has something to do.
    pub(super) fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(temp) = &self.temp
            && self.state != State::Established
        {
            consider(temp.last_sent.map_or(now, |t| t + TEMP_PACKET_INTERVAL));
        }
        match self.state {
            State::Established => {
                consider(self.last_ack_sent.map_or(now, |t| t + MAX_ACK_INTERVAL));
                if self.received_since_ack > 0 || self.recv.has_holes() {
                    consider(self.last_ack_sent.map_or(now, |t| t + Duration::from_millis(2)));
                }
                if !self.lossy_out.is_empty() {
                    consider(now);
                }
                if self.send.has_pending() {
                    let window_open = self.send.in_flight() < self.cc.window();
                    if window_open {
                        consider(self.cc.next_send(now));
                    }
                }
                if self.send.in_flight() > 0 && !self.probed && !self.send.has_pending() {
                    consider(self.last_progress.map_or(now, |t| t + self.probe_timeout()));
                }
                if self.send.in_flight() > 0 {
                    let rto = self.rto() * (1 << self.rto_backoff.min(6));
                    consider(self.last_progress.map_or(now, |t| t + rto));
                }
                consider(self.last_recv + SESSION_TIMEOUT);
                if self.addr.is_some()
                    && let Some(probe) = self.path.next_probe(now)
                {
                    consider(probe);
                }
                if let Some(check) = self.path.next_silence_check(self.send.in_flight() > 0) {
                    consider(check);
                }
            }
            State::NotConfirmed => consider(self.last_ack_sent.map_or(now, |t| t + TEMP_PACKET_INTERVAL / 4)),
            _ => {}
        }
        next
    }

    /// Handles a data packet that came from an address the session does
    /// not know: `None` if it does not open (not this peer's, and not
    /// counted as dropped), else whether it moved the session on (a replay
    /// does not).
    pub(super) fn try_data(&mut self, now: Instant, packet: &mut [u8], delivered: &mut Vec<Received>) -> Option<bool> {
        if self.state != State::Established {
            return None;
        }
        let (dropped, replays) = (self.stats.packets_dropped, self.stats.replays);
        if self.handle_data(now, packet, delivered) {
            Some(self.advanced)
        } else {
            self.stats.packets_dropped = dropped;
            self.stats.replays = replays;
            None
        }
    }

    /// Opens and handles one data packet (0x1b, or 0x1c when we offered
    /// AEGIS-256; already known to be ours).
    pub(super) fn handle_data(&mut self, now: Instant, packet: &mut [u8], delivered: &mut Vec<Received>) -> bool {
        self.advanced = false;
        let Some(key) = self.shared.as_ref() else { return false };
        let sealed_len = packet.len() as u64;
        // Between tuntox peers (AEGIS-256) each nonce is taken once: a
        // replayed lossy packet has nothing else to tell it apart.
        let mut counter = None;
        let opened = match (packet.first(), &self.aegis) {
            (Some(&AEGIS_DATA_KIND), Some(keys)) => {
                if let Some(low) = packet.get(1..3) {
                    let nonce = crypto_data::packet_nonce(&self.recv_nonce, u16::from_be_bytes([low[0], low[1]]));
                    counter = Some(replay::counter(&nonce));
                }
                aegis_data::open_in_place(&keys.recv, &mut self.recv_nonce, packet)
            }
            (Some(&AEGIS_DATA_KIND), None) => Err(crypto_data::DataOpenError::Decrypt),
            _ => crypto_data::open_in_place(key, &mut self.recv_nonce, packet),
        };
        let Ok(opened) = opened else {
            self.stats.packets_dropped += 1;
            return false;
        };
        if counter.is_some_and(|c| !self.replay.accept(c)) {
            // Not heard from the peer: a replay neither delivers nor keeps
            // a path alive.
            self.stats.replays += 1;
            self.stats.packets_dropped += 1;
            return false;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += sealed_len;
        self.last_recv = now;
        // The cumulative acknowledgement. A packet sent before a later one
        // that acknowledged more (reordering) carries a stale start: its
        // request list would be read against the wrong numbers, so it is
        // ignored (c-toxcore drops such packets whole).
        let fresh = self.send.valid_ack(opened.header.buffer_start);
        if fresh {
            let acked = self.send.ack_until(opened.header.buffer_start, now, self.cc.plausible_rtt());
            self.on_acked(now, acked);
        }
        if opened.id == packet_id::KILL {
            delivered.push(Received::Killed);
            return true;
        }
        if self.state == State::NotConfirmed {
            self.state = State::Established;
            self.temp = None;
            delivered.push(Received::Established);
            // Offer AEGIS-256 first thing: the peer's data packets switch
            // to it as soon as a tuntox peer reads this.
            if self.aegis.is_some() {
                let offer = Bytes::copy_from_slice(&CipherOffer { aegis256: true }.encode());
                let _ = self.send.push(offer, super::buffers::BUFFER_SIZE as usize);
            }
        }
        let payload = &packet[opened.payload()];
        match PayloadKind::of(opened.id) {
            Some(PayloadKind::Request) => {
                self.recv.extend_to(opened.header.packet_number);
                if !fresh {
                    return true;
                }
                if let Ok(request) = decode_request(payload, self.send.start(), self.send.end()) {
                    let timing = LossTiming {
                        reorder: self.cc.reorder_window(),
                        expired: self.rto(),
                        min_rtt: self.cc.plausible_rtt(),
                    };
                    let truncated = payload.len() >= MAX_CRYPTO_DATA_SIZE;
                    let report = self.send.on_request(&request.requested, request.walked_until, truncated, now, timing);
                    if report.lost > 0 {
                        self.cc.on_loss(now, report.lost);
                        self.stats.retransmissions += report.lost as u64;
                    }
                    self.on_acked(now, report.acked);
                }
            }
            Some(PayloadKind::Lossless) => {
                match self.recv.insert(opened.header.packet_number, Bytes::copy_from_slice(payload)) {
                    Insert::Stored => self.advanced = true,
                    Insert::Duplicate => self.stats.duplicates += 1,
                    Insert::OutOfWindow => self.stats.packets_dropped += 1,
                }
                self.received_since_ack += 1;
                if !self.recv_paused {
                    self.deliver_ready(delivered);
                }
            }
            Some(PayloadKind::Lossy) => {
                self.recv.extend_to(opened.header.packet_number);
                delivered.push(Received::Lossy(Bytes::copy_from_slice(payload)));
            }
            _ => self.stats.packets_dropped += 1,
        }
        true
    }

    /// Holds (or releases) received lossless packets. While held they are
    /// neither delivered nor acknowledged: the sender's window fills and it
    /// waits, so a slow owner slows this session only. Releasing delivers
    /// what is ready.
    pub(super) fn set_recv_paused(&mut self, paused: bool, delivered: &mut Vec<Received>) {
        self.recv_paused = paused;
        if !paused {
            let before = delivered.len();
            self.deliver_ready(delivered);
            if delivered.len() > before {
                // Tell the sender at once: it has been waiting for this
                // acknowledgement with a full window.
                self.received_since_ack = self.received_since_ack.max(ACK_EVERY);
            }
        }
    }

    /// Hands over the lossless packets that are next in order. A cipher
    /// offer is the session's own business: it sets what we seal with
    /// and goes no further.
    fn deliver_ready(&mut self, delivered: &mut Vec<Received>) {
        while let Some(ready) = self.recv.pop_ready() {
            if ready.first() == Some(&CIPHER_OFFER_ID) {
                if let Ok(offer) = CipherOffer::decode(&ready) {
                    self.peer_aegis = offer.aegis256;
                }
                continue;
            }
            delivered.push(Received::Lossless(ready));
        }
    }

    /// When a packet from the peer last arrived.
    pub fn last_recv(&self) -> Instant {
        self.last_recv
    }

    fn on_acked(&mut self, now: Instant, acked: super::buffers::Acked) {
        if acked.count == 0 {
            return;
        }
        self.advanced = true;
        self.cc.on_ack(now, &acked, self.send.in_flight());
        self.last_progress = if self.send.in_flight() > 0 { Some(now) } else { None };
        self.rto_backoff = 0;
        self.probed = false;
    }
}
