//! The driver: connects a sans-IO [`Node`] to a real UDP socket and clock.
//!
//! One tokio task owns the node. Each wake-up handles one cause (datagrams,
//! a command, the node's timer), then sends everything the node queued and
//! passes its events on. Datagrams are read in batches of up to
//! [`RECV_BATCH`] per wake-up, and nothing spins: when idle the task sleeps
//! until the node's next timer.
//!
//! Backpressure, never loss: a lossless send that finds the friend's send
//! buffer full is parked (in order) and completed when acknowledgements make
//! room; events wait for the owner to take them, except received lossy
//! packets, which are dropped (counted) when the owner is behind. Lossy
//! sends that find the command queue full are dropped and counted, as lossy
//! data may be.
//!
//! When the node stops (its cancellation token), it says goodbye first:
//! every online friend gets net_crypto's kill packet ([`Node::goodbye`]),
//! so friends see us go at once rather than after their timeout.
//!
//! Per-packet costs are amortised: events cross to the owner in one batch
//! per wake-up, and a lossless send may carry many packets for one friend
//! with a single reply.
//!
//! Hole punching's sockets: the node asks for more UDP sockets
//! ([`Node::poll_socket_command`]); the task binds them next to the main
//! one (an ephemeral port), reads them all, and sends each of the node's
//! [`Datagram`](crate::proto::node::Datagram)s from the socket it names,
//! with the IP TTL it names.

// The driver is where real time enters.
#![allow(clippy::disallowed_methods)]

pub mod batch;
pub mod portmap;
pub mod relay;
pub mod relay_client;
mod relay_conn;
pub mod tox;
pub mod udp;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::batch::{BatchSocket, Outgoing};
use crate::crypto::PublicKey;
use crate::proto::net_crypto::session::SendError;
use crate::proto::node::friends::FriendEvent;
use crate::proto::punch::{SocketCommand, SocketId};
use crate::proto::{Node, NodeEvent};

/// Datagrams read per wake-up at most, before the node's output is flushed.
pub const RECV_BATCH: usize = 64;
/// Batches of events (one per wake-up of the node's task) waiting for the
/// owner at most; beyond it the task drops lossy packets (counted) and
/// waits for the owner with the rest.
pub const EVENT_QUEUE: usize = 1024;
/// Commands waiting for the node at most; senders wait beyond it.
pub const COMMAND_QUEUE: usize = 64;
/// The largest datagram read when the kernel does not batch receives.
pub const MAX_DATAGRAM: usize = 2048;

/// A closure run on the node's task with the current time.
pub type NodeFn = Box<dyn FnOnce(&mut Node, Instant) + Send>;

/// Work for the node's task.
pub enum Command {
    /// Run a closure on the node (bootstrap, add a search, read state).
    /// Whatever it queues is sent at once.
    With(NodeFn),
    /// Queue lossless packets for a friend, in order; the reply comes once
    /// all are queued (after waiting for room if need be) or one is refused
    /// (then the rest are not sent).
    SendLossless {
        /// The friend.
        peer: PublicKey,
        /// Packets `[id][data]`, id 160-191.
        data: VecDeque<Bytes>,
        /// The outcome.
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    /// Send a lossy packet to a friend, now or never.
    SendLossy {
        /// The friend.
        peer: PublicKey,
        /// `[id][data]`, id 200-254.
        data: Bytes,
    },
    /// Send lossy packets, each to its friend, now or never (a VPN's burst
    /// in one command).
    SendLossyBatch(Vec<(PublicKey, Bytes)>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command::With(..)")
    }
}

/// Counters of the driver itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// System calls that sent them (fewer than datagrams when batched).
    pub send_calls: u64,
    /// Datagrams the socket refused to send (unreachable, wrong family...).
    pub send_errors: u64,
    /// Lossy packets refused by the node (friend offline, bad id).
    pub lossy_refused: u64,
    /// Received lossy packets dropped because the owner fell behind.
    pub lossy_dropped: u64,
}

/// The owner's side of a running node.
#[derive(Debug)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<VecDeque<NodeEvent>>,
    pending: VecDeque<NodeEvent>,
    local_addr: SocketAddr,
    tcp_addrs: Vec<SocketAddr>,
    cancel: CancellationToken,
    done: oneshot::Receiver<DriverStats>,
}

/// A cloneable way to send to friends from other tasks.
#[derive(Debug, Clone)]
pub struct NodeSender {
    commands: mpsc::Sender<Command>,
}

impl NodeSender {
    /// As [`NodeHandle::send_lossless`].
    pub async fn send_lossless(&self, peer: PublicKey, data: Bytes) -> Result<(), SendError> {
        send_lossless(&self.commands, peer, VecDeque::from([data])).await
    }

    /// As [`NodeHandle::send_lossless_batch`].
    pub async fn send_lossless_batch(&self, peer: PublicKey, data: VecDeque<Bytes>) -> Result<(), SendError> {
        send_lossless(&self.commands, peer, data).await
    }

    /// As [`NodeHandle::try_send_lossy`].
    pub fn try_send_lossy(&self, peer: PublicKey, data: Bytes) -> bool {
        self.commands.try_send(Command::SendLossy { peer, data }).is_ok()
    }

    /// Sends lossy packets, each to its friend, in one command: false if
    /// all were dropped (queue full or node stopped).
    pub fn try_send_lossy_batch(&self, packets: Vec<(PublicKey, Bytes)>) -> bool {
        packets.is_empty() || self.commands.try_send(Command::SendLossyBatch(packets)).is_ok()
    }

    /// Runs `f` on the node and returns its result.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        let command = Command::With(Box::new(move |node, now| {
            let _ = tx.send(f(node, now));
        }));
        self.commands.send(command).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

impl NodeSender {
    /// A sender to a node that has already stopped (tests of what reads a
    /// node without one running).
    #[cfg(test)]
    pub(crate) fn stopped() -> NodeSender {
        NodeSender { commands: mpsc::channel(1).0 }
    }
}

/// Why the node's task is no longer there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node has stopped")]
pub struct Stopped;

impl NodeHandle {
    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TCP relay's listening addresses (none without a relay).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// Runs `f` on the node and returns its result.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let command = Command::With(Box::new(move |node, now| {
            let _ = tx.send(f(node, now));
        }));
        self.commands.send(command).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// The next event, or `None` once the node stopped.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            self.pending = self.events.recv().await?;
        }
    }

    /// Queues a lossless packet (`[id][data]`, id 160-191) for an online
    /// friend, waiting for room in its send buffer if need be.
    pub async fn send_lossless(&self, peer: PublicKey, data: Bytes) -> Result<(), SendError> {
        send_lossless(&self.commands, peer, VecDeque::from([data])).await
    }

    /// Queues several lossless packets for one friend, in order, with one
    /// round trip to the node's task: cheaper than one call per packet when
    /// a burst is ready. On an error the packets from the refused one on
    /// were not queued.
    pub async fn send_lossless_batch(&self, peer: PublicKey, data: VecDeque<Bytes>) -> Result<(), SendError> {
        send_lossless(&self.commands, peer, data).await
    }

    /// Sends a lossy packet (`[id][data]`, id 200-254) to an online friend;
    /// false if it was dropped (queue full or node stopped).
    pub fn try_send_lossy(&self, peer: PublicKey, data: Bytes) -> bool {
        self.commands.try_send(Command::SendLossy { peer, data }).is_ok()
    }

    /// A sender that other tasks can use to send to friends.
    pub fn sender(&self) -> NodeSender {
        NodeSender { commands: self.commands.clone() }
    }

    /// Stops the node and returns the driver's counters.
    pub async fn shutdown(self) -> DriverStats {
        self.cancel.cancel();
        self.done.await.unwrap_or_default()
    }
}

/// Starts the node's task on `socket` (see [`udp::bind`]): on the
/// caller's runtime when it is single-threaded, else on a thread of its
/// own. The task ends when `cancel` fires or the handle is shut down.
pub fn spawn(node: Node, socket: std::net::UdpSocket, cancel: CancellationToken) -> io::Result<NodeHandle> {
    spawn_with_relay(node, socket, Vec::new(), None, cancel)
}

/// As [`spawn`], and also runs the node's TCP relay server on `listeners`
/// (see [`relay::bind`]); `relay_keys` must be the node's DHT key pair.
/// The node must have been made with a relay server
/// ([`NodeConfig::tcp_server`](crate::proto::NodeConfig::tcp_server)).
pub fn spawn_with_relay(
    node: Node,
    socket: std::net::UdpSocket,
    listeners: Vec<std::net::TcpListener>,
    relay_keys: Option<crate::crypto::KeyPair>,
    cancel: CancellationToken,
) -> io::Result<NodeHandle> {
    spawn_full(node, Some(socket), listeners, relay_keys, cancel)
}

/// As [`spawn_with_relay`], with no UDP socket at all when `socket` is
/// `None` (a node made with UDP off: it reaches the network through TCP
/// relays only; [`NodeHandle::local_addr`] is then `0.0.0.0:0`).
pub fn spawn_full(
    node: Node,
    socket: Option<std::net::UdpSocket>,
    listeners: Vec<std::net::TcpListener>,
    relay_keys: Option<crate::crypto::KeyPair>,
    cancel: CancellationToken,
) -> io::Result<NodeHandle> {
    let local_addr = match &socket {
        Some(socket) => socket.local_addr()?,
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let tcp_addrs = listeners.iter().map(std::net::TcpListener::local_addr).collect::<io::Result<Vec<_>>>()?;
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (started_tx, started) = std::sync::mpsc::channel::<io::Result<()>>();
    let (done_tx, done) = oneshot::channel();
    let token = cancel.clone();
    // The relay server's and relay client's connection tasks stay on the
    // caller's runtime, where they can run in parallel with the node.
    let owner = tokio::runtime::Handle::current();
    let relay = match relay_keys {
        Some(keys) if !listeners.is_empty() => Some(relay::RelaySide::start(listeners, keys, cancel.child_token())?),
        _ => None,
    };
    // On a single-threaded runtime (a forward, the VPN: see `cli::Threads`)
    // the node is one more task on it: a packet goes from socket to socket
    // without waking another thread.
    if owner.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        let socket = socket.map(BatchSocket::new).transpose()?;
        let runtime = owner.clone();
        owner.spawn(async move {
            let stats = run(node, socket, relay, runtime, command_rx, event_tx, token).await;
            let _ = done_tx.send(stats);
        });
        return Ok(NodeHandle { commands, events, pending: VecDeque::new(), local_addr, tcp_addrs, cancel, done });
    }
    // Next to a multi-threaded runtime (`tuntox relay`, whose connections
    // seal and open on every core) the node gets a thread and a
    // single-threaded runtime of its own: it takes everything queued for it
    // in one go and hands its output over in batches, instead of being
    // moved between worker threads that wake one another for every few
    // packets.
    std::thread::Builder::new().name("tuntox-node".to_owned()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match socket.map(BatchSocket::new).transpose() {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            let stats = run(node, socket, relay, owner, command_rx, event_tx, token).await;
            let _ = done_tx.send(stats);
        });
    })?;
    started.recv().map_err(|_| io::Error::other("the node's thread ended while starting"))??;
    Ok(NodeHandle { commands, events, pending: VecDeque::new(), local_addr, tcp_addrs, cancel, done })
}

async fn readable(socket: &Option<BatchSocket>) -> io::Result<()> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

/// Hole punching's sockets, by the node's ids.
type Extras = Vec<(SocketId, BatchSocket)>;

/// The index of a punching socket with a datagram to read; never ready
/// without one.
async fn readable_extra(extras: &Extras) -> usize {
    std::future::poll_fn(|cx| {
        for (i, (_, socket)) in extras.iter().enumerate() {
            if socket.poll_readable(cx).is_ready() {
                return std::task::Poll::Ready(i);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Opens and closes the sockets the node asks for.
fn socket_commands(node: &mut Node, main: &Option<BatchSocket>, extras: &mut Extras) {
    while let Some(command) = node.poll_socket_command() {
        match command {
            SocketCommand::Open(id) => {
                let opened = match main {
                    Some(main) => udp::bind_ephemeral(main.local_addr()).and_then(BatchSocket::new),
                    None => Err(io::Error::other("no UDP")),
                };
                let now = Instant::now();
                match opened {
                    Ok(socket) => {
                        let local = socket.local_addr();
                        extras.push((id, socket));
                        node.socket_opened(now, id, Some(local));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot open a hole-punching socket");
                        node.socket_opened(now, id, None);
                    }
                }
            }
            SocketCommand::Close(id) => extras.retain(|(i, _)| *i != id),
        }
    }
}

async fn relay_input(relay: &mut Option<relay::RelaySide>) -> Option<relay::RelayInput> {
    match relay {
        Some(relay) => relay.recv().await,
        None => std::future::pending().await,
    }
}

async fn send_lossless(
    commands: &mpsc::Sender<Command>,
    peer: PublicKey,
    data: VecDeque<Bytes>,
) -> Result<(), SendError> {
    if data.is_empty() {
        return Ok(());
    }
    let (reply, outcome) = oneshot::channel();
    commands.send(Command::SendLossless { peer, data, reply }).await.map_err(|_| SendError::NotConnected)?;
    outcome.await.unwrap_or(Err(SendError::NotConnected))
}

/// Lossless packets waiting for room in a friend's send buffer.
type Parked = (PublicKey, VecDeque<Bytes>, oneshot::Sender<Result<(), SendError>>);

async fn run(
    mut node: Node,
    mut socket: Option<BatchSocket>,
    mut relay: Option<relay::RelaySide>,
    runtime: tokio::runtime::Handle,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<VecDeque<NodeEvent>>,
    cancel: CancellationToken,
) -> DriverStats {
    let mut stats = DriverStats::default();
    let mut parked: VecDeque<Parked> = VecDeque::new();
    let mut outgoing: Vec<Outgoing> = Vec::new();
    // The relay connections outlive `cancel` for a moment: our goodbyes
    // may have to go through them.
    let relay_cancel = CancellationToken::new();
    let _relays_stop = relay_cancel.clone().drop_guard();
    let mut relays = relay_client::RelayClientSide::new(relay_cancel, runtime);
    let mut extras: Extras = Vec::new();
    node.handle_timeout(Instant::now());
    loop {
        retry_parked(&mut node, &mut parked);
        socket_commands(&mut node, &socket, &mut extras);
        // Datagrams before relay packets: a hole-punching message through a
        // relay must not overtake the openers queued with it.
        send_udp(&mut node, &mut socket, &mut extras, &mut outgoing, &mut stats).await;
        if let Some(relay) = &mut relay {
            relay.flush(&mut node, Instant::now());
        }
        relays.flush(&mut node, Instant::now());
        if flush(&mut node, &mut socket, &mut extras, &mut outgoing, &events, &mut stats).await.is_err() {
            break;
        }
        let timer = node.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = cancel.cancelled() => break,
            readable = readable(&socket) => {
                if let (Ok(()), Some(socket)) = (readable, socket.as_mut()) {
                    stats.received += read_main(&mut node, socket) as u64;
                }
            }
            i = readable_extra(&extras) => {
                let (id, extra) = &mut extras[i];
                stats.received += read_extra(&mut node, *id, extra) as u64;
            }
            input = relays.recv() => {
                let now = Instant::now();
                if let Some(input) = input {
                    relays.handle(&mut node, now, input);
                    for _ in 1..RECV_BATCH {
                        let Some(input) = relays.try_recv() else { break };
                        relays.handle(&mut node, now, input);
                    }
                }
            }
            command = commands.recv() => match command {
                Some(command) => {
                    handle_command(&mut node, command, &mut parked, &mut stats);
                    // Take whatever else is queued before flushing once.
                    while let Ok(command) = commands.try_recv() {
                        handle_command(&mut node, command, &mut parked, &mut stats);
                    }
                }
                None => break,
            },
            input = relay_input(&mut relay) => {
                let now = Instant::now();
                if let (Some(input), Some(side)) = (input, relay.as_mut()) {
                    side.handle(&mut node, now, input);
                    for _ in 1..RECV_BATCH {
                        let Some(input) = side.try_recv() else { break };
                        side.handle(&mut node, now, input);
                    }
                }
            }
            () = sleep_until(timer) => {
                // Datagrams already waiting come before the timers: after
                // the process went without CPU for a while, a timer and the
                // socket are ready at once, and a path whose packets sit
                // unread must not count as silent.
                if let Some(socket) = socket.as_mut() {
                    stats.received += read_main(&mut node, socket) as u64;
                }
                for (id, extra) in &mut extras {
                    stats.received += read_extra(&mut node, *id, extra) as u64;
                }
                node.handle_timeout(Instant::now());
            }
        }
    }
    farewell(&mut node, &mut socket, &mut extras, &mut relays, &mut outgoing, &mut stats).await;
    stats
}

/// Hands the node what waits on the main socket (up to about
/// [`RECV_BATCH`] datagrams); returns how many.
fn read_main(node: &mut Node, socket: &mut BatchSocket) -> usize {
    let now = Instant::now();
    socket.try_recv(RECV_BATCH, |from, datagram| node.handle_udp(now, from, datagram))
}

/// Hands the node what waits on hole punching's socket `id`.
fn read_extra(node: &mut Node, id: SocketId, extra: &mut BatchSocket) -> usize {
    let now = Instant::now();
    extra.try_recv(RECV_BATCH, |from, datagram| node.handle_udp_on(now, id, from, datagram))
}

/// How long the relay connections get to write our goodbyes before they
/// are closed.
const FAREWELL_RELAY_TIME: std::time::Duration = std::time::Duration::from_millis(50);

/// Tells every online friend we are going ([`Node::goodbye`]): the kill
/// packets leave on the sockets at once (the main one, and those hole
/// punching opened), and through the TCP relays, whose connections get
/// [`FAREWELL_RELAY_TIME`] to write them.
async fn farewell(
    node: &mut Node,
    socket: &mut Option<BatchSocket>,
    extras: &mut Extras,
    relays: &mut relay_client::RelayClientSide,
    outgoing: &mut Vec<Outgoing>,
    stats: &mut DriverStats,
) {
    let now = Instant::now();
    let told = node.goodbye(now);
    relays.flush(node, now);
    send_udp(node, socket, extras, outgoing, stats).await;
    if told > 0 {
        tracing::debug!(friends = told, "said goodbye");
        if !node.tcp_relays().connected(1).is_empty() {
            tokio::time::sleep(FAREWELL_RELAY_TIME).await;
        }
    }
}

fn handle_command(node: &mut Node, command: Command, parked: &mut VecDeque<Parked>, stats: &mut DriverStats) {
    let now = Instant::now();
    match command {
        Command::With(f) => f(node, now),
        Command::SendLossless { peer, mut data, reply } => {
            // Keep order: behind anything already waiting for this friend.
            if parked.iter().any(|(p, ..)| *p == peer) {
                parked.push_back((peer, data, reply));
                return;
            }
            match queue_lossless(node, now, &peer, &mut data) {
                Ok(true) => {
                    let _ = reply.send(Ok(()));
                }
                Ok(false) => parked.push_back((peer, data, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        Command::SendLossy { peer, data } => {
            if node.send_lossy(now, &peer, data).is_err() {
                stats.lossy_refused += 1;
            }
        }
        Command::SendLossyBatch(packets) => {
            for (peer, data) in packets {
                if node.send_lossy(now, &peer, data).is_err() {
                    stats.lossy_refused += 1;
                }
            }
        }
    }
}

/// Queues packets from the front of `data` while they fit: `Ok(true)` when
/// all went, `Ok(false)` when the friend's buffer filled up first.
fn queue_lossless(
    node: &mut Node,
    now: Instant,
    peer: &PublicKey,
    data: &mut VecDeque<Bytes>,
) -> Result<bool, SendError> {
    while let Some(packet) = data.front() {
        match node.send_lossless(now, peer, packet.clone()) {
            Ok(_) => {
                data.pop_front();
            }
            Err(SendError::Full) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Queues parked lossless packets that fit now, in order per friend.
fn retry_parked(node: &mut Node, parked: &mut VecDeque<Parked>) {
    if parked.is_empty() {
        return;
    }
    let now = Instant::now();
    let mut blocked: Vec<PublicKey> = Vec::new();
    let mut still = VecDeque::with_capacity(parked.len());
    for (peer, mut data, reply) in parked.drain(..) {
        if reply.is_closed() {
            continue;
        }
        if blocked.contains(&peer) {
            still.push_back((peer, data, reply));
            continue;
        }
        match queue_lossless(node, now, &peer, &mut data) {
            Ok(true) => {
                let _ = reply.send(Ok(()));
            }
            Ok(false) => {
                blocked.push(peer);
                still.push_back((peer, data, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
    *parked = still;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn flush(
    node: &mut Node,
    socket: &mut Option<BatchSocket>,
    extras: &mut Extras,
    outgoing: &mut Vec<Outgoing>,
    events: &mpsc::Sender<VecDeque<NodeEvent>>,
    stats: &mut DriverStats,
) -> Result<(), Stopped> {
    send_udp(node, socket, extras, outgoing, stats).await;
    let mut batch = VecDeque::new();
    while let Some(event) = node.poll_event() {
        batch.push_back(event);
    }
    if batch.is_empty() {
        return Ok(());
    }
    match events.try_send(batch) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Stopped),
        Err(mpsc::error::TrySendError::Full(mut batch)) => {
            // The owner is behind. Lossy packets may be dropped (counted);
            // everything else waits for it: the owner's pace sets ours.
            let before = batch.len();
            batch.retain(|e| !matches!(e, NodeEvent::Friend(FriendEvent::Lossy { .. })));
            stats.lossy_dropped += (before - batch.len()) as u64;
            if batch.is_empty() {
                return Ok(());
            }
            events.send(batch).await.map_err(|_| Stopped)
        }
    }
}

/// Sends the node's datagrams: the main socket's, then the others in
/// runs of one socket and TTL.
async fn send_udp(
    node: &mut Node,
    socket: &mut Option<BatchSocket>,
    extras: &mut Extras,
    outgoing: &mut Vec<Outgoing>,
    stats: &mut DriverStats,
) {
    outgoing.clear();
    while let Some(transmit) = node.poll_transmit() {
        outgoing.push(Outgoing { dst: transmit.dst, payload: transmit.payload });
    }
    if !outgoing.is_empty()
        && let Some(socket) = socket
    {
        let report = socket.send_all(outgoing).await;
        stats.sent += report.sent;
        stats.send_errors += report.errors;
        stats.send_calls += report.calls;
    }
    // Datagrams for other sockets or with a TTL of their own, in runs of
    // one socket and TTL.
    let mut pending = node.poll_datagram();
    while let Some(first) = pending.take() {
        let (id, ttl) = (first.socket, first.ttl);
        outgoing.clear();
        outgoing.push(Outgoing { dst: first.dst, payload: first.payload });
        while let Some(next) = node.poll_datagram() {
            if next.socket == id && next.ttl == ttl {
                outgoing.push(Outgoing { dst: next.dst, payload: next.payload });
            } else {
                pending = Some(next);
                break;
            }
        }
        let target = if id == SocketId::MAIN {
            socket.as_mut()
        } else {
            extras.iter_mut().find(|(i, _)| *i == id).map(|(_, s)| s)
        };
        let Some(target) = target else {
            // Closed meanwhile.
            stats.send_errors += outgoing.len() as u64;
            continue;
        };
        let report = match ttl {
            Some(ttl) => target.send_with_ttl(outgoing, ttl),
            None => target.send_all(outgoing).await,
        };
        stats.sent += report.sent;
        stats.send_errors += report.errors;
        stats.send_calls += report.calls;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::crypto::KeyPair;
    use crate::proto::NodeConfig;
    use crate::wire::packed_node::PackedNode;

    fn loopback_node(seed: u64) -> (Node, std::net::UdpSocket) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let keys = KeyPair::generate(&mut rng);
        let real = KeyPair::generate(&mut rng);
        let node = Node::new(real, keys, NodeConfig::default(), [seed as u8; 32]);
        let config = udp::UdpConfig {
            ports: 41000..=41200,
            bind_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..Default::default()
        };
        (node, udp::bind(&config).unwrap())
    }

    /// Two real nodes on loopback: one bootstraps from the other and each
    /// ends up in the other's close list.
    #[tokio::test]
    async fn two_nodes_on_loopback_find_each_other() {
        let (a, a_socket) = loopback_node(1);
        let (b, b_socket) = loopback_node(2);
        let a_key = *a.dht().public_key();
        let b_key = *b.dht().public_key();
        let a = spawn(a, a_socket, CancellationToken::new()).unwrap();
        let b = spawn(b, b_socket, CancellationToken::new()).unwrap();
        let a_addr = a.local_addr();
        b.with(move |node, now| node.dht_mut().bootstrap(now, PackedNode::udp(a_addr, a_key))).await.unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a_knows = a.with(move |n, now| n.dht().close_list().get(&b_key).is_some_and(|c| c.is_good(now))).await;
            let b_knows = b.with(move |n, now| n.dht().close_list().get(&a_key).is_some_and(|c| c.is_good(now))).await;
            if a_knows == Ok(true) && b_knows == Ok(true) {
                break;
            }
            assert!(Instant::now() < deadline, "nodes did not find each other within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let a_stats = a.shutdown().await;
        let b_stats = b.shutdown().await;
        assert!(a_stats.received > 0 && b_stats.received > 0 && a_stats.sent > 0);
        assert_eq!(a_stats.send_errors + b_stats.send_errors, 0);
    }
}
