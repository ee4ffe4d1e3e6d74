//! The node's connections to TCP relays (the client's side): one task per
//! connection.
//!
//! The state lives in the node ([`crate::proto::relay::connections`]); the
//! node's task takes its [`RelayCommand`]s here. A connection task connects
//! (within [`CONNECT_TIMEOUT`]), writes our handshake, reads the relay's
//! and hands it to the node, which answers with the session; from then on
//! the task seals what the node sends and opens what the relay sends, so
//! crypto runs beside the node's task, not on it.
//!
//! Each connection has two bounded queues, as on the relay's side: control
//! packets (routing requests, pings, pongs) and the rest. A full data queue
//! drops the packet (counted; net_crypto resends what was lossless), a full
//! control queue closes the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::relay_conn::{ConnHandle, FrameReader, FrameWrites, INPUT_QUEUE, Pushed, Queues, run_framed};
use crate::proto::Node;
use crate::proto::relay::channel::SecureChannel;
use crate::proto::relay::client::{CONNECT_TIMEOUT, RelayId};
use crate::proto::relay::connections::RelayCommand;
use crate::proto::relay::server::CloseReason;
use crate::wire::tcp::{ClientHandshake, ServerHandshake, TcpPacket};

/// What connection tasks tell the node's task.
#[derive(Debug)]
pub enum ClientInput {
    /// The relay's handshake: the node answers with the session (or `None`
    /// to give up).
    Handshake {
        /// Which connection.
        relay: RelayId,
        /// The relay's 96 bytes.
        response: ServerHandshake,
        /// Where the session goes.
        reply: oneshot::Sender<Option<SecureChannel>>,
    },
    /// A packet from the relay, or what was wrong with it.
    Packet {
        /// Which connection.
        relay: RelayId,
        /// The packet.
        packet: Result<TcpPacket, &'static str>,
    },
    /// The connection ended or could not be made.
    Closed {
        /// Which.
        relay: RelayId,
    },
}

/// The relay connections' part of the node's task.
#[derive(Debug)]
pub struct RelayClientSide {
    inputs: mpsc::Receiver<ClientInput>,
    input_tx: mpsc::Sender<ClientInput>,
    conns: HashMap<RelayId, ConnHandle>,
    cancel: CancellationToken,
    /// Where the connections' tasks run (the owner's runtime, so that
    /// their sealing and opening does not share the node's thread).
    runtime: tokio::runtime::Handle,
}

impl RelayClientSide {
    /// No connections yet; they run on `runtime` and end when `cancel` fires.
    pub fn new(cancel: CancellationToken, runtime: tokio::runtime::Handle) -> Self {
        let (input_tx, inputs) = mpsc::channel(INPUT_QUEUE);
        Self { inputs, input_tx, conns: HashMap::new(), cancel, runtime }
    }

    /// The next report. Never ends: the side holds a sender itself.
    pub async fn recv(&mut self) -> Option<ClientInput> {
        self.inputs.recv().await
    }

    /// A report that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<ClientInput> {
        self.inputs.try_recv().ok()
    }

    /// Applies a report to the node.
    pub fn handle(&mut self, node: &mut Node, now: Instant, input: ClientInput) {
        match input {
            ClientInput::Handshake { relay, response, reply } => {
                let channel = node.relay_handshake(now, relay, &response);
                let _ = reply.send(channel);
            }
            ClientInput::Packet { relay, packet } => node.relay_packet(now, relay, packet),
            ClientInput::Closed { relay } => {
                if self.conns.remove(&relay).is_some() {
                    node.relay_closed(now, relay);
                }
            }
        }
    }

    /// Carries out what the node wants done.
    pub fn flush(&mut self, node: &mut Node, now: Instant) {
        while let Some(command) = node.poll_relay_command(now) {
            match command {
                RelayCommand::Connect { relay, addr, hello } => self.connect(relay, addr, hello),
                RelayCommand::Send { relay, packet } => {
                    let Some(handle) = self.conns.get(&relay) else { continue };
                    match handle.push(packet) {
                        Pushed::Queued | Pushed::Closed => {}
                        Pushed::ControlFull => {
                            tracing::debug!(relay, "relay connection does not drain: closing");
                            self.close(relay);
                            node.relay_closed(now, relay);
                        }
                        Pushed::DataFull => node.relay_dropped(),
                    }
                }
                RelayCommand::Close { relay } => self.close(relay),
            }
        }
    }

    fn close(&mut self, relay: RelayId) {
        if let Some(handle) = self.conns.remove(&relay) {
            handle.cancel();
        }
    }

    fn connect(&mut self, relay: RelayId, addr: SocketAddr, hello: ClientHandshake) {
        let (handle, queues) = ConnHandle::new(&self.cancel);
        let task = Connection { relay, addr, hello, inputs: self.input_tx.clone(), queues };
        self.runtime.spawn(task.run(handle.token()));
        self.conns.insert(relay, handle);
    }
}

struct Connection {
    relay: RelayId,
    addr: SocketAddr,
    hello: ClientHandshake,
    inputs: mpsc::Sender<ClientInput>,
    queues: Queues,
}

impl Connection {
    async fn run(self, cancel: CancellationToken) {
        let relay = self.relay;
        let inputs = self.inputs.clone();
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.serve() => {}
        }
        let _ = inputs.send(ClientInput::Closed { relay }).await;
    }

    async fn serve(self) {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(relay = self.relay, addr = %self.addr, error = %e, "cannot connect to the TCP relay");
                return;
            }
            Err(_) => return,
        };
        let _ = stream.set_nodelay(true);
        let mut hello = Vec::with_capacity(self.hello.encoded_len());
        self.hello.encode(&mut hello);
        let mut answer = [0u8; ServerHandshake::LEN];
        let exchanged = tokio::time::timeout_at(deadline, async {
            stream.write_all(&hello).await?;
            stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(())
        })
        .await;
        if !matches!(exchanged, Ok(Ok(()))) {
            return;
        }
        let Ok(response) = ServerHandshake::decode(answer.to_vec()) else { return };
        let (reply, session) = oneshot::channel();
        if self.inputs.send(ClientInput::Handshake { relay: self.relay, response, reply }).await.is_err() {
            return;
        }
        let Ok(Some(channel)) = session.await else { return };
        let Self { relay, inputs, queues, .. } = self;
        // Relays may be libtoxcore's: no segment may end inside a frame.
        run_framed(stream, channel, queues, FrameWrites::Aligned, |frames| read_frames(frames, relay, inputs)).await;
    }
}

async fn read_frames(mut frames: FrameReader, relay: RelayId, inputs: mpsc::Sender<ClientInput>) -> CloseReason {
    loop {
        let packet = match frames.next().await {
            Ok(packet) => packet,
            Err(reason) => return reason,
        };
        if inputs.send(ClientInput::Packet { relay, packet }).await.is_err() {
            return CloseReason::Gone;
        }
    }
}
