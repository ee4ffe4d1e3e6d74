//! Congestion control for lossless data: ours, since only the sender
//! decides its rate and any algorithm interoperates.
//!
//! A model-based controller in the spirit of BBR: it measures the rate at
//! which the receiver acknowledges packets (the bottleneck bandwidth, a
//! windowed maximum) and the smallest round trip (the path's propagation
//! delay), paces packets at about that rate and keeps about two
//! bandwidth-delay products in flight. Random loss therefore does not
//! collapse the rate as it does for loss-driven windows (TCP Reno reaches
//! 1.22/sqrt(p) packets per round trip: 0.15 MB/s at 5% loss and 50 ms);
//! congestion shows up as a rate that stops growing and a queue that the
//! pacing drains. Heavy loss (a quarter of a round's packets) and
//! retransmission timeouts still cut the estimate, so an overloaded path is
//! backed off from. c-toxcore instead estimates a rate from how fast its
//! send queue drains every 50 ms, which tops out near 8 MB/s on loopback.
//!
//! Phases: *startup* doubles the rate each round trip until the measured
//! bandwidth stops growing by a quarter for three rounds; *drain* empties
//! the queue startup built; *probe* cycles the pacing gain through 1.25,
//! 0.75 and six rounds of 1.0 to find newly free bandwidth.
//!
//! Two things keep the model honest when the sender is not the bottleneck:
//! a round in which the sender ran out of data (*application-limited*: a
//! tunnel being set up, an interactive session) measures the application,
//! not the path, so its sample only counts when it raises the estimate and
//! it never ends startup; and the receiver acknowledges every
//! [`ACK_EVERY`](super::session::ACK_EVERY) packets or after a short delay,
//! so the window always covers that delay and two acknowledgements' worth
//! of packets on top of the bandwidth-delay product.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets in flight before anything is measured.
pub const INITIAL_WINDOW: f64 = 32.0;
/// The window never shrinks below this: two acknowledgements' worth, so
/// the receiver's every-16-packets acknowledgement always fires.
pub const MIN_WINDOW: f64 = 2.0 * super::session::ACK_EVERY as f64;
/// How late an acknowledgement may come beyond the round trip (the
/// receiver's delay timer plus scheduling): the window covers this much of
/// the bandwidth on top of the model.
pub const ACK_DELAY_ALLOWANCE: Duration = Duration::from_millis(4);
/// The window never grows beyond the protocol's buffer (32768 packets).
pub const MAX_WINDOW: f64 = 32768.0;
/// Round-trip estimate before any measurement.
pub const INITIAL_RTT: Duration = Duration::from_millis(200);
/// Bandwidth samples kept (round trips).
const BW_WINDOW: usize = 10;
/// Pacing gain in startup (2/ln 2, as BBR).
const STARTUP_GAIN: f64 = 2.885;
/// The probe cycle's pacing gains.
const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// The window holds this many bandwidth-delay products.
const WINDOW_GAIN: f64 = 2.0;
/// Loss in one round above this fraction cuts the bandwidth estimate.
const HEAVY_LOSS: f64 = 0.25;
/// Bursts are limited to this many packets beyond the pacing rate.
pub const MAX_BURST: f64 = 32.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    Drain,
    Probe(usize),
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct Congestion {
    phase: Phase,
    /// Bandwidth samples (packets per second), newest last, one per round.
    bw_samples: VecDeque<f64>,
    /// The round being measured: when it started and packets delivered then.
    round_start: Option<Instant>,
    round_delivered: u64,
    round_lost: u64,
    /// The sender ran out of data at some point in this round.
    round_app_limited: bool,
    delivered: u64,
    full_bw: f64,
    full_bw_rounds: u32,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    min_rtt_at: Option<Instant>,
    tokens: f64,
    last_refill: Option<Instant>,
    losses: u64,
    backoff: f64,
    /// A retransmission timeout fired and nothing has been acknowledged
    /// since: the back-off and phase from before it.
    stalled: Option<(f64, Phase)>,
}

impl Default for Congestion {
    fn default() -> Self {
        Self {
            phase: Phase::Startup,
            bw_samples: VecDeque::with_capacity(BW_WINDOW),
            round_start: None,
            round_delivered: 0,
            round_lost: 0,
            round_app_limited: false,
            delivered: 0,
            full_bw: 0.0,
            full_bw_rounds: 0,
            srtt: None,
            rttvar: INITIAL_RTT / 2,
            min_rtt: None,
            min_rtt_at: None,
            tokens: INITIAL_WINDOW,
            last_refill: None,
            losses: 0,
            backoff: 1.0,
            stalled: None,
        }
    }
}

impl Congestion {
    /// The bottleneck bandwidth estimate, packets per second.
    pub fn bandwidth(&self) -> Option<f64> {
        let max = self.bw_samples.iter().copied().fold(0.0, f64::max);
        (max > 0.0).then_some(max * self.backoff)
    }

    fn pacing_gain(&self) -> f64 {
        match self.phase {
            Phase::Startup => STARTUP_GAIN,
            Phase::Drain => 1.0 / STARTUP_GAIN,
            Phase::Probe(i) => PROBE_GAINS[i % PROBE_GAINS.len()],
        }
    }

    /// Packets allowed in flight.
    pub fn window(&self) -> usize {
        let model = match (self.bandwidth(), self.min_rtt) {
            (Some(bw), Some(rtt)) => {
                let gain = if self.phase == Phase::Startup { STARTUP_GAIN } else { WINDOW_GAIN };
                (gain * bw * rtt.as_secs_f64() + bw * ACK_DELAY_ALLOWANCE.as_secs_f64() + MIN_WINDOW).max(MIN_WINDOW)
            }
            _ => INITIAL_WINDOW,
        };
        // In startup the window also grows by what is delivered (slow
        // start), so it never waits on a model it has not measured yet.
        let window =
            if self.phase == Phase::Startup { model.max(INITIAL_WINDOW + self.delivered as f64) } else { model };
        window.min(MAX_WINDOW) as usize
    }

    /// Packets per second to pace at.
    fn pacing_rate(&self) -> f64 {
        match self.bandwidth() {
            Some(bw) => (bw * self.pacing_gain()).max(1.0),
            None => INITIAL_WINDOW / self.rtt().as_secs_f64().max(1e-4) * STARTUP_GAIN,
        }
    }

    /// The smoothed round trip.
    pub fn rtt(&self) -> Duration {
        self.srtt.unwrap_or(INITIAL_RTT)
    }

    /// The smallest round trip seen lately.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Loss events so far.
    pub fn losses(&self) -> u64 {
        self.losses
    }

    /// How long to wait before resending a packet the receiver reports as
    /// missing: one round trip plus variance since it was sent, as the
    /// report may predate its arrival.
    pub fn resend_after(&self) -> Duration {
        self.rtt() + 4 * self.rttvar
    }

    /// A round-trip sample.
    pub fn on_rtt_sample(&mut self, now: Instant, sample: Duration) {
        // The minimum expires after 10 s, so a longer path is learned.
        let expired = self.min_rtt_at.is_some_and(|t| now >= t + Duration::from_secs(10));
        if self.min_rtt.is_none_or(|m| sample <= m) || expired {
            self.min_rtt = Some(sample);
            self.min_rtt_at = Some(now);
        }
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// `count` packets were acknowledged at `now`.
    pub fn on_ack(&mut self, now: Instant, count: usize) {
        self.delivered += count as u64;
        if let Some((backoff, phase)) = self.stalled.take() {
            // The first progress after a stall: a receiver that held its
            // packets (a slow reader) or a path that came back. The time
            // without acknowledgements says nothing of the path's rate, so
            // no sample spans it, and the cuts the timeouts made are undone
            // (as TCP undoes a spurious timeout): had the path lost the
            // packets, the receiver's reports now say so, and heavy loss
            // backs off within a round trip or two.
            self.round_start = None;
            self.backoff = backoff;
            self.phase = phase;
        }
        let round_len = self.min_rtt.unwrap_or(INITIAL_RTT).max(Duration::from_millis(1));
        let Some(start) = self.round_start else {
            self.round_start = Some(now);
            self.round_delivered = self.delivered - count as u64;
            return;
        };
        if now < start + round_len {
            return;
        }
        // A round ended: one bandwidth sample, unless the sender ran out of
        // data and the sample would lower the estimate.
        let elapsed = (now - start).as_secs_f64();
        let delivered = self.delivered - self.round_delivered;
        let sample = delivered as f64 / elapsed;
        let app_limited = std::mem::take(&mut self.round_app_limited);
        let best = self.bw_samples.iter().copied().fold(0.0, f64::max);
        if !app_limited || sample > best {
            if self.bw_samples.len() == BW_WINDOW {
                self.bw_samples.pop_front();
            }
            self.bw_samples.push_back(sample);
        }
        let lost = self.round_lost as f64;
        if lost > HEAVY_LOSS * (lost + delivered as f64) {
            // Heavy loss: the path is overloaded; back off for a while.
            self.backoff = (self.backoff * 0.7).max(0.1);
        } else {
            self.backoff = (self.backoff * 1.1).min(1.0);
        }
        self.round_start = Some(now);
        self.round_delivered = self.delivered;
        self.round_lost = 0;
        self.next_phase(app_limited);
    }

    fn next_phase(&mut self, app_limited: bool) {
        let bw = self.bandwidth().unwrap_or(0.0);
        match self.phase {
            Phase::Startup => {
                if bw >= self.full_bw * 1.25 {
                    self.full_bw = bw;
                    self.full_bw_rounds = 0;
                } else if !app_limited {
                    self.full_bw_rounds += 1;
                    if self.full_bw_rounds >= 3 {
                        self.phase = Phase::Drain;
                    }
                }
            }
            Phase::Drain => self.phase = Phase::Probe(0),
            Phase::Probe(i) => self.phase = Phase::Probe(i + 1),
        }
    }

    /// The sender has nothing more to send while the window has room: this
    /// round measures the application, not the path.
    pub fn on_app_limited(&mut self) {
        self.round_app_limited = true;
    }

    /// The receiver reported `count` packets missing, the newest sent at `sent`.
    pub fn on_loss(&mut self, _now: Instant, _sent: Instant, count: usize) {
        self.losses += 1;
        self.round_lost += count as u64;
    }

    /// Nothing was acknowledged for a long time while data was in flight.
    pub fn on_timeout(&mut self) {
        self.losses += 1;
        self.stalled.get_or_insert((self.backoff, self.phase));
        self.backoff = (self.backoff * 0.5).max(0.1);
        if self.phase == Phase::Startup {
            self.phase = Phase::Probe(2);
        }
    }

    /// How many packets pacing and the window allow now, given `in_flight`.
    pub fn allowance(&mut self, now: Instant, in_flight: usize) -> usize {
        let rate = self.pacing_rate();
        let elapsed = self.last_refill.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_refill = Some(now);
        self.tokens = (self.tokens + rate * elapsed.as_secs_f64()).min(MAX_BURST.max(rate * 0.001));
        let window_room = self.window().saturating_sub(in_flight);
        // A hair under a whole token counts as one: float sums of tiny
        // refills land just below integers.
        window_room.min((self.tokens + 1e-6) as usize)
    }

    /// `count` packets went out.
    pub fn on_sent(&mut self, count: usize) {
        self.tokens = (self.tokens - count as f64).max(0.0);
    }

    /// When pacing next allows one packet, if it does not now.
    pub fn next_send(&self, now: Instant) -> Instant {
        if self.tokens + 1e-6 >= 1.0 {
            return now;
        }
        let rate = self.pacing_rate();
        // Never "now" when nothing can go: at least 10 µs ahead.
        now + Duration::from_secs_f64(((1.0 - self.tokens) / rate).min(0.05)).max(Duration::from_micros(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds acknowledgements at `rate` packets per second over `rtt` for
    /// `secs` seconds.
    fn feed(cc: &mut Congestion, t: &mut Instant, rate: f64, rtt: Duration, secs: f64) {
        let step = Duration::from_millis(1);
        for _ in 0..(secs * 1000.0) as usize {
            *t += step;
            cc.on_rtt_sample(*t, rtt);
            cc.on_ack(*t, (rate / 1000.0) as usize);
        }
    }

    #[test]
    fn learns_the_bottleneck_and_sizes_the_window() {
        let mut t = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        assert_eq!(cc.window(), INITIAL_WINDOW as usize);
        feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 2.0);
        let bw = cc.bandwidth().unwrap();
        assert!((9_000.0..=11_000.0).contains(&bw), "{bw}");
        // Two bandwidth-delay products (10,000/s * 20 ms = 200), the
        // acknowledgement delay's worth (40) and two acknowledgements (32).
        let window = cc.window();
        assert!((450..=495).contains(&window), "{window}");
        assert!(matches!(cc.phase, Phase::Probe(_)), "startup ended when the rate stopped growing");
    }

    #[test]
    fn progress_after_a_stall_undoes_the_timeouts() {
        let mut t = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 2.0);
        let (bw, window) = (cc.bandwidth().unwrap(), cc.window());
        // A receiver holds its packets for a while: timeout after timeout.
        for _ in 0..5 {
            t += Duration::from_millis(400);
            cc.on_timeout();
        }
        assert!(cc.bandwidth().unwrap() < bw / 5.0);
        assert!(cc.window() < window / 3);
        // It reads again: everything is acknowledged at once.
        t += Duration::from_millis(400);
        cc.on_ack(t, 400);
        assert_eq!(cc.bandwidth().unwrap(), bw);
        assert_eq!(cc.window(), window);
        // No sample spans the stall (400 packets over 2.4 s would read as
        // a rate of 170 a second).
        feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 0.2);
        assert!(cc.bw_samples.iter().all(|&s| s > 5_000.0), "{:?}", cc.bw_samples);
        assert_eq!(cc.losses(), 5);
    }

    #[test]
    fn rounds_short_of_data_neither_lower_the_estimate_nor_end_startup() {
        let mut t = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        let rtt = Duration::from_millis(1);
        // A trickle (a tunnel being set up): the sender runs dry every round.
        for _ in 0..2000 {
            t += Duration::from_millis(1);
            cc.on_app_limited();
            cc.on_rtt_sample(t, rtt);
            cc.on_ack(t, 1);
        }
        assert_eq!(cc.phase, Phase::Startup, "still probing for the path's rate");
        // Then bulk data: the estimate climbs to the path's rate.
        feed(&mut cc, &mut t, 100_000.0, rtt, 1.0);
        let bw = cc.bandwidth().unwrap();
        assert!(bw > 90_000.0, "{bw}");
        // Another quiet spell does not drag it down.
        for _ in 0..500 {
            t += Duration::from_millis(1);
            cc.on_app_limited();
            cc.on_ack(t, 1);
        }
        assert!(cc.bandwidth().unwrap() > 90_000.0, "{:?}", cc.bandwidth());
        assert!(cc.window() as f64 >= 2.0 * 100_000.0 * 0.001, "{}", cc.window());
    }

    #[test]
    fn random_loss_does_not_collapse_but_heavy_loss_backs_off() {
        let mut t = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 1.0);
        // 5% loss: the estimate holds.
        for _ in 0..50 {
            cc.on_loss(t, t, 10);
            feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 0.02);
        }
        assert!(cc.bandwidth().unwrap() > 8_000.0);
        // Half the packets lost, round after round: backs off.
        for _ in 0..10 {
            cc.on_loss(t, t, 400);
            feed(&mut cc, &mut t, 10_000.0, Duration::from_millis(20), 0.02);
        }
        assert!(cc.bandwidth().unwrap() < 2_000.0, "{:?}", cc.bandwidth());
        cc.on_timeout();
        assert!(cc.losses() > 0);
    }

    #[test]
    fn pacing_spreads_packets() {
        let mut t = crate::proto::test_epoch();
        let mut cc = Congestion::default();
        feed(&mut cc, &mut t, 1_000.0, Duration::from_millis(50), 2.0);
        let first = cc.allowance(t, 0);
        cc.on_sent(first);
        assert_eq!(cc.allowance(t, first), 0, "no time passed: no new tokens");
        let next = cc.next_send(t);
        assert!(next > t && next < t + Duration::from_millis(10), "{:?}", next - t);
        assert!(cc.allowance(t + Duration::from_millis(10), 0) >= 1);
        assert_eq!(cc.allowance(t + Duration::from_secs(1), 10_000), 0, "the window bounds what pacing grants");
    }
}
