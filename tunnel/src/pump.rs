//! The data path of one tunnel: local stream ⇄ frames.
//!
//! Two halves run in the tunnel's task:
//! - *upstream* reads the local stream into TCP frames (at most 1365 bytes,
//!   and never more than the send credit when the peer grants one), queues
//!   them in the tunnel's lane of the peer's outgoing queue, and sends
//!   TCP_FIN at EOF;
//! - *downstream* writes the bytes the actor queued for the tunnel
//!   ([`Inbound`](crate::inbound::Inbound)) to the local stream, all that is
//!   queued at once in vectored writes, and, with flow control, returns the
//!   credit in WINDOW frames once a quarter of the window has been written
//!   out, doubling the window while the round trip limits the peer.
//!
//! Closing (PROTOCOL.md §7 and §8): with half-close negotiated, a
//! TCP_FIN ends one direction (we shut down the local write side) and the
//! tunnel ends when both directions have; errors send RESET. With a C
//! tuntox peer a TCP_FIN is a full close either way: after our FIN we only
//! flush what the peer had already sent; after theirs we stop reading.
//!
//! Fairness: each tunnel queues in a lane of its own in the peer's
//! outgoing queue ([`OutQueue`](crate::outq::OutQueue)), and the lanes are
//! served in turn, so a quiet tunnel's frame waits behind one frame of each
//! busy tunnel, not behind their backlog.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};

use crate::engine::{Gone, Opened, PeerCtx, Route};
use crate::frame::{Frame, HEADER_LEN, MAX_PAYLOAD, kind, write_header};
use crate::stats::Counters;

/// After our TCP_FIN to a C tuntox peer, how long we keep flushing what it
/// had already sent before closing the local stream.
const LINGER: Duration = Duration::from_secs(30);

/// Chunks one vectored write hands the kernel at most.
const WRITE_CHUNKS: usize = 64;

/// Size of the buffer in front of the local stream's reads: one system
/// call takes what the socket holds, up to this, and frames are cut from
/// memory (a read per 1365-byte frame cost a tenth of the process's CPU).
/// A read returns what is there and never waits for the buffer to fill.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug)]
enum Failure {
    /// Reading the local stream failed.
    LocalRead(io::Error),
    /// Writing the local stream failed.
    LocalWrite(io::Error),
    /// The peer session ended.
    PeerGone,
}

impl From<Gone> for Failure {
    fn from(_: Gone) -> Self {
        Self::PeerGone
    }
}

enum End {
    /// Both directions finished.
    Done,
    /// Local EOF, TCP_FIN sent, and the peer has no half-close.
    LocalEof,
    /// RESET received, peer lost, engine stopped.
    Aborted,
    Failed(Failure),
}

/// Runs a tunnel until it ends. `reader` and `writer` are the two halves of
/// the local stream.
pub(crate) async fn run<R, W>(opened: Opened, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let span = info_span!("tunnel", id = opened.route.connid);
    pump(opened, reader, writer).instrument(span).await;
}

async fn pump<R, W>(opened: Opened, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let Opened { route, guard, ctx } = opened;
    let abort = route.abort.clone();
    let up = upstream(&route, &ctx, reader);
    let down = downstream(&route, &ctx, writer);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        tokio::select! {
            biased;
            () = abort.cancelled() => break End::Aborted,
            r = &mut down, if !down_done => match r {
                Ok(()) => {
                    down_done = true;
                    if up_done || !route.half_close {
                        break End::Done;
                    }
                }
                Err(f) => break End::Failed(f),
            },
            r = &mut up, if !up_done => match r {
                Ok(()) => {
                    up_done = true;
                    if down_done {
                        break End::Done;
                    }
                    if !route.half_close {
                        break End::LocalEof;
                    }
                }
                Err(f) => break End::Failed(f),
            },
        }
    };
    match end {
        End::Done => debug!("tunnel finished"),
        End::Aborted => debug!("tunnel aborted"),
        End::LocalEof => {
            // The C peer closes the whole tunnel on our FIN. Flush what it
            // sent before that, then close.
            guard.unroute();
            let drain = async {
                route.close_inbound();
                tokio::select! {
                    () = abort.cancelled() => {}
                    _ = &mut down => {}
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
            debug!("tunnel finished (full close)");
        }
        End::Failed(Failure::PeerGone) => debug!("peer gone"),
        End::Failed(f) => {
            match f {
                Failure::LocalRead(e) => debug!("reading the local stream failed: {e}; telling the peer"),
                Failure::LocalWrite(e) => debug!("writing the local stream failed: {e}; telling the peer"),
                Failure::PeerGone => {}
            }
            Counters::inc(&ctx.stats.tunnels_reset);
            let _ = ctx.send_frame(&route.abort_frame()).await;
        }
    }
    drop(guard);
}

/// Local stream → TCP frames, then TCP_FIN.
async fn upstream<R: AsyncRead + Unpin>(route: &Route, ctx: &PeerCtx, reader: R) -> Result<(), Failure> {
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUF, reader);
    loop {
        let allowed = match &route.send_credit {
            Some(credit) => take_credit(credit).await?,
            None => MAX_PAYLOAD,
        };
        let mut buf = BytesMut::with_capacity(HEADER_LEN + allowed);
        buf.put_bytes(0, HEADER_LEN);
        let read = reader.read_buf(&mut (&mut buf).limit(allowed)).await;
        let n = buf.len() - HEADER_LEN;
        if let Some(credit) = &route.send_credit {
            credit.add_permits(allowed - n);
        }
        match read {
            Err(e) => return Err(Failure::LocalRead(e)),
            Ok(0) => {
                debug!("local EOF; sending TCP_FIN");
                ctx.send_frame(&Frame::TcpFin { tunnel: route.connid }).await?;
                return Ok(());
            }
            Ok(_) => {}
        }
        write_header(&mut buf, kind::TCP, route.connid, n as u16);
        Counters::add(&ctx.stats.bytes_to_peers, n as u64);
        ctx.send(buf.freeze()).await?;
    }
}

/// Waits for send credit and takes up to one frame's worth.
async fn take_credit(credit: &Semaphore) -> Result<usize, Failure> {
    credit.acquire().await.map_err(|_| Failure::PeerGone)?.forget();
    let more = credit.available_permits().min(MAX_PAYLOAD - 1);
    if more > 0
        && let Ok(permits) = credit.try_acquire_many(more as u32)
    {
        permits.forget();
        return Ok(1 + more);
    }
    Ok(1)
}

/// The tunnel's queued bytes → local stream; shuts the local write side at
/// the end. Credit goes back to the peer as the local stream takes the
/// bytes, and the window grows while the round trip limits the peer
/// ([`Autotune`]).
async fn downstream<W: AsyncWrite + Unpin>(route: &Arc<Route>, ctx: &PeerCtx, mut writer: W) -> Result<(), Failure> {
    let mut chunks = VecDeque::new();
    let mut to_credit = 0;
    let mut tune = route.recv_window.as_ref().map(|w| Autotune::new(w.window() as u64));
    loop {
        if !route.inbound.take(&mut chunks).await {
            debug!("peer finished sending; shutting down the local write side");
            let _ = writer.shutdown().await;
            return Ok(());
        }
        let n = write_chunks(&mut writer, &mut chunks).await.map_err(Failure::LocalWrite)?;
        route.inbound.consumed(n);
        if let (Some(window), Some(tune)) = (&route.recv_window, &mut tune) {
            window.unconsumed.fetch_sub(n, Ordering::AcqRel);
            to_credit += n;
            let now = Instant::now();
            tune.received(window.received.load(Ordering::Acquire), now);
            // Once the peer has finished sending, credit is of no use.
            if to_credit >= window.threshold() && !route.fin_received.load(Ordering::Relaxed) {
                if tune.window_limits(now) {
                    let grown = window.grow();
                    if grown > 0 {
                        Counters::inc(&ctx.stats.windows_grown);
                        debug!(
                            tunnel = route.connid,
                            window = window.window(),
                            "the round trip limits the peer; window grown"
                        );
                    }
                    to_credit += grown;
                }
                let increment = u32::try_from(to_credit).unwrap_or(u32::MAX);
                ctx.send_frame(&Frame::Window { tunnel: route.connid, increment }).await?;
                to_credit -= increment as usize;
                tune.granted(u64::from(increment), now);
            }
        }
    }
}

/// Receive-window autotuning, from the receiver's side alone. Each WINDOW
/// frame extends the credit to a new limit; the first byte beyond the old
/// limit cannot leave the peer before that frame arrives, so the time from
/// sending the frame to receiving that byte is at least a round trip, and
/// about one when the peer was waiting for credit: the smallest such
/// sample is the round trip. Credit goes back every quarter window; when it
/// does so more often than every half round trip, the peer sends a whole
/// window in less than two round trips, so the window, not the path or the
/// local reader, limits it, and the window doubles. A slow local reader
/// returns credit slowly and never grows it.
#[derive(Debug)]
struct Autotune {
    /// Credit granted in all (the first window and every increment).
    granted: u64,
    /// Limits granted before a WINDOW frame and when it went, oldest first.
    pending: VecDeque<(u64, Instant)>,
    rtt: Option<Duration>,
    last_credit: Option<Instant>,
}

/// WINDOW frames remembered for round-trip samples at most.
const RTT_SAMPLES_PENDING: usize = 64;

impl Autotune {
    fn new(window: u64) -> Self {
        Self { granted: window, pending: VecDeque::new(), rtt: None, last_credit: None }
    }

    /// `received` stream bytes have arrived by `now`.
    fn received(&mut self, received: u64, now: Instant) {
        while let Some(&(limit, sent)) = self.pending.front() {
            if received <= limit {
                break;
            }
            self.pending.pop_front();
            let sample = now.saturating_duration_since(sent);
            self.rtt = Some(self.rtt.map_or(sample, |r| r.min(sample)));
        }
    }

    /// Whether the credit about to go back at `now` follows the last
    /// quicker than half a round trip.
    fn window_limits(&self, now: Instant) -> bool {
        match (self.rtt, self.last_credit) {
            (Some(rtt), Some(last)) => now.saturating_duration_since(last) < rtt / 2,
            _ => false,
        }
    }

    /// `increment` more credit went out at `now`.
    fn granted(&mut self, increment: u64, now: Instant) {
        if self.pending.len() < RTT_SAMPLES_PENDING {
            self.pending.push_back((self.granted, now));
        }
        self.granted += increment;
        self.last_credit = Some(now);
    }
}

/// Writes every chunk, [`WRITE_CHUNKS`] per vectored write, and returns the
/// bytes written.
async fn write_chunks<W: AsyncWrite + Unpin>(writer: &mut W, chunks: &mut VecDeque<Bytes>) -> io::Result<usize> {
    let mut total = 0;
    while !chunks.is_empty() {
        let mut slices = [IoSlice::new(&[]); WRITE_CHUNKS];
        let count = chunks.len().min(WRITE_CHUNKS);
        for (slice, chunk) in slices.iter_mut().zip(chunks.iter()) {
            *slice = IoSlice::new(chunk);
        }
        let mut written = writer.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        total += written;
        while written > 0 {
            let Some(front) = chunks.front_mut() else { break };
            if front.len() <= written {
                written -= front.len();
                chunks.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    writer.flush().await?;
    Ok(total)
}
