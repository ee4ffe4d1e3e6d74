//! A bottleneck link for the simulator: one direction of a path with a
//! propagation delay, random loss, a rate limit and a drop-tail queue.
//!
//! A datagram first meets random loss; then it joins the queue in front of
//! the link if the bytes already waiting there leave room for it (else it is
//! dropped, as a full router buffer drops it); it leaves the queue after
//! everything ahead of it has been serialised at the link's rate, and
//! arrives one propagation delay later. No per-packet state is kept: the
//! queue's content follows from when the link becomes free
//! (`busy_until`), since it drains at a constant rate.

use std::time::{Duration, Instant};

use rand_core::Rng;

/// Bytes a datagram costs on the wire beyond its UDP payload (IPv4 + UDP).
pub const WIRE_OVERHEAD: usize = 28;

/// One direction of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// The rate in bits per second; `None` for no limit (and no queue).
    pub rate: Option<f64>,
    /// Bytes the queue in front of the link holds (drop-tail).
    pub queue: usize,
    /// Probability a datagram is lost before the queue.
    pub loss: f64,
    /// Extra delay drawn uniformly from zero to this, per datagram, after
    /// the queue (datagrams overtake one another: reordering).
    pub jitter: Duration,
}

impl LinkConfig {
    /// A link with `delay` and nothing else: no rate limit, no loss.
    pub fn delay(delay: Duration) -> Self {
        Self { delay, rate: None, queue: usize::MAX, loss: 0.0, jitter: Duration::ZERO }
    }

    /// The same link limited to `mbit` Mbit/s, with a queue of `bdps`
    /// bandwidth-delay products of the round trip `rtt` (at least 3
    /// full-size datagrams).
    pub fn rate_mbit(self, mbit: f64, rtt: Duration, bdps: f64) -> Self {
        let rate = mbit * 1e6;
        let queue = ((rate / 8.0 * rtt.as_secs_f64() * bdps) as usize).max(3 * 1500);
        Self { rate: Some(rate), queue, ..self }
    }

    /// The same link with random loss `loss`.
    pub fn lossy(self, loss: f64) -> Self {
        Self { loss, ..self }
    }

    /// The same link with up to `jitter` of extra delay per datagram.
    pub fn jittery(self, jitter: Duration) -> Self {
        Self { jitter, ..self }
    }
}

/// What a link did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkStats {
    /// Datagrams offered.
    pub sent: u64,
    /// Datagrams lost at random.
    pub lost: u64,
    /// Datagrams dropped because the queue was full.
    pub dropped: u64,
    /// Bytes that went through (wire size).
    pub bytes: u64,
    /// The longest a datagram waited in the queue.
    pub max_queue_delay: Duration,
}

/// One direction of a link, on the simulator's clock.
#[derive(Debug, Clone)]
pub struct Link {
    config: LinkConfig,
    busy_until: Option<Instant>,
    stats: LinkStats,
    /// Queue delays seen, one per datagram that went through (for percentiles).
    delays: Vec<Duration>,
}

impl Link {
    /// A link with `config`.
    pub fn new(config: LinkConfig) -> Self {
        Self { config, busy_until: None, stats: LinkStats::default(), delays: Vec::new() }
    }

    /// The link's settings.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Changes the settings from now on (what is queued keeps its times).
    pub fn set(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// How long a datagram joining the queue at `now` waits before it is
    /// serialised.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.busy_until.map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// The `p`-th percentile (0-100) of the queue delays datagrams had.
    pub fn queue_delay_percentile(&self, p: f64) -> Duration {
        if self.delays.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.delays.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    /// Forgets the queue delays recorded so far (to measure a later stretch).
    pub fn reset_delays(&mut self) {
        self.delays.clear();
    }

    /// A datagram of `len` bytes (UDP payload) enters the link at `now`:
    /// when it arrives at the far end, or `None` if it is lost or dropped.
    pub fn send(&mut self, now: Instant, len: usize, rng: &mut impl Rng) -> Option<Instant> {
        self.stats.sent += 1;
        if self.config.loss > 0.0 && ((rng.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < self.config.loss {
            self.stats.lost += 1;
            return None;
        }
        let wire = len + WIRE_OVERHEAD;
        let jitter = match self.config.jitter.as_nanos() as u64 {
            0 => Duration::ZERO,
            span => Duration::from_nanos(rng.next_u64() % span),
        };
        let Some(rate) = self.config.rate else {
            self.stats.bytes += wire as u64;
            return Some(now + self.config.delay + jitter);
        };
        let wait = self.queue_delay(now);
        let queued = (wait.as_secs_f64() * rate / 8.0) as usize;
        if queued + wire > self.config.queue {
            self.stats.dropped += 1;
            return None;
        }
        let serialise = Duration::from_secs_f64(wire as f64 * 8.0 / rate);
        let leaves = now + wait + serialise;
        self.busy_until = Some(leaves);
        self.stats.bytes += wire as u64;
        self.stats.max_queue_delay = self.stats.max_queue_delay.max(wait);
        self.delays.push(wait);
        Some(leaves + self.config.delay + jitter)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn serialises_at_the_rate_and_drops_when_the_queue_is_full() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t0 = crate::proto::test_epoch();
        // 12 Mbit/s: a 1472-byte payload (1500 on the wire) takes 1 ms.
        let config = LinkConfig {
            delay: Duration::from_millis(10),
            rate: Some(12e6),
            queue: 4500,
            loss: 0.0,
            jitter: Duration::ZERO,
        };
        let mut link = Link::new(config);
        let arrivals: Vec<_> = (0..5).map(|_| link.send(t0, 1472, &mut rng)).collect();
        let ms = |n: u64| Some(t0 + Duration::from_millis(n));
        // Three fit (4500 bytes): 1 ms each, then 10 ms of delay.
        assert_eq!(arrivals[..3], [ms(11), ms(12), ms(13)]);
        assert_eq!(arrivals[3..], [None, None], "the queue holds 4500 bytes");
        assert_eq!(link.stats().dropped, 2);
        // Once the queue drains, datagrams go straight through.
        assert_eq!(link.send(t0 + Duration::from_millis(50), 1472, &mut rng), ms(61));
        assert_eq!(link.stats().max_queue_delay, Duration::from_millis(2));
    }

    #[test]
    fn random_loss_is_near_its_setting_and_unlimited_links_only_delay() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let t0 = crate::proto::test_epoch();
        let mut link = Link::new(LinkConfig::delay(Duration::from_millis(20)).lossy(0.03));
        let through = (0..100_000).filter_map(|_| link.send(t0, 1000, &mut rng)).collect::<Vec<_>>();
        let lost = 100_000 - through.len();
        assert!((2_700..3_300).contains(&lost), "{lost}");
        assert!(through.iter().all(|&t| t == t0 + Duration::from_millis(20)));
    }

    #[test]
    fn queue_sizes_follow_the_bandwidth_delay_product() {
        let config = LinkConfig::delay(Duration::from_millis(20)).rate_mbit(100.0, Duration::from_millis(40), 4.0);
        // 100 Mbit/s * 40 ms = 500,000 bytes; four of them.
        assert_eq!(config.queue, 2_000_000);
    }
}
