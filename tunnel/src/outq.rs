//! The frames waiting to go to one peer: a control lane and one lane per
//! tunnel, taken in turn.
//!
//! Frames that belong to a tunnel's byte stream (TCP data, TCP_FIN, RESET)
//! wait in that tunnel's lane, in order, at most [`LANE_FRAMES`] of them;
//! everything else (WINDOW credit, PING and PONG, tunnel requests and their
//! answers) waits in the control lane, which goes first. The carrier takes
//! the control lane's frames, then one frame from each tunnel with frames
//! waiting, round robin. So a tunnel that sends little (an interactive
//! session) waits behind one frame of each busy tunnel, not behind their
//! backlog, and credit for the other direction is never stuck behind data.
//! An ACKTUNNEL in the control lane still goes out before its tunnel's first
//! bytes: the control lane is always emptied first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::frame::kind;

/// Frames one tunnel may have waiting.
pub(crate) const LANE_FRAMES: usize = 32;
/// Frames the control lane holds.
pub(crate) const CONTROL_FRAMES: usize = 64;

#[derive(Debug, Default)]
struct Lane {
    frames: VecDeque<Bytes>,
    /// Wakes the tunnel's sender when its lane has room again.
    room: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    control: VecDeque<Bytes>,
    lanes: HashMap<u16, Lane>,
    /// Tunnels with frames waiting, in the order they are served.
    turn: VecDeque<u16>,
}

/// One peer's outgoing frames.
#[derive(Debug)]
pub(crate) struct OutQueue {
    state: Mutex<State>,
    /// Wakes the carrier: a frame is waiting.
    ready: Notify,
    /// Wakes senders to the control lane.
    control_room: Notify,
    /// Cancelled when the peer's session ends.
    cancel: CancellationToken,
}

/// The session ended: the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended;

/// The tunnel whose byte stream `frame` belongs to, if any: its lane.
fn lane_of(frame: &[u8]) -> Option<u16> {
    let kind = u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let tunnel = u16::from_be_bytes([*frame.get(4)?, *frame.get(5)?]);
    matches!(kind, kind::TCP | kind::TCP_FIN | kind::RESET).then_some(tunnel)
}

impl OutQueue {
    /// An empty queue for a session that ends when `cancel` does.
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Self { state: Mutex::default(), ready: Notify::new(), control_room: Notify::new(), cancel }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves queues of frames, which are
        // consistent at every step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an encoded frame in its lane, waiting while the lane is full.
    pub(crate) async fn push(&self, frame: Bytes) -> Result<(), Ended> {
        let lane = lane_of(&frame);
        let mut frame = Some(frame);
        loop {
            if self.cancel.is_cancelled() {
                return Err(Ended);
            }
            let room = {
                let mut state = self.lock();
                let State { control, lanes, turn } = &mut *state;
                match lane {
                    None if control.len() < CONTROL_FRAMES => {
                        control.extend(frame.take());
                        None
                    }
                    None => Some(RoomFor::Control),
                    Some(tunnel) => {
                        let entry = lanes.entry(tunnel).or_default();
                        if entry.frames.len() < LANE_FRAMES {
                            if entry.frames.is_empty() {
                                turn.push_back(tunnel);
                            }
                            entry.frames.extend(frame.take());
                            None
                        } else {
                            Some(RoomFor::Lane(Arc::clone(&entry.room)))
                        }
                    }
                }
            };
            let wait = match &room {
                None => {
                    self.ready.notify_one();
                    return Ok(());
                }
                Some(RoomFor::Control) => self.control_room.notified(),
                Some(RoomFor::Lane(notify)) => notify.notified(),
            };
            // A permit stored since the check (`notify_one`) wakes this at once.
            tokio::select! {
                () = wait => {}
                () = self.cancel.cancelled() => return Err(Ended),
            }
        }
    }

    /// The next frame, if one is waiting.
    pub(crate) fn try_pop(&self) -> Option<Bytes> {
        let mut state = self.lock();
        if let Some(frame) = state.control.pop_front() {
            drop(state);
            self.control_room.notify_one();
            return Some(frame);
        }
        let tunnel = state.turn.pop_front()?;
        let State { lanes, turn, .. } = &mut *state;
        let lane = lanes.get_mut(&tunnel)?;
        let frame = lane.frames.pop_front()?;
        let room = Arc::clone(&lane.room);
        if lane.frames.is_empty() {
            // Nobody waits on an empty lane: it goes, and comes back with
            // the tunnel's next frame.
            lanes.remove(&tunnel);
        } else {
            turn.push_back(tunnel);
        }
        drop(state);
        room.notify_one();
        Some(frame)
    }

    /// The next frame, waiting for one; `None` once the session ended.
    pub(crate) async fn pop(&self) -> Option<Bytes> {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            if let Some(frame) = self.try_pop() {
                return Some(frame);
            }
            tokio::select! {
                () = self.ready.notified() => {}
                () = self.cancel.cancelled() => return None,
            }
        }
    }
}

enum RoomFor {
    Control,
    Lane(Arc<Notify>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn data(tunnel: u16, byte: u8) -> Bytes {
        Frame::Tcp { tunnel, data: Bytes::from(vec![byte; 10]) }.to_bytes().unwrap()
    }

    #[tokio::test]
    async fn control_first_then_tunnels_in_turn_each_in_order() {
        let q = OutQueue::new(CancellationToken::new());
        for i in 0..3 {
            q.push(data(1, i)).await.unwrap();
        }
        q.push(data(2, 10)).await.unwrap();
        let window = Frame::Window { tunnel: 1, increment: 5 }.to_bytes().unwrap();
        q.push(window.clone()).await.unwrap();
        q.push(Frame::TcpFin { tunnel: 2 }.to_bytes().unwrap()).await.unwrap();
        let order: Vec<Bytes> = std::iter::from_fn(|| q.try_pop()).collect();
        let expected =
            [window, data(1, 0), data(2, 10), data(1, 1), Frame::TcpFin { tunnel: 2 }.to_bytes().unwrap(), data(1, 2)];
        assert_eq!(order, expected);
    }

    #[tokio::test]
    async fn a_full_lane_waits_without_holding_up_others() {
        let q = Arc::new(OutQueue::new(CancellationToken::new()));
        for i in 0..LANE_FRAMES {
            q.push(data(1, i as u8)).await.unwrap();
        }
        let blocked = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.push(data(1, 99)).await }
        });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished(), "the lane is full");
        // Another tunnel goes straight in, and out second.
        q.push(data(2, 7)).await.unwrap();
        assert_eq!(q.try_pop(), Some(data(1, 0)));
        assert_eq!(q.try_pop(), Some(data(2, 7)));
        blocked.await.unwrap().unwrap();
        let rest: Vec<Bytes> = std::iter::from_fn(|| q.try_pop()).collect();
        assert_eq!(rest.len(), LANE_FRAMES);
        assert_eq!(rest.last(), Some(&data(1, 99)));
    }

    #[tokio::test]
    async fn the_end_of_the_session_wakes_everyone() {
        let cancel = CancellationToken::new();
        let q = Arc::new(OutQueue::new(cancel.clone()));
        for i in 0..LANE_FRAMES {
            q.push(data(3, i as u8)).await.unwrap();
        }
        let sender = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.push(data(3, 0)).await }
        });
        let empty = Arc::new(OutQueue::new(cancel.clone()));
        let receiver = tokio::spawn({
            let empty = Arc::clone(&empty);
            async move { empty.pop().await }
        });
        tokio::task::yield_now().await;
        cancel.cancel();
        assert_eq!(sender.await.unwrap(), Err(Ended));
        assert_eq!(receiver.await.unwrap(), None);
    }
}
