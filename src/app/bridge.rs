//! Connects Tox friends to the tunnel engine, which knows peers only as
//! numbers.
//!
//! Each online friend gets a [`PeerId`] (the same one for as long as the
//! process lives) and two tasks: one takes the engine's frames for that
//! friend and sends them as lossless Tox packets (waiting for room, so a
//! slow link slows the tunnels instead of dropping bytes), one feeds the
//! friend's frames into the engine through a bounded queue (so a friend
//! whose tunnels are slow to drain holds up only its own frames, up to the
//! queue's size).

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tunnel::{Engine, PeerId};

use crate::crypto::PublicKey;
use crate::driver::tox::ToxSender;

/// Frames queued toward the engine per friend.
pub const FEED_QUEUE: usize = 1024;
/// Frames handed to the node at once at most.
pub const SEND_BATCH: usize = 64;

#[derive(Debug)]
struct Peer {
    id: PeerId,
    feed: Option<mpsc::Sender<Bytes>>,
}

/// The friend-to-engine bridge.
#[derive(Debug)]
pub struct Bridge {
    engine: Engine,
    tox: ToxSender,
    peers: HashMap<PublicKey, Peer>,
    next_id: u32,
    tasks: JoinSet<()>,
}

impl Bridge {
    /// A bridge between `engine` and the Tox instance behind `tox`.
    pub fn new(engine: Engine, tox: ToxSender) -> Self {
        Self { engine, tox, peers: HashMap::new(), next_id: 1, tasks: JoinSet::new() }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The peer number of a friend (assigned on first use).
    pub fn peer_id(&mut self, key: PublicKey) -> PeerId {
        if let Some(peer) = self.peers.get(&key) {
            return peer.id;
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        self.peers.insert(key, Peer { id, feed: None });
        id
    }

    /// The friend a peer number belongs to.
    pub fn key_of(&self, id: PeerId) -> Option<PublicKey> {
        self.peers.iter().find(|(_, p)| p.id == id).map(|(k, _)| *k)
    }

    /// A friend came online: start its two pumps.
    pub fn connected(&mut self, key: PublicKey) {
        let id = self.peer_id(key);
        let mut link = self.engine.peer_connected(id);
        let tox = self.tox.clone();
        self.tasks.spawn(async move {
            // Take what the engine has ready (up to a batch) and hand it to
            // the node in one go.
            while let Some(frame) = link.recv().await {
                let mut batch = VecDeque::from([frame]);
                while batch.len() < SEND_BATCH {
                    match link.outgoing.try_recv() {
                        Ok(frame) => batch.push_back(frame),
                        Err(_) => break,
                    }
                }
                if tox.send_lossless_batch(key, batch).await.is_err() {
                    break;
                }
            }
        });
        let (feed, mut frames) = mpsc::channel::<Bytes>(FEED_QUEUE);
        let engine = self.engine.clone();
        self.tasks.spawn(async move {
            while let Some(frame) = frames.recv().await {
                if engine.incoming(id, frame).await.is_err() {
                    break;
                }
            }
        });
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.feed = Some(feed);
        }
    }

    /// A friend went offline: its tunnels close.
    pub fn lost(&mut self, key: &PublicKey) {
        if let Some(peer) = self.peers.get_mut(key) {
            peer.feed = None;
            self.engine.peer_lost(peer.id);
        }
    }

    /// A lossless packet from a friend: tunnel frames (0xA2...) go to the
    /// engine; others are not ours and are ignored.
    pub async fn incoming(&mut self, key: &PublicKey, data: Bytes) {
        if data.first() != Some(&tunnel::frame::MAGIC.to_be_bytes()[0]) {
            return;
        }
        if let Some(feed) = self.peers.get(key).and_then(|p| p.feed.as_ref()) {
            let _ = feed.send(data).await;
        }
    }

    /// Stops the pumps.
    pub async fn shutdown(mut self) {
        self.engine.shutdown().await;
        self.tasks.shutdown().await;
    }
}
