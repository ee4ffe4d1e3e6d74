//! A tunnel's incoming bytes on their way to the local stream: the data of
//! the peer's TCP frames as they arrived (no copy), bounded in bytes.
//!
//! The peer actor pushes each frame's data; the tunnel's pump takes
//! everything queued at once and writes it with vectored writes, so a burst
//! of frames costs one system call (and one wake-up of the local reader)
//! instead of one per frame, and its bytes are never copied on the way.
//! One pusher and one taker per queue: the peer actor and the pump.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

/// The queue was closed (TCP_FIN): no more data is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    /// Bytes pushed and not yet reported written.
    queued: usize,
    closed: bool,
}

/// A bounded queue of byte chunks.
#[derive(Debug)]
pub(crate) struct Inbound {
    state: Mutex<State>,
    /// Wakes the taker: data or the end.
    data: Notify,
    /// Wakes the pusher: room.
    room: Notify,
    capacity: usize,
}

impl Inbound {
    /// A queue holding up to `capacity` bytes (a chunk always fits into an
    /// empty queue, whatever its size).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { state: Mutex::default(), data: Notify::new(), room: Notify::new(), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `data`, waiting while it would not fit.
    pub(crate) async fn push(&self, data: Bytes) -> Result<(), Closed> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(Closed);
                }
                if state.queued == 0 || state.queued + data.len() <= self.capacity {
                    state.queued += data.len();
                    state.chunks.push_back(data);
                    drop(state);
                    self.data.notify_one();
                    return Ok(());
                }
            }
            // A permit stored by `consumed` since the check wakes this at once.
            self.room.notified().await;
        }
    }

    /// No more data: the taker gets what is queued, then the end.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.data.notify_one();
        self.room.notify_one();
    }

    /// Moves every queued chunk to the end of `out`, waiting while there is
    /// none; false once the queue is closed and empty.
    pub(crate) async fn take(&self, out: &mut VecDeque<Bytes>) -> bool {
        loop {
            {
                let mut state = self.lock();
                if !state.chunks.is_empty() {
                    out.extend(state.chunks.drain(..));
                    return true;
                }
                if state.closed {
                    return false;
                }
            }
            self.data.notified().await;
        }
    }

    /// `n` bytes taken earlier were written out: they no longer count.
    pub(crate) fn consumed(&self, n: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(n);
        drop(state);
        self.room.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn chunks_come_out_in_order_then_the_end() {
        let q = Inbound::new(100);
        q.push(Bytes::from_static(b"ab")).await.unwrap();
        q.push(Bytes::from_static(b"cd")).await.unwrap();
        q.close();
        assert_eq!(q.push(Bytes::from_static(b"late")).await, Err(Closed));
        let mut out = VecDeque::new();
        assert!(q.take(&mut out).await);
        assert_eq!(out, [Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert!(!q.take(&mut out).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_holds_the_pusher_until_bytes_are_written() {
        let q = Arc::new(Inbound::new(10));
        q.push(Bytes::from(vec![1; 8])).await.unwrap();
        // 8 + 3 > 10: waits.
        let pusher = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.push(Bytes::from(vec![2; 3])).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!pusher.is_finished());
        let mut out = VecDeque::new();
        assert!(q.take(&mut out).await);
        // Taken but not written: still counted.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!pusher.is_finished());
        q.consumed(8);
        pusher.await.unwrap().unwrap();
        out.clear();
        assert!(q.take(&mut out).await);
        assert_eq!(out, [Bytes::from(vec![2; 3])]);
    }

    #[tokio::test]
    async fn a_chunk_larger_than_the_capacity_fits_into_an_empty_queue() {
        let q = Inbound::new(4);
        q.push(Bytes::from(vec![0; 100])).await.unwrap();
        let mut out = VecDeque::new();
        assert!(q.take(&mut out).await);
        assert_eq!(out[0].len(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn the_taker_waits_for_data_and_wakes_on_close() {
        let q = Arc::new(Inbound::new(10));
        let taker = {
            let q = Arc::clone(&q);
            tokio::spawn(async move {
                let mut out = VecDeque::new();
                let first = q.take(&mut out).await;
                let second = q.take(&mut out).await;
                (first, second, out)
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!taker.is_finished());
        q.push(Bytes::from_static(b"x")).await.unwrap();
        q.close();
        let (first, second, out) = taker.await.unwrap();
        assert!(first && !second);
        assert_eq!(out, [Bytes::from_static(b"x")]);
    }

    #[tokio::test(start_paused = true)]
    async fn close_wakes_a_waiting_pusher() {
        let q = Arc::new(Inbound::new(1));
        q.push(Bytes::from_static(b"a")).await.unwrap();
        let pusher = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.push(Bytes::from_static(b"b")).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.close();
        assert_eq!(pusher.await.unwrap(), Err(Closed));
    }
}
