//! Connects Tox friends to the tunnel engine, which knows peers only as
//! numbers.
//!
//! Each online friend gets a [`PeerId`] (its number in [`PeerNumbers`],
//! the same for as long as the process lives) and two tasks: one takes the engine's frames for that
//! friend and sends them as lossless Tox packets (waiting for room, so a
//! slow link slows the tunnels instead of dropping bytes), one feeds the
//! friend's frames into the engine when the engine's own queue for the
//! friend is full (otherwise frames go to the engine directly). Frames for a friend whose tunnels are
//! slow to drain queue up for that friend only: past [`FEED_HIGH`] queued
//! frames the friend's Tox session is paused (its packets are held and not
//! acknowledged, so its sender waits) and resumed below [`FEED_LOW`].
//! Nothing is dropped and no other friend waits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tunnel::{Engine, PeerId, TryIncomingError};

use super::peers::PeerNumbers;
use crate::crypto::PublicKey;
use crate::driver::tox::ToxSender;

/// Frames queued toward the engine for one friend above which its Tox
/// session is paused.
pub const FEED_HIGH: usize = 1024;
/// Frames queued below which a paused friend is resumed.
pub const FEED_LOW: usize = 256;
/// Frames handed to the node at once at most...
pub const SEND_BATCH: usize = 64;
/// ...and at least; in between, about [`BATCH_TIME`] of what the friend's
/// session has been taking: a batch waits whole in the node until the
/// session has room for it, and anything another tunnel sends meanwhile
/// (a keystroke behind a download) waits behind it.
pub const MIN_SEND_BATCH: usize = 4;
/// How much sending time a batch holds.
pub const BATCH_TIME: Duration = Duration::from_millis(2);

/// How many frames a friend's session takes per second, measured by the
/// bridge over spans of [`RATE_SPAN`] while it keeps the session busy.
#[derive(Debug, Default)]
struct SendRate {
    span_start: Option<Instant>,
    frames: usize,
    per_second: Option<f64>,
}

/// The span over which [`SendRate`] counts.
const RATE_SPAN: Duration = Duration::from_millis(50);

impl SendRate {
    /// `frames` went into the session, the last of them by `now`.
    fn sent(&mut self, frames: usize, now: Instant) {
        let start = *self.span_start.get_or_insert(now);
        self.frames += frames;
        let span = now.saturating_duration_since(start);
        if span >= RATE_SPAN {
            self.per_second = Some(self.frames as f64 / span.as_secs_f64());
            self.span_start = Some(now);
            self.frames = 0;
        }
    }

    /// Frames for the next batch: [`BATCH_TIME`] of the rate.
    fn batch(&self) -> usize {
        self.per_second
            .map_or(SEND_BATCH, |rate| (rate * BATCH_TIME.as_secs_f64()) as usize)
            .clamp(MIN_SEND_BATCH, SEND_BATCH)
    }
}

/// The queue of frames from one friend toward the engine.
#[derive(Debug)]
struct Feed {
    frames: mpsc::UnboundedSender<Bytes>,
    shared: Arc<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    queued: AtomicUsize,
    /// Whether the friend's session should be paused; both tasks flip it
    /// and ask the node to apply its current value.
    paused: Arc<AtomicBool>,
}

/// The friend-to-engine bridge.
#[derive(Debug)]
pub struct Bridge {
    engine: Engine,
    tox: ToxSender,
    numbers: PeerNumbers,
    feeds: HashMap<PublicKey, Feed>,
    tasks: JoinSet<()>,
}

impl Bridge {
    /// A bridge between `engine` and the Tox instance behind `tox`, with
    /// friends numbered in `numbers` (which the VPN may share).
    pub fn new(engine: Engine, tox: ToxSender, numbers: PeerNumbers) -> Self {
        Self { engine, tox, numbers, feeds: HashMap::new(), tasks: JoinSet::new() }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The peer number of a friend (assigned on first use).
    pub fn peer_id(&self, key: PublicKey) -> PeerId {
        PeerId(self.numbers.number(key))
    }

    /// The friend a peer number belongs to.
    pub fn key_of(&self, id: PeerId) -> Option<PublicKey> {
        self.numbers.key_of(id.0)
    }

    /// A friend came online: start its two pumps.
    pub fn connected(&mut self, key: PublicKey) {
        let id = self.peer_id(key);
        let mut link = self.engine.peer_connected(id);
        let tox = self.tox.clone();
        self.tasks.spawn(async move {
            // Take what the engine has ready (up to a batch) and hand it to
            // the node in one go.
            let mut rate = SendRate::default();
            while let Some(frame) = link.recv().await {
                let limit = rate.batch();
                let mut batch = VecDeque::from([frame]);
                while batch.len() < limit {
                    match link.try_recv() {
                        Some(frame) => batch.push_back(frame),
                        None => break,
                    }
                }
                let frames = batch.len();
                if tox.send_lossless_batch(key, batch).await.is_err() {
                    break;
                }
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                rate.sent(frames, now);
            }
        });
        let (feed, mut frames) = mpsc::unbounded_channel::<Bytes>();
        let shared = Arc::new(FeedState::default());
        let state = Arc::clone(&shared);
        let engine = self.engine.clone();
        let tox = self.tox.clone();
        self.tasks.spawn(async move {
            while let Some(frame) = frames.recv().await {
                let delivered = engine.incoming(id, frame).await.is_ok();
                let left = state.queued.fetch_sub(1, Ordering::AcqRel) - 1;
                if left <= FEED_LOW && state.paused.swap(false, Ordering::AcqRel) {
                    tracing::trace!(friend = %key, "resuming the friend's packets");
                    let _ = tox.sync_receive_paused(key, Arc::clone(&state.paused)).await;
                }
                if !delivered {
                    break;
                }
            }
        });
        self.feeds.insert(key, Feed { frames: feed, shared });
    }

    /// A friend went offline: its tunnels close.
    pub fn lost(&mut self, key: &PublicKey) {
        if self.feeds.remove(key).is_some() {
            self.engine.peer_lost(self.peer_id(*key));
        }
    }

    /// A lossless packet from a friend: tunnel frames (0xA2...) go to the
    /// engine; others are not ours and are ignored. Never waits.
    pub async fn incoming(&mut self, key: &PublicKey, data: Bytes) {
        if data.first() != Some(&tunnel::frame::MAGIC.to_be_bytes()[0]) {
            return;
        }
        let Some(feed) = self.feeds.get(key) else { return };
        // Nothing waiting in the feed: hand the frame to the engine directly
        // (one task hop less); the feed takes it only when the engine's
        // queue for this friend is full, and then keeps the order.
        let data = if feed.shared.queued.load(Ordering::Acquire) == 0 {
            match self.engine.try_incoming(self.peer_id(*key), data) {
                Ok(()) | Err(TryIncomingError::NotConnected) => return,
                Err(TryIncomingError::Full(data)) => data,
            }
        } else {
            data
        };
        let queued = feed.shared.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if feed.frames.send(data).is_err() {
            feed.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if queued >= FEED_HIGH && !feed.shared.paused.swap(true, Ordering::AcqRel) {
            tracing::debug!(friend = %key, queued, "the friend's tunnels are slow to drain; pausing its packets");
            let _ = self.tox.sync_receive_paused(*key, Arc::clone(&feed.shared.paused)).await;
        }
    }

    /// Stops the pumps.
    pub async fn shutdown(mut self) {
        self.engine.shutdown().await;
        self.tasks.shutdown().await;
    }
}
