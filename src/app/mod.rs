//! The application layer: our identity, the shared secret, and the wiring
//! of Tox friends to the tunnel engine ([`bridge`]) and the VPN ([`vpn`]),
//! both numbering friends in one [`peers::PeerNumbers`]; the server, the
//! forward client, the VPN client ([`vpn_client`]), the relay, and
//! `tuntox netcheck` ([`netcheck`]); what a running mode reports to
//! `tuntox status` ([`status`]) and to Prometheus ([`metrics`]).

pub mod accepted;
pub mod bootstrap;
pub mod bridge;
pub mod client;
pub mod friends;
pub mod identity;
pub mod metrics;
pub mod netcheck;
pub mod notify;
pub mod peers;
pub mod progress;
pub mod relay;
pub mod secret;
pub mod server;
pub mod status;
pub mod vpn;
pub mod vpn_client;

use tokio::sync::oneshot;

/// Says once that a mode has started: its identity is loaded and its
/// sockets are bound. `tuntox -z` waits for this before the launcher exits.
#[derive(Debug, Default)]
pub struct Started(Option<oneshot::Sender<()>>);

impl Started {
    /// A notifier and the receiver it tells.
    pub fn channel() -> (Started, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Started(Some(tx)), rx)
    }

    /// Reports the start (the first call only).
    pub fn signal(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
