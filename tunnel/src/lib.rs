//! The tuntox forwarding protocol and its engine: the client side (`-L`,
//! `-W`, `-D`, `-p`) and the server's exit side.
//!
//! This crate knows nothing of Tox. It exchanges *frames* (byte strings of
//! at most 1373 bytes, each starting with `0xA2`) with *peers* ([`PeerId`],
//! assigned by the caller, e.g. one per Tox friend) through whatever carries
//! them: the tuntox binary maps Tox friends and lossless custom packets to
//! it; tests join two engines in memory. The wire protocol is C tuntox's
//! version 2 (magic `0xA26B`) plus extensions C tuntox never sees; both are
//! described byte by byte in `tunnel/PROTOCOL.md`.
//!
//! # Using the engine
//!
//! ```no_run
//! # async fn demo(frames_from_tox: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> std::io::Result<()> {
//! use tokio_util::sync::CancellationToken;
//! use tunnel::{Config, Engine, PeerId};
//!
//! let engine = Engine::new(Config::client(), CancellationToken::new());
//! let server = PeerId(0);
//! // Listeners run whether or not the peer is online; connections made
//! // while it is offline are closed at once.
//! engine.listen(server, &"2222:127.0.0.1:22".parse().unwrap()).await?;
//!
//! // The Tox side: when the friend comes online...
//! let mut link = engine.peer_connected(server);
//! // ...carry its frames to it, taking a frame only when the Tox link
//! // has room (so a slow link slows the tunnels instead of dropping bytes)...
//! tokio::spawn(async move {
//!     while let Some(frame) = link.recv().await {
//!         let _ = frame; // tox.send_lossless(friend, frame).await
//!     }
//! });
//! // ...and hand every frame from it to the engine, one feeder per peer.
//! let mut frames_from_tox = frames_from_tox;
//! while let Some(frame) = frames_from_tox.recv().await {
//!     if engine.incoming(server, frame).await.is_err() {
//!         break;
//!     }
//! }
//! // When the friend goes offline:
//! engine.peer_lost(server);
//! engine.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The exit side is the same engine with [`Config::exit`]: it needs no
//! listeners, only peers and frames.
//!
//! # Shape
//!
//! - [`Engine`] (cheap to clone) owns everything. Peers come and go with
//!   [`Engine::peer_connected`] (which returns the [`PeerLink`] whose
//!   bounded outgoing queue the caller drains) and
//!   [`Engine::peer_lost`]. Frames from peers go in through
//!   [`Engine::incoming`] (waits when that peer's bounded queue is full) or
//!   [`Engine::try_incoming`].
//! - Client operations: [`Engine::listen`] (`-L`), [`Engine::listen_socks`]
//!   (`-D`), [`Engine::forward_stream`] (`-W`), [`Engine::ping`] (`-p`),
//!   and [`Engine::wait_connected`], which the binary wraps in a timeout to
//!   give up when the server never comes online.
//! - Every task is spawned on the engine's `TaskTracker` and stops with its
//!   `CancellationToken` ([`Engine::shutdown`] cancels and waits for all).
//!   All queues are bounded; [`Engine::stats`] counts frames dropped by
//!   reason, tunnels and bytes.
//!
//! # Flow control and fairness
//!
//! Between two tuntox-rs peers every tunnel has a credit window per
//! direction ([`Config::recv_window`], 1 MiB at first): a sender never has
//! more unacknowledged bytes in flight than the receiver granted, so a slow
//! local reader stops only its own tunnel and nothing is dropped or buffered
//! beyond the window. The receiver doubles a window while the round trip,
//! not its local reader, holds the sender back (it returns credit more often
//! than every half round trip), up to [`Config::max_recv_window`] and
//! within [`Config::window_growth_budget`] for the whole engine, so a long
//! fast path is filled as TCP's receive autotuning fills it. A C tuntox
//! peer knows nothing of this; its tunnels get a buffer of the first
//! window's size, and when one is full the engine stops taking that peer's
//! frames until the local reader catches up (head-of-line blocking for that
//! peer only, never for others). Toward a peer, each tunnel's frames wait
//! in a lane of their own and the lanes take turns, after the control
//! frames (credit, pings, tunnel requests and answers): a quiet tunnel
//! waits behind one frame of each busy one, not behind their backlog.

mod cancel;
mod client;
mod engine;
mod exit;
pub mod frame;
mod inbound;
mod outq;
mod pump;
pub mod rules;
mod socks;
pub mod spec;
mod stats;

pub use client::{OpenError, PingError};
pub use engine::{Config, Engine, ExitConfig, NotConnected, PeerId, PeerLink, Role, TryIncomingError};
pub use frame::DenyReason;
pub use rules::{Rules, RulesError};
pub use stats::{Dropped, Stats};
