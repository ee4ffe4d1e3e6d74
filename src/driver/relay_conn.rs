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
//!
//! Writing to a libtoxcore peer (a c-toxcore relay, or a c-toxcore client
//! of our relay) needs care: its TCP code reads a frame only once the
//! whole frame is in the socket (`FIONREAD`), and leaves a partial one
//! where it is. The kernel charges the receive buffer for whole socket
//! buffers, which on the receiving side grow by coalescing what arrives;
//! a partial frame left at the end of a large one can keep the buffer's
//! memory at its limit with a few hundred bytes unread, so the segment
//! that would complete the frame is dropped, and the connection stops for
//! good (seen through tox-bootstrapd: 160 bytes queued in 126 KB of
//! receive memory, our retransmissions dropped). [`FrameWrites::Aligned`]
//! therefore writes whole frames in pieces of at most one segment, each
//! ending its socket buffer (`MSG_EOR`): every TCP segment then carries
//! whole frames, what the peer has received always ends at a frame's end,
//! and it reads everything it holds.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
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
/// Pieces handed to the kernel in one `sendmmsg` at most.
const ALIGNED_PIECES: usize = 64;
/// The segment size assumed when the socket does not say (IPv4 on an
/// Ethernet MTU, with TCP timestamps).
const DEFAULT_MSS: usize = 1448;

/// How a connection puts its frames into the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameWrites {
    /// Frames back to back, in writes of up to 64 KiB: fewest system
    /// calls, for peers that read whatever has arrived (ours).
    Batched,
    /// Whole frames in pieces of at most one segment, each ending its
    /// socket buffer, so that no segment ends inside a frame (for
    /// libtoxcore's readers; see the module's documentation).
    Aligned,
}

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
    writes: FrameWrites,
    read: impl FnOnce(FrameReader) -> R,
) -> CloseReason
where
    R: Future<Output = CloseReason>,
{
    let (sealer, opener) = channel.split();
    let (reader, writer) = stream.into_split();
    tokio::select! {
        reason = read(FrameReader::new(reader, opener)) => reason,
        reason = write_frames(writer, sealer, queues, writes) => reason,
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
/// batches of up to [`WRITE_BATCH`] bytes, written as `writes` says.
async fn write_frames(
    mut writer: OwnedWriteHalf,
    mut sealer: Sealer,
    queues: Queues,
    writes: FrameWrites,
) -> CloseReason {
    let Queues { mut control, mut data } = queues;
    let mut out = BytesMut::new();
    // Where each frame of the batch ends (aligned writes only).
    let mut ends: Vec<usize> = Vec::new();
    let mut mss = DEFAULT_MSS;
    let mut batches = 0u32;
    loop {
        let packet = tokio::select! {
            biased;
            Some(packet) = control.recv() => packet,
            Some(packet) = data.recv() => packet,
            else => return CloseReason::Gone,
        };
        // A packet too long for a frame cannot come from the relay's
        // routing (it only forwards what fitted in one); skip it.
        if sealer.seal_packet(&packet, &mut out).is_ok() {
            ends.push(out.len());
        }
        while out.len() < WRITE_BATCH {
            let Ok(packet) = control.try_recv().or_else(|_| data.try_recv()) else { break };
            if sealer.seal_packet(&packet, &mut out).is_ok() {
                ends.push(out.len());
            }
        }
        let written = match writes {
            FrameWrites::Batched => writer.write_all(&out).await,
            FrameWrites::Aligned => {
                // The segment size can change with the path's MTU: look
                // again now and then.
                if batches % 64 == 0 {
                    mss = socket2::SockRef::from(writer.as_ref())
                        .tcp_mss()
                        .map_or(DEFAULT_MSS, |m| (m as usize).clamp(536, 65_535));
                }
                batches = batches.wrapping_add(1);
                write_aligned(writer.as_ref(), &out, &pieces(&ends, mss)).await
            }
        };
        if written.is_err() {
            return CloseReason::Gone;
        }
        ends.clear();
        if out.capacity() > WRITE_BATCH {
            // A burst is over: do not keep its buffer for an idle connection.
            out = BytesMut::new();
        } else {
            out.clear();
        }
    }
}

/// Cuts a batch of frames ending at `ends` into pieces of whole frames of
/// at most `mss` bytes (a longer frame is a piece of its own); returns
/// where each piece ends.
fn pieces(ends: &[usize], mss: usize) -> Vec<usize> {
    let mut cuts = Vec::with_capacity(ends.len());
    let mut start = 0;
    let mut prev = 0;
    for &end in ends {
        if end - start > mss && prev > start {
            cuts.push(prev);
            start = prev;
        }
        prev = end;
    }
    if prev > start {
        cuts.push(prev);
    }
    cuts
}

/// Writes `buf` in the pieces ending at `cuts`, each with `MSG_EOR` so
/// that the kernel starts a new socket buffer (and so a new segment) after
/// it, many pieces per `sendmmsg`. Waits while the socket is full.
async fn write_aligned(stream: &TcpStream, buf: &[u8], cuts: &[usize]) -> io::Result<()> {
    // The next byte to send and the index of the piece it is in.
    let (mut at, mut piece) = (0usize, 0usize);
    while piece < cuts.len() {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || send_pieces(stream.as_raw_fd(), buf, at, &cuts[piece..]));
        let lens = match sent {
            Ok(lens) => lens,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        for len in lens {
            let end = cuts[piece];
            at += len;
            if at < end {
                // Partly taken: the rest goes first next time.
                break;
            }
            piece += 1;
        }
    }
    Ok(())
}

/// One `sendmmsg` of up to [`ALIGNED_PIECES`] pieces: the first from `at`
/// to `cuts[0]`, then from each cut to the next. Returns the bytes taken
/// of each piece sent (the last may be partial); `WouldBlock` when none.
fn send_pieces(fd: i32, buf: &[u8], at: usize, cuts: &[usize]) -> io::Result<Vec<usize>> {
    let count = cuts.len().min(ALIGNED_PIECES);
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(count);
    let mut start = at;
    for &end in &cuts[..count] {
        let piece = &buf[start..end];
        iovecs.push(libc::iovec { iov_base: piece.as_ptr() as *mut libc::c_void, iov_len: piece.len() });
        start = end;
    }
    let mut msgs: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is a valid empty message.
            let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg
        })
        .collect();
    // SAFETY: each message points at one iovec over `buf`, all alive for
    // the call; the kernel writes only the `msg_len` fields.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_EOR | libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(msgs[..sent as usize].iter().map(|m| m.msg_len as usize).collect())
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
    fn pieces_hold_whole_frames_of_at_most_one_segment() {
        // Frames ending at 10, 20, ..., 100: pieces of at most 35 bytes.
        let ends: Vec<usize> = (1..=10).map(|i| i * 10).collect();
        assert_eq!(pieces(&ends, 35), [30, 60, 90, 100]);
        // A frame longer than a segment is a piece of its own.
        assert_eq!(pieces(&[10, 60, 70], 35), [10, 60, 70]);
        assert_eq!(pieces(&[50], 35), [50]);
        assert_eq!(pieces(&[], 35), Vec::<usize>::new());
    }

    /// Reads frames as c-toxcore's TCP code does: once per round (its
    /// daemon sleeps 30 ms between rounds), and a frame only when all of it
    /// is in the socket (`FIONREAD`), leaving a partial one where it is.
    /// Returns the frames read once `frames` came, or how many by `limit`.
    fn read_like_libtoxcore(stream: std::net::TcpStream, frames: usize, limit: std::time::Duration) -> usize {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let started = std::time::Instant::now();
        let mut stream = stream;
        let (mut count, mut next_len) = (0usize, 0usize);
        let mut buf = vec![0u8; 4096];
        while count < frames && started.elapsed() < limit {
            std::thread::sleep(std::time::Duration::from_millis(30));
            loop {
                let mut queued: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
                let queued = queued.max(0) as usize;
                if next_len == 0 {
                    if queued < 2 {
                        break;
                    }
                    stream.read_exact(&mut buf[..2]).unwrap();
                    next_len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    continue;
                }
                if queued < next_len {
                    break;
                }
                stream.read_exact(&mut buf[..next_len]).unwrap();
                next_len = 0;
                count += 1;
            }
        }
        count
    }

    /// A bulk upload into a reader like libtoxcore's, whose receive buffer
    /// is small and fixed (as tox-bootstrapd's stays): every frame arrives,
    /// since no segment ends inside a frame. (With batched writes this
    /// reader stops for good within the first megabytes.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aligned_writes_never_leave_a_libtoxcore_reader_a_partial_frame() {
        let listener = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.set_recv_buffer_size(128 * 1024).unwrap();
        listener.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        listener.listen(1).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // Segments of an Ethernet path, as between namespaces.
        client.set_tcp_mss(1448).unwrap();
        client.connect(&addr.into()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let ours = TcpStream::from_std(client.into()).unwrap();
        let (our_channel, _their_channel) = channels();

        const FRAMES: usize = 20_000;
        let reader =
            std::thread::spawn(move || read_like_libtoxcore(server.into(), FRAMES, std::time::Duration::from_secs(20)));
        let parent = CancellationToken::new();
        let (handle, queues) = ConnHandle::new(&parent);
        let writer =
            tokio::spawn(run_framed(ours, our_channel, queues, FrameWrites::Aligned, |_| std::future::pending()));
        let payload = Bytes::from(vec![7u8; 1400]);
        let packet = TcpPacket::Data(Data::new(ConnectionId::from_byte(16).unwrap(), payload).unwrap());
        let mut queued = 0;
        while queued < FRAMES {
            match handle.push(packet.clone()) {
                Pushed::Queued => queued += 1,
                Pushed::DataFull => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                // The reader gave up.
                _ => break,
            }
        }
        let read = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
        writer.abort();
        assert_eq!(read, FRAMES, "the reader got stuck on a partial frame");
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
        let writer =
            tokio::spawn(run_framed(ours, our_channel, queues, FrameWrites::Aligned, |_| std::future::pending()));

        let (their_handle, their_queues) = ConnHandle::new(&parent);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let reader =
            run_framed(theirs, their_channel, their_queues, FrameWrites::Batched, move |mut frames| async move {
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
