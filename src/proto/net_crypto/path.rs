//! Which way a session's packets go: direct UDP or the TCP relays.
//!
//! c-toxcore's rule is the base: direct while a UDP packet from the peer
//! came within [`UDP_DIRECT_TIMEOUT`] (or when no relay reaches the peer),
//! with a small packet tried over UDP now and then while on a relay so
//! that a direct path that starts working is found. That rule alone turns
//! a path that fails in one direction into a black hole: the peer's UDP
//! still arrives (a NAT keeps admitting replies for a while after it
//! stopped passing our packets out), so we keep sending into a path that
//! loses everything, for as long as the peer's probes keep coming. So a
//! direct path must keep proving itself, and one that failed is not taken
//! again at once:
//!
//! - **Probes** go every [`PROBE_INTERVAL`] while on a relay, over UDP
//!   only (a fresh acknowledgement), so the peer finds the direct path
//!   within a second of it working; since a probe never also goes through
//!   the relay, a data packet that arrives through a relay was sent there
//!   on purpose.
//! - **Failure**: on direct UDP with a relay to fall back to, the path has
//!   failed when nothing came over UDP for [`UDP_SILENCE`] while we had
//!   packets in flight, or for [`UDP_SILENCE_IDLE`] at all (a peer sends at
//!   least a packet a second), or when the peer still sends through a
//!   relay [`PEER_CONFIRM`] after we went direct (our UDP does not reach
//!   it, or it would have followed).
//! - **Hold-off**: after a failure the relay is kept until a UDP packet
//!   from the peer comes after it, and for a hold-off that starts at
//!   [`HOLDOFF_MIN`] and doubles with each failure in a row, up to
//!   [`HOLDOFF_MAX`]; a direct path that holds for [`HOLDOFF_RESET`]
//!   resets it. A path that works one way only is retried now and then,
//!   not chased.

use std::time::{Duration, Instant};

/// A direct path counts as working this long after a packet arrived on it
/// (c-toxcore's UDP_DIRECT_TIMEOUT).
pub const UDP_DIRECT_TIMEOUT: Duration = Duration::from_secs(8);
/// While on a relay, a probe goes over UDP this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// On direct UDP with packets in flight, this long without a UDP packet
/// from the peer means the path failed.
pub const UDP_SILENCE: Duration = Duration::from_secs(1);
/// On direct UDP, this long without a UDP packet from the peer means the
/// path failed even with nothing in flight: an established peer (ours or
/// c-toxcore's) sends at least one packet a second.
pub const UDP_SILENCE_IDLE: Duration = Duration::from_secs(2);
/// The peer has this long after we went direct to follow; a data packet
/// through a relay after that means our UDP does not reach it.
pub const PEER_CONFIRM: Duration = Duration::from_secs(1);
/// The first hold-off after a failed direct path.
pub const HOLDOFF_MIN: Duration = Duration::from_secs(2);
/// The longest hold-off.
pub const HOLDOFF_MAX: Duration = Duration::from_secs(64);
/// A direct path that works this long resets the hold-off.
pub const HOLDOFF_RESET: Duration = Duration::from_secs(30);

/// The way a session's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Direct UDP.
    Udp,
    /// Through the TCP relays.
    Tcp,
}

/// One session's path choice.
#[derive(Debug, Clone, Default)]
pub struct PathChoice {
    /// When a packet from the peer last came over UDP.
    last_udp: Option<Instant>,
    /// When a data packet from the peer last came through a relay.
    last_tcp: Option<Instant>,
    /// The path in use, and since when.
    current: Option<(PathKind, Instant)>,
    /// When the direct path last failed: it is taken again only after a
    /// UDP packet from the peer came after that, and the hold-off is over.
    failed_at: Option<Instant>,
    /// No direct path before this (after a failure).
    holdoff_until: Option<Instant>,
    /// The last hold-off (it doubles with each failure in a row).
    holdoff: Duration,
    /// When a probe last went.
    last_probe: Option<Instant>,
    /// Direct paths given up so far.
    failures: u64,
    /// Whether a relay reached the peer at the last choice: only then can
    /// a silent direct path fail (and is its silence worth a timer).
    relay: bool,
}

impl PathChoice {
    /// A packet from the peer came over UDP.
    pub fn heard_udp(&mut self, now: Instant) {
        self.last_udp = Some(now);
    }

    /// A data packet from the peer came through a relay.
    pub fn heard_tcp(&mut self, now: Instant) {
        self.last_tcp = Some(now);
    }

    /// Whether a UDP packet from the peer came within [`UDP_DIRECT_TIMEOUT`].
    pub fn heard_udp_lately(&self, now: Instant) -> bool {
        self.last_udp.is_some_and(|t| now < t + UDP_DIRECT_TIMEOUT)
    }

    /// The path in use and since when (`None` before the first choice).
    pub fn current(&self) -> Option<(PathKind, Instant)> {
        self.current
    }

    /// Direct paths given up so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Chooses the path for what goes out at `now`: `tcp` says whether a
    /// relay reaches the peer, `in_flight` whether we wait for the peer's
    /// acknowledgements. Returns the path and whether it changed (not on
    /// the first choice).
    pub fn choose(&mut self, now: Instant, tcp: bool, in_flight: bool) -> (PathKind, bool) {
        self.relay = tcp;
        let path = if !tcp {
            PathKind::Udp
        } else if !self.heard_udp_lately(now)
            || self.holdoff_until.is_some_and(|t| now < t)
            || self.failed_at.is_some_and(|f| self.last_udp.is_none_or(|u| u <= f))
        {
            PathKind::Tcp
        } else if let Some((PathKind::Udp, since)) = self.current
            && self.failed(now, since, in_flight)
        {
            self.failures += 1;
            self.failed_at = Some(now);
            self.holdoff = (self.holdoff * 2).clamp(HOLDOFF_MIN, HOLDOFF_MAX);
            self.holdoff_until = Some(now + self.holdoff);
            PathKind::Tcp
        } else {
            PathKind::Udp
        };
        let changed = match self.current {
            Some((old, _)) if old == path => false,
            old => {
                self.current = Some((path, now));
                old.is_some()
            }
        };
        if let Some((PathKind::Udp, since)) = self.current
            && now >= since + HOLDOFF_RESET
        {
            self.holdoff = Duration::ZERO;
        }
        (path, changed)
    }

    /// Whether the direct path we took at `since` has failed by `now`.
    fn failed(&self, now: Instant, since: Instant, in_flight: bool) -> bool {
        let silence = if in_flight { UDP_SILENCE } else { UDP_SILENCE_IDLE };
        let silent = self.last_udp.is_none_or(|t| now >= t + silence);
        let peer_on_relay = self.last_tcp.is_some_and(|t| t >= since + PEER_CONFIRM);
        silent || peer_on_relay
    }

    /// Whether a probe should go over UDP now (on a relay, once per
    /// [`PROBE_INTERVAL`]); notes that it went.
    pub fn probe_due(&mut self, now: Instant) -> bool {
        if self.current.is_some_and(|(p, _)| p == PathKind::Udp) {
            return false;
        }
        if self.last_probe.is_some_and(|t| now < t + PROBE_INTERVAL) {
            return false;
        }
        self.last_probe = Some(now);
        true
    }

    /// When a direct path would count as silent (for the session's timer;
    /// none without a relay to fall back to, where silence changes nothing
    /// and a timer in the past would only spin).
    pub fn next_silence_check(&self, in_flight: bool) -> Option<Instant> {
        if !self.relay {
            return None;
        }
        let silence = if in_flight { UDP_SILENCE } else { UDP_SILENCE_IDLE };
        match self.current {
            Some((PathKind::Udp, _)) => self.last_udp.map(|t| t + silence),
            _ => None,
        }
    }

    /// When the next probe is due (on a relay), for the session's timer.
    pub fn next_probe(&self, now: Instant) -> Option<Instant> {
        match self.current {
            Some((PathKind::Tcp, _)) => Some(self.last_probe.map_or(now, |t| t + PROBE_INTERVAL)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn without_a_relay_it_is_always_udp() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        assert_eq!(p.choose(t0, false, true), (PathKind::Udp, false));
        assert_eq!(p.choose(t0 + secs(60.0), false, true), (PathKind::Udp, false));
        assert!(!p.probe_due(t0 + secs(61.0)), "no probes on UDP");
    }

    #[test]
    fn a_silent_peer_without_a_relay_sets_no_timer() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        p.heard_udp(t0);
        assert_eq!(p.choose(t0 + secs(5.0), false, true), (PathKind::Udp, false));
        // Silent for 5 s: nothing to fail over to, so no wake-up (one in
        // the past would have the session's timer fire again and again).
        assert_eq!(p.next_silence_check(true), None);
        assert_eq!(p.next_silence_check(false), None);
        // With a relay, the silence is checked.
        assert_eq!(p.choose(t0 + secs(0.5), true, true), (PathKind::Udp, false));
        assert_eq!(p.next_silence_check(true), Some(t0 + UDP_SILENCE));
    }

    #[test]
    fn a_relay_until_udp_is_heard_then_direct() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        assert_eq!(p.choose(t0, true, false), (PathKind::Tcp, false));
        assert!(p.probe_due(t0));
        assert!(!p.probe_due(t0 + secs(0.5)));
        assert!(p.probe_due(t0 + secs(1.0)), "a probe a second");
        assert_eq!(p.next_probe(t0 + secs(1.2)), Some(t0 + secs(2.0)));
        p.heard_udp(t0 + secs(1.1));
        assert_eq!(p.choose(t0 + secs(1.1), true, true), (PathKind::Udp, true));
        assert_eq!(p.current(), Some((PathKind::Udp, t0 + secs(1.1))));
        // The peer's relayed packets still in flight do not matter...
        p.heard_tcp(t0 + secs(1.3));
        p.heard_udp(t0 + secs(1.5));
        assert_eq!(p.choose(t0 + secs(1.5), true, true), (PathKind::Udp, false));
        // ...and once nothing comes over UDP for 2 s, even with nothing in
        // flight, the relay takes over again.
        assert_eq!(p.choose(t0 + secs(3.4), true, false), (PathKind::Udp, false));
        assert_eq!(p.choose(t0 + secs(3.5), true, false), (PathKind::Tcp, true));
        assert_eq!(p.failures(), 1);
        // UDP heard again after the hold-off: direct.
        p.heard_udp(t0 + secs(6.0));
        assert_eq!(p.choose(t0 + secs(6.0), true, false), (PathKind::Udp, true));
    }

    #[test]
    fn silence_with_packets_in_flight_fails_the_direct_path_and_holds_off() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        p.heard_udp(t0);
        assert_eq!(p.choose(t0, true, true), (PathKind::Udp, false));
        assert_eq!(p.choose(t0 + secs(0.9), true, false), (PathKind::Udp, false));
        assert_eq!(p.choose(t0 + secs(1.5), true, false), (PathKind::Udp, false), "nothing in flight");
        assert_eq!(p.choose(t0 + secs(1.5), true, true), (PathKind::Tcp, true), "silent with packets in flight");
        assert_eq!(p.failures(), 1);
        // The peer's UDP comes back at once, but the relay stays for 2 s.
        p.heard_udp(t0 + secs(2.0));
        assert_eq!(p.choose(t0 + secs(2.0), true, true).0, PathKind::Tcp);
        assert_eq!(p.choose(t0 + secs(3.9), true, true), (PathKind::Udp, true));
    }

    #[test]
    fn a_peer_that_stays_on_the_relay_means_our_udp_does_not_reach_it() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        assert_eq!(p.choose(t0, true, false).0, PathKind::Tcp);
        let mut now = t0;
        let mut holdoffs = Vec::new();
        let mut direct_ticks = 0;
        // The peer's probes arrive every second, its data keeps coming
        // through the relay: each time we go direct it fails after a
        // second, and the hold-offs grow.
        for _ in 0..400 {
            now += Duration::from_millis(100);
            if (now - t0).as_millis() % 1000 == 0 {
                p.heard_udp(now);
            }
            p.heard_tcp(now);
            let before = p.failures();
            if p.choose(now, true, true).0 == PathKind::Udp {
                direct_ticks += 1;
            }
            if p.failures() > before {
                holdoffs.push(p.holdoff);
            }
        }
        assert_eq!(holdoffs[..4], [secs(2.0), secs(4.0), secs(8.0), secs(16.0)], "{holdoffs:?}");
        // Direct for about a second per try: a small part of 40 s.
        assert!((20..=60).contains(&direct_ticks), "{direct_ticks} of 400 ticks direct");
    }

    #[test]
    fn a_direct_path_that_holds_resets_the_hold_off() {
        let t0 = crate::proto::test_epoch();
        let mut p = PathChoice::default();
        p.heard_udp(t0);
        p.choose(t0, true, true);
        p.choose(t0 + secs(2.0), true, true);
        assert_eq!(p.holdoff, HOLDOFF_MIN);
        let mut now = t0 + secs(4.0);
        for _ in 0..40 {
            p.heard_udp(now);
            assert_eq!(p.choose(now, true, true).0, PathKind::Udp);
            now += secs(1.0);
        }
        assert_eq!(p.holdoff, Duration::ZERO);
    }
}
