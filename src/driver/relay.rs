//! The TCP relay's sockets: listeners, and one task per connection.
//!
//! The relay's state lives in the node ([`crate::proto::relay::server`]);
//! its task (see [`super::spawn_with_relay`]) takes what the tasks here
//! report and hands each connection the packets to send. A connection task
//! does the byte work: the handshake (which must be done, with a first
//! frame, within 10 s), framing, sealing and opening, so that crypto runs
//! on every core and the node's task only routes.
//!
//! Every connection has two bounded queues: control packets (routing
//! answers, notifications, pings) and the rest (data, out-of-band, onion
//! responses). Data for a client whose queue is full is dropped and counted,
//! so one slow reader never holds up the relay; a client whose control queue
//! fills does not read at all and is closed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

pub use super::relay_conn::{CONTROL_QUEUE, DATA_QUEUE, INPUT_QUEUE};
use super::relay_conn::{ConnHandle, FrameReader, FrameWrites, Pushed, Queues, run_framed};
use crate::crypto::{KeyPair, PublicKey, SodiumRng};
use crate::proto::Node;
use crate::proto::relay::channel::accept_handshake;
use crate::proto::relay::server::{CONFIRM_TIMEOUT, ClientId, CloseReason, RelayOutput};
use crate::wire::tcp::{ClientHandshake, TcpPacket};

/// What listeners and connections tell the node's task.
#[derive(Debug)]
pub enum RelayInput {
    /// A new connection.
    Accepted(TcpStream),
    /// A connection's handshake is done and its first frame opened.
    Confirmed {
        /// Which.
        client: ClientId,
        /// The client's key.
        pk: PublicKey,
        /// The first packet, or what was wrong with it.
        first: Result<TcpPacket, &'static str>,
    },
    /// A later packet, or what was wrong with it.
    Packet {
        /// Which connection.
        client: ClientId,
        /// The packet.
        packet: Result<TcpPacket, &'static str>,
    },
    /// The connection ended.
    Closed {
        /// Which.
        client: ClientId,
        /// How.
        reason: CloseReason,
    },
}

/// The relay's part of the node's task.
#[derive(Debug)]
pub struct RelaySide {
    inputs: mpsc::Receiver<RelayInput>,
    input_tx: mpsc::Sender<RelayInput>,
    conns: HashMap<ClientId, ConnHandle>,
    keys: Arc<KeyPair>,
    cancel: CancellationToken,
}

/// Binds a TCP listener on `port` (dual-stack when the host has IPv6,
/// unless `bind_ip` names an address).
pub fn bind(port: u16, bind_ip: Option<IpAddr>) -> io::Result<std::net::TcpListener> {
    let ips = match bind_ip {
        Some(ip) => vec![ip],
        None => vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED), IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    };
    let mut last = None;
    for ip in ips {
        let addr = SocketAddr::new(ip, port);
        let attempt = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            if addr.is_ipv6() {
                socket.set_only_v6(false)?;
            }
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok::<_, io::Error>(socket.into())
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(e.kind(), format!("TCP port {port} is in use")));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to bind")))
}

impl RelaySide {
    /// Starts accepting on `listeners`; `keys` is the node's DHT key pair.
    pub fn start(listeners: Vec<std::net::TcpListener>, keys: KeyPair, cancel: CancellationToken) -> io::Result<Self> {
        let (input_tx, inputs) = mpsc::channel(INPUT_QUEUE);
        for listener in listeners {
            let listener = TcpListener::from_std(listener)?;
            tokio::spawn(accept_loop(listener, input_tx.clone(), cancel.clone()));
        }
        Ok(Self { inputs, input_tx, conns: HashMap::new(), keys: Arc::new(keys), cancel })
    }

    /// The next report.
    pub async fn recv(&mut self) -> Option<RelayInput> {
        self.inputs.recv().await
    }

    /// A report that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<RelayInput> {
        self.inputs.try_recv().ok()
    }

    /// Applies a report to the node.
    pub fn handle(&mut self, node: &mut Node, now: std::time::Instant, input: RelayInput) {
        match input {
            RelayInput::Accepted(stream) => {
                let Ok(from) = stream.peer_addr() else { return };
                let Some(client) = node.tcp_accept(now, from.ip()) else {
                    tracing::debug!(%from, "relay full, or too many connections from there: connection refused");
                    return;
                };
                let (handle, queues) = ConnHandle::new(&self.cancel);
                let deadline = TokioInstant::now() + CONFIRM_TIMEOUT;
                let conn = Connection {
                    client,
                    keys: Arc::clone(&self.keys),
                    inputs: self.input_tx.clone(),
                    queues,
                    deadline,
                };
                tokio::spawn(conn.run(stream, handle.token()));
                self.conns.insert(client, handle);
            }
            RelayInput::Confirmed { client, pk, first } => {
                if node.tcp_confirm(now, client, pk) {
                    tracing::debug!(client, %pk, "relay client connected");
                    self.packet(node, now, client, first);
                } else {
                    self.drop_conn(client);
                }
            }
            RelayInput::Packet { client, packet } => self.packet(node, now, client, packet),
            RelayInput::Closed { client, reason } => {
                tracing::debug!(client, ?reason, "relay connection ended");
                self.conns.remove(&client);
                node.tcp_closed(now, client, reason);
            }
        }
    }

    fn packet(
        &mut self,
        node: &mut Node,
        now: std::time::Instant,
        client: ClientId,
        packet: Result<TcpPacket, &'static str>,
    ) {
        match packet {
            Ok(packet) => node.tcp_packet(now, client, packet),
            Err(what) => node.tcp_malformed(now, client, what),
        }
    }

    fn drop_conn(&mut self, client: ClientId) {
        if let Some(handle) = self.conns.remove(&client) {
            handle.cancel();
        }
    }

    /// Hands the node's relay output to the connections.
    pub fn flush(&mut self, node: &mut Node, now: std::time::Instant) {
        loop {
            let mut slow = Vec::new();
            while let Some(output) = node.poll_tcp_output() {
                match output {
                    RelayOutput::Send { client, packet } => {
                        let Some(handle) = self.conns.get(&client) else { continue };
                        match handle.push(packet) {
                            Pushed::Queued | Pushed::Closed => {}
                            Pushed::ControlFull => slow.push(client),
                            Pushed::DataFull => node.tcp_dropped(),
                        }
                    }
                    RelayOutput::Close { client, reason } => {
                        tracing::debug!(client, ?reason, "closing relay connection");
                        self.drop_conn(client);
                    }
                }
            }
            if slow.is_empty() {
                return;
            }
            for client in slow {
                tracing::debug!(client, "relay client does not read: closing");
                self.drop_conn(client);
                node.tcp_closed(now, client, CloseReason::TooSlow);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, inputs: mpsc::Sender<RelayInput>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                if inputs.send(RelayInput::Accepted(stream)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

struct Connection {
    client: ClientId,
    keys: Arc<KeyPair>,
    inputs: mpsc::Sender<RelayInput>,
    queues: Queues,
    deadline: TokioInstant,
}

impl Connection {
    async fn run(self, stream: TcpStream, cancel: CancellationToken) {
        let client = self.client;
        let inputs = self.inputs.clone();
        let reason = tokio::select! {
            () = cancel.cancelled() => return,
            reason = self.serve(stream) => reason,
        };
        let _ = inputs.send(RelayInput::Closed { client, reason }).await;
    }

    async fn serve(self, mut stream: TcpStream) -> CloseReason {
        let _ = stream.set_nodelay(true);
        let mut hello = [0u8; ClientHandshake::LEN];
        match tokio::time::timeout_at(self.deadline, stream.read_exact(&mut hello)).await {
            Err(_) => return CloseReason::ConfirmTimeout,
            Ok(Err(_)) => return CloseReason::Gone,
            Ok(Ok(_)) => {}
        }
        let Ok(handshake) = ClientHandshake::decode(hello.to_vec()) else { return CloseReason::BadHandshake };
        let Ok(accepted) = accept_handshake(&mut SodiumRng, &self.keys, &handshake) else {
            return CloseReason::BadHandshake;
        };
        let mut response = Vec::with_capacity(accepted.response.encoded_len());
        accepted.response.encode(&mut response);
        match tokio::time::timeout_at(self.deadline, stream.write_all(&response)).await {
            Err(_) => return CloseReason::ConfirmTimeout,
            Ok(Err(_)) => return CloseReason::Gone,
            Ok(Ok(())) => {}
        }
        let Self { client, inputs, queues, deadline, .. } = self;
        let pk = accepted.client_pk;
        run_framed(stream, accepted.channel, queues, FrameWrites::Batched, |frames| {
            read_frames(frames, client, pk, inputs, deadline)
        })
        .await
    }
}

/// Hands the node the first packet (within `deadline`) and every later one.
async fn read_frames(
    mut frames: FrameReader,
    client: ClientId,
    pk: PublicKey,
    inputs: mpsc::Sender<RelayInput>,
    deadline: TokioInstant,
) -> CloseReason {
    let first = match tokio::time::timeout_at(deadline, frames.next()).await {
        Ok(Ok(first)) => first,
        Ok(Err(reason)) => return reason,
        Err(_) => return CloseReason::ConfirmTimeout,
    };
    if inputs.send(RelayInput::Confirmed { client, pk, first }).await.is_err() {
        return CloseReason::Gone;
    }
    loop {
        let packet = match frames.next().await {
            Ok(packet) => packet,
            Err(reason) => return reason,
        };
        if inputs.send(RelayInput::Packet { client, packet }).await.is_err() {
            return CloseReason::Gone;
        }
    }
}
