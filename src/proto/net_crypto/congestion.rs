//! Congestion control for lossless data: ours, since only the sender
//! decides its rate and any algorithm interoperates.
//!
//! A model-based controller after BBR (Cardwell et al., "BBR:
//! Congestion-Based Congestion Control", ACM Queue 2016): it measures the
//! rate at which packets are delivered (the bottleneck bandwidth, a
//! maximum over the last ten round trips) and the smallest round trip (the
//! path's propagation delay), paces packets at about that rate and keeps
//! about two bandwidth-delay products in flight. Random loss therefore does
//! not collapse the rate as it does for loss-driven windows (TCP Reno
//! reaches 1.22/sqrt(p) packets per round trip: 0.15 MB/s at 5 % loss and
//! 50 ms); congestion shows up as a rate that stops growing and a queue
//! that the pacing drains. Heavy loss (a quarter of a round's packets) and
//! retransmission timeouts still cut the estimate, so an overloaded path is
//! backed off from. c-toxcore instead estimates a rate from how fast its
//! send queue drains every 50 ms, which tops out near 8 MB/s on loopback.
//!
//! **Delivery rate.** Each packet carries, from when it was sent, how many
//! packets had been delivered then and when ([`SentState`]). When an
//! acknowledgement covers it, the packets delivered since over the time
//! since is one rate sample, taken over the longer of the send and the
//! acknowledgement intervals, so that neither a burst of sends nor a burst
//! of acknowledgements (a request packet that covers many packets at once)
//! reads as more bandwidth than the path has; nor is a sample ever more
//! than the pacing rate the packet went out at (an acknowledgement that
//! fills a hole covers packets that arrived long before). Samples over
//! less than a minimum round trip are not taken. A *round* ends when a
//! packet sent after the previous round ended is acknowledged.
//!
//! **Phases.** *Startup* doubles the rate each round until the measured
//! bandwidth stops growing by a quarter for three rounds. The bandwidth
//! samples lag a growing queue by a round trip, so the round trips are
//! watched too: once every one is an eighth of the minimum longer (4 to 16
//! ms, and more than they strayed before; not while the sender is short of
//! data, when the queue is others'), the rate holds, and once that has
//! lasted a while startup drains the queue, then goes on (a stall of the
//! host reads as a queue too, so it does not end startup). Its window, as
//! later, is two bandwidth-delay products, so what it queues is at most
//! about one. *Drain* empties the queue
//! startup built; *probe* cycles the pacing gain through 1.25,
//! 0.75 and six rounds of 1.0 to find newly free bandwidth, the 0.75 phase
//! lasting until what is in flight fits the bandwidth-delay product, so
//! that no queue stands at the bottleneck from one cycle to the next;
//! every 10 s without a lower round trip, *probe-RTT* holds the
//! window at half the bandwidth-delay product for 200 ms and a round, so
//! that a queue standing at the bottleneck drains and the minimum round
//! trip is measured afresh (otherwise a standing queue would read as path
//! delay and the window would grow with it).
//!
//! Two things keep the model honest when the sender is not the bottleneck:
//! a packet sent while the sender had run out of data (*application-
//! limited*: a tunnel being set up, an interactive session) measures the
//! application, not the path, so its sample only counts when it raises the
//! estimate and it never ends startup; and the receiver acknowledges every
//! [`ACK_EVERY`](super::session::ACK_EVERY) packets or after a short delay,
//! so the window always covers that delay and two acknowledgements' worth
//! of packets on top of the bandwidth-delay product.
//!
//! The flow's counters (packets delivered, rounds, losses) go on when the
//! session moves to another path; the model of the path (`PathModel`)
//! starts afresh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::buffers::Acked;

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
/// Rounds the bandwidth estimate remembers its maximum over.
const BW_WINDOW_ROUNDS: u64 = 10;
/// Pacing gain in startup (2/ln 2, as BBR).
const STARTUP_GAIN: f64 = 2.885;
/// Startup ends once every round trip for a while has been this much
/// longer than the smallest, an eighth of it within these bounds (as
/// HyStart++): the rate has outgrown the bottleneck and a queue grows.
const STARTUP_QUEUE_MIN: Duration = Duration::from_millis(4);
const STARTUP_QUEUE_MAX: Duration = Duration::from_millis(16);
/// The probe cycle's pacing gains.
const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// The window holds this many bandwidth-delay products, in startup too
/// (as BBRv3): what startup can queue at the bottleneck before it sees the
/// queue is then at most about one bandwidth-delay product.
const WINDOW_GAIN: f64 = 2.0;
/// Loss in one round above this fraction cuts the bandwidth estimate...
const HEAVY_LOSS: f64 = 0.25;
/// ...when at least this many packets were lost in it (a few losses in a
/// short round say nothing).
const HEAVY_LOSS_MIN: u64 = 8;
/// Pacing lets this much of the rate's worth go out at once (the
/// driver's timers wake about once a millisecond), and at least
/// [`MIN_BURST`] packets.
pub const BURST_TIME: Duration = Duration::from_millis(2);
/// The smallest burst pacing allows.
pub const MIN_BURST: f64 = 4.0;
/// A probe for more bandwidth adds at most this much queue at the
/// bottleneck: its gain is 1.25, or less on paths whose round trip is
/// longer than four times this.
const PROBE_QUEUE: Duration = Duration::from_millis(20);
/// A minimum round trip older than this is measured again (probe-RTT).
const MIN_RTT_LIFETIME: Duration = Duration::from_secs(10);
/// The reordering window grows up to this many quarters of the minimum
/// round trip (and never beyond the smoothed round trip).
const MAX_REORDER_QUARTERS: u32 = 16;
/// Rounds without a spurious loss before the reordering window shrinks a step.
const REORDER_DECAY_ROUNDS: u64 = 16;
/// Rounds in a row the window must hold a flow back, with every round trip
/// well above the minimum, before probe-RTT comes early.
const COMPETITION_ROUNDS: u32 = 10;
/// The smallest window probe-RTT holds.
const PROBE_RTT_MIN_WINDOW: f64 = 4.0;
/// How long probe-RTT holds the window down.
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// Rounds the acknowledgement-aggregation estimate remembers its maximum over.
const AGGREGATION_WINDOW_ROUNDS: u64 = 10;
/// The window's allowance for acknowledgement aggregation covers at most
/// this much of the bandwidth.
const MAX_AGGREGATION: Duration = Duration::from_millis(100);

/// What the controller records of a packet when it goes out, and reads
/// back when the packet is acknowledged (a delivery-rate sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentState {
    /// When the packet was sent.
    pub sent: Instant,
    /// Packets delivered before it was sent.
    delivered: u64,
    /// When the last of those was acknowledged.
    delivered_at: Instant,
    /// When the packet whose acknowledgement was the last one then was sent.
    first_sent: Instant,
    /// The sender had run out of data.
    app_limited: bool,
    /// The pacing rate then, packets per second (rounded up).
    rate: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    Drain,
    Probe(usize),
    ProbeRtt,
}

/// The controller's state: the flow's counters, which go on from path
/// to path, and the model of the path its packets take now.
#[derive(Debug, Clone, Default)]
pub struct Congestion {
    /// Rounds so far, and the delivered count that ends this one.
    round: u64,
    next_round_delivered: u64,
    /// Packets delivered, when the last of them was acknowledged, and when
    /// that packet had been sent.
    delivered: u64,
    delivered_at: Option<Instant>,
    first_sent: Option<Instant>,
    /// While the sender is short of data: the delivered count at which the
    /// packets sent since are all acknowledged (0 when not limited).
    app_limited_until: u64,
    /// The sender's packets in flight after the last acknowledgement.
    in_flight: usize,
    losses: u64,
    /// After the session moved to another path: its first acknowledgement
    /// there, once it came (packets sent before it measure the old path,
    /// or were answered for copies that went the old way)...
    path_samples_from: Option<Option<Instant>>,
    /// ...and whether the old path had stopped working (so nothing sent
    /// after that acknowledgement can be answered for a copy on it).
    old_path_dead: bool,
    /// Losses reported before this are the old path's (what was in flight
    /// on it when the session moved) and do not count.
    old_path_until: Option<Instant>,
    /// What is known of the current path.
    path: PathModel,
}

/// What the controller has measured of the path the packets take now, and
/// where it is in probing it: all of it starts afresh on another path.
#[derive(Debug, Clone)]
struct PathModel {
    phase: Phase,
    /// The bandwidth maximum filter: (round, packets per second), rounds
    /// ascending, samples descending.
    bw_filter: VecDeque<(u64, f64)>,
    /// This round's acknowledged and lost packets (the loss fraction).
    round_acked: u64,
    round_lost: u64,
    full_bw: f64,
    full_bw_rounds: u32,
    /// Startup found the bottleneck (and ended).
    filled_pipe: bool,
    /// In startup: since when every round trip has been long enough to
    /// say a queue is growing.
    queue_since: Option<Instant>,
    /// In startup: the queue has been seen long enough; pacing drains it
    /// until what is in flight fits the bandwidth-delay product.
    startup_draining: bool,
    /// How far round trips strayed above the smallest without a queue to
    /// show for it, as of the end of the round before last: four times
    /// their variation, or twice the smoothed one's excess over the
    /// smallest, whichever is more.
    round_jitter: Option<Duration>,
    next_round_jitter: Option<Duration>,
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    min_rtt_at: Option<Instant>,
    /// When the current probe phase began.
    cycle_start: Option<Instant>,
    /// Probe-RTT: when it may end, and whether a round has passed since
    /// the window came down.
    probe_rtt_done: Option<Instant>,
    probe_rtt_round: Option<u64>,
    /// The smallest round trip seen since the window came down in probe-RTT.
    probe_rtt_min: Option<Duration>,
    /// The window, not pacing, held sending back in this round; rounds in
    /// a row it did so, and the smallest round trip seen in them.
    round_window_limited: bool,
    window_limited_rounds: u32,
    limited_min_rtt: Option<Duration>,
    /// The reordering window in quarters of the minimum round trip: grows
    /// when a packet taken for lost arrives after all, shrinks after
    /// [`REORDER_DECAY_ROUNDS`] rounds without that.
    reorder_quarters: u32,
    last_spurious_round: u64,
    /// Pacing: packets that may go now, and when they were last added.
    tokens: f64,
    last_refill: Option<Instant>,
    backoff: f64,
    /// A retransmission timeout fired and nothing has been acknowledged
    /// since: the back-off and phase from before it.
    stalled: Option<(f64, Phase)>,
    /// Acknowledgement aggregation (BBR's `extra_acked`): when the current
    /// epoch began and the packets acknowledged in it...
    aggregation_start: Option<Instant>,
    aggregation_acked: f64,
    /// ...and a maximum filter of how far acknowledgements ran ahead of
    /// the bandwidth estimate within an epoch: (round, packets), rounds
    /// ascending, values descending.
    extra_acked: VecDeque<(u64, f64)>,
}

impl Default for PathModel {
    fn default() -> Self {
        Self {
            phase: Phase::Startup,
            bw_filter: VecDeque::new(),
            round_acked: 0,
            round_lost: 0,
            full_bw: 0.0,
            full_bw_rounds: 0,
            filled_pipe: false,
            queue_since: None,
            startup_draining: false,
            round_jitter: None,
            next_round_jitter: None,
            srtt: None,
            rttvar: INITIAL_RTT / 2,
            min_rtt: None,
            min_rtt_at: None,
            cycle_start: None,
            probe_rtt_done: None,
            probe_rtt_round: None,
            probe_rtt_min: None,
            round_window_limited: false,
            window_limited_rounds: 0,
            limited_min_rtt: None,
            reorder_quarters: 1,
            last_spurious_round: 0,
            tokens: INITIAL_WINDOW,
            last_refill: None,
            backoff: 1.0,
            stalled: None,
            aggregation_start: None,
            aggregation_acked: 0.0,
            extra_acked: VecDeque::new(),
        }
    }
}

impl Congestion {
    /// The bottleneck bandwidth estimate, packets per second.
    pub fn bandwidth(&self) -> Option<f64> {
        let max = self.path.bw_filter.front().map_or(0.0, |&(_, bw)| bw);
        (max > 0.0).then_some(max * self.path.backoff)
    }

    /// The bandwidth-delay product in packets, once both are measured.
    fn bdp(&self) -> Option<f64> {
        Some(self.bandwidth()? * self.path.min_rtt?.as_secs_f64())
    }

    fn pacing_gain(&self) -> f64 {
        match self.path.phase {
            // Round trips say a queue may be growing: hold the rate until
            // they confirm it (startup ends) or go back down (it goes on).
            Phase::Startup if self.path.startup_draining => 1.0 / STARTUP_GAIN,
            Phase::Startup if self.path.queue_since.is_some() => 1.0,
            Phase::Startup => STARTUP_GAIN,
            Phase::Drain => 1.0 / STARTUP_GAIN,
            Phase::Probe(i) => self.probe_gain(i),
            Phase::ProbeRtt => 1.0,
        }
    }

    /// A one-line summary for diagnostics.
    pub fn debug_summary(&self) -> String {
        format!(
            "{:?} bw {:.0}/s backoff {:.2} min_rtt {:?} srtt {:?} rttvar {:?} window {} reorder {}/4 losses {} round {} lost/acked {}/{}",
            self.path.phase,
            self.bandwidth().unwrap_or(0.0),
            self.path.backoff,
            self.path.min_rtt,
            self.path.srtt,
            self.path.rttvar,
            self.window(),
            self.path.reorder_quarters,
            self.losses,
            self.round,
            self.path.round_lost,
            self.path.round_acked,
        )
    }

    /// The pacing gain of probe phase `i`: the cycle's, with the probe
    /// for more bandwidth limited to what adds [`PROBE_QUEUE`] of queue.
    fn probe_gain(&self, i: usize) -> f64 {
        let gain = PROBE_GAINS[i % PROBE_GAINS.len()];
        if gain <= 1.0 {
            return gain;
        }
        let min_rtt = self.path.min_rtt.unwrap_or(INITIAL_RTT).as_secs_f64();
        1.0 + (gain - 1.0).min(PROBE_QUEUE.as_secs_f64() / min_rtt)
    }

    /// Packets allowed in flight.
    pub fn window(&self) -> usize {
        let model = match (self.bandwidth(), self.bdp()) {
            (Some(bw), Some(bdp)) => WINDOW_GAIN * bdp + self.aggregation(bw) + MIN_WINDOW,
            _ => INITIAL_WINDOW,
        };
        let window = match self.path.phase {
            Phase::ProbeRtt => self.probe_rtt_window(),
            _ => model,
        };
        let floor = if self.path.phase == Phase::ProbeRtt { PROBE_RTT_MIN_WINDOW } else { MIN_WINDOW };
        window.clamp(floor, MAX_WINDOW) as usize
    }

    /// Packets the window holds beyond the model for acknowledgements that
    /// come late or in bursts: the receiver's delay timer's worth, or the
    /// largest burst of acknowledgements lately beyond what the bandwidth
    /// explains (a TCP relay that forwards in batches, a receiver that
    /// acknowledges in bursts), at most [`MAX_AGGREGATION`]'s worth.
    fn aggregation(&self, bw: f64) -> f64 {
        (bw * ACK_DELAY_ALLOWANCE.as_secs_f64()).max(self.measured_burst())
    }

    /// The largest burst of acknowledgements lately beyond what the
    /// bandwidth explains, in packets, at most [`MAX_AGGREGATION`]'s worth.
    fn measured_burst(&self) -> f64 {
        let Some(bw) = self.bandwidth() else { return 0.0 };
        let measured = self.path.extra_acked.front().map_or(0.0, |&(_, extra)| extra);
        measured.min(bw * MAX_AGGREGATION.as_secs_f64())
    }

    /// The smallest round trip plus the spacing of the largest burst of
    /// acknowledgements lately: acknowledgements that come in bursts (a
    /// relay forwarding in rounds) make round trips look longer by up to
    /// that much, which is the path, not a queue.
    fn burst_rtt(&self) -> Option<Duration> {
        let min = self.path.min_rtt?;
        Some(match self.bandwidth() {
            Some(bw) => min + Duration::from_secs_f64(self.measured_burst() / bw),
            None => min,
        })
    }

    /// Measures acknowledgement aggregation (BBR's `extra_acked`): an epoch
    /// runs while acknowledgements keep ahead of the bandwidth estimate;
    /// how far ahead they got is a sample, capped by the window (so the
    /// allowance grows at most as fast as the window does). Rounds with
    /// losses take no samples.
    fn update_aggregation(&mut self, now: Instant, count: usize) {
        let Some(bw) = self.bandwidth() else { return };
        let window = self.window() as f64;
        let start = self.path.aggregation_start.unwrap_or(now);
        let mut expected = bw * now.saturating_duration_since(start).as_secs_f64();
        if self.path.round_lost > 0 {
            // Acknowledgements after a loss come in bursts as the holes
            // fill: that measures the loss, not the path.
            self.path.aggregation_start = Some(now);
            self.path.aggregation_acked = 0.0;
            return;
        }
        if self.path.aggregation_acked <= expected {
            // Acknowledgements fell back to the rate: a new epoch.
            self.path.aggregation_start = Some(now);
            self.path.aggregation_acked = 0.0;
            expected = 0.0;
        }
        self.path.aggregation_acked += count as f64;
        let extra = (self.path.aggregation_acked - expected).min(window);
        while self.path.extra_acked.back().is_some_and(|&(_, e)| e <= extra) {
            self.path.extra_acked.pop_back();
        }
        self.path.extra_acked.push_back((self.round, extra));
        while self.path.extra_acked.front().is_some_and(|&(round, _)| round + AGGREGATION_WINDOW_ROUNDS <= self.round) {
            self.path.extra_acked.pop_front();
        }
    }

    fn probe_rtt_window(&self) -> f64 {
        // Small enough to drain this flow's queue even where the
        // bandwidth-delay product is a few dozen packets (the receiver's
        // delayed acknowledgement answers a handful within 2 ms).
        (self.bdp().unwrap_or(0.0) / 2.0).max(PROBE_RTT_MIN_WINDOW)
    }

    /// Packets per second to pace at.
    fn pacing_rate(&self) -> f64 {
        match self.bandwidth() {
            Some(bw) => (bw * self.pacing_gain()).max(1.0),
            None => INITIAL_WINDOW / self.rtt().as_secs_f64().max(1e-4) * STARTUP_GAIN,
        }
    }

    /// Packets per second the controller sends at now.
    pub fn send_rate(&self) -> f64 {
        self.pacing_rate()
    }

    /// The smoothed round trip.
    pub fn rtt(&self) -> Duration {
        self.path.srtt.unwrap_or(INITIAL_RTT)
    }

    /// The smallest round trip seen lately.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.path.min_rtt
    }

    /// Loss events so far.
    pub fn losses(&self) -> u64 {
        self.losses
    }

    /// The base of the retransmission timeout: the smoothed round trip
    /// plus four times its variation (RFC 6298).
    pub fn rto_base(&self) -> Duration {
        self.rtt() + 4 * self.path.rttvar
    }

    /// How much later than a packet another may have been sent and still
    /// arrive before it without the first being lost (RACK's reordering
    /// window): a quarter of the minimum round trip, more on a path seen
    /// to reorder, at least 1 ms and at most the smoothed round trip.
    pub fn reorder_window(&self) -> Duration {
        let quarter = self.path.min_rtt.unwrap_or(INITIAL_RTT) / 4;
        (quarter * self.path.reorder_quarters).min(self.rtt()).max(Duration::from_millis(1))
    }

    /// A round trip at least this long cannot be a resent packet's own
    /// acknowledgement mistaken for the first copy's.
    pub fn plausible_rtt(&self) -> Duration {
        self.path.min_rtt.unwrap_or(Duration::ZERO)
    }

    /// A packet goes out at `now` with `in_flight` packets already in
    /// flight: what to remember of it.
    pub fn on_send(&mut self, now: Instant, in_flight: usize) -> SentState {
        if in_flight == 0 {
            // Nothing in flight: the delivery clock restarts now, so the
            // idle time does not count as time delivering.
            self.first_sent = Some(now);
            self.delivered_at = Some(now);
        }
        SentState {
            sent: now,
            delivered: self.delivered,
            delivered_at: self.delivered_at.unwrap_or(now),
            first_sent: self.first_sent.unwrap_or(now),
            app_limited: self.app_limited_until != 0,
            rate: self.pacing_rate().ceil() as u32,
        }
    }

    fn on_rtt_sample(&mut self, now: Instant, sample: Duration) {
        self.path.limited_min_rtt = Some(self.path.limited_min_rtt.map_or(sample, |m| m.min(sample)));
        if self.path.phase == Phase::ProbeRtt && self.path.probe_rtt_done.is_some() {
            self.path.probe_rtt_min = Some(self.path.probe_rtt_min.map_or(sample, |m| m.min(sample)));
        }
        let expired = self.path.min_rtt_at.is_some_and(|t| now >= t + MIN_RTT_LIFETIME);
        if self.path.min_rtt.is_none_or(|m| sample <= m) {
            self.path.min_rtt = Some(sample);
            self.path.min_rtt_at = Some(now);
        } else if expired && self.path.phase != Phase::ProbeRtt {
            // Measure the minimum afresh: the queue drains in probe-RTT,
            // and what it measures then becomes the minimum.
            self.enter_probe_rtt();
        }
        if self.path.phase == Phase::Startup {
            if self.app_limited_until == 0 {
                self.check_startup_queue(now, sample);
            } else {
                // Short of data, this flow queues nothing: what its round
                // trips show is others' queue (or the reverse direction's),
                // and must not end startup with an estimate of a trickle.
                self.path.queue_since = None;
                self.path.startup_draining = false;
            }
        }
        match self.path.srtt {
            None => {
                self.path.srtt = Some(sample);
                self.path.rttvar = sample / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(sample);
                self.path.rttvar = (self.path.rttvar * 3 + diff) / 4;
                self.path.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// A queue that stays while the window, sized from the minimum round
    /// trip, holds this flow back round after round: either this flow's own
    /// (an estimate a hair too high) or another flow's (a loss-based TCP
    /// filling a deep buffer, which this flow's window would let squeeze
    /// it). After [`COMPETITION_ROUNDS`] such rounds, probe-RTT comes early:
    /// it drains this flow's own queue, and what it still measures belongs
    /// to others, so it becomes the minimum (see [`Self::update_phase`]),
    /// as it would when the minimum expires, only sooner.
    fn check_standing_queue(&mut self) {
        let (Some(seen), Some(min)) = (self.path.limited_min_rtt, self.burst_rtt()) else { return };
        if matches!(self.path.phase, Phase::Probe(_))
            && self.path.window_limited_rounds >= COMPETITION_ROUNDS
            && seen >= min + min / 2
        {
            self.path.window_limited_rounds = 0;
            self.path.limited_min_rtt = None;
            self.enter_probe_rtt();
        }
    }

    /// In startup, a round trip `sample` at `now`: once every one for a
    /// while has been longer than the smallest by an eighth of it
    /// ([`STARTUP_QUEUE_MIN`]-[`STARTUP_QUEUE_MAX`]), and by four times
    /// the variation the round trips had before this round (a path that
    /// only jitters shows no queue), a queue is growing at the bottleneck:
    /// the bandwidth samples lag it by a round trip, in which startup's
    /// rate queues up to a bandwidth-delay product more. Startup holds its
    /// rate from the first such round trip, and drains the queue once the
    /// round trips have stayed up for the threshold or a quarter of the
    /// smallest round trip, whichever is longer. Only the bandwidth ends
    /// startup (three rounds without growth, which holding the rate
    /// brings about when the path is full): a stall of the host reads as a
    /// queue too, and ending startup on one would leave the estimate far
    /// below the path's rate, where the probes find the rest slowly (by a
    /// tenth every eight round trips at 200 ms).
    fn check_startup_queue(&mut self, now: Instant, sample: Duration) {
        let path = &mut self.path;
        let (Some(min), Some(jitter)) = (path.min_rtt, path.round_jitter) else { return };
        let threshold = (min / 8).clamp(STARTUP_QUEUE_MIN, STARTUP_QUEUE_MAX).max(jitter);
        if sample < min + threshold {
            path.queue_since = None;
            return;
        }
        let since = *path.queue_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= threshold.max(min / 4) {
            path.startup_draining = true;
        }
    }

    /// Startup found the bottleneck: drain what it queued.
    fn leave_startup(&mut self) {
        self.path.filled_pipe = true;
        self.path.queue_since = None;
        self.path.startup_draining = false;
        self.path.phase = Phase::Drain;
    }

    fn enter_probe_rtt(&mut self) {
        if let Some(stalled) = &mut self.path.stalled {
            stalled.1 = Phase::ProbeRtt;
        }
        self.path.phase = Phase::ProbeRtt;
        self.path.probe_rtt_done = None;
        self.path.probe_rtt_round = None;
        self.path.probe_rtt_min = None;
    }

    /// An acknowledgement at `now` covered `acked`; `in_flight` packets
    /// are still in flight after it.
    pub fn on_ack(&mut self, now: Instant, acked: &Acked, in_flight: usize) {
        self.in_flight = in_flight;
        if acked.count == 0 {
            return;
        }
        if let Some((backoff, phase)) = self.path.stalled.take() {
            // The first progress after a stall: a receiver that held its
            // packets (a slow reader) or a path that came back. The cuts
            // the timeouts made are undone (as TCP undoes a spurious
            // timeout): had the path lost the packets, the receiver's
            // reports now say so, and heavy loss backs off within a round
            // trip or two. No rate sample spans the stall: every packet
            // sent before it counts as application-limited.
            self.path.backoff = backoff;
            self.path.phase = phase;
            self.app_limited_until = (self.delivered + acked.count as u64 + in_flight as u64).max(1);
            self.first_sent = Some(now);
            self.delivered_at = Some(now);
            // Nor is what the stall held back a burst of aggregation.
            self.path.aggregation_start = None;
            self.path.aggregation_acked = 0.0;
        }
        if let Some(from @ None) = &mut self.path_samples_from {
            *from = Some(now);
        }
        if let Some(sent) = acked.rtt_sent
            && self.on_this_path(sent)
        {
            self.on_rtt_sample(now, now.saturating_duration_since(sent));
        } else if self.old_path_dead
            && let Some(newest) = acked.newest
            && self.on_this_path(newest.sent)
        {
            // Off a dead path, the first packets on the new one are resends
            // of what the old one swallowed: one sent after the new path's
            // first acknowledgement is answered for itself (no copy of it
            // is on the way any more), so it measures the round trip.
            self.on_rtt_sample(now, now.saturating_duration_since(newest.sent));
        }
        self.delivered += acked.count as u64;
        self.delivered_at = Some(now);
        self.path.round_acked += acked.count as u64;
        if acked.spurious > 0 {
            // Reordering, not loss: widen the window (once a round), and
            // do not count these as this round's losses.
            self.path.round_lost = self.path.round_lost.saturating_sub(acked.spurious as u64);
            if self.round > self.path.last_spurious_round || self.path.reorder_quarters == 1 {
                self.path.reorder_quarters = (self.path.reorder_quarters + 1).min(MAX_REORDER_QUARTERS);
            }
            self.path.last_spurious_round = self.round;
        }
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let Some(packet) = acked.newest else { return };
        self.first_sent = Some(packet.sent);
        let round_start = packet.delivered >= self.next_round_delivered;
        if round_start {
            self.next_round_delivered = self.delivered;
            self.round += 1;
        }
        self.take_rate_sample(now, &packet);
        if self.path.aggregation_start.is_some() {
            self.update_aggregation(now, acked.count);
        } else {
            // The first acknowledgement (or the first after a stall)
            // starts the first epoch.
            self.path.aggregation_start = Some(now);
        }
        if round_start {
            self.end_round(packet.app_limited);
            self.check_standing_queue();
        }
        self.update_phase(now, round_start);
    }

    fn take_rate_sample(&mut self, now: Instant, packet: &SentState) {
        if !self.on_this_path(packet.sent) {
            return;
        }
        let send_elapsed = packet.sent.saturating_duration_since(packet.first_sent);
        let ack_elapsed = now.saturating_duration_since(packet.delivered_at);
        let interval = send_elapsed.max(ack_elapsed);
        if interval.is_zero() || self.path.min_rtt.is_some_and(|m| interval < m) {
            return;
        }
        // Nothing is delivered faster than it was sent: a sample above
        // the pacing rate the packet went out at counts packets delivered
        // before it was sent and acknowledged only now (a hole filled, or
        // a request packet that covered many at once).
        let sample = ((self.delivered - packet.delivered) as f64 / interval.as_secs_f64()).min(f64::from(packet.rate));
        let best = self.path.bw_filter.front().map_or(0.0, |&(_, bw)| bw);
        if packet.app_limited && sample < best {
            return;
        }
        // A windowed maximum: drop what the sample beats or what is too old.
        while self.path.bw_filter.back().is_some_and(|&(_, bw)| bw <= sample) {
            self.path.bw_filter.pop_back();
        }
        self.path.bw_filter.push_back((self.round, sample));
        while self.path.bw_filter.front().is_some_and(|&(round, _)| round + BW_WINDOW_ROUNDS <= self.round) {
            self.path.bw_filter.pop_front();
        }
    }

    /// A round ended: the loss it saw, and whether startup is over.
    fn end_round(&mut self, app_limited: bool) {
        let (lost, acked) = (self.path.round_lost as f64, self.path.round_acked as f64);
        if self.path.round_lost >= HEAVY_LOSS_MIN && lost > HEAVY_LOSS * (lost + acked) {
            // Heavy loss: the path is overloaded; back off for a while.
            self.path.backoff = (self.path.backoff * 0.7).max(0.1);
        } else {
            self.path.backoff = (self.path.backoff * 1.1).min(1.0);
        }
        self.path.round_lost = 0;
        self.path.round_acked = 0;
        if let (Some(srtt), Some(min)) = (self.path.srtt, self.path.min_rtt) {
            let jitter = (4 * self.path.rttvar).max(2 * srtt.saturating_sub(min));
            self.path.round_jitter = self.path.next_round_jitter.replace(jitter);
        }
        if std::mem::take(&mut self.path.round_window_limited) {
            self.path.window_limited_rounds += 1;
        } else {
            self.path.window_limited_rounds = 0;
            self.path.limited_min_rtt = None;
        }
        if self.path.reorder_quarters > 1 && self.round >= self.path.last_spurious_round + REORDER_DECAY_ROUNDS {
            self.path.reorder_quarters -= 1;
            self.path.last_spurious_round = self.round;
        }
        if self.path.phase == Phase::Startup {
            let bw = self.bandwidth().unwrap_or(0.0);
            if bw >= self.path.full_bw * 1.25 {
                self.path.full_bw = bw;
                self.path.full_bw_rounds = 0;
            } else if !app_limited {
                self.path.full_bw_rounds += 1;
            }
        }
    }

    fn update_phase(&mut self, now: Instant, round_start: bool) {
        let mut bdp = self.bdp().unwrap_or(INITIAL_WINDOW);
        let mut min_rtt = self.path.min_rtt.unwrap_or(INITIAL_RTT);
        // On a path whose acknowledgements come in bursts larger than its
        // bandwidth-delay product (a relay that forwards in rounds), what
        // is in flight normally includes a burst's worth, and a phase must
        // last long enough to see the next burst: the round trip the path
        // behaves like is the smallest plus the bursts' spacing.
        let burst = self.measured_burst();
        if burst > bdp
            && let Some(rtt) = self.burst_rtt()
        {
            bdp += burst;
            min_rtt = rtt;
        }
        let in_flight = self.in_flight as f64;
        match self.path.phase {
            Phase::Startup if self.path.full_bw_rounds >= 3 => self.leave_startup(),
            Phase::Startup => {
                if self.path.startup_draining && in_flight <= bdp {
                    self.path.startup_draining = false;
                }
            }
            Phase::Drain if in_flight <= bdp => self.start_probing(now),
            Phase::Drain => {}
            Phase::Probe(i) => {
                let gain = self.probe_gain(i);
                let elapsed = self.path.cycle_start.is_none_or(|t| now >= t + min_rtt);
                let next = if gain > 1.0 {
                    // Probe until the extra is in flight, or loss says the
                    // path has no room for it.
                    elapsed && (in_flight >= gain * bdp || self.path.round_lost > 0)
                } else if gain < 1.0 {
                    // Give back until no queue is left (what the probe
                    // built, and what an estimate a hair too high has
                    // built since), or for a few round trips at most. A
                    // queue of more than a round trip is another flow's (a
                    // loss-based TCP filling a deep buffer): giving back for
                    // longer than the probe took would only hand it this
                    // flow's share.
                    let others = self.rtt() > 2 * min_rtt;
                    let most = if others { min_rtt } else { 4 * min_rtt };
                    in_flight <= bdp || self.path.cycle_start.is_none_or(|t| now >= t + most)
                } else {
                    elapsed
                };
                if next {
                    self.path.phase = Phase::Probe((i + 1) % PROBE_GAINS.len());
                    self.path.cycle_start = Some(now);
                }
            }
            Phase::ProbeRtt => {
                if self.path.probe_rtt_done.is_none() && in_flight <= self.probe_rtt_window() {
                    self.path.probe_rtt_done = Some(now + PROBE_RTT_TIME);
                    self.path.probe_rtt_round = Some(self.round);
                } else if let (Some(done), Some(round)) = (self.path.probe_rtt_done, self.path.probe_rtt_round)
                    && now >= done
                    && self.round > round
                    && round_start
                {
                    self.path.min_rtt_at = Some(now);
                    // What probe-RTT measures with this flow's own queue
                    // gone is the path (and others' queues): the minimum.
                    if let Some(seen) = self.path.probe_rtt_min {
                        self.path.min_rtt = Some(seen);
                    }
                    if self.path.filled_pipe {
                        self.start_probing(now);
                    } else {
                        self.path.phase = Phase::Startup;
                    }
                }
            }
        }
    }

    /// Enters the probe cycle at a phase other than the one that gives
    /// bandwidth back (chosen from the round count, as BBR picks one at
    /// random, so that flows sharing a bottleneck do not probe in step).
    fn start_probing(&mut self, now: Instant) {
        let start = [0, 2, 3, 4, 5, 6, 7][(self.round % 7) as usize];
        self.path.phase = Phase::Probe(start);
        self.path.cycle_start = Some(now);
    }

    /// The session's packets go another way from `now` on (a TCP relay
    /// instead of direct UDP, or back; `old_path_dead` when the old one had
    /// stopped working): nothing measured on the old path says anything
    /// about the new one, so the model starts afresh, in startup, which
    /// finds the new path's rate within a few of its round trips. The
    /// delivery count goes on (packets in flight carry it). Packets sent
    /// before the first acknowledgement over the new path take no rate or
    /// round-trip samples (they went the old way, or their acknowledgement
    /// may be for a copy that did), and losses reported within two of the
    /// old path's retransmission timeouts (what the old path held, or
    /// reordering between the two) do not count against the new one.
    pub fn on_path_change(&mut self, now: Instant, old_path_dead: bool) {
        let old_path = (self.rto_base() * 2).max(Duration::from_millis(200));
        self.path = PathModel::default();
        self.next_round_delivered = self.delivered;
        self.delivered_at = Some(now);
        self.first_sent = Some(now);
        self.app_limited_until = 0;
        self.path_samples_from = Some(None);
        self.old_path_dead = old_path_dead;
        self.old_path_until = Some(now + old_path);
    }

    /// Whether a packet sent at `sent` measures the current path.
    fn on_this_path(&self, sent: Instant) -> bool {
        match self.path_samples_from {
            None => true,
            Some(None) => false,
            Some(Some(from)) => sent >= from,
        }
    }

    /// The sender has nothing more to send while the window has room:
    /// what goes out until everything now in flight is acknowledged
    /// measures the application, not the path.
    pub fn on_app_limited(&mut self, in_flight: usize) {
        self.app_limited_until = (self.delivered + in_flight as u64).max(1);
    }

    /// The receiver's report at `now` showed `count` packets lost.
    pub fn on_loss(&mut self, now: Instant, count: usize) {
        if self.old_path_until.is_some_and(|until| now < until) {
            return;
        }
        self.losses += 1;
        self.path.round_lost += count as u64;
    }

    /// Nothing was acknowledged for a long time while data was in flight.
    pub fn on_timeout(&mut self) {
        self.losses += 1;
        self.path.stalled.get_or_insert((self.path.backoff, self.path.phase));
        self.path.backoff = (self.path.backoff * 0.5).max(0.1);
        if self.path.phase == Phase::Startup {
            self.path.phase = Phase::Probe(2);
        }
    }

    /// How many packets pacing and the window allow now, given `in_flight`.
    pub fn allowance(&mut self, now: Instant, in_flight: usize) -> usize {
        let rate = self.pacing_rate();
        let elapsed = self.path.last_refill.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.path.last_refill = Some(now);
        self.path.tokens =
            (self.path.tokens + rate * elapsed.as_secs_f64()).min(MIN_BURST.max(rate * BURST_TIME.as_secs_f64()));
        let window_room = self.window().saturating_sub(in_flight);
        // A hair under a whole token counts as one: float sums of tiny
        // refills land just below integers.
        let tokens = (self.path.tokens + 1e-6) as usize;
        if window_room == 0 {
            self.path.round_window_limited = true;
        }
        window_room.min(tokens)
    }

    /// `count` packets went out.
    pub fn on_sent(&mut self, count: usize) {
        self.path.tokens = (self.path.tokens - count as f64).max(0.0);
    }

    /// When pacing next allows one packet, if it does not now.
    pub fn next_send(&self, now: Instant) -> Instant {
        if self.path.tokens + 1e-6 >= 1.0 {
            return now;
        }
        let rate = self.pacing_rate();
        // Never "now" when nothing can go: at least 10 µs ahead.
        now + Duration::from_secs_f64(((1.0 - self.path.tokens) / rate).min(0.05)).max(Duration::from_micros(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bottleneck of `rate` packets per second and a round trip `rtt`
    /// without queueing, acknowledging every packet as it comes back.
    struct Path {
        t: Instant,
        rate: f64,
        rtt: Duration,
        busy_until: Instant,
        in_flight: VecDeque<(Instant, SentState)>,
        /// The longest a packet waited at the bottleneck.
        max_queue: Duration,
        /// Acknowledgements come only every this many milliseconds (a
        /// relay that forwards in rounds); 0: every millisecond.
        batch_ms: u64,
        steps: u64,
    }

    impl Path {
        fn new(rate: f64, rtt: Duration) -> Self {
            let t = crate::proto::test_epoch();
            Self {
                t,
                rate,
                rtt,
                busy_until: t,
                in_flight: VecDeque::new(),
                max_queue: Duration::ZERO,
                batch_ms: 0,
                steps: 0,
            }
        }

        /// Runs the controller for `secs`, always with data to send, in
        /// steps of 1 ms; acknowledgements come in batches per step.
        fn run(&mut self, cc: &mut Congestion, secs: f64) {
            for _ in 0..(secs * 1000.0) as usize {
                self.t += Duration::from_millis(1);
                self.steps += 1;
                let mut acked = Acked::default();
                let release = self.batch_ms == 0 || self.steps % self.batch_ms == 0;
                while release && self.in_flight.front().is_some_and(|(at, _)| *at <= self.t) {
                    let (_, state) = self.in_flight.pop_front().unwrap();
                    acked.count += 1;
                    acked.newest = Some(state);
                    acked.rtt_sent = Some(state.sent);
                }
                cc.on_ack(self.t, &acked, self.in_flight.len());
                let allowed = cc.allowance(self.t, self.in_flight.len());
                for _ in 0..allowed {
                    let state = cc.on_send(self.t, self.in_flight.len());
                    let start = self.busy_until.max(self.t);
                    self.max_queue = self.max_queue.max(start - self.t);
                    self.busy_until = start + Duration::from_secs_f64(1.0 / self.rate);
                    self.in_flight.push_back((self.busy_until + self.rtt, state));
                }
                cc.on_sent(allowed);
            }
        }

        fn queue(&self) -> Duration {
            self.busy_until.saturating_duration_since(self.t)
        }
    }

    #[test]
    fn learns_the_bottleneck_and_sizes_the_window() {
        let mut cc = Congestion::default();
        assert_eq!(cc.window(), INITIAL_WINDOW as usize);
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.run(&mut cc, 3.0);
        let bw = cc.bandwidth().unwrap();
        assert!((9_500.0..=10_500.0).contains(&bw), "{bw}");
        assert!(matches!(cc.path.phase, Phase::Probe(_)), "startup ended when the rate stopped growing");
        // Two bandwidth-delay products (10,000/s * 20 ms = 200), the
        // acknowledgement delay's worth (40) and two acknowledgements (32).
        let window = cc.window();
        assert!((430..=495).contains(&window), "{window}");
        let min_rtt = cc.min_rtt().unwrap();
        assert!(min_rtt >= Duration::from_millis(20) && min_rtt < Duration::from_millis(22), "{min_rtt:?}");
    }

    #[test]
    fn the_queue_it_builds_stays_small() {
        let mut cc = Congestion::default();
        let mut path = Path::new(10_000.0, Duration::from_millis(40));
        path.run(&mut cc, 3.0);
        // Startup overshoots; from then on pacing at the measured rate
        // keeps the bottleneck's queue short.
        path.max_queue = Duration::ZERO;
        path.run(&mut cc, 20.0);
        assert!(path.max_queue < Duration::from_millis(20), "{:?}", path.max_queue);
        assert!(path.queue() < Duration::from_millis(15), "{:?}", path.queue());
    }

    #[test]
    fn probe_rtt_measures_the_path_again_after_ten_seconds() {
        let mut cc = Congestion::default();
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.run(&mut cc, 9.0);
        assert_ne!(cc.path.phase, Phase::ProbeRtt);
        // The path gets longer: the old minimum expires, probe-RTT drains
        // the queue and the new minimum is learned.
        path.rtt = Duration::from_millis(50);
        let mut seen_probe = false;
        for _ in 0..120 {
            path.run(&mut cc, 0.1);
            seen_probe |= cc.path.phase == Phase::ProbeRtt;
        }
        assert!(seen_probe, "probe-RTT ran");
        let min_rtt = cc.min_rtt().unwrap();
        assert!(min_rtt >= Duration::from_millis(50) && min_rtt < Duration::from_millis(56), "{min_rtt:?}");
        assert!(matches!(cc.path.phase, Phase::Probe(_)), "{:?}", cc.path.phase);
        path.run(&mut cc, 2.0);
        let bw = cc.bandwidth().unwrap();
        assert!(bw > 9_000.0, "{bw}");
    }

    #[test]
    fn progress_after_a_stall_undoes_the_timeouts() {
        let mut cc = Congestion::default();
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.run(&mut cc, 3.0);
        let (bw, window) = (cc.bandwidth().unwrap(), cc.window());
        // A receiver holds its packets for a while: timeout after timeout.
        for _ in 0..5 {
            cc.on_timeout();
        }
        assert!(cc.bandwidth().unwrap() < bw / 5.0);
        assert!(cc.window() < window / 3);
        // It reads again: what was in flight is acknowledged at once.
        path.t += Duration::from_secs(2);
        path.busy_until = path.t;
        let mut acked = Acked::default();
        while let Some((_, state)) = path.in_flight.pop_front() {
            acked.count += 1;
            acked.newest = Some(state);
        }
        cc.on_ack(path.t, &acked, 0);
        assert_eq!(cc.bandwidth().unwrap(), bw);
        assert_eq!(cc.window(), window);
        // No sample spans the stall (a few hundred packets over 2 s would
        // read as a rate of a few hundred a second).
        path.run(&mut cc, 0.5);
        let now_bw = cc.bandwidth().unwrap();
        assert!(now_bw > 9_000.0, "{now_bw}");
        assert_eq!(cc.losses(), 5);
    }

    #[test]
    fn rounds_short_of_data_neither_lower_the_estimate_nor_end_startup() {
        let mut cc = Congestion::default();
        let rtt = Duration::from_millis(1);
        let mut t = crate::proto::test_epoch();
        // A trickle (a tunnel being set up): one packet a millisecond, the
        // sender out of data every time.
        for _ in 0..2000 {
            cc.on_app_limited(0);
            let state = cc.on_send(t, 0);
            t += rtt;
            cc.on_ack(t, &Acked { count: 1, newest: Some(state), rtt_sent: Some(state.sent), spurious: 0 }, 0);
        }
        assert_eq!(cc.path.phase, Phase::Startup, "still probing for the path's rate");
        // Then bulk data: the estimate climbs to the path's rate.
        let mut path = Path::new(100_000.0, rtt);
        path.t = t;
        path.busy_until = t;
        path.run(&mut cc, 1.0);
        let bw = cc.bandwidth().unwrap();
        assert!(bw > 90_000.0, "{bw}");
        // Another quiet spell does not drag it down.
        let mut t = path.t;
        for _ in 0..500 {
            cc.on_app_limited(0);
            let state = cc.on_send(t, 0);
            t += rtt;
            cc.on_ack(t, &Acked { count: 1, newest: Some(state), rtt_sent: Some(state.sent), spurious: 0 }, 0);
        }
        assert!(cc.bandwidth().unwrap() > 90_000.0, "{:?}", cc.bandwidth());
        assert!(cc.window() as f64 >= 2.0 * 100_000.0 * 0.001, "{}", cc.window());
    }

    #[test]
    fn a_queue_seen_while_short_of_data_does_not_end_startup() {
        let mut cc = Congestion::default();
        let mut t = crate::proto::test_epoch();
        // A trickle (keystrokes) while another flow fills the bottleneck's
        // queue: round trips go from 20 to 100 ms.
        for i in 0..400 {
            cc.on_app_limited(0);
            let state = cc.on_send(t, 0);
            let rtt = Duration::from_millis(if i < 50 { 20 } else { 100 });
            t += rtt;
            cc.on_ack(t, &Acked { count: 1, newest: Some(state), rtt_sent: Some(state.sent), spurious: 0 }, 0);
        }
        assert_eq!(cc.path.phase, Phase::Startup, "still probing for the path's rate");
        // Bulk data on a path whose queue is gone: startup finds the rate.
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.t = t;
        path.busy_until = t;
        path.run(&mut cc, 2.0);
        let bw = cc.bandwidth().unwrap();
        assert!(bw > 9_000.0, "{bw}");
    }

    #[test]
    fn random_loss_does_not_collapse_but_heavy_loss_backs_off() {
        let mut cc = Congestion::default();
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.run(&mut cc, 2.0);
        // 5 % loss: the estimate holds.
        for _ in 0..50 {
            cc.on_loss(path.t, 10);
            path.run(&mut cc, 0.02);
        }
        assert!(cc.bandwidth().unwrap() > 8_000.0, "{:?}", cc.bandwidth());
        // Half the packets lost, round after round: backs off.
        for _ in 0..10 {
            cc.on_loss(path.t, 400);
            path.run(&mut cc, 0.02);
        }
        assert!(cc.bandwidth().unwrap() < 2_000.0, "{:?}", cc.bandwidth());
        assert!(cc.losses() > 0);
    }

    #[test]
    fn pacing_spreads_packets() {
        let mut cc = Congestion::default();
        let mut path = Path::new(1_000.0, Duration::from_millis(50));
        path.run(&mut cc, 3.0);
        let t = path.t;
        let first = cc.allowance(t, 0);
        cc.on_sent(first);
        assert_eq!(cc.allowance(t, first), 0, "no time passed: no new tokens");
        let next = cc.next_send(t);
        assert!(next > t && next < t + Duration::from_millis(10), "{:?}", next - t);
        assert!(cc.allowance(t + Duration::from_millis(10), 0) >= 1);
        assert_eq!(cc.allowance(t + Duration::from_secs(1), 10_000), 0, "the window bounds what pacing grants");
    }

    #[test]
    fn acknowledgements_in_bursts_widen_the_window_to_keep_the_path_full() {
        // A relay that forwards every 30 ms on a 2 ms path: the smallest
        // round trip is about 2 ms, but acknowledgements come 30 ms apart.
        let mut cc = Congestion::default();
        let mut path = Path::new(5_000.0, Duration::from_millis(2));
        path.batch_ms = 30;
        path.run(&mut cc, 5.0);
        let before = path.in_flight.len();
        let t0 = path.t;
        let delivered = cc.delivered;
        path.run(&mut cc, 5.0);
        let rate = (cc.delivered - delivered) as f64 / (path.t - t0).as_secs_f64();
        assert!(rate > 4_500.0, "{rate:.0} packets/s of 5,000 ({before} in flight)");
        // Two bandwidth-delay products of the 2 ms path alone would be 20
        // packets plus the 32 of the floor: the burst allowance covers a
        // round of the relay, and no more than 100 ms of the rate.
        let window = cc.window();
        assert!((150..=600).contains(&window), "{window}");
        assert!(cc.min_rtt().unwrap() < Duration::from_millis(5), "{:?}", cc.min_rtt());
    }

    #[test]
    fn bursts_of_acknowledgements_after_losses_do_not_count_as_aggregation() {
        let mut cc = Congestion::default();
        let mut path = Path::new(10_000.0, Duration::from_millis(20));
        path.run(&mut cc, 3.0);
        let window = cc.window();
        // Every round loses packets, and the acknowledgements come in
        // bursts (as they do when resends fill holes).
        path.batch_ms = 20;
        for _ in 0..2000 {
            cc.on_loss(path.t, 1);
            path.run(&mut cc, 0.001);
        }
        assert!(cc.window() <= window + window / 10, "{} after {window}", cc.window());
    }

    #[test]
    fn a_new_path_starts_afresh_and_ignores_the_old_path() {
        let mut cc = Congestion::default();
        let mut path = Path::new(5_000.0, Duration::from_millis(40));
        path.run(&mut cc, 3.0);
        assert!(cc.bandwidth().unwrap() > 4_500.0);
        let old: Vec<_> = path.in_flight.drain(..).collect();
        let in_flight = old.len();
        // The session moves to a path ten times as fast and ten times as
        // near; what was in flight on the old one is acknowledged late.
        cc.on_path_change(path.t, false);
        assert_eq!((cc.path.phase, cc.bandwidth(), cc.min_rtt()), (Phase::Startup, None, None));
        assert_eq!(cc.window(), INITIAL_WINDOW as usize);
        // Losses of the old path's packets right after the move do not count.
        cc.on_loss(path.t + Duration::from_millis(10), in_flight);
        assert_eq!(cc.path.round_lost, 0);
        path.rate = 50_000.0;
        path.rtt = Duration::from_millis(4);
        path.busy_until = path.t;
        let moved = path.t;
        path.run(&mut cc, 0.05);
        // The old packets come in now: no sample from them.
        let mut acked = Acked::default();
        for (_, state) in &old {
            acked.count += 1;
            acked.newest = Some(*state);
            acked.rtt_sent = Some(state.sent);
        }
        cc.on_ack(path.t, &acked, path.in_flight.len());
        assert!(cc.min_rtt().unwrap() < Duration::from_millis(6), "{:?}", cc.min_rtt());
        path.run(&mut cc, 0.45);
        let bw = cc.bandwidth().unwrap();
        assert!(bw > 40_000.0, "{bw:.0}/s half a second after moving at {moved:?}");
    }
}
