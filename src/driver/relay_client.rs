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

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::relay::{CONTROL_QUEUE, DATA_QUEUE, INPUT_QUEUE, write_frames};
use crate::proto::Node;
use crate::proto::relay::channel::{Opener, SecureChannel};
use crate::proto::relay::client::{CONNECT_TIMEOUT, RelayId};
use crate::proto::relay::connections::RelayCommand;
use crate::wire::tcp::frame::FrameCodec;
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

#[derive(Debug)]
struct ConnHandle {
    control: mpsc::Sender<TcpPacket>,
    data: mpsc::Sender<TcpPacket>,
    cancel: CancellationToken,
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
                    let control = packet.is_control();
                    let queue = if control { &handle.control } else { &handle.data };
                    match queue.try_send(packet) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                        Err(mpsc::error::TrySendError::Full(_)) if control => {
                            tracing::debug!(relay, "relay connection does not drain: closing");
                            self.close(relay);
                            node.relay_closed(now, relay);
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => node.relay_dropped(),
                    }
                }
                RelayCommand::Close { relay } => self.close(relay),
            }
        }
    }

    fn close(&mut self, relay: RelayId) {
        if let Some(handle) = self.conns.remove(&relay) {
            handle.cancel.cancel();
        }
    }

    fn connect(&mut self, relay: RelayId, addr: SocketAddr, hello: ClientHandshake) {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (data, data_rx) = mpsc::channel(DATA_QUEUE);
        let cancel = self.cancel.child_token();
        let task = Connection { relay, addr, hello, inputs: self.input_tx.clone(), control_rx, data_rx };
        self.runtime.spawn(task.run(cancel.clone()));
        self.conns.insert(relay, ConnHandle { control, data, cancel });
    }
}

struct Connection {
    relay: RelayId,
    addr: SocketAddr,
    hello: ClientHandshake,
    inputs: mpsc::Sender<ClientInput>,
    control_rx: mpsc::Receiver<TcpPacket>,
    data_rx: mpsc::Receiver<TcpPacket>,
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
        let (sealer, opener) = channel.split();
        let (reader, writer) = stream.into_split();
        let Self { relay, inputs, control_rx, data_rx, .. } = self;
        tokio::select! {
            () = read_frames(reader, opener, relay, inputs) => {}
            _ = write_frames(writer, sealer, control_rx, data_rx) => {}
        }
    }
}

async fn read_frames(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut opener: Opener,
    relay: RelayId,
    inputs: mpsc::Sender<ClientInput>,
) {
    let mut buf = BytesMut::new();
    let mut codec = FrameCodec;
    loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            let packet = match opener.open_frame(frame) {
                Ok(plain) => TcpPacket::decode(plain).map_err(|_| "a packet that does not decode"),
                Err(_) => return,
            };
            if inputs.send(ClientInput::Packet { relay, packet }).await.is_err() {
                return;
            }
        }
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(4096);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
