//! The lossless send and receive buffers of a net_crypto session.
//!
//! Packets are numbered with a `u32` that wraps; a buffer spans at most
//! 32768 numbers (CRYPTO_PACKET_BUFFER_SIZE). The receive buffer's start is
//! the cumulative acknowledgement every data packet carries; request
//! packets name the holes after it, and everything between the start and
//! the last hole they name has arrived (a selective acknowledgement).

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;

/// Numbers a buffer spans at most.
pub const BUFFER_SIZE: u32 = 32768;

/// `a - b` as a distance forward from `b`, wrapping.
fn ahead(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b)
}

#[derive(Debug, Clone)]
struct SendSlot {
    payload: Bytes,
    sent: Option<Instant>,
    retransmitted: bool,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acked {
    /// Packets newly known to have arrived.
    pub count: usize,
    /// When the oldest of them was sent, if it was sent only once (a clean
    /// round-trip sample).
    pub sample_sent: Option<Instant>,
}

/// Sent (or queued) lossless packets not yet acknowledged.
#[derive(Debug, Default)]
pub struct SendBuffer {
    start: u32,
    slots: VecDeque<Option<SendSlot>>,
    /// The first packet never sent.
    next_new: u32,
    /// Packets to send again, by number.
    resend: BTreeSet<u32>,
    in_flight: usize,
}

impl SendBuffer {
    /// The first unacknowledged number.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// One past the last number used.
    pub fn end(&self) -> u32 {
        self.start.wrapping_add(self.slots.len() as u32)
    }

    /// Packets held (sent or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Packets sent and not yet acknowledged or known lost.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Numbers for diagnostics: start, next never sent, end, resends queued.
    pub fn debug_numbers(&self) -> (u32, u32, u32, usize) {
        (self.start, self.next_new, self.end(), self.resend.len())
    }

    /// The first few slots and resends, for diagnostics.
    pub fn debug_head(&self) -> String {
        let slots: Vec<String> = self
            .slots
            .iter()
            .take(12)
            .enumerate()
            .map(|(i, s)| match s {
                None => format!("{}:-", self.start.wrapping_add(i as u32)),
                Some(s) => {
                    format!("{}:{}", self.start.wrapping_add(i as u32), if s.sent.is_some() { "f" } else { "q" })
                }
            })
            .collect();
        let resend: Vec<u32> = self.resend.iter().take(8).copied().collect();
        format!("slots {slots:?} resend {resend:?}")
    }

    /// One past the last packet ever sent: what our data packets tell the
    /// peer exists (so its requests name only packets that went out).
    pub fn sent_end(&self) -> u32 {
        self.next_new
    }

    /// Whether packets wait to go out (new or to resend).
    pub fn has_pending(&self) -> bool {
        !self.resend.is_empty() || self.next_new != self.end()
    }

    /// Queues a payload; returns its number, or `None` when `limit`
    /// packets are already held.
    pub fn push(&mut self, payload: Bytes, limit: usize) -> Option<u32> {
        if self.slots.len() >= limit.min(BUFFER_SIZE as usize) {
            return None;
        }
        let number = self.end();
        self.slots.push_back(Some(SendSlot { payload, sent: None, retransmitted: false }));
        Some(number)
    }

    fn slot_mut(&mut self, number: u32) -> Option<&mut SendSlot> {
        let index = ahead(number, self.start) as usize;
        self.slots.get_mut(index)?.as_mut()
    }

    /// The next packet to send, resends first; marks it sent at `now`.
    pub fn next_to_send(&mut self, now: Instant) -> Option<(u32, Bytes)> {
        while let Some(number) = self.resend.pop_first() {
            let Some(slot) = self.slot_mut(number) else { continue };
            slot.sent = Some(now);
            slot.retransmitted = true;
            let payload = slot.payload.clone();
            self.in_flight += 1;
            return Some((number, payload));
        }
        if self.next_new == self.end() {
            return None;
        }
        let number = self.next_new;
        self.next_new = self.next_new.wrapping_add(1);
        let slot = self.slot_mut(number)?;
        slot.sent = Some(now);
        let payload = slot.payload.clone();
        self.in_flight += 1;
        Some((number, payload))
    }

    fn forget(&mut self, slot: SendSlot, acked: &mut Acked, number: u32) {
        if slot.sent.is_some() {
            self.in_flight -= 1;
        }
        self.resend.remove(&number);
        acked.count += 1;
        if acked.sample_sent.is_none() && !slot.retransmitted {
            acked.sample_sent = slot.sent;
        }
    }

    /// Whether `number` is a receive-buffer start the peer can have now: not
    /// behind ours (a stale, reordered packet) and not past our end.
    pub fn valid_ack(&self, number: u32) -> bool {
        ahead(number, self.start) as usize <= self.slots.len()
    }

    /// The peer has everything before `number` (its receive buffer start).
    pub fn ack_until(&mut self, number: u32) -> Acked {
        let mut acked = Acked::default();
        let count = ahead(number, self.start);
        if count == 0 || count as usize > self.slots.len() {
            return acked;
        }
        for _ in 0..count {
            let done = self.start;
            if let Some(Some(slot)) = self.slots.pop_front() {
                self.forget(slot, &mut acked, done);
            }
            self.start = self.start.wrapping_add(1);
        }
        if ahead(self.next_new, self.start) > self.slots.len() as u32 {
            self.next_new = self.start;
        }
        acked
    }

    /// A request packet: `requested` are missing at the peer, and every
    /// other packet before `walked_until` has arrived. Requested packets
    /// sent before `resend_before` are queued to go again; returns what was
    /// acknowledged, how many packets were found lost and the send time of
    /// the newest of them.
    pub fn on_request(
        &mut self,
        requested: &[u32],
        walked_until: u32,
        resend_before: Instant,
    ) -> (Acked, usize, Option<Instant>) {
        let mut acked = Acked::default();
        let mut lost = 0;
        let mut lost_sent = None;
        let walk = ahead(walked_until, self.start).min(self.slots.len() as u32);
        let mut wanted = requested.iter().copied().peekable();
        for offset in 0..walk {
            let number = self.start.wrapping_add(offset);
            while wanted.peek().is_some_and(|&w| ahead(w, self.start) < offset) {
                wanted.next();
            }
            let is_wanted = wanted.peek() == Some(&number);
            let index = offset as usize;
            if is_wanted {
                if let Some(Some(slot)) = self.slots.get_mut(index)
                    && let Some(sent) = slot.sent
                    && sent < resend_before
                {
                    slot.sent = None;
                    self.in_flight -= 1;
                    self.resend.insert(number);
                    lost += 1;
                    lost_sent = Some(lost_sent.map_or(sent, |l: Instant| l.max(sent)));
                }
            } else if let Some(slot) = self.slots.get_mut(index).and_then(Option::take) {
                self.forget(slot, &mut acked, number);
            }
        }
        // Drop acknowledged slots at the front.
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.start = self.start.wrapping_add(1);
        }
        if ahead(self.next_new, self.start) > self.slots.len() as u32 {
            self.next_new = self.start;
        }
        (acked, lost, lost_sent)
    }

    /// The oldest packet in flight and when it was sent.
    pub fn oldest_in_flight(&self) -> Option<(u32, Instant)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let sent = s.as_ref()?.sent?;
            Some((self.start.wrapping_add(i as u32), sent))
        })
    }

    /// The newest packet in flight.
    pub fn newest_in_flight(&self) -> Option<u32> {
        self.slots.iter().enumerate().rev().find_map(|(i, s)| {
            s.as_ref()?.sent?;
            Some(self.start.wrapping_add(i as u32))
        })
    }

    /// Queues a packet in flight to go again (a retransmission timeout).
    pub fn mark_lost(&mut self, number: u32) {
        if let Some(slot) = self.slot_mut(number)
            && slot.sent.take().is_some()
        {
            self.in_flight -= 1;
            self.resend.insert(number);
        }
    }
}

/// Received lossless packets waiting for the ones before them.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    start: u32,
    slots: VecDeque<Option<Bytes>>,
    /// Slots holding a packet: fewer than `slots.len()` means holes.
    held: usize,
}

/// What inserting a packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored (possibly completing a run ready to deliver).
    Stored,
    /// Already received, or before the start: ignored.
    Duplicate,
    /// Too far ahead of the start: dropped.
    OutOfWindow,
}

impl RecvBuffer {
    /// The first number not yet delivered: the cumulative acknowledgement.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// One past the highest number known to exist.
    pub fn end(&self) -> u32 {
        self.start.wrapping_add(self.slots.len() as u32)
    }

    /// Stores packet `number`.
    pub fn insert(&mut self, number: u32, payload: Bytes) -> Insert {
        let offset = ahead(number, self.start);
        if offset >= BUFFER_SIZE {
            // Behind the start (wrapped) or too far ahead.
            return if ahead(self.start, number) <= BUFFER_SIZE { Insert::Duplicate } else { Insert::OutOfWindow };
        }
        let index = offset as usize;
        if index == self.slots.len() {
            // The usual case: the next packet in order.
            self.slots.push_back(Some(payload));
            self.held += 1;
            return Insert::Stored;
        }
        if index > self.slots.len() {
            self.slots.resize(index + 1, None);
        }
        if self.slots[index].is_some() {
            return Insert::Duplicate;
        }
        self.slots[index] = Some(payload);
        self.held += 1;
        Insert::Stored
    }

    /// The peer says packets up to `end` exist: the ones not here are missing.
    pub fn extend_to(&mut self, end: u32) {
        let offset = ahead(end, self.start);
        if offset <= BUFFER_SIZE && offset as usize > self.slots.len() {
            self.slots.resize(offset as usize, None);
        }
    }

    /// The next packet in order, if it has arrived.
    pub fn pop_ready(&mut self) -> Option<Bytes> {
        match self.slots.front() {
            Some(Some(_)) => {
                self.start = self.start.wrapping_add(1);
                self.held -= 1;
                self.slots.pop_front().flatten()
            }
            _ => None,
        }
    }

    /// Numbers missing between the start and the end, in order.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        // Without holes there is nothing to look for in a long buffer.
        let scan = if self.has_holes() { self.slots.len() } else { 0 };
        self.slots
            .iter()
            .take(scan)
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| self.start.wrapping_add(i as u32))
    }

    /// For diagnostics: start, end, the first missing numbers.
    pub fn debug_head(&self) -> String {
        let missing: Vec<u32> = self.missing().take(8).collect();
        format!("recv {}..{} missing {missing:?}", self.start, self.end())
    }

    /// Whether anything is missing.
    pub fn has_holes(&self) -> bool {
        self.held < self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn b(n: u8) -> Bytes {
        Bytes::from(vec![160, n])
    }

    #[test]
    fn send_buffer_acks_sacks_and_resends() {
        let t0 = crate::proto::test_epoch();
        let mut s = SendBuffer::default();
        for i in 0..6 {
            assert_eq!(s.push(b(i), 100), Some(u32::from(i)));
        }
        assert_eq!(s.push(b(9), 6), None, "the limit holds");
        for i in 0..6 {
            assert_eq!(s.next_to_send(t0).unwrap().0, i);
        }
        assert_eq!(s.in_flight(), 6);
        assert!(s.next_to_send(t0).is_none());

        let acked = s.ack_until(2);
        assert_eq!(acked, Acked { count: 2, sample_sent: Some(t0) });
        // The peer misses 3; 2 and 4 arrived; 5 is past its walk.
        let later = t0 + Duration::from_millis(100);
        let (acked, lost, lost_sent) = s.on_request(&[3], 5, later);
        assert_eq!(acked.count, 2);
        assert_eq!((lost, lost_sent), (1, Some(t0)));
        assert_eq!(s.in_flight(), 1, "only 5 is still in flight");
        assert_eq!(s.next_to_send(later).unwrap().0, 3, "the hole goes first");
        assert_eq!(s.start(), 3);
        // A report about a packet sent just now does not resend it.
        let (_, lost, lost_sent) = s.on_request(&[3], 4, later);
        assert_eq!((lost, lost_sent), (0, None));
        let acked = s.ack_until(6);
        assert_eq!(acked.count, 2);
        assert_eq!(acked.sample_sent, Some(t0), "packet 5 was sent once, 3 twice");
        assert!(s.is_empty() && s.in_flight() == 0);
    }

    #[test]
    fn numbers_wrap() {
        let t0 = crate::proto::test_epoch();
        let mut s = SendBuffer { start: u32::MAX - 1, next_new: u32::MAX - 1, ..Default::default() };
        for i in 0..4 {
            s.push(b(i), 10);
        }
        assert_eq!(s.end(), 2);
        while s.next_to_send(t0).is_some() {}
        assert_eq!(s.ack_until(1).count, 3);
        assert_eq!(s.start(), 1);

        let mut r = RecvBuffer { start: u32::MAX, ..RecvBuffer::default() };
        assert_eq!(r.insert(0, b(1)), Insert::Stored);
        assert_eq!(r.missing().collect::<Vec<_>>(), [u32::MAX]);
        assert_eq!(r.insert(u32::MAX, b(0)), Insert::Stored);
        assert_eq!(r.pop_ready(), Some(b(0)));
        assert_eq!(r.pop_ready(), Some(b(1)));
        assert_eq!(r.start(), 1);
        assert_eq!(r.insert(0, b(1)), Insert::Duplicate);
    }

    #[test]
    fn recv_buffer_orders_and_reports_holes() {
        let mut r = RecvBuffer::default();
        assert_eq!(r.insert(2, b(2)), Insert::Stored);
        assert_eq!(r.insert(2, b(2)), Insert::Duplicate);
        assert!(r.pop_ready().is_none());
        r.extend_to(5);
        assert_eq!(r.missing().collect::<Vec<_>>(), [0, 1, 3, 4]);
        r.insert(0, b(0));
        r.insert(1, b(1));
        assert_eq!((r.pop_ready(), r.pop_ready(), r.pop_ready()), (Some(b(0)), Some(b(1)), Some(b(2))));
        assert!(r.pop_ready().is_none());
        assert_eq!(r.insert(3 + BUFFER_SIZE, b(9)), Insert::OutOfWindow);
        assert!(r.has_holes());
    }

    proptest::proptest! {
        /// The count behind `has_holes` agrees with a scan of the slots
        /// through any sequence of inserts, extensions and deliveries.
        #[test]
        fn has_holes_matches_a_scan(ops in proptest::collection::vec((0u8..3, 0u32..40), 0..200)) {
            let mut r = RecvBuffer::default();
            for (op, n) in ops {
                match op {
                    0 => {
                        r.insert(r.start().wrapping_add(n), b(n as u8));
                    }
                    1 => r.extend_to(r.start().wrapping_add(n)),
                    _ => {
                        r.pop_ready();
                    }
                }
                proptest::prop_assert_eq!(r.has_holes(), r.missing().next().is_some());
            }
        }
    }
}
