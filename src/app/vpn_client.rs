//! `tuntox vpn up`: a TUN device linked to a tuntox server over Tox.
//!
//! The device is created first (so a missing privilege shows at once; the
//! command line opens it even earlier, before `-U` drops root's rights), then
//! Tox starts and befriends the server as the forward client does. Each
//! time the server comes online the client says hello; the server's answer
//! gives the device its addresses and MTU, and routes through it the
//! networks asked for with `--route` that the server offers (nothing
//! else). While the server is away the device, addresses and routes stay
//! and packets for them are dropped (counted); when it is back the client
//! says hello again and, the address being kept per client key, carries on
//! with the same address. On exit (SIGINT, SIGTERM) the client says
//! goodbye and deletes the device, which takes its addresses and routes
//! with it.
//!
//! Exit-node loops: Tox's own packets to the server must not enter the
//! tunnel. The command line refuses a `--route` holding a bootstrap node;
//! here a `--route` holding the server's direct UDP address, once known,
//! stops the client with an error before any route is installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use ipnet::IpNet;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vpn::Event;

use super::Started;
use super::client::{ClientIdentity, start_tox};
use super::peers::PeerNumbers;
use super::progress::{
    ClientWatch, Diagnosis, GIVE_UP_AFTER_REFUSAL, describe_bootstrap, path_text, refusal_causes, refused,
};
use super::secret::Secret;
use super::status::{Place, Reporting, Source};
use super::vpn::{Lossless, VpnLink, stats_line};
use crate::crypto::PublicKey;
use crate::driver::tox::{Tox, ToxConfig, ToxEvent};
use crate::wire::tox_id::ToxId;

/// How often the counters are logged (at debug level, when they changed).
const STATS_INTERVAL: Duration = Duration::from_secs(10);

/// How `tuntox vpn up` runs.
#[derive(Debug)]
pub struct VpnClientConfig {
    /// Our identity.
    pub identity: ClientIdentity,
    /// The server.
    pub server: ToxId,
    /// The shared secret the server requires.
    pub secret: Option<Secret>,
    /// Networks to route through the server (only those it offers).
    pub routes: Vec<IpNet>,
    /// The MTU to ask for.
    pub mtu: u16,
    /// The TUN device's name.
    pub device: String,
    /// The TUN device, when it was opened before (by a process that drops
    /// root's rights afterwards: `-U`); `None` creates `device` here.
    pub opened: Option<vpn::device::OpenedDevice>,
    /// Fail when the server has not accepted us this long after start;
    /// `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// Write our Tox ID here.
    pub id_file: Option<PathBuf>,
    /// How the Tox instance starts (keys are filled in here).
    pub tox: ToxConfig,
    /// Where `tuntox status` is served.
    pub status: Place,
    /// Where Prometheus metrics are served (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Told once the device exists, the Tox socket is bound and the status
    /// socket made.
    pub started: Started,
}

/// What the TUN device takes, for error messages.
pub const NEEDS: &str = "tuntox vpn up needs root, or CAP_NET_ADMIN and read-write access to /dev/net/tun";

/// A route that would send Tox's own packets into the tunnel.
pub fn route_covering(routes: &[IpNet], addr: std::net::IpAddr) -> Option<IpNet> {
    routes.iter().find(|r| r.contains(&addr)).copied()
}

/// Runs the VPN client until `cancel` fires; an error for a refusal, a
/// device that cannot be set up, or a server that never accepts us.
pub async fn run(mut config: VpnClientConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    // A pool over networks this host already routes is refused.
    let avoid = vpn::host::routes(&config.device).context("cannot read this host's routes")?;
    let engine = vpn::Engine::client(vpn::ClientConfig { mtu: config.mtu, routes: config.routes.clone(), avoid })?;
    let device = match config.opened.take() {
        Some(opened) => vpn::device::Device::attach(opened, config.mtu).await,
        None => vpn::device::Device::create(Some(&config.device), config.mtu, true).await,
    }
    .map_err(|e| anyhow!("{e} ({NEEDS})"))?;
    tracing::debug!(dev = device.name(), offload = device.offload(), "VPN device created");
    let bootstrap = describe_bootstrap(&config.tox.bootstrap);
    let causes = refusal_causes(config.secret.is_some(), matches!(config.identity, ClientIdentity::Persistent(_)));
    let (tox, _lock) = match start_tox(
        &config.identity,
        config.server,
        config.secret.as_ref(),
        config.id_file.as_deref(),
        config.tox,
        &cancel,
    )
    .await
    {
        Ok(tox) => tox,
        Err(e) => {
            let _ = device.close().await;
            return Err(e);
        }
    };
    let server = *config.server.public_key();
    let numbers = PeerNumbers::new();
    let (link, events) = match VpnLink::start(engine, device, tox.sender(), numbers.clone(), cancel.child_token()).await
    {
        Ok(started) => started,
        Err(e) => {
            tox.shutdown().await;
            return Err(anyhow!("cannot start the VPN: {e}"));
        }
    };
    let mut source = Source::new("vpn client", tox.sender().node());
    source.tox_id = Some(tox.tox_id());
    source.udp = Some(tox.local_addr());
    source.tcp_listen = tox.tcp_addrs().to_vec();
    source.vpn = Some((link.vpn().clone(), numbers));
    let _reporting = match Reporting::start(&config.status, config.metrics, source, cancel.child_token()).await {
        Ok(status) => status,
        Err(e) => {
            let _ = link.shutdown().await;
            tox.shutdown().await;
            return Err(e);
        }
    };
    // The device makes the server in use for as long as we run: its loss
    // is noticed within seconds.
    let diagnosis = ClientWatch {
        node: tox.sender().node(),
        server,
        bootstrap,
        causes,
        on_change: Box::new(|_| {}),
        in_use: Box::new(|| true),
    }
    .spawn(cancel.child_token());
    config.started.signal();
    let mut session = Session { tox, link, events, server, routes: config.routes, accepted: false, diagnosis };
    let result = session.run(config.connect_timeout, &cancel).await;
    let (stats, closed) = session.link.shutdown().await;
    tracing::info!("VPN counters: {}", stats_line(&stats));
    if let Err(e) = closed {
        tracing::error!("cannot delete the VPN device: {e}");
    }
    session.tox.shutdown().await;
    result
}

struct Session {
    tox: Tox,
    link: VpnLink,
    events: tokio::sync::mpsc::Receiver<Event>,
    server: PublicKey,
    routes: Vec<IpNet>,
    accepted: bool,
    diagnosis: watch::Receiver<Diagnosis>,
}

impl Session {
    async fn run(&mut self, connect_timeout: Option<Duration>, cancel: &CancellationToken) -> anyhow::Result<()> {
        let limit = connect_timeout.unwrap_or(Duration::MAX);
        let give_up = tokio::time::sleep(limit.min(Duration::from_secs(100 * 365 * 86_400)));
        tokio::pin!(give_up);
        let refusal = refused(self.diagnosis.clone(), GIVE_UP_AFTER_REFUSAL);
        tokio::pin!(refusal);
        let mut stats_timer = tokio::time::interval(STATS_INTERVAL);
        let mut last_stats = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = &mut give_up, if !self.accepted && connect_timeout.is_some() => bail!(
                    "the server did not accept us within {} s (--connect-timeout): {}",
                    limit.as_secs(),
                    self.diagnosis.borrow().note
                ),
                () = &mut refusal, if !self.accepted && connect_timeout.is_some() => {
                    bail!("{}", self.diagnosis.borrow().note)
                }
                event = self.tox.next_event() => match event {
                    Some(event) => self.tox_event(event).await?,
                    // Tox stops with `cancel` too: that is a normal end.
                    None if cancel.is_cancelled() => return Ok(()),
                    None => bail!("Tox stopped"),
                },
                Some(event) = self.events.recv() => self.vpn_event(event)?,
                _ = stats_timer.tick() => {
                    let stats = self.link.stats();
                    if last_stats != Some(stats) {
                        tracing::debug!("VPN counters: {}", stats_line(&stats));
                        last_stats = Some(stats);
                    }
                }
            }
        }
    }

    async fn tox_event(&mut self, event: ToxEvent) -> anyhow::Result<()> {
        match event {
            ToxEvent::FriendConnected { public_key, path } if public_key == self.server => {
                self.accepted = true;
                if let Some(addr) = self.server_addr().await
                    && let Some(route) = route_covering(&self.routes, addr.ip())
                {
                    bail!(
                        "--route {route} holds the server's address {}: Tox's packets to the server would enter the \
                         tunnel (routes that cover the server, such as 0.0.0.0/0, are not supported)",
                        addr.ip()
                    );
                }
                tracing::info!("connected to the server ({})", path_text(path));
                self.link.connected(public_key);
            }
            ToxEvent::FriendLost { public_key } if public_key == self.server => {
                tracing::warn!("lost the server; keeping the device (packets are dropped) until it is back");
                self.link.lost(public_key);
            }
            ToxEvent::Lossless { public_key, data }
                if public_key == self.server && Lossless::of(&data) == Lossless::VpnControl =>
            {
                self.link.control(public_key, &data);
            }
            ToxEvent::Lossy { public_key, data }
                if public_key == self.server && data.first() == Some(&vpn::DATA_ID) =>
            {
                self.link.data(public_key, data).await;
            }
            ToxEvent::FriendRequest { public_key, .. } => {
                tracing::debug!(from = %public_key, "ignored a friend request (clients accept none)");
            }
            ToxEvent::Online(online) => tracing::debug!(online, "announced on the Tox network"),
            _ => {}
        }
        Ok(())
    }

    /// The server's direct UDP address, when Tox reaches it directly.
    async fn server_addr(&self) -> Option<SocketAddr> {
        let key = self.server;
        self.tox.with(move |node, _| node.net_crypto().session(&key).and_then(|s| s.addr)).await.ok().flatten()
    }

    fn vpn_event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            Event::Assigned { assignment, resumed } => {
                let addresses: Vec<String> = assignment.addresses().map(|a| a.to_string()).collect();
                let routes: Vec<String> = assignment.routes.iter().map(ToString::to_string).collect();
                if resumed {
                    tracing::info!("VPN resumed: {} (the same as before)", addresses.join(", "));
                } else {
                    tracing::info!(
                        dev = self.link.vpn().device_name(),
                        mtu = assignment.mtu,
                        "VPN up: {}; routes: {}",
                        addresses.join(", "),
                        if routes.is_empty() { "none".to_owned() } else { routes.join(", ") }
                    );
                }
                if !assignment.refused.is_empty() {
                    let refused: Vec<String> = assignment.refused.iter().map(ToString::to_string).collect();
                    let offered: Vec<String> = assignment.offered.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        "the server does not offer {} (it offers: {}); not routed",
                        refused.join(", "),
                        if offered.is_empty() { "nothing".to_owned() } else { offered.join(", ") }
                    );
                }
            }
            Event::Refused { reason, text } if reason.is_final() => {
                bail!("the server refused the VPN: {}", if text.is_empty() { reason.to_string() } else { text })
            }
            Event::Refused { reason, text } => {
                tracing::warn!("the server refused the VPN for now ({reason}: {text}); asking again in 30 s");
            }
            Event::DeviceFailed { message } => bail!("cannot set up the VPN device: {message}"),
            Event::Rejected { message } => bail!("refusing the server's VPN session: {message}"),
            Event::ServerLost => tracing::debug!("the VPN session ended; waiting for the server"),
            other => tracing::debug!(?other, "VPN event"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_holding_an_address_are_found() {
        let routes: Vec<IpNet> = vec!["192.168.77.0/24".parse().unwrap(), "fd00:77::/64".parse().unwrap()];
        assert_eq!(route_covering(&routes, "192.168.77.9".parse().unwrap()), Some(routes[0]));
        assert_eq!(route_covering(&routes, "10.0.0.1".parse().unwrap()), None);
        let all: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap()];
        assert!(route_covering(&all, "198.51.100.7".parse().unwrap()).is_some());
        assert!(route_covering(&all, "2001:db8::1".parse().unwrap()).is_none());
    }
}
