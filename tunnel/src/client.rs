//! The client side: `-L` listeners, `-W` over any stream, the `-D` SOCKS5
//! server, `-p` ping.
//!
//! Opening a tunnel (PROTOCOL.md §5): every local
//! connection gets its own forward id (C tuntox matches ACKTUNNEL by forward
//! id, so two pending connections must never share one), we send
//! REQUESTTUNNEL and wait for ACKTUNNEL or DENYTUNNEL, at most
//! [`Config::request_timeout`](crate::Config::request_timeout) because a C
//! tuntox server answers nothing when it refuses. Listeners accept many
//! connections at once, each waiting for its own answer (C tuntox serves
//! one pending connection per forward and wedges: its bugs B2-B4). When the
//! peer is not connected, a new connection is closed at once (SOCKS: reply
//! 0x03) instead of hanging, and the listeners keep working once it is
//! back; only while the peer has never been connected (the client is
//! starting) and the owner has not found a reason it will not come (a
//! settled offline note) does a connection wait for it, at most
//! [`Config::offline_wait`](crate::Config::offline_wait).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::engine::{Discard, Engine, Inner, Opened, PeerCtx, PeerId, Role, Route};
use crate::frame::{DenyReason, Extension, Frame};
use crate::pump;
use crate::socks;
use crate::spec::{DynamicForward, LocalForward, MAX_HOST_LEN, Target};
use crate::stats::Counters;

/// How long a SOCKS5 client may take to say where it wants to go.
const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The payload of our PINGs: C tuntox's "Hello" and a sequence number.
const PING_PREFIX: &[u8] = b"Hello";

/// Why a tunnel could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The peer is not connected.
    #[error("the tunnel server is not connected")]
    NotConnected,
    /// The peer went away before answering.
    #[error("lost the tunnel server before it answered")]
    PeerLost,
    /// No ACKTUNNEL or DENYTUNNEL in time (a C tuntox server answers
    /// nothing when its rules refuse or the connection fails).
    #[error("the tunnel server did not answer within {0:?} (refused or unreachable destination?)")]
    Timeout(Duration),
    /// The server refused, with its reason.
    #[error("the tunnel server refused: {reason}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Denied {
        /// Why.
        reason: DenyReason,
        /// The server's detail.
        message: String,
    },
    /// The destination cannot be sent (host name too long or with NUL).
    #[error("invalid destination host '{0}'")]
    BadTarget(String),
    /// This engine is an exit, not a client.
    #[error("this engine is a server (exit), not a client")]
    NotClient,
    /// The engine is shutting down.
    #[error("shutting down")]
    Shutdown,
}

impl OpenError {
    /// The SOCKS5 reply code for this failure.
    pub fn socks_reply(&self) -> u8 {
        match self {
            Self::NotConnected | Self::PeerLost => socks::REPLY_NETWORK_UNREACHABLE,
            Self::Timeout(_) => socks::REPLY_HOST_UNREACHABLE,
            Self::Denied { reason, .. } => reason.socks_reply(),
            Self::BadTarget(_) | Self::NotClient | Self::Shutdown => socks::REPLY_GENERAL_FAILURE,
        }
    }
}

/// Why a ping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// The peer is not connected.
    #[error("the peer is not connected")]
    NotConnected,
    /// The peer went away before answering.
    #[error("lost the peer before it answered")]
    PeerLost,
}

/// A request waiting for ACKTUNNEL or DENYTUNNEL.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) peer: PeerId,
    tx: oneshot::Sender<Answer>,
}

#[derive(Debug)]
enum Answer {
    Ack(Opened),
    Deny(DenyReason, String),
}

/// Removes a pending request when its waiter gives up.
struct PendingGuard<'a> {
    inner: &'a Inner,
    forward_id: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.lock().pending.remove(&self.forward_id);
    }
}

/// What a listener does with its connections.
#[derive(Debug, Clone)]
enum Mode {
    Forward(Target),
    Socks,
}

impl Engine {
    /// `-L`: binds `forward.listen` and forwards every accepted connection
    /// to `forward.target` through `peer`, until the engine stops. Returns
    /// the bound address (useful with port 0).
    pub async fn listen(&self, peer: PeerId, forward: &LocalForward) -> io::Result<SocketAddr> {
        self.spawn_listener(peer, forward.listen, Mode::Forward(forward.target.clone())).await
    }

    /// `-D`: a SOCKS5 server (no authentication, CONNECT, IPv4, IPv6 and
    /// domain names) on `forward.listen` whose connections `peer` makes.
    pub async fn listen_socks(&self, peer: PeerId, forward: &DynamicForward) -> io::Result<SocketAddr> {
        self.spawn_listener(peer, forward.listen, Mode::Socks).await
    }

    /// `-W`: one tunnel to `target` over `stream` (stdin/stdout joined, in
    /// the binary). Fails at once when `peer` is not connected; returns when
    /// the tunnel is over.
    pub async fn forward_stream<S>(&self, peer: PeerId, target: &Target, stream: S) -> Result<(), OpenError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let opened = self.open(peer, target).await?;
        let (reader, writer) = tokio::io::split(stream);
        pump::run(opened, reader, writer).await;
        Ok(())
    }

    /// `-p`: sends a PING and waits for its PONG; the round-trip time. Wrap
    /// it in a timeout.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, PingError> {
        let ctx = self.inner.peer_ctx(peer).ok_or(PingError::NotConnected)?;
        let (tx, rx) = oneshot::channel();
        let seq = {
            let mut state = self.inner.lock();
            let seq = state.next_ping;
            state.next_ping = seq.wrapping_add(1);
            state.pings.insert(seq, (peer, tx));
            seq
        };
        let mut payload = BytesMut::from(PING_PREFIX);
        payload.extend_from_slice(&seq.to_be_bytes());
        let start = Instant::now();
        let result = async {
            ctx.send_frame(&Frame::Ping(payload.freeze())).await.map_err(|_| PingError::PeerLost)?;
            tokio::select! {
                () = ctx.cancel.cancelled() => Err(PingError::PeerLost),
                r = rx => r.map_err(|_| PingError::PeerLost),
            }
        }
        .await;
        self.inner.lock().pings.remove(&seq);
        result.map(|()| start.elapsed())
    }

    /// Asks `peer` for a tunnel to `target` and waits for the answer.
    pub(crate) async fn open(&self, peer: PeerId, target: &Target) -> Result<Opened, OpenError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(OpenError::Shutdown);
        }
        if !matches!(inner.config.role, Role::Client) {
            return Err(OpenError::NotClient);
        }
        if target.host.is_empty() || target.host.len() > MAX_HOST_LEN || target.host.contains('\0') {
            return Err(OpenError::BadTarget(target.host.clone()));
        }
        let ctx = match inner.peer_ctx(peer) {
            Some(ctx) => ctx,
            None if inner.config.offline_wait.is_zero()
                || inner.lock().seen.contains(&peer)
                || self.offline_settled(peer) =>
            {
                return Err(OpenError::NotConnected);
            }
            None => {
                // The client is starting: wait for the peer, but not once
                // the owner has found that waiting will not help.
                debug!(wait = ?inner.config.offline_wait, "the peer is not connected yet; waiting for it");
                let until = Instant::now() + inner.config.offline_wait;
                while inner.peer_ctx(peer).is_none() && !self.offline_settled(peer) && Instant::now() < until {
                    let step = (until - Instant::now()).min(Duration::from_millis(250));
                    let _ = tokio::time::timeout(step, self.wait_connected(peer)).await;
                }
                inner.peer_ctx(peer).ok_or(OpenError::NotConnected)?
            }
        };
        let (tx, rx) = oneshot::channel();
        let forward_id = {
            let mut state = inner.lock();
            let id = Inner::allocate_forward_id(&mut state);
            state.pending.insert(id, Pending { peer, tx });
            id
        };
        let _pending = PendingGuard { inner, forward_id };
        debug!(%peer, %target, forward_id, "requesting tunnel");
        let request = Frame::RequestTunnel {
            port: target.port,
            forward_id,
            host: Bytes::copy_from_slice(target.host.as_bytes()),
            ext: inner.our_ext(),
        };
        let timeout = inner.config.request_timeout;
        let answer = async {
            ctx.send_frame(&request).await.map_err(|_| OpenError::PeerLost)?;
            tokio::select! {
                () = ctx.cancel.cancelled() => Err(OpenError::PeerLost),
                r = tokio::time::timeout(timeout, rx) => match r {
                    Err(_) => Err(OpenError::Timeout(timeout)),
                    Ok(Err(_)) => Err(OpenError::PeerLost),
                    Ok(Ok(answer)) => Ok(answer),
                },
            }
        }
        .await;
        let answer = answer.map_err(|e| {
            Counters::inc(&inner.stats.requests_failed);
            if inner.cancel.is_cancelled() { OpenError::Shutdown } else { e }
        })?;
        match answer {
            Answer::Ack(opened) => Ok(opened),
            Answer::Deny(reason, message) => Err(OpenError::Denied { reason, message }),
        }
    }

    async fn spawn_listener(&self, peer: PeerId, addr: SocketAddr, mode: Mode) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        match &mode {
            Mode::Forward(target) => info!(%local, %target, "forwarding"),
            Mode::Socks => info!(%local, "SOCKS5 proxy"),
        }
        let span = info_span!("listener", %local);
        self.inner.tasks.spawn(self.clone().accept_loop(listener, peer, mode).instrument(span));
        Ok(local)
    }

    async fn accept_loop(self, listener: TcpListener, peer: PeerId, mode: Mode) {
        let cancel = self.inner.cancel.clone();
        loop {
            let permit = tokio::select! {
                () = cancel.cancelled() => return,
                permit = self.inner.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let (socket, from) = tokio::select! {
                () = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically EMFILE: wait a little instead of spinning.
                        warn!("accept failed: {e}");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                },
            };
            let engine = self.clone();
            let mode = mode.clone();
            let span = info_span!("conn", %from);
            self.inner.tasks.spawn(
                async move {
                    let _permit = permit;
                    let cancel = engine.inner.cancel.clone();
                    let serve = async {
                        match mode {
                            Mode::Forward(target) => engine.serve_forward(peer, &target, socket).await,
                            Mode::Socks => engine.serve_socks(peer, socket).await,
                        }
                    };
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = serve => {}
                    }
                }
                .instrument(span),
            );
        }
    }

    async fn serve_forward(&self, peer: PeerId, target: &Target, socket: TcpStream) {
        let _ = socket.set_nodelay(true);
        match self.open(peer, target).await {
            Ok(opened) => {
                let (reader, writer) = socket.into_split();
                pump::run(opened, reader, writer).await;
            }
            // Dropping the socket closes it: the application sees EOF now.
            Err(e) => info!(%target, "closing connection: {}", self.with_note(peer, &e)),
        }
    }

    /// An open error, with the owner's note on why the peer is away when
    /// that is the reason.
    fn with_note(&self, peer: PeerId, e: &OpenError) -> String {
        match (e, self.offline_note(peer)) {
            (OpenError::NotConnected, Some(note)) => format!("{e}: {note}"),
            _ => e.to_string(),
        }
    }

    async fn serve_socks(&self, peer: PeerId, mut socket: TcpStream) {
        let _ = socket.set_nodelay(true);
        let target = match tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, socks::handshake(&mut socket)).await {
            Ok(Ok(target)) => target,
            Ok(Err(e)) => return debug!("SOCKS5 handshake failed: {e}"),
            Err(_) => return debug!("SOCKS5 handshake timed out"),
        };
        match self.open(peer, &target).await {
            Ok(opened) => {
                if socks::reply(&mut socket, socks::REPLY_SUCCEEDED).await.is_err() {
                    return opened.abandon().await;
                }
                let (reader, writer) = socket.into_split();
                pump::run(opened, reader, writer).await;
            }
            Err(e) => {
                info!(%target, "SOCKS5 request failed: {}", self.with_note(peer, &e));
                let _ = socks::reply(&mut socket, e.socks_reply()).await;
            }
        }
    }
}

/// ACKTUNNEL: bind the waiting connection to the new tunnel id.
pub(crate) async fn on_ack(
    inner: &Arc<Inner>,
    ctx: &PeerCtx,
    tunnel: u16,
    forward_id: u32,
    theirs: Option<Extension>,
) -> Result<(), Discard> {
    if !matches!(inner.config.role, Role::Client) {
        return Err(Discard::Unexpected);
    }
    let ours = inner.our_ext();
    let pending = {
        let mut state = inner.lock();
        match state.pending.get(&forward_id) {
            Some(p) if p.peer == ctx.peer => state.pending.remove(&forward_id),
            Some(_) => return Err(Discard::WrongPeer),
            None if inner.has_route(&state, ctx.peer, tunnel) => return Err(Discard::Unexpected),
            None => None,
        }
    };
    let Some(pending) = pending else {
        // Nobody waits any more (timed out): close that tunnel on the server.
        debug!(tunnel, forward_id, "ACK for no pending request; closing that tunnel");
        let frame = if Extension::both(ours, theirs, Extension::HALF_CLOSE) {
            Frame::Reset { tunnel }
        } else {
            Frame::TcpFin { tunnel }
        };
        let _ = ctx.send_frame(&frame).await;
        return Err(Discard::Unexpected);
    };
    let route = Route::new(inner, ctx, tunnel, ours, theirs);
    let guard = inner.register(route.clone(), false);
    let opened = Opened { route, guard, ctx: ctx.clone() };
    if let Err(Answer::Ack(opened)) = pending.tx.send(Answer::Ack(opened)) {
        opened.abandon().await;
    }
    Ok(())
}

/// DENYTUNNEL: fail the waiting connection with the server's reason.
pub(crate) fn on_deny(
    inner: &Inner,
    ctx: &PeerCtx,
    forward_id: u32,
    reason: DenyReason,
    message: &[u8],
) -> Result<(), Discard> {
    let mut state = inner.lock();
    let pending = match state.pending.get(&forward_id) {
        Some(p) if p.peer == ctx.peer => state.pending.remove(&forward_id),
        Some(_) => return Err(Discard::WrongPeer),
        None => return Err(Discard::Unexpected),
    };
    drop(state);
    Counters::inc(&inner.stats.tunnels_denied);
    let message = String::from_utf8_lossy(message).into_owned();
    debug!(forward_id, %reason, %message, "tunnel denied");
    if let Some(pending) = pending {
        let _ = pending.tx.send(Answer::Deny(reason, message));
    }
    Ok(())
}

/// PONG: complete the matching ping.
pub(crate) fn on_pong(inner: &Inner, ctx: &PeerCtx, payload: &[u8]) -> Result<(), Discard> {
    let seq = match payload.strip_prefix(PING_PREFIX) {
        Some(mut rest) if rest.len() == 4 => rest.get_u32(),
        _ => return Err(Discard::Unexpected),
    };
    let mut state = inner.lock();
    match state.pings.get(&seq) {
        Some((peer, _)) if *peer == ctx.peer => {
            if let Some((_, tx)) = state.pings.remove(&seq) {
                let _ = tx.send(());
            }
            Ok(())
        }
        _ => Err(Discard::Unexpected),
    }
}
