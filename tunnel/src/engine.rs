//! The engine: peers, their frame queues, the tunnel table, and the per-peer
//! actor that dispatches incoming frames. The client side (`client.rs`), the
//! exit side (`exit.rs`) and the data path (`pump.rs`) hang off it.
//!
//! Tasks: one actor per connected peer (reads that peer's inbox), one task
//! per tunnel (its pump), one per listener and one per accepted connection;
//! all spawned on the engine's [`TaskTracker`] and stopped through
//! [`CancellationToken`]s: engine → peer session → tunnel.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, trace, warn};

use crate::cancel::unless_cancelled;
use crate::frame::{DecodeError, DenyReason, Extension, Frame, MAX_PAYLOAD};
use crate::inbound::Inbound;
use crate::outq::{Ended, OutQueue};
use crate::rules::Rules;
use crate::stats::{Counters, Stats};
use crate::{client, exit};

/// An opaque peer identity the caller assigns (e.g. per Tox friend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Which side of the protocol an engine plays. A peer link carries the
/// tunnels of one side only (tunnel ids say nothing of who opened them), so
/// an engine is either a client or an exit.
#[derive(Debug, Clone)]
pub enum Role {
    /// `-L`, `-W`, `-D`, `-p`: opens tunnels through its peers. Refuses
    /// REQUESTTUNNEL with DENYTUNNEL.
    Client,
    /// The server: opens the connections its peers request.
    Exit(ExitConfig),
}

/// The exit side's settings.
#[derive(Debug, Clone)]
pub struct ExitConfig {
    /// The allow-list; `None` allows every destination (the binary warns).
    pub rules: Option<Rules>,
    /// Budget for resolving and connecting to a destination.
    pub connect_timeout: Duration,
}

impl Default for ExitConfig {
    fn default() -> Self {
        Self { rules: None, connect_timeout: Duration::from_secs(10) }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client or exit.
    pub role: Role,
    /// Per-tunnel receive buffer in bytes: the credit window we grant peers
    /// that speak our extension at first, and the buffer bound for peers
    /// that do not. At least 1365.
    pub recv_window: u32,
    /// The most a tunnel's credit window grows to while the round trip,
    /// not the local reader, holds its sender back (as TCP's receive
    /// autotuning does). At least `recv_window`.
    pub max_recv_window: u32,
    /// What all tunnels' windows together may grow beyond `recv_window`
    /// each, in bytes: the memory a stalled reader could leave queued.
    pub window_growth_budget: usize,
    /// Frames from a peer queued for its actor (`incoming` waits beyond
    /// this). Frames toward a peer wait in lanes, one per tunnel, taken in
    /// turn (see the crate's documentation).
    pub peer_queue: usize,
    /// Tunnels at once: the exit side denies beyond it; the client's
    /// listeners stop accepting until one closes.
    pub max_tunnels: usize,
    /// Client: how long to wait for ACKTUNNEL or DENYTUNNEL (C tuntox
    /// servers never answer a refused request).
    pub request_timeout: Duration,
    /// Announce our extensions (flow control, half-close). `false` makes the
    /// engine speak exactly C tuntox's protocol (tests use it as a C peer).
    pub extensions: bool,
    /// Client: how long a new tunnel waits for a peer that has never been
    /// connected (the client is starting) before it fails. Zero fails at
    /// once. A peer that was connected and went away, or whose offline note
    /// is settled (see [`Engine::set_offline_note`]), fails new tunnels at
    /// once, so that users see an outage or a refusal instead of a hang.
    pub offline_wait: Duration,
}

impl Config {
    /// A client with default settings.
    pub fn client() -> Self {
        Self {
            role: Role::Client,
            recv_window: 1 << 20,
            max_recv_window: 32 << 20,
            window_growth_budget: 256 << 20,
            peer_queue: 128,
            max_tunnels: 1024,
            request_timeout: Duration::from_secs(20),
            extensions: true,
            offline_wait: Duration::ZERO,
        }
    }

    /// An exit with default settings.
    pub fn exit(exit: ExitConfig) -> Self {
        Self { role: Role::Exit(exit), ..Self::client() }
    }
}

/// A peer's session, handed out by [`Engine::peer_connected`]: the frames to
/// carry to that peer, in order. Take one only when the link has room, so
/// that a slow link slows the tunnels instead of losing frames. `None` once
/// the session ended ([`Engine::peer_lost`] or shutdown).
#[derive(Debug)]
pub struct PeerLink {
    /// The peer.
    pub peer: PeerId,
    /// Frames to send to the peer (each ≤ 1373 bytes, first byte 0xA2):
    /// control frames first, then the tunnels' in turn.
    outgoing: Arc<OutQueue>,
}

impl PeerLink {
    /// The next frame to send, waiting for one.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.outgoing.pop().await
    }

    /// The next frame to send, if one is ready.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.outgoing.try_pop()
    }
}

/// The peer is not connected: the frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer is not connected")]
pub struct NotConnected;

/// Why [`Engine::try_incoming`] did not take a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryIncomingError {
    /// The peer's queue is full; the frame is handed back.
    #[error("peer's incoming queue is full")]
    Full(Bytes),
    /// The peer is not connected; the frame was dropped.
    #[error("peer is not connected")]
    NotConnected,
}

/// The tunnel engine. Cheap to clone; all clones drive the same engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) stats: Arc<Counters>,
    pub(crate) state: Mutex<State>,
    /// Caps tunnels (exit) and accepted connections (client).
    pub(crate) slots: Arc<Semaphore>,
    /// Bumped on every peer connect or loss.
    peer_events: watch::Sender<u64>,
    /// What the tunnels' receive windows grew by, in all.
    pub(crate) window_growth: Arc<AtomicUsize>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    peers: HashMap<PeerId, PeerEntry>,
    routes: HashMap<(PeerId, u16), Arc<Route>>,
    /// Exit side: tunnel ids are unique across peers; id → owner.
    exit_ids: HashMap<u16, PeerId>,
    next_tunnel_id: u16,
    pub(crate) pending: HashMap<u32, client::Pending>,
    next_forward_id: u32,
    pub(crate) pings: HashMap<u32, (PeerId, oneshot::Sender<()>)>,
    pub(crate) next_ping: u32,
    next_session: u64,
    /// Peers that have been connected at least once.
    pub(crate) seen: std::collections::HashSet<PeerId>,
    /// Why a peer is not connected, in the owner's words: added to the
    /// message of a connection refused for it.
    pub(crate) offline_notes: HashMap<PeerId, (String, bool)>,
}

#[derive(Debug)]
struct PeerEntry {
    inbox: mpsc::Sender<Bytes>,
    ctx: PeerCtx,
    /// Tells this session from a later one of the same peer.
    session: u64,
}

/// What a task needs to talk to one peer session.
#[derive(Debug, Clone)]
pub(crate) struct PeerCtx {
    pub(crate) peer: PeerId,
    pub(crate) out: Arc<OutQueue>,
    /// Cancelled when the session ends.
    pub(crate) cancel: CancellationToken,
    pub(crate) stats: Arc<Counters>,
}

/// The peer session is over; nothing more can be sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone;

impl PeerCtx {
    /// Queues an encoded frame, waiting for room.
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), Gone> {
        if self.cancel.is_cancelled() {
            return Err(Gone);
        }
        match self.out.push(frame).await {
            Ok(()) => {
                Counters::inc(&self.stats.frames_out);
                Ok(())
            }
            Err(Ended) => Err(Gone),
        }
    }

    pub(crate) async fn send_frame(&self, frame: &Frame) -> Result<(), Gone> {
        trace!(kind = frame.kind(), "send");
        match frame.to_bytes() {
            Ok(bytes) => self.send(bytes).await,
            Err(e) => {
                // Our own frames are built within limits; this is a bug.
                warn!("cannot encode frame: {e}");
                Ok(())
            }
        }
    }
}

/// The receive side of a tunnel's flow control: the credit we granted.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    /// The window now: it only grows ([`RecvWindow::grow`]).
    pub(crate) window: AtomicUsize,
    /// Bytes received and not yet written to the local socket.
    pub(crate) unconsumed: AtomicUsize,
    /// Stream bytes received in all.
    pub(crate) received: AtomicU64,
    /// The most the window grows to.
    max: usize,
    /// What all windows of the engine grew by, shared, and its limit.
    budget: Arc<AtomicUsize>,
    budget_limit: usize,
    /// What this window grew by (given back to the budget on drop).
    grown: AtomicUsize,
}

impl RecvWindow {
    fn new(window: usize, inner: &Inner) -> Self {
        Self {
            window: AtomicUsize::new(window),
            unconsumed: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            max: inner.max_recv_window(),
            budget: Arc::clone(&inner.window_growth),
            budget_limit: inner.config.window_growth_budget,
            grown: AtomicUsize::new(0),
        }
    }

    /// The window now.
    pub(crate) fn window(&self) -> usize {
        self.window.load(Ordering::Acquire)
    }

    /// Credit is returned in WINDOW frames of at least this much.
    pub(crate) fn threshold(&self) -> usize {
        (self.window() / 4).max(1)
    }

    /// Doubles the window, up to [`Config::max_recv_window`] and within
    /// the engine's [`Config::window_growth_budget`]; returns by how much it
    /// grew (credit to grant on top).
    pub(crate) fn grow(&self) -> usize {
        let window = self.window();
        let growth = window.min(self.max.saturating_sub(window));
        if growth == 0 {
            return 0;
        }
        let limit = self.budget_limit;
        let taken = self.budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used + growth <= limit).then_some(used + growth)
        });
        if taken.is_err() {
            return 0;
        }
        self.grown.fetch_add(growth, Ordering::AcqRel);
        self.window.fetch_add(growth, Ordering::AcqRel);
        growth
    }
}

impl Drop for RecvWindow {
    fn drop(&mut self) {
        self.budget.fetch_sub(*self.grown.get_mut(), Ordering::AcqRel);
    }
}

/// The most send credit a peer may grant at once (WINDOW increments add up).
pub(crate) const MAX_CREDIT: usize = 1 << 28;

/// One tunnel as the actor sees it: where its incoming bytes go.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) peer: PeerId,
    pub(crate) connid: u16,
    /// Incoming bytes for the pump; closed on TCP_FIN.
    pub(crate) inbound: Inbound,
    /// Set when we granted a window the peer honours.
    pub(crate) recv_window: Option<RecvWindow>,
    /// Set when the peer granted us a window.
    pub(crate) send_credit: Option<Semaphore>,
    /// TCP_FIN closes one direction only; RESET aborts.
    pub(crate) half_close: bool,
    /// Cancelled to abort the tunnel (RESET, peer lost, shutdown, end).
    pub(crate) abort: CancellationToken,
    pub(crate) fin_received: AtomicBool,
}

impl Route {
    /// A route of `inner`'s. `ours` and `theirs` are the extension blocks
    /// each side announced for this tunnel. Its incoming queue holds the
    /// engine's receive window, or with flow control the most that window
    /// may grow to (the peer never sends beyond the credit we grant).
    pub(crate) fn new(
        inner: &Inner,
        ctx: &PeerCtx,
        connid: u16,
        ours: Option<Extension>,
        theirs: Option<Extension>,
    ) -> Arc<Self> {
        let flow = Extension::both(ours, theirs, Extension::FLOW);
        let mut buffer = inner.recv_window();
        let (recv_window, send_credit) = match (flow, ours, theirs) {
            (true, Some(ours), Some(theirs)) => {
                buffer = buffer.max(inner.max_recv_window());
                (
                    Some(RecvWindow::new(ours.window as usize, inner)),
                    Some(Semaphore::new((theirs.window as usize).min(MAX_CREDIT))),
                )
            }
            _ => (None, None),
        };
        let route = Self {
            peer: ctx.peer,
            connid,
            inbound: Inbound::new(buffer.max(MAX_PAYLOAD)),
            recv_window,
            send_credit,
            half_close: Extension::both(ours, theirs, Extension::HALF_CLOSE),
            abort: ctx.cancel.child_token(),
            fin_received: AtomicBool::new(false),
        };
        Arc::new(route)
    }

    /// Ends the incoming stream: the pump writes what is queued, then EOF.
    pub(crate) fn close_inbound(&self) {
        self.inbound.close();
    }

    /// The frame that ends this tunnel on error: RESET when the peer
    /// understands it, else TCP_FIN (a full close for C tuntox).
    pub(crate) fn abort_frame(&self) -> Frame {
        if self.half_close { Frame::Reset { tunnel: self.connid } } else { Frame::TcpFin { tunnel: self.connid } }
    }
}

/// Owns a registered tunnel: dropping it aborts the tunnel and frees its id.
#[derive(Debug)]
pub(crate) struct TunnelGuard {
    inner: Arc<Inner>,
    route: Arc<Route>,
    exit_id: bool,
}

impl TunnelGuard {
    /// Stops routing frames to this tunnel (they count as unknown after).
    pub(crate) fn unroute(&self) {
        self.inner.unroute(&self.route);
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.route.abort.cancel();
        self.inner.unroute(&self.route);
        if self.exit_id {
            let mut state = self.inner.lock();
            if state.exit_ids.get(&self.route.connid) == Some(&self.route.peer) {
                state.exit_ids.remove(&self.route.connid);
            }
        }
        Counters::dec(&self.inner.stats.tunnels_open);
        debug!(peer = %self.route.peer, tunnel = self.route.connid, "tunnel closed");
    }
}

/// A tunnel ready for its pump.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) route: Arc<Route>,
    pub(crate) guard: TunnelGuard,
    pub(crate) ctx: PeerCtx,
}

impl Opened {
    /// Closes a tunnel that will not be used, telling the peer.
    pub(crate) async fn abandon(self) {
        let _ = self.ctx.send_frame(&self.route.abort_frame()).await;
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters more than stopping would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn peer_ctx(&self, peer: PeerId) -> Option<PeerCtx> {
        self.lock().peers.get(&peer).map(|e| e.ctx.clone())
    }

    /// Our extension block for a new tunnel, if we announce one.
    pub(crate) fn our_ext(&self) -> Option<Extension> {
        self.config
            .extensions
            .then(|| Extension { flags: Extension::FLOW | Extension::HALF_CLOSE, window: self.recv_window() as u32 })
    }

    pub(crate) fn recv_window(&self) -> usize {
        (self.config.recv_window as usize).max(MAX_PAYLOAD)
    }

    /// The most a tunnel's window grows to.
    pub(crate) fn max_recv_window(&self) -> usize {
        (self.config.max_recv_window as usize).max(self.recv_window())
    }

    /// Adds a route to the table; a stale route with the same key is aborted.
    pub(crate) fn register(self: &Arc<Self>, route: Arc<Route>, exit_id: bool) -> TunnelGuard {
        let old = self.lock().routes.insert((route.peer, route.connid), route.clone());
        if let Some(old) = old {
            debug!(peer = %route.peer, tunnel = route.connid, "replacing a stale tunnel with the same id");
            old.abort.cancel();
        }
        Counters::inc(&self.stats.tunnels_open);
        Counters::inc(&self.stats.tunnels_opened);
        debug!(peer = %route.peer, tunnel = route.connid, flow = route.send_credit.is_some(),
               half_close = route.half_close, "tunnel open");
        TunnelGuard { inner: self.clone(), route, exit_id }
    }

    pub(crate) fn has_route(&self, state: &State, peer: PeerId, connid: u16) -> bool {
        state.routes.contains_key(&(peer, connid))
    }

    fn unroute(&self, route: &Arc<Route>) {
        let mut state = self.lock();
        if let Entry::Occupied(e) = state.routes.entry((route.peer, route.connid))
            && Arc::ptr_eq(e.get(), route)
        {
            e.remove();
        }
    }

    fn route(&self, peer: PeerId, connid: u16) -> Result<Arc<Route>, Discard> {
        let state = self.lock();
        match state.routes.get(&(peer, connid)) {
            Some(route) => Ok(route.clone()),
            None if state.exit_ids.get(&connid).is_some_and(|&owner| owner != peer) => Err(Discard::WrongPeer),
            None => Err(Discard::UnknownTunnel),
        }
    }

    /// Exit side: a fresh tunnel id, unique across peers, never 0.
    pub(crate) fn allocate_exit_id(&self, peer: PeerId) -> Option<u16> {
        let mut state = self.lock();
        for _ in 0..=u16::MAX {
            let id = state.next_tunnel_id;
            state.next_tunnel_id = id.wrapping_add(1);
            if id != 0 && !state.exit_ids.contains_key(&id) {
                state.exit_ids.insert(id, peer);
                return Some(id);
            }
        }
        None
    }

    /// Client side: a fresh forward id, distinct from every pending one.
    pub(crate) fn allocate_forward_id(state: &mut State) -> u32 {
        loop {
            let id = state.next_forward_id;
            state.next_forward_id = id.wrapping_add(1);
            if !state.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn count_drop(&self, why: Discard) {
        let s = &self.stats;
        Counters::inc(match why {
            Discard::UnknownTunnel => &s.unknown_tunnel,
            Discard::WrongPeer => &s.wrong_peer,
            Discard::Unexpected => &s.unexpected,
        });
    }
}

/// Why the actor dropped a well-formed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    UnknownTunnel,
    WrongPeer,
    Unexpected,
}

fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

impl Engine {
    /// A new engine. Cancelling `cancel` stops every task it runs; see also
    /// [`Engine::shutdown`].
    pub fn new(config: Config, cancel: CancellationToken) -> Self {
        let seed = random_u64();
        let state = State {
            next_tunnel_id: seed as u16,
            next_forward_id: (seed >> 16) as u32,
            next_ping: (seed >> 48) as u32,
            ..State::default()
        };
        let inner = Inner {
            slots: Arc::new(Semaphore::new(config.max_tunnels.clamp(1, 60_000))),
            config,
            cancel,
            tasks: TaskTracker::new(),
            stats: Arc::default(),
            state: Mutex::new(state),
            peer_events: watch::Sender::new(0),
            window_growth: Arc::new(AtomicUsize::new(0)),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A peer came online. Returns the link whose `outgoing` frames the
    /// caller carries to it. If the peer was already connected, its old
    /// session ends first (its tunnels close).
    pub fn peer_connected(&self, peer: PeerId) -> PeerLink {
        self.peer_lost(peer);
        let (inbox_tx, inbox_rx) = mpsc::channel(self.inner.config.peer_queue.max(1));
        let cancel = self.inner.cancel.child_token();
        let out = Arc::new(OutQueue::new(cancel.clone()));
        let ctx = PeerCtx { peer, out: Arc::clone(&out), cancel, stats: self.inner.stats.clone() };
        let session = {
            let mut state = self.inner.lock();
            state.next_session += 1;
            let session = state.next_session;
            state.peers.insert(peer, PeerEntry { inbox: inbox_tx, ctx: ctx.clone(), session });
            state.seen.insert(peer);
            session
        };
        debug!(%peer, "peer connected");
        let inner = self.inner.clone();
        self.inner.tasks.spawn(peer_actor(inner, ctx, session, inbox_rx).instrument(info_span!("peer", %peer)));
        self.inner.peer_events.send_modify(|n| *n += 1);
        PeerLink { peer, outgoing: out }
    }

    /// A peer went offline: its tunnels close, its pending requests fail,
    /// frames for it are dropped. Listeners keep running.
    pub fn peer_lost(&self, peer: PeerId) {
        let entry = {
            let mut state = self.inner.lock();
            let entry = state.peers.remove(&peer);
            // Dropping the senders wakes the waiters with an error.
            state.pending.retain(|_, p| p.peer != peer);
            state.pings.retain(|_, (p, _)| *p != peer);
            entry
        };
        if let Some(entry) = entry {
            debug!(%peer, "peer lost");
            entry.ctx.cancel.cancel();
            self.inner.peer_events.send_modify(|n| *n += 1);
        }
    }

    /// Tunnels open to the peer, and requests for one waiting for its
    /// answer.
    pub fn tunnels_to(&self, peer: PeerId) -> usize {
        let state = self.inner.lock();
        state.routes.keys().filter(|(p, _)| *p == peer).count()
            + state.pending.values().filter(|p| p.peer == peer).count()
    }

    /// Says why `peer` is not connected (`None`: nothing to say): a local
    /// connection refused while it is away is logged with this note, so
    /// the user learns what is wrong (not accepted yet, not found...).
    /// `settled`: waiting will not help (the peer refused us), so new
    /// tunnels fail at once even while the client is starting.
    pub fn set_offline_note(&self, peer: PeerId, note: Option<String>, settled: bool) {
        let mut state = self.inner.lock();
        match note {
            Some(note) => state.offline_notes.insert(peer, (note, settled)),
            None => state.offline_notes.remove(&peer),
        };
    }

    /// The note set by [`set_offline_note`](Self::set_offline_note).
    pub fn offline_note(&self, peer: PeerId) -> Option<String> {
        self.inner.lock().offline_notes.get(&peer).map(|(note, _)| note.clone())
    }

    /// Whether `peer`'s offline note is settled.
    pub(crate) fn offline_settled(&self, peer: PeerId) -> bool {
        self.inner.lock().offline_notes.get(&peer).is_some_and(|(_, settled)| *settled)
    }

    /// Whether the peer is connected.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.inner.lock().peers.contains_key(&peer)
    }

    /// Waits until the peer is connected. Wrap it in a timeout to give up
    /// (the binary's connect timeout).
    pub async fn wait_connected(&self, peer: PeerId) {
        let mut events = self.inner.peer_events.subscribe();
        while !self.is_connected(peer) {
            if events.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A frame from a peer. Waits while that peer's queue is full (which
    /// happens only when a tunnel to a C tuntox peer has a full buffer, or
    /// the engine is overloaded): run one feeder per peer, or use
    /// [`Engine::try_incoming`], so that one peer never holds up another.
    pub async fn incoming(&self, peer: PeerId, frame: Bytes) -> Result<(), NotConnected> {
        Counters::inc(&self.inner.stats.frames_in);
        let inbox = self.inner.lock().peers.get(&peer).map(|e| e.inbox.clone());
        let sent = match inbox {
            Some(inbox) => inbox.send(frame).await.is_ok(),
            None => false,
        };
        if !sent {
            Counters::inc(&self.inner.stats.unknown_peer);
            return Err(NotConnected);
        }
        Ok(())
    }

    /// Like [`Engine::incoming`] but never waits: a full queue hands the
    /// frame back, so the caller can stop reading that peer for a while.
    pub fn try_incoming(&self, peer: PeerId, frame: Bytes) -> Result<(), TryIncomingError> {
        let inbox = self.inner.lock().peers.get(&peer).map(|e| e.inbox.clone());
        let result = match inbox {
            Some(inbox) => inbox.try_send(frame).map_err(|e| match e {
                mpsc::error::TrySendError::Full(frame) => TryIncomingError::Full(frame),
                mpsc::error::TrySendError::Closed(_) => TryIncomingError::NotConnected,
            }),
            None => Err(TryIncomingError::NotConnected),
        };
        match &result {
            Ok(()) => Counters::inc(&self.inner.stats.frames_in),
            Err(TryIncomingError::NotConnected) => {
                Counters::inc(&self.inner.stats.frames_in);
                Counters::inc(&self.inner.stats.unknown_peer);
            }
            Err(TryIncomingError::Full(_)) => {}
        }
        result
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The token that stops this engine.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Stops everything (listeners, tunnels, peer sessions) and waits until
    /// every task has ended.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// Logs peer misbehaviour at `warn` at most once per 10 s, else at `debug`.
struct WarnLimiter(Option<Instant>);

impl WarnLimiter {
    fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self.0.is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10)) {
            self.0 = Some(now);
            warn!("{msg}");
        } else {
            debug!("{msg}");
        }
    }
}

/// Reads one peer's frames in order and acts on them. When the session
/// ends (peer lost, engine cancelled), forgets the peer, so that its link's
/// `outgoing` ends once the session's tunnels have closed.
async fn peer_actor(inner: Arc<Inner>, ctx: PeerCtx, session: u64, mut inbox: mpsc::Receiver<Bytes>) {
    let mut limiter = WarnLimiter(None);
    loop {
        let Some(Some(packet)) = unless_cancelled(&ctx.cancel, inbox.recv()).await else { break };
        if ctx.cancel.is_cancelled() {
            break;
        }
        if unless_cancelled(&ctx.cancel, handle_packet(&inner, &ctx, packet, &mut limiter)).await.is_none() {
            break;
        }
    }
    ctx.cancel.cancel();
    let mut state = inner.lock();
    if state.peers.get(&ctx.peer).is_some_and(|e| e.session == session) {
        state.peers.remove(&ctx.peer);
        state.pending.retain(|_, p| p.peer != ctx.peer);
        state.pings.retain(|_, (p, _)| *p != ctx.peer);
        drop(state);
        inner.peer_events.send_modify(|n| *n += 1);
    }
    trace!("peer actor done");
}

async fn handle_packet(inner: &Arc<Inner>, ctx: &PeerCtx, packet: Bytes, limiter: &mut WarnLimiter) {
    let frame = match Frame::decode(&packet) {
        Ok(frame) => frame,
        Err(e) => {
            inner.stats.decode_error(&e);
            match e {
                DecodeError::Version1 => limiter.warn(format_args!("{e}")),
                DecodeError::UnknownType(_) => debug!("dropped: {e}"),
                _ => limiter.warn(format_args!("dropped frame: {e}")),
            }
            return;
        }
    };
    trace!(kind = frame.kind(), len = packet.len(), "received");
    let outcome = match frame {
        Frame::Ping(payload) => {
            let _ = ctx.send_frame(&Frame::Pong(payload)).await;
            Ok(())
        }
        Frame::Pong(payload) => client::on_pong(inner, ctx, &payload),
        Frame::RequestTunnel { port, forward_id, host, ext } => {
            exit::on_request(inner, ctx, port, forward_id, host, ext).await;
            Ok(())
        }
        Frame::AckTunnel { tunnel, forward_id, ext } => client::on_ack(inner, ctx, tunnel, forward_id, ext).await,
        Frame::DenyTunnel { forward_id, reason, message } => client::on_deny(inner, ctx, forward_id, reason, &message),
        Frame::Tcp { tunnel, data } => on_data(inner, ctx, tunnel, data).await,
        Frame::TcpFin { tunnel } => on_fin(inner, ctx, tunnel).await,
        Frame::Window { tunnel, increment } => on_window(inner, ctx, tunnel, increment),
        Frame::Reset { tunnel } => on_reset(inner, ctx, tunnel),
    };
    if let Err(why) = outcome {
        inner.count_drop(why);
        debug!(?why, "dropped frame");
    }
}

/// Stream bytes: into the tunnel's buffer. For a peer without flow control
/// this waits while the buffer is full (head-of-line blocking for this peer
/// only); a peer with flow control never sends more than we granted.
async fn on_data(inner: &Arc<Inner>, ctx: &PeerCtx, tunnel: u16, data: Bytes) -> Result<(), Discard> {
    let route = inner.route(ctx.peer, tunnel)?;
    if route.abort.is_cancelled() {
        // Reset and about to be removed.
        return Err(Discard::UnknownTunnel);
    }
    if route.fin_received.load(Ordering::Relaxed) {
        return Err(Discard::Unexpected);
    }
    if data.is_empty() {
        return Ok(());
    }
    if let Some(window) = &route.recv_window {
        window.received.fetch_add(data.len() as u64, Ordering::AcqRel);
        let after = window.unconsumed.fetch_add(data.len(), Ordering::AcqRel) + data.len();
        if after > window.window() {
            Counters::inc(&inner.stats.window_exceeded);
            Counters::inc(&inner.stats.tunnels_reset);
            warn!(tunnel, after, window = window.window(), "peer exceeded the window; resetting the tunnel");
            route.abort.cancel();
            let _ = ctx.send_frame(&route.abort_frame()).await;
            return Ok(());
        }
    }
    let len = data.len() as u64;
    match unless_cancelled(&route.abort, route.inbound.push(data)).await {
        Some(Ok(())) => Counters::add(&inner.stats.bytes_from_peers, len),
        Some(Err(_closed)) => return Err(Discard::Unexpected),
        None => {}
    }
    Ok(())
}

async fn on_fin(inner: &Arc<Inner>, ctx: &PeerCtx, tunnel: u16) -> Result<(), Discard> {
    let route = inner.route(ctx.peer, tunnel)?;
    if route.fin_received.swap(true, Ordering::Relaxed) {
        return Err(Discard::Unexpected);
    }
    route.close_inbound();
    Ok(())
}

fn on_window(inner: &Arc<Inner>, ctx: &PeerCtx, tunnel: u16, increment: u32) -> Result<(), Discard> {
    let route = match inner.route(ctx.peer, tunnel) {
        Ok(route) => route,
        // Credit for bytes sent just before the tunnel closed races the
        // close; it is harmless.
        Err(Discard::UnknownTunnel) => {
            Counters::inc(&inner.stats.stale_windows);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let Some(credit) = &route.send_credit else { return Err(Discard::Unexpected) };
    let room = MAX_CREDIT.saturating_sub(credit.available_permits());
    credit.add_permits((increment as usize).min(room));
    Ok(())
}

fn on_reset(inner: &Arc<Inner>, ctx: &PeerCtx, tunnel: u16) -> Result<(), Discard> {
    let route = inner.route(ctx.peer, tunnel)?;
    debug!(tunnel, "peer reset the tunnel");
    Counters::inc(&inner.stats.tunnels_reset);
    route.abort.cancel();
    Ok(())
}

/// A DENYTUNNEL frame with a short message.
pub(crate) fn deny_frame(forward_id: u32, reason: DenyReason, message: &str) -> Frame {
    let mut end = message.len().min(200);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Frame::DenyTunnel { forward_id, reason, message: Bytes::copy_from_slice(&message.as_bytes()[..end]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(150);
        let Frame::DenyTunnel { message, .. } = deny_frame(1, DenyReason::Failed, &long) else { unreachable!() };
        assert_eq!(message.len(), 200);
        assert!(std::str::from_utf8(&message).is_ok());
        let Frame::DenyTunnel { message, .. } = deny_frame(1, DenyReason::Failed, "short") else { unreachable!() };
        assert_eq!(&message[..], b"short");
    }

    #[test]
    fn defaults() {
        let c = Config::client();
        assert!(matches!(c.role, Role::Client) && c.extensions);
        assert_eq!((c.recv_window, c.request_timeout), (1 << 20, Duration::from_secs(20)));
        let Role::Exit(e) = Config::exit(ExitConfig::default()).role else { unreachable!() };
        assert_eq!(e.connect_timeout, Duration::from_secs(10));
        assert!(e.rules.is_none());
    }
}
