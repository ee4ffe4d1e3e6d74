//! What both ends of a TCP relay connection share once the handshake is
//! done: the relay's connections to its clients ([`super::relay`]) and
//! ours to relays ([`super::relay_client`]).
//!
//! The node's task holds a [`ConnHandle`] per connection: two bounded
//! queues, control packets (routing, notifications, pings, pongs) and the
//! rest, and the token that ends the connection's task. The task runs
//! [`run_framed`]: one half reads frames, opens them and decodes the
//! packets ([`FrameReader`]), the other seals what the queues hold,
//! control first, and writes it in batches.

use std::future::Future;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::proto::relay::channel::{Opener, Sealer, SecureChannel};
use crate::proto::relay::server::CloseReason;
use crate::wire::tcp::TcpPacket;
use crate::wire::tcp::frame::{FrameCodec, FrameError};

/// Control packets waiting for one connection at most; a connection that
/// lets more pile up is closed.
pub const CONTROL_QUEUE: usize = 512;
/// Other packets waiting for one connection at most; more are dropped.
pub const DATA_QUEUE: usize = 256;
/// Reports from connections (and the relay's listeners) waiting for the
/// node at most.
pub const INPUT_QUEUE: usize = 1024;
/// Bytes sealed into one write at most.
const WRITE_BATCH: usize = 64 * 1024;

/// The node's task's end of one connection.
#[derive(Debug)]
pub(super) struct ConnHandle {
    control: mpsc::Sender<TcpPacket>,
    data: mpsc::Sender<TcpPacket>,
    cancel: CancellationToken,
}

/// The connection task's end of the queues.
#[derive(Debug)]
pub(super) struct Queues {
    control: mpsc::Receiver<TcpPacket>,
    data: mpsc::Receiver<TcpPacket>,
}

/// What became of a packet handed to [`ConnHandle::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued.
    Queued,
    /// The connection's task has ended; the packet is gone.
    Closed,
    /// A control packet found its queue full: the peer does not read.
    ControlFull,
    /// Another packet found its queue full; it is dropped.
    DataFull,
}

impl ConnHandle {
    /// A handle whose token is a child of `parent`, and the queues for
    /// the connection's task.
    pub(super) fn new(parent: &CancellationToken) -> (Self, Queues) {
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (data, data_rx) = mpsc::channel(DATA_QUEUE);
        let cancel = parent.child_token();
        (Self { control, data, cancel }, Queues { control: control_rx, data: data_rx })
    }

    /// The token that ends the connection's task.
    pub(super) fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Ends the connection's task.
    pub(super) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Queues `packet` without waiting, on the control queue when it is a
    /// control packet ([`TcpPacket::is_control`]).
    pub(super) fn push(&self, packet: TcpPacket) -> Pushed {
        let control = packet.is_control();
        let queue = if control { &self.control } else { &self.data };
        match queue.try_send(packet) {
            Ok(()) => Pushed::Queued,
            Err(TrySendError::Closed(_)) => Pushed::Closed,
            Err(TrySendError::Full(_)) if control => Pushed::ControlFull,
            Err(TrySendError::Full(_)) => Pushed::DataFull,
        }
    }
}

/// Runs a connection whose handshake is done until either half ends, and
/// says why: `read` is given the frames coming in, while what the queues
/// hold is sealed and written.
pub(super) async fn run_framed<R>(
    stream: TcpStream,
    channel: SecureChannel,
    queues: Queues,
    read: impl FnOnce(FrameReader) -> R,
) -> CloseReason
where
    R: Future<Output = CloseReason>,
{
    let (sealer, opener) = channel.split();
    let (reader, writer) = stream.into_split();
    tokio::select! {
        reason = read(FrameReader::new(reader, opener)) => reason,
        reason = write_frames(writer, sealer, queues) => reason,
    }
}

/// The reading half: frames in, packets out.
#[derive(Debug)]
pub(super) struct FrameReader {
    reader: OwnedReadHalf,
    opener: Opener,
    buf: BytesMut,
    codec: FrameCodec,
}

impl FrameReader {
    fn new(reader: OwnedReadHalf, opener: Opener) -> Self {
        // Buffers grow with use: an idle connection holds little.
        Self { reader, opener, buf: BytesMut::new(), codec: FrameCodec }
    }

    /// The next packet, or what was wrong with it (a frame that opened
    /// but does not decode); `Err` when the connection is over: a bad
    /// frame length, a frame that does not open, or the stream ended.
    pub(super) async fn next(&mut self) -> Result<Result<TcpPacket, &'static str>, CloseReason> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    let Ok(plain) = self.opener.open_frame(frame) else { return Err(CloseReason::Undecryptable) };
                    return Ok(TcpPacket::decode(plain).map_err(|_| "a packet that does not decode"));
                }
                Ok(None) => {}
                Err(FrameError::BadLength(_)) => return Err(CloseReason::BadFrame),
                Err(FrameError::Io(_)) => return Err(CloseReason::Gone),
            }
            if self.buf.capacity() - self.buf.len() < 2048 {
                self.buf.reserve(4096);
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(CloseReason::Gone),
                Ok(_) => {}
            }
        }
    }
}

/// The writing half: seals what the queues hold, control first, into
/// writes of up to [`WRITE_BATCH`] bytes.
async fn write_frames(mut writer: OwnedWriteHalf, mut sealer: Sealer, queues: Queues) -> CloseReason {
    let Queues { mut control, mut data } = queues;
    let mut out = BytesMut::new();
    loop {
        let packet = tokio::select! {
            biased;
            Some(packet) = control.recv() => packet,
            Some(packet) = data.recv() => packet,
            else => return CloseReason::Gone,
        };
        // A packet too long for a frame cannot come from the relay's
        // routing (it only forwards what fitted in one); skip it.
        let _ = sealer.seal_packet(&packet, &mut out);
        while out.len() < WRITE_BATCH {
            let Ok(packet) = control.try_recv().or_else(|_| data.try_recv()) else { break };
            let _ = sealer.seal_packet(&packet, &mut out);
        }
        if writer.write_all(&out).await.is_err() {
            return CloseReason::Gone;
        }
        if out.capacity() > WRITE_BATCH {
            // A burst is over: do not keep its buffer for an idle connection.
            out = BytesMut::new();
        } else {
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tokio::net::TcpListener;

    use super::*;
    use crate::crypto::KeyPair;
    use crate::proto::relay::channel::{accept_handshake, start_handshake};
    use crate::wire::tcp::{ConnectionId, Data, Ping};

    fn data(n: u8) -> TcpPacket {
        TcpPacket::Data(Data::new(ConnectionId::from_byte(16).unwrap(), Bytes::from(vec![n])).unwrap())
    }

    /// The two ends of one session.
    fn channels() -> (SecureChannel, SecureChannel) {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (relay, client) = (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let (hello, pending) = start_handshake(&mut rng, &client, relay.public()).unwrap();
        let accepted = accept_handshake(&mut rng, &relay, &hello).unwrap();
        (pending.finish(&accepted.response).unwrap(), accepted.channel)
    }

    #[test]
    fn queues_are_bounded_and_control_has_its_own() {
        let parent = CancellationToken::new();
        let (handle, queues) = ConnHandle::new(&parent);
        for n in 0..DATA_QUEUE {
            assert_eq!(handle.push(data(n as u8)), Pushed::Queued);
        }
        assert_eq!(handle.push(data(0)), Pushed::DataFull);
        for n in 0..CONTROL_QUEUE {
            assert_eq!(handle.push(TcpPacket::Ping(Ping::new(n as u64 + 1))), Pushed::Queued);
        }
        assert_eq!(handle.push(TcpPacket::Ping(Ping::new(1))), Pushed::ControlFull);
        drop(queues);
        assert_eq!(handle.push(data(0)), Pushed::Closed);
        assert_eq!(handle.push(TcpPacket::Ping(Ping::new(1))), Pushed::Closed);
    }

    #[test]
    fn the_token_ends_with_the_handle_or_its_parent() {
        let parent = CancellationToken::new();
        let (a, _qa) = ConnHandle::new(&parent);
        let (b, _qb) = ConnHandle::new(&parent);
        a.cancel();
        assert!(a.token().is_cancelled() && !b.token().is_cancelled() && !parent.is_cancelled());
        parent.cancel();
        assert!(b.token().is_cancelled());
    }

    /// What was queued before the task started crosses a loopback socket,
    /// control packets first, and opens at the other end; once the handle
    /// is dropped and the queues drained, the writing half ends the
    /// connection, and the reading half at the other end sees it go.
    #[tokio::test]
    async fn control_goes_first_and_frames_arrive_open() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (ours, (theirs, _)) = (ours.unwrap(), theirs.unwrap());
        let (our_channel, their_channel) = channels();

        let parent = CancellationToken::new();
        let (handle, queues) = ConnHandle::new(&parent);
        for n in 0..3 {
            assert_eq!(handle.push(data(n)), Pushed::Queued);
        }
        for id in 1..=2 {
            assert_eq!(handle.push(TcpPacket::Ping(Ping::new(id))), Pushed::Queued);
        }
        drop(handle);
        let writer = tokio::spawn(run_framed(ours, our_channel, queues, |_| std::future::pending()));

        let (their_handle, their_queues) = ConnHandle::new(&parent);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader = run_framed(theirs, their_channel, their_queues, move |mut frames| async move {
            loop {
                match frames.next().await {
                    Ok(packet) => tx.send(packet).unwrap(),
                    Err(reason) => return reason,
                }
            }
        });
        let ten_s = std::time::Duration::from_secs(10);
        assert_eq!(tokio::time::timeout(ten_s, writer).await.unwrap().unwrap(), CloseReason::Gone);
        assert_eq!(tokio::time::timeout(ten_s, reader).await.unwrap(), CloseReason::Gone);
        drop(their_handle);
        let mut got = Vec::new();
        while let Ok(packet) = rx.try_recv() {
            got.push(packet.unwrap());
        }
        let ping = |id| TcpPacket::Ping(Ping::new(id));
        assert_eq!(got, [ping(1), ping(2), data(0), data(1), data(2)]);
    }
}
