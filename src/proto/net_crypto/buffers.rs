//! The lossless send and receive buffers of a net_crypto session.
//!
//! Packets are numbered with a `u32` that wraps; a buffer spans at most
//! 32768 numbers (CRYPTO_PACKET_BUFFER_SIZE). The receive buffer's start is
//! the cumulative acknowledgement every data packet carries; request
//! packets name the holes after it, and everything between the start and
//! the last hole they name has arrived (a selective acknowledgement).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::congestion::SentState;

/// Numbers a buffer spans at most.
pub const BUFFER_SIZE: u32 = 32768;

/// `a - b` as a distance forward from `b`, wrapping.
fn ahead(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b)
}

#[derive(Debug, Clone)]
struct SendSlot {
    payload: Bytes,
    /// Set while the packet is in flight: what the congestion controller
    /// recorded when it went out.
    sent: Option<SentState>,
    /// Counted in `in_flight`: sent, and not yet known to have left the
    /// network (arrived, lost, or past what the peer's reports can describe).
    in_pipe: bool,
    retransmitted: bool,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acked {
    /// Packets newly known to have arrived (in flight or queued for a resend).
    pub count: usize,
    /// The send state of the most recently sent of them: the delivery-rate
    /// sample and the round count come from it.
    pub newest: Option<SentState>,
    /// When the most recently sent of them that went only once was sent (a
    /// clean round-trip sample).
    pub rtt_sent: Option<Instant>,
    /// Of them, packets we had taken for lost: queued to go again, or sent
    /// again too recently for this to be the resend's acknowledgement.
    /// They were reordered, not lost.
    pub spurious: usize,
}

impl Acked {
    fn note(&mut self, state: SentState, retransmitted: bool) {
        if self.newest.is_none_or(|n| state.sent >= n.sent) {
            self.newest = Some(state);
        }
        if !retransmitted && self.rtt_sent.is_none_or(|t| state.sent >= t) {
            self.rtt_sent = Some(state.sent);
        }
    }
}

/// What a request packet told us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// What it acknowledged.
    pub acked: Acked,
    /// Packets it showed lost, now queued to go again.
    pub lost: usize,
}

/// When a packet the peer reports missing counts as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossTiming {
    /// Once a packet sent this much later has arrived.
    pub reorder: Duration,
    /// Once this long has passed since it was sent.
    pub expired: Duration,
    /// An acknowledgement of a resent packet this long after the resend
    /// is taken as the resend's own.
    pub min_rtt: Duration,
}

/// Sent (or queued) lossless packets not yet acknowledged.
///
/// Loss detection is by time, as RACK (RFC 8985) does it: a packet the
/// peer reports missing counts as lost once a packet sent more than the
/// reordering window after it has arrived. A report that predates a resend
/// therefore never resends it again, however long the round trip, and a
/// packet reordered by less than the window is not resent at all. A packet
/// still reported missing a retransmission timeout after it went (a resend
/// that was lost too, with nothing sent after it) is lost as well.
#[derive(Debug, Default)]
pub struct SendBuffer {
    start: u32,
    slots: VecDeque<Option<SendSlot>>,
    /// The first packet never sent.
    next_new: u32,
    /// Packets to send again, by number.
    resend: BTreeSet<u32>,
    in_flight: usize,
    /// When the most recently sent packet known to have arrived was sent.
    rack_sent: Option<Instant>,
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

    /// Packets queued and never sent.
    pub fn unsent(&self) -> usize {
        ahead(self.end(), self.next_new) as usize
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
        self.slots.push_back(Some(SendSlot { payload, sent: None, in_pipe: false, retransmitted: false }));
        Some(number)
    }

    fn slot_mut(&mut self, number: u32) -> Option<&mut SendSlot> {
        let index = ahead(number, self.start) as usize;
        self.slots.get_mut(index)?.as_mut()
    }

    /// The next packet to send, resends first; marks it in flight with
    /// `state`.
    pub fn next_to_send(&mut self, state: SentState) -> Option<(u32, Bytes)> {
        while let Some(number) = self.resend.pop_first() {
            let Some(slot) = self.slot_mut(number) else { continue };
            slot.sent = Some(state);
            slot.in_pipe = true;
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
        slot.sent = Some(state);
        slot.in_pipe = true;
        let payload = slot.payload.clone();
        self.in_flight += 1;
        Some((number, payload))
    }

    /// A packet arrived: forget it. One queued for a resend arrived after
    /// all (it was late, not lost); with no send state it tells nothing of
    /// rates or round trips.
    fn forget(&mut self, slot: SendSlot, acked: &mut Acked, number: u32, now: Instant, min_rtt: Duration) {
        acked.count += 1;
        if self.resend.remove(&number) {
            acked.spurious += 1;
        }
        let Some(state) = slot.sent else { return };
        if slot.retransmitted && now.saturating_duration_since(state.sent) < min_rtt {
            acked.spurious += 1;
        }
        if slot.in_pipe {
            self.in_flight -= 1;
        }
        acked.note(state, slot.retransmitted);
        // A resent packet's acknowledgement may be the first copy's: it
        // advances the loss clock only when it came at least a minimum
        // round trip after the resend.
        if (!slot.retransmitted || now.saturating_duration_since(state.sent) >= min_rtt)
            && self.rack_sent.is_none_or(|t| state.sent > t)
        {
            self.rack_sent = Some(state.sent);
        }
    }

    /// Whether `number` is a receive-buffer start the peer can have now: not
    /// behind ours (a stale, reordered packet) and not past our end.
    pub fn valid_ack(&self, number: u32) -> bool {
        ahead(number, self.start) as usize <= self.slots.len()
    }

    /// The peer has everything before `number` (its receive buffer start).
    pub fn ack_until(&mut self, number: u32, now: Instant, min_rtt: Duration) -> Acked {
        let mut acked = Acked::default();
        let count = ahead(number, self.start);
        if count == 0 || count as usize > self.slots.len() {
            return acked;
        }
        for _ in 0..count {
            let done = self.start;
            if let Some(Some(slot)) = self.slots.pop_front() {
                self.forget(slot, &mut acked, done, now, min_rtt);
            }
            self.start = self.start.wrapping_add(1);
        }
        if ahead(self.next_new, self.start) > self.slots.len() as u32 {
            self.next_new = self.start;
        }
        acked
    }

    /// A request packet: `requested` are missing at the peer, and every
    /// other packet before `walked_until` has arrived. A requested packet
    /// in flight is queued to go again once a packet sent more than
    /// `timing.reorder` after it has arrived, or `timing.expired` after
    /// it was sent.
    ///
    /// A report that names holes says nothing of the packets after its
    /// walk (up to 254 past the last hole, or all of them when it filled
    /// its packet, `truncated`, with more holes than one request can name):
    /// the peer acknowledges them only once the holes are filled. Those sent
    /// `timing.expired` ago, or (when truncated) before a packet the report
    /// showed delivered, have left the network (arrived, or lost and named
    /// by a later report), so they stop counting as in flight: else the
    /// window would stay full of them and the holes could not be resent.
    pub fn on_request(
        &mut self,
        requested: &[u32],
        walked_until: u32,
        truncated: bool,
        now: Instant,
        timing: LossTiming,
    ) -> Report {
        let min_rtt = timing.min_rtt;
        let mut report = Report::default();
        let walk = ahead(walked_until, self.start).min(self.slots.len() as u32);
        let mut wanted = requested.iter().copied().peekable();
        let mut holes = Vec::new();
        for offset in 0..walk {
            let number = self.start.wrapping_add(offset);
            while wanted.peek().is_some_and(|&w| ahead(w, self.start) < offset) {
                wanted.next();
            }
            if wanted.peek() == Some(&number) {
                holes.push(offset as usize);
            } else if let Some(slot) = self.slots.get_mut(offset as usize).and_then(Option::take) {
                self.forget(slot, &mut report.acked, number, now, min_rtt);
            }
        }
        let rack = self.rack_sent;
        let lost = |sent: Instant| rack.is_some_and(|r| sent + timing.reorder <= r) || sent + timing.expired <= now;
        for index in holes {
            if let Some(Some(slot)) = self.slots.get_mut(index)
                && slot.sent.is_some_and(|s| lost(s.sent))
            {
                slot.sent = None;
                if std::mem::take(&mut slot.in_pipe) {
                    self.in_flight -= 1;
                }
                self.resend.insert(self.start.wrapping_add(index as u32));
                report.lost += 1;
            }
        }
        if truncated || !requested.is_empty() {
            // Packets past the walk are described by no report until the
            // holes before them are filled.
            let left = |sent: Instant| {
                sent + timing.expired <= now || (truncated && rack.is_some_and(|r| sent + timing.reorder <= r))
            };
            for slot in self.slots.iter_mut().skip(walk as usize).flatten() {
                if slot.in_pipe && slot.sent.is_some_and(|s| left(s.sent)) {
                    slot.in_pipe = false;
                    self.in_flight -= 1;
                }
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
        report
    }

    /// The oldest packet in flight and when it was sent.
    pub fn oldest_in_flight(&self) -> Option<(u32, Instant)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let sent = s.as_ref()?.sent?.sent;
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

    /// Queues every packet in flight to go again (the path they took
    /// stopped working); returns how many.
    pub fn mark_all_lost(&mut self) -> usize {
        let mut count = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.sent.take().is_some() {
                if std::mem::take(&mut slot.in_pipe) {
                    self.in_flight -= 1;
                }
                self.resend.insert(self.start.wrapping_add(i as u32));
                count += 1;
            }
        }
        count
    }

    /// Queues a packet in flight to go again (a retransmission timeout).
    pub fn mark_lost(&mut self, number: u32) {
        if let Some(slot) = self.slot_mut(number)
            && slot.sent.take().is_some()
        {
            if std::mem::take(&mut slot.in_pipe) {
                self.in_flight -= 1;
            }
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
    use super::*;
    use crate::proto::net_crypto::congestion::Congestion;

    fn b(n: u8) -> Bytes {
        Bytes::from(vec![160, n])
    }

    /// A send state for a packet sent at `sent`.
    fn at(cc: &mut Congestion, sent: Instant) -> SentState {
        cc.on_send(sent, 0)
    }

    #[test]
    fn all_in_flight_can_be_marked_lost_at_once() {
        let t0 = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        let mut s = SendBuffer::default();
        for i in 0..6 {
            s.push(b(i), 100);
        }
        for _ in 0..4 {
            s.next_to_send(at(&mut cc, t0)).unwrap();
        }
        let acked = s.ack_until(1, t0 + Duration::from_millis(5), Duration::ZERO);
        assert_eq!((acked.count, s.in_flight()), (1, 3));
        assert_eq!(s.mark_all_lost(), 3);
        assert_eq!(s.in_flight(), 0);
        // The three go again, in order, before the two never sent.
        let order: Vec<u32> = (0..5).map_while(|_| s.next_to_send(at(&mut cc, t0)).map(|(n, _)| n)).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
        assert_eq!(s.mark_all_lost(), 5);
    }

    #[test]
    fn send_buffer_acks_sacks_and_resends_what_later_packets_overtook() {
        let t0 = crate::proto::test_epoch();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut cc = Congestion::default();
        let mut s = SendBuffer::default();
        for i in 0..8 {
            assert_eq!(s.push(b(i), 100), Some(u32::from(i)));
        }
        assert_eq!(s.push(b(9), 8), None, "the limit holds");
        // Packet i goes out at i * 10 ms.
        for i in 0..8 {
            assert_eq!(s.next_to_send(at(&mut cc, ms(10 * i))).unwrap().0, i as u32);
        }
        assert_eq!(s.in_flight(), 8);
        assert!(s.next_to_send(at(&mut cc, ms(80))).is_none());

        let min_rtt = Duration::from_millis(5);
        let timing = |reorder: u64| LossTiming {
            reorder: Duration::from_millis(reorder),
            expired: Duration::from_millis(500),
            min_rtt,
        };
        let acked = s.ack_until(2, ms(100), min_rtt);
        assert_eq!((acked.count, acked.rtt_sent), (2, Some(ms(10))), "the newest of them gives the sample");
        // The peer misses 3 and 5; 2 and 4 arrived; 6 and 7 are past its
        // walk. 3 was overtaken by 4, sent 10 ms later: lost. 5 was not
        // overtaken by anything known to have arrived: not yet.
        let report = s.on_request(&[3, 5], 5, false, ms(100), timing(5));
        assert_eq!((report.acked.count, report.lost), (2, 1));
        assert_eq!(report.acked.newest.map(|n| n.sent), Some(ms(40)));
        assert_eq!(s.in_flight(), 3, "5, 6 and 7 are still in flight");
        assert_eq!(s.next_to_send(at(&mut cc, ms(100))).unwrap().0, 3, "the hole goes first");
        assert_eq!(s.start(), 3);
        // A reordering window wider than the gap spares a packet; 3's
        // resend has not arrived, and nothing sent after it has.
        let report = s.on_request(&[3, 5], 7, false, ms(110), timing(15));
        assert_eq!((report.acked.count, report.lost), (1, 0), "6 (sent 10 ms after 5) arrived");
        // A later report, once 7 arrived, still names 5 and now 3 again:
        // 5 is lost; 3 went again at 100 ms, after everything that arrived,
        // so the report predates the resend's arrival and it stays.
        let report = s.on_request(&[3, 5], 8, false, ms(120), timing(5));
        assert_eq!((report.acked.count, report.lost), (1, 1));
        assert_eq!(s.debug_numbers().3, 1, "only 5 is queued again");
        // Nothing sent after 3's resend arrives, but the reports go on
        // naming it: half a second on, it counts as lost again.
        assert_eq!(s.next_to_send(at(&mut cc, ms(120))).unwrap().0, 5);
        let report = s.on_request(&[3, 5], 8, false, ms(599), timing(5));
        assert_eq!(report.lost, 0);
        let report = s.on_request(&[3, 5], 8, false, ms(600), timing(5));
        assert_eq!(report.lost, 1);
        assert_eq!(s.next_to_send(at(&mut cc, ms(600))).unwrap().0, 3);
        let acked = s.ack_until(8, ms(650), min_rtt);
        assert_eq!(acked.count, 2, "3 and 5, both in flight again");
        assert_eq!(acked.rtt_sent, None, "3 went twice: no round-trip sample");
        assert!(s.is_empty() && s.in_flight() == 0 && !s.has_pending());
    }

    #[test]
    fn numbers_wrap() {
        let t0 = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        let mut s = SendBuffer { start: u32::MAX - 1, next_new: u32::MAX - 1, ..Default::default() };
        for i in 0..4 {
            s.push(b(i), 10);
        }
        assert_eq!(s.end(), 2);
        while s.next_to_send(at(&mut cc, t0)).is_some() {}
        assert_eq!(s.ack_until(1, t0, Duration::ZERO).count, 3);
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
