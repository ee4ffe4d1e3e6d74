//! Connects Tox friends to the VPN (the `vpn` crate), which knows peers
//! only as numbers, as [`super::bridge`] does for the tunnel engine.
//!
//! Friends are numbered in the same [`PeerNumbers`] as the tunnel bridge's.
//! The VPN's data packets (`[vpn::DATA_ID][IP packet]`) leave as Tox lossy
//! packets, a whole TUN read's batch per command to the node (a full node
//! queue drops them, counted, as a lossy link would); its control packets
//! (`[vpn::CONTROL_ID]...`) leave lossless and in order, from one task. In
//! the other direction the owner of the Tox events hands over lossless
//! control packets ([`VpnLink::control`]) and lossy data packets
//! ([`VpnLink::data`]).
//!
//! [`VpnLink::shutdown`] says goodbye to the peers, waits (bounded) for the
//! goodbyes to be queued on Tox, and deletes the device.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vpn::device::{Device, DeviceError};
use vpn::runner::{DataSink, Vpn};
use vpn::{Event, PeerId, Stats};

use super::peers::PeerNumbers;
use crate::crypto::PublicKey;
use crate::driver::tox::ToxSender;

/// How long the last control packets (goodbyes) may take to be queued on
/// Tox at shutdown.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// Data packets toward Tox: one lossy packet each, a batch per command.
struct ToxSink {
    tox: ToxSender,
    numbers: PeerNumbers,
}

impl DataSink for ToxSink {
    fn send_data(&self, peer: PeerId, packet: Bytes) -> bool {
        self.numbers.key_of(peer.0).is_some_and(|key| self.tox.try_send_lossy(key, packet))
    }

    fn send_batch(&self, packets: &mut Vec<(PeerId, Bytes)>) -> u64 {
        let total = packets.len() as u64;
        let batch: Vec<(PublicKey, Bytes)> = {
            let lookup = self.numbers.lookup();
            packets.drain(..).filter_map(|(peer, packet)| lookup.key_of(peer.0).map(|key| (key, packet))).collect()
        };
        let known = batch.len() as u64;
        if self.tox.try_send_lossy_batch(batch) { total - known } else { total }
    }
}

/// The VPN wired to Tox friends.
#[derive(Debug)]
pub struct VpnLink {
    vpn: Vpn,
    numbers: PeerNumbers,
    pump: JoinHandle<()>,
}

impl VpnLink {
    /// Starts `engine` on `device`, sending through `tox`. Returns the link
    /// and the VPN's events.
    pub async fn start(
        engine: vpn::Engine,
        device: Device,
        tox: ToxSender,
        numbers: PeerNumbers,
        cancel: CancellationToken,
    ) -> Result<(VpnLink, mpsc::Receiver<Event>), DeviceError> {
        let sink = ToxSink { tox: tox.clone(), numbers: numbers.clone() };
        let (vpn, outputs) = Vpn::start(engine, device, sink, cancel).await?;
        let mut control = outputs.control;
        let keys = numbers.clone();
        // In order, waiting for room: control packets are few and must not
        // be lost. The pump ends when the VPN's control task has stopped and
        // its last packets are sent.
        let pump = tokio::spawn(async move {
            while let Some(packet) = control.recv().await {
                let Some(key) = keys.key_of(packet.peer.0) else { continue };
                if let Err(e) = tox.send_lossless(key, packet.packet).await {
                    tracing::debug!(friend = %key, "VPN control packet not sent: {e}");
                }
            }
        });
        Ok((VpnLink { vpn, numbers, pump }, outputs.events))
    }

    /// The VPN's peer number of a friend.
    pub fn peer(&self, key: PublicKey) -> PeerId {
        PeerId(self.numbers.number(key))
    }

    /// The friend behind a peer number.
    pub fn key_of(&self, peer: PeerId) -> Option<PublicKey> {
        self.numbers.key_of(peer.0)
    }

    /// The running VPN (counters, the client's session).
    pub fn vpn(&self) -> &Vpn {
        &self.vpn
    }

    /// A friend came online.
    pub fn connected(&self, key: PublicKey) {
        self.vpn.peer_connected(self.peer(key), key.as_bytes());
    }

    /// A friend went offline.
    pub fn lost(&self, key: PublicKey) {
        self.vpn.peer_lost(self.peer(key));
    }

    /// A lossless packet from a friend that starts with
    /// [`vpn::CONTROL_ID`].
    pub fn control(&self, key: PublicKey, packet: &[u8]) {
        self.vpn.handle_control(self.peer(key), packet);
    }

    /// A lossy packet from a friend that starts with [`vpn::DATA_ID`];
    /// dropped (counted) when the TUN writer is behind. Yields when the
    /// writer's queue is half full: on one thread the writer runs only
    /// when the caller lets it, and a burst of the node's events would
    /// otherwise overflow the queue.
    pub async fn data(&self, key: PublicKey, packet: Bytes) {
        self.vpn.handle_data(self.peer(key), packet);
        if self.vpn.inbound_backlog() >= vpn::runner::INBOUND_QUEUE / 2 {
            tokio::task::yield_now().await;
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.vpn.stats()
    }

    /// Says goodbye, stops the VPN and deletes its device; returns the
    /// final counters.
    pub async fn shutdown(self) -> (Stats, Result<(), DeviceError>) {
        let closed = self.vpn.shutdown().await;
        let stats = self.vpn.stats();
        let mut pump = self.pump;
        if tokio::time::timeout(GOODBYE_WAIT, &mut pump).await.is_err() {
            tracing::debug!("VPN goodbyes not all sent within {GOODBYE_WAIT:?}");
            pump.abort();
        }
        (stats, closed)
    }
}

/// One line of counters for the log: packets and bytes each way, then
/// every drop reason with a count.
pub fn stats_line(stats: &Stats) -> String {
    let mut line = format!(
        "in {} packets ({} bytes), out {} packets ({} bytes), MSS clamped {}, refused {}, dropped {}",
        stats.packets_in,
        stats.bytes_in,
        stats.packets_out,
        stats.bytes_out,
        stats.mss_clamped,
        stats.refused,
        stats.dropped.total()
    );
    for (reason, n) in stats.dropped.nonzero() {
        line.push_str(&format!(" {reason}={n}"));
    }
    line
}

/// The first byte of a lossless packet tells whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lossless {
    /// A tunnel frame (`0xA2`, C tuntox's protocol).
    Tunnel,
    /// A VPN control packet.
    VpnControl,
    /// Neither: not ours.
    Other,
}

impl Lossless {
    /// Sorts a lossless packet by its first byte.
    pub fn of(packet: &[u8]) -> Lossless {
        match packet.first() {
            Some(&b) if b == tunnel::frame::MAGIC.to_be_bytes()[0] => Lossless::Tunnel,
            Some(&vpn::CONTROL_ID) => Lossless::VpnControl,
            _ => Lossless::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_packets_are_sorted_by_first_byte() {
        assert_eq!(Lossless::of(&[0xA2, 0x6B, 0, 0]), Lossless::Tunnel);
        assert_eq!(Lossless::of(&[vpn::CONTROL_ID, 1, 1]), Lossless::VpnControl);
        assert_eq!(Lossless::of(&[160]), Lossless::Other);
        assert_eq!(Lossless::of(&[]), Lossless::Other);
    }

    #[test]
    fn the_stats_line_names_each_drop() {
        let mut stats = Stats { packets_in: 3, bytes_in: 300, ..Stats::default() };
        stats.dropped.add_n(vpn::Drop::SourceNotAllowed, 2);
        let line = stats_line(&stats);
        assert!(line.starts_with("in 3 packets (300 bytes)"), "{line}");
        assert!(line.ends_with("dropped 2 source_not_allowed=2"), "{line}");
    }
}
