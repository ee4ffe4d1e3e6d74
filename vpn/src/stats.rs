//! Counters: packets and bytes each way, and drops by reason.

use std::fmt;

/// Why a packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// From the TUN: no route to the destination.
    NoRoute,
    /// The peer the packet belongs to is offline (or has no session yet).
    PeerOffline,
    /// From a peer without a session (no hello answered yet).
    NoSession,
    /// From a peer, with a source address the peer may not use.
    SourceNotAllowed,
    /// From a peer, to a destination it was not offered (the server's
    /// other addresses, a network not routed to it, another client).
    DestinationNotAllowed,
    /// Not a valid IPv4 or IPv6 packet.
    Malformed,
    /// Longer than the session MTU.
    TooBig,
    /// A lossy packet whose first byte is not the VPN data id.
    NotData,
    /// A queue between the tasks was full.
    QueueFull,
    /// The carrier refused the packet (peer offline, its queue full).
    SendFailed,
    /// The TUN device refused the packet.
    TunWrite,
}

impl Drop {
    /// Every reason, in counter order.
    pub const ALL: [Drop; 11] = [
        Drop::NoRoute,
        Drop::PeerOffline,
        Drop::NoSession,
        Drop::SourceNotAllowed,
        Drop::DestinationNotAllowed,
        Drop::Malformed,
        Drop::TooBig,
        Drop::NotData,
        Drop::QueueFull,
        Drop::SendFailed,
        Drop::TunWrite,
    ];

    fn index(self) -> usize {
        Drop::ALL.iter().position(|d| *d == self).unwrap_or(0)
    }

    /// A short name for logs and status output.
    pub fn name(self) -> &'static str {
        match self {
            Drop::NoRoute => "no_route",
            Drop::PeerOffline => "peer_offline",
            Drop::NoSession => "no_session",
            Drop::SourceNotAllowed => "source_not_allowed",
            Drop::DestinationNotAllowed => "destination_not_allowed",
            Drop::Malformed => "malformed",
            Drop::TooBig => "too_big",
            Drop::NotData => "not_data",
            Drop::QueueFull => "queue_full",
            Drop::SendFailed => "send_failed",
            Drop::TunWrite => "tun_write",
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Packets dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped([u64; Drop::ALL.len()]);

impl Dropped {
    /// Counts one drop.
    pub fn add(&mut self, reason: Drop) {
        self.0[reason.index()] += 1;
    }

    /// Counts `n` drops.
    pub fn add_n(&mut self, reason: Drop, n: u64) {
        self.0[reason.index()] += n;
    }

    /// Drops for one reason.
    pub fn get(&self, reason: Drop) -> u64 {
        self.0[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (reason, count) for every reason with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (Drop, u64)> + '_ {
        Drop::ALL.iter().map(|d| (*d, self.get(*d))).filter(|(_, n)| *n > 0)
    }
}

/// The engine's counters. "In" is from peers toward the TUN, "out" from the
/// TUN toward peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// IP packets accepted from peers.
    pub packets_in: u64,
    /// Their bytes (IP packets, without the data id byte).
    pub bytes_in: u64,
    /// IP packets passed toward peers.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// TCP SYNs whose MSS was lowered.
    pub mss_clamped: u64,
    /// Control packets received.
    pub control_in: u64,
    /// Control packets queued to send.
    pub control_out: u64,
    /// Control packets that could not be decoded or were unexpected.
    pub control_bad: u64,
    /// Sessions refused (server) or refusals received (client).
    pub refused: u64,
    /// Packets dropped, by reason.
    pub dropped: Dropped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let mut d = Dropped::default();
        d.add(Drop::NoRoute);
        d.add_n(Drop::TunWrite, 3);
        assert_eq!(d.get(Drop::NoRoute), 1);
        assert_eq!(d.get(Drop::TunWrite), 3);
        assert_eq!(d.get(Drop::Malformed), 0);
        assert_eq!(d.total(), 4);
        assert_eq!(d.nonzero().collect::<Vec<_>>(), vec![(Drop::NoRoute, 1), (Drop::TunWrite, 3)]);
        assert_eq!(Drop::SourceNotAllowed.to_string(), "source_not_allowed");
    }
}
