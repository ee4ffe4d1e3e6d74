//! A TCP relay's path for the simulator: one direction of what a packet
//! crosses when two Tox peers talk through a relay (tox-bootstrapd, or a
//! relay inside a Tox client).
//!
//! The sender's TCP connection carries its packets to the relay without
//! loss and in order; they wait in the connection (the sender's socket and
//! queue, at most [`RelayConfig::backlog`] bytes, beyond which the sender
//! drops them as our driver does for a slow relay connection) until the
//! relay reads them. The relay reads every [`RelayConfig::period`] (c-toxcore's
//! daemon sleeps 30 ms between rounds), at most [`RelayConfig::read`] bytes
//! per read (its socket's receive buffer), and forwards what it read to the
//! receiver's connection at once: c-toxcore writes routed data without
//! blocking and drops a packet that does not fit in that socket
//! ([`RelayConfig::out_buffer`] bytes, drained at [`RelayConfig::rate`]).
//! So the path aggregates (packets and acknowledgements come in bursts
//! once per period), queues at the sender when it is offered too much, and
//! drops at the relay when a burst does not fit.
//!
//! Like [`Link`](super::link::Link), no per-packet state is kept: the
//! relay's next read and the receiver connection's queue follow from a few
//! numbers, since packets keep their order.

use std::time::{Duration, Instant};

/// Bytes a packet costs in the relay's stream beyond its net_crypto bytes:
/// the frame's length, MAC and connection id.
pub const FRAME_OVERHEAD: usize = 2 + 16 + 1;
/// What TCP and IP add per full segment, spread over its bytes.
const SEGMENT_OVERHEAD: f64 = 52.0 / 1448.0;

/// One direction of a relay path.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// One-way delay from the sender to the relay, and again from the
    /// relay to the receiver.
    pub delay: Duration,
    /// How often the relay wakes to read; zero: as soon as data arrives.
    pub period: Duration,
    /// How long it stays awake after each wake: what arrives meanwhile is
    /// read at once (c-toxcore's relay keeps reading while sockets have
    /// data, so a burst's acknowledgements can cross it within the same
    /// round).
    pub awake: Duration,
    /// Bytes (framed) the relay takes from the sender's connection per read.
    pub read: usize,
    /// Bytes (framed) that may wait in the sender's connection for the
    /// relay; a packet beyond it is dropped by the sender.
    pub backlog: usize,
    /// Bytes (framed) the relay's connection to the receiver holds; a
    /// packet that does not fit when the relay forwards it is dropped.
    pub out_buffer: usize,
    /// The rate of the relay's connection to the receiver, bits per second.
    pub rate: f64,
}

impl RelayConfig {
    /// A relay that forwards at once and never drops: only `delay` each way.
    pub fn instant(delay: Duration) -> Self {
        Self {
            delay,
            period: Duration::ZERO,
            awake: Duration::ZERO,
            read: usize::MAX,
            backlog: usize::MAX,
            out_buffer: usize::MAX,
            rate: f64::INFINITY,
        }
    }

    /// A c-toxcore relay (tox-bootstrapd): wakes every 30 ms and stays
    /// awake 5 ms, a receive buffer of `read` bytes and a socket of
    /// `out_buffer` bytes to the receiver on a fast link; `delay` to each
    /// end. The sender holds up to 256 packets and 1 MiB in its connection
    /// (our driver's queue and a socket's send buffer).
    pub fn bootstrapd(delay: Duration, read: usize, out_buffer: usize) -> Self {
        Self {
            delay,
            period: Duration::from_millis(30),
            awake: Duration::from_millis(5),
            read,
            backlog: 256 * 1419 + (1 << 20),
            out_buffer,
            rate: 1e9,
        }
    }
}

/// What a relay path did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RelayStats {
    /// Packets offered.
    pub sent: u64,
    /// Packets the sender dropped: its connection held [`RelayConfig::backlog`].
    pub dropped_at_sender: u64,
    /// Packets the relay dropped: the receiver's connection was full.
    pub dropped_at_relay: u64,
    /// The longest a packet waited for the relay to read it.
    pub max_wait: Duration,
    /// The most bytes waiting in the sender's connection.
    pub max_backlog: usize,
}

/// One direction of a relay path, on the simulator's clock.
#[derive(Debug, Clone)]
pub struct RelayPath {
    config: RelayConfig,
    /// The relay's reads happen at `epoch + k * period`.
    epoch: Instant,
    /// The read the last packet went into, and the bytes it took.
    slot: u64,
    slot_bytes: usize,
    /// When the relay's connection to the receiver is next idle.
    out_busy_until: Option<Instant>,
    stats: RelayStats,
}

impl RelayPath {
    /// A path with `config` whose relay reads at `epoch` and every period after.
    pub fn new(config: RelayConfig, epoch: Instant) -> Self {
        Self { config, epoch, slot: 0, slot_bytes: 0, out_busy_until: None, stats: RelayStats::default() }
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Changes the settings from now on.
    pub fn set(&mut self, config: RelayConfig) {
        self.config = config;
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// How long a packet sent at `now` would wait in the sender's
    /// connection before the relay reads it (zero when the relay has
    /// room in the read its arrival meets).
    pub fn backlog_delay(&self, now: Instant) -> Duration {
        if self.config.period.is_zero() {
            return Duration::ZERO;
        }
        let at_relay = now + self.config.delay;
        let next = self.read_at(self.slot);
        let full = self.slot_bytes >= self.config.read;
        let last = if full { self.read_at(self.slot + 1) } else { next };
        last.saturating_duration_since(at_relay + self.config.period)
    }

    /// When the relay's read number `slot` happens.
    fn read_at(&self, slot: u64) -> Instant {
        self.epoch + self.config.period * u32::try_from(slot).unwrap_or(u32::MAX)
    }

    /// A packet of `len` net_crypto bytes enters the sender's connection at
    /// `now`: when it reaches the receiver, or `None` if it is dropped.
    pub fn send(&mut self, now: Instant, len: usize) -> Option<Instant> {
        self.stats.sent += 1;
        let framed = len + FRAME_OVERHEAD;
        let at_relay = now + self.config.delay;
        let read_at = if self.config.period.is_zero() {
            at_relay
        } else {
            // The read its arrival meets: the current round's while the
            // relay is awake, else the next; a later one when the reads
            // before it are full.
            let since = at_relay.saturating_duration_since(self.epoch).as_nanos();
            let period = self.config.period.as_nanos();
            let current = since / period;
            let awake = since - current * period <= self.config.awake.as_nanos();
            let first = u64::try_from(if awake { current } else { current + 1 }).unwrap_or(u64::MAX);
            let (mut slot, mut slot_bytes) = if first > self.slot { (first, 0) } else { (self.slot, self.slot_bytes) };
            if slot_bytes > 0 && slot_bytes.saturating_add(framed) > self.config.read {
                slot += 1;
                slot_bytes = 0;
            }
            // What waits in the sender's connection ahead of it: the reads
            // after the one its arrival meets (that one's bytes are in the
            // relay's receive buffer already).
            let waiting = match slot - first {
                0 => 0,
                later => ((later - 1) as usize).saturating_mul(self.config.read).saturating_add(slot_bytes),
            };
            if waiting.saturating_add(framed) > self.config.backlog {
                self.stats.dropped_at_sender += 1;
                return None;
            }
            self.stats.max_backlog = self.stats.max_backlog.max(waiting + framed);
            self.slot = slot;
            self.slot_bytes = slot_bytes + framed;
            if slot == first && awake { at_relay } else { self.read_at(slot) }
        };
        self.stats.max_wait = self.stats.max_wait.max(read_at.saturating_duration_since(at_relay));
        // The relay writes it to the receiver's connection, or drops it.
        let busy = self.out_busy_until.map_or(read_at, |t| t.max(read_at));
        let queued =
            busy.saturating_duration_since(read_at).as_secs_f64() * self.config.rate / 8.0 / (1.0 + SEGMENT_OVERHEAD);
        // (Half a byte of slack for the clock's rounding.)
        if queued + framed as f64 > self.config.out_buffer as f64 + 0.5 {
            self.stats.dropped_at_relay += 1;
            return None;
        }
        let wire = framed as f64 * (1.0 + SEGMENT_OVERHEAD);
        let leaves = busy + Duration::from_secs_f64(wire * 8.0 / self.config.rate);
        self.out_busy_until = Some(leaves);
        Some(leaves + self.config.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_instant_relay_only_delays() {
        let t0 = crate::proto::test_epoch();
        let mut path = RelayPath::new(RelayConfig::instant(ms(20)), t0);
        for i in 0..1000 {
            let now = t0 + Duration::from_micros(i * 10);
            assert_eq!(path.send(now, 1400), Some(now + ms(40)));
        }
        assert_eq!(path.stats().dropped_at_relay + path.stats().dropped_at_sender, 0);
    }

    #[test]
    fn reads_come_in_rounds_of_at_most_the_receive_buffer() {
        let t0 = crate::proto::test_epoch();
        // Reads every 30 ms of two packets' worth; 1 ms to the relay.
        let framed = 1000 + FRAME_OVERHEAD;
        let config = RelayConfig {
            delay: ms(1),
            period: ms(30),
            awake: Duration::ZERO,
            read: 2 * framed,
            backlog: 4 * framed,
            out_buffer: usize::MAX,
            rate: f64::INFINITY,
        };
        let mut path = RelayPath::new(config, t0);
        let sent: Vec<_> = (0..7).map(|_| path.send(t0 + ms(5), 1000)).collect();
        // Arrive at 6 ms: the reads at 30, 60 and 90 ms take two each, and
        // the sender holds four at most: the seventh is dropped.
        let at = |n: u64| Some(t0 + ms(n) + ms(1));
        assert_eq!(sent, [at(30), at(30), at(60), at(60), at(90), at(90), None]);
        assert_eq!(path.stats().dropped_at_sender, 1);
        assert_eq!(path.stats().max_wait, ms(84));
        // Later packets go into the next read with room.
        assert_eq!(path.send(t0 + ms(100), 1000), at(120));
    }

    #[test]
    fn a_burst_that_does_not_fit_the_receivers_connection_is_dropped() {
        let t0 = crate::proto::test_epoch();
        let framed = 1000 + FRAME_OVERHEAD;
        // 8 Mbit/s to the receiver: a framed packet takes about 1 ms.
        let config = RelayConfig {
            delay: ms(1),
            period: ms(30),
            awake: ms(2),
            read: usize::MAX,
            backlog: usize::MAX,
            out_buffer: 3 * framed,
            rate: 8e6,
        };
        let mut path = RelayPath::new(config, t0);
        let sent: Vec<_> = (0..5).map(|_| path.send(t0, 1000)).collect();
        assert_eq!(sent.iter().filter(|s| s.is_some()).count(), 3, "{sent:?}");
        assert_eq!(path.stats().dropped_at_relay, 2);
        // The next read finds the connection drained.
        assert!(path.send(t0 + ms(40), 1000).is_some());
    }
}
