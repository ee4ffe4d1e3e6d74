//! The tuntox server: the remote side that clients reach.
//!
//! It keeps a fixed Tox identity in the config directory (locked: one
//! process per directory), accepts friend requests as C tuntox does (with
//! a shared secret the request message must be the secret followed by a NUL
//! byte, compared in constant time; with an allow-list only listed keys are
//! accepted), remembers accepted friends in `tox_save` with the time each
//! was last seen, so they reconnect after a restart without a new request
//! (clients without an identity only for the session; see
//! [`friends`](super::friends)), and opens the tunnels its friends ask for
//! through the tunnel engine's exit side.
//!
//! With `--vpn` it also serves VPN clients (`tuntox vpn up`): a friend is a
//! friend, whichever it asks for. Lossless packets are sorted by their
//! first byte ([`Lossless`]): tunnel frames to the tunnel bridge, VPN
//! control packets to the VPN; lossy VPN data packets go to the VPN. The
//! TUN device exists only with `--vpn`; the firewall rules that keep
//! clients to the server's VPN address and the offered routes, forwarding
//! (and `--vpn-nat` masquerading) toward those routes are set up after it
//! and removed on exit. Without `--vpn` a VPN client's hello gets a refusal saying so.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ipnet::{IpNet, Ipv4Net};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tunnel::{Engine, ExitConfig, Rules};
use vpn::nat::{ForwardConfig, Forwarding};

use super::Started;
use super::accepted::{self, AcceptedBy, revoke_other_secrets};
use super::bridge::Bridge;
use super::friends::{Book, FriendCommand, Kept, split_request, unix_now};
use super::identity::{DirLock, Identity};
use super::peers::PeerNumbers;
use super::progress::{self, JoinWatch, describe_bootstrap, path_text};
use super::secret::Secret;
use super::status::{Place, Reporting, Source};
use super::vpn::{Lossless, VpnLink, stats_line};
use crate::crypto::PublicKey;
use crate::driver::tox::{Tox, ToxConfig, ToxEvent};

/// How the server runs.
#[derive(Debug)]
pub struct ServerConfig {
    /// Where the identity lives.
    pub config_dir: PathBuf,
    /// The shared secret friend requests must carry.
    pub secret: Option<Secret>,
    /// Keys allowed to befriend us; empty means anyone.
    pub allowed: Vec<PublicKey>,
    /// Saved friends offline this long are forgotten (`None`: never).
    pub friend_expiry: Option<Duration>,
    /// Write our Tox ID here.
    pub id_file: Option<PathBuf>,
    /// The destination rules file (`-f`).
    pub rules: Option<PathBuf>,
    /// How the Tox instance starts (keys and friends are filled in here).
    pub tox: ToxConfig,
    /// Serve VPN clients (`--vpn`).
    pub vpn: Option<VpnServerConfig>,
    /// With `vpn`: its TUN device, when it was opened before (by a process
    /// that drops root's rights afterwards: `-U`); `None` creates it here.
    pub vpn_device: Option<vpn::device::OpenedDevice>,
    /// Where `tuntox status` is served.
    pub status: Place,
    /// Where Prometheus metrics are served (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Told once the identity is loaded, the Tox socket bound and the
    /// status socket made.
    pub started: Started,
}

/// The server's VPN (`--vpn` and the `--vpn-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnServerConfig {
    /// The IPv4 pool; the server is its first host. The IPv6 /64 is a
    /// unique local prefix derived from the server's public key.
    pub pool_v4: Ipv4Net,
    /// Networks offered to clients, forwarded to from the VPN.
    pub routes: Vec<IpNet>,
    /// Masquerade client traffic toward the routes.
    pub nat: bool,
    /// Let clients reach each other (`--vpn-allow-clients`).
    pub allow_clients: bool,
    /// The TUN device's name.
    pub device: String,
    /// The largest MTU a session may have (and the device's MTU).
    pub mtu: u16,
}

/// How often the VPN's counters are logged (at debug level, when they
/// changed).
const STATS_INTERVAL: Duration = Duration::from_secs(10);

/// Why a friend request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message is not the secret.
    WrongSecret,
    /// The key is not on the allow-list.
    NotAllowed,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::WrongSecret => "wrong shared secret",
            Self::NotAllowed => "not on the -i allow-list",
        }
    }
}

/// Decides a friend request as C tuntox does; an accepted client is kept
/// for the session only when its request says it has no identity.
pub fn check_request(
    secret: Option<&Secret>,
    allowed: &[PublicKey],
    key: &PublicKey,
    message: &[u8],
) -> Result<Kept, Refusal> {
    let (message, session_only) = split_request(message);
    if !allowed.is_empty() && !allowed.contains(key) {
        return Err(Refusal::NotAllowed);
    }
    match secret {
        Some(secret) if !secret.matches_request(message) => Err(Refusal::WrongSecret),
        _ => Ok(if session_only { Kept::Session } else { Kept::Saved }),
    }
}

/// Refused friend requests logged in a burst; after that one more per
/// [`REFUSAL_LOG_INTERVAL`] (a stranger may send them from fresh keys
/// without end).
const REFUSAL_LOG_BURST: u32 = 5;
/// See [`REFUSAL_LOG_BURST`].
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rate-limits the log lines of refused friend requests (a token bucket).
#[derive(Debug, Default)]
struct RefusalLog {
    /// Lines that may be logged now, as of `at`.
    tokens: u32,
    at: Option<Instant>,
    quiet: u64,
}

impl RefusalLog {
    /// `Some(n)` when this refusal is to be logged, `n` being how many were
    /// not since the last line; `None` (counted) otherwise.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.at {
            None => {
                self.tokens = REFUSAL_LOG_BURST;
                self.at = Some(now);
            }
            Some(at) => {
                let earned = now.saturating_duration_since(at).as_millis() / REFUSAL_LOG_INTERVAL.as_millis();
                if earned > 0 {
                    let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                    self.tokens = self.tokens.saturating_add(earned).min(REFUSAL_LOG_BURST);
                    // (Not full: fewer than a burst's intervals passed.)
                    self.at =
                        Some(if self.tokens == REFUSAL_LOG_BURST { now } else { at + REFUSAL_LOG_INTERVAL * earned });
                }
            }
        }
        if self.tokens == 0 {
            self.quiet += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.quiet))
    }
}

/// How often saved friends are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(3600);

/// Runs the server until `cancel` fires.
pub async fn run(mut config: ServerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let _lock = DirLock::acquire(&config.config_dir)?;
    let (mut identity, _) = Identity::load_or_create(&config.config_dir)?;
    let id = identity.tox_id();
    tracing::info!("Using Tox ID: {id}");
    if let Some(path) = &config.id_file {
        super::identity::write_public(path, id.to_string().as_bytes())
            .with_context(|| format!("cannot write the Tox ID to {}", path.display()))?;
    }
    let rules = match &config.rules {
        Some(path) => Some(Rules::load(path)?),
        None => {
            tracing::warn!("no rules file (-f): clients may reach any host and port this machine can reach");
            None
        }
    };
    if config.secret.is_none() && config.allowed.is_empty() {
        tracing::warn!("no shared secret (-s) and no allow-list (-i): anyone with the Tox ID can connect");
    }
    config.tox.keys = identity.keys().clone();
    config.tox.nospam = identity.nospam();
    let (mut book, mut changed) = Book::load(&identity, &config.allowed, config.friend_expiry, unix_now())?;
    // Friends another secret accepted are forgotten.
    let mut accepted = AcceptedBy::load(&config.config_dir)
        .with_context(|| format!("cannot read {}", config.config_dir.join(accepted::FILE_NAME).display()))?;
    changed |= !revoke_other_secrets(&mut book, &mut accepted, config.secret.as_ref()).is_empty();
    if changed && let Err(e) = book.store(&mut identity) {
        tracing::error!("cannot update the friend list: {e}");
    }
    if let Err(e) = accepted.store() {
        tracing::error!("cannot write {}: {e}", accepted::FILE_NAME);
    }
    config.tox.friends = book.saved();
    let friends = config.tox.friends.len();
    let book = Arc::new(Mutex::new(book));
    let (commands, mut command_rx) = mpsc::channel(8);
    let mut join = JoinWatch::new(now(), describe_bootstrap(&config.tox.bootstrap));
    let device = match &config.vpn {
        Some(v) => Some(vpn_device(v, config.vpn_device.take(), identity.keys().public()).await?),
        None => None,
    };
    let mut tox = Tox::start(config.tox, cancel.clone()).await.context("cannot start Tox")?;
    tracing::info!(addr = %tox.local_addr(), friends, "listening");

    let numbers = PeerNumbers::new();
    let mut vpn = None;
    if let (Some(v), Some((engine, device))) = (&config.vpn, device) {
        let (link, events) = VpnLink::start(engine, device, tox.sender(), numbers.clone(), cancel.child_token())
            .await
            .context("cannot start the VPN")?;
        let mut server = ServerVpn { link, events, forwarding: None };
        match forwarding(v, identity.keys().public()).await {
            Ok(f) => server.forwarding = Some(f),
            Err(e) => {
                server.stop().await;
                tox.shutdown().await;
                return Err(e);
            }
        }
        vpn = Some(server);
    }
    let engine = Engine::new(tunnel::Config::exit(ExitConfig { rules, ..ExitConfig::default() }), cancel.child_token());
    let mut source = Source::new("server", tox.sender().node());
    source.tox_id = Some(id);
    source.udp = Some(tox.local_addr());
    source.tcp_listen = tox.tcp_addrs().to_vec();
    source.tunnels = Some(engine.clone());
    source.vpn = vpn.as_ref().map(|v| (v.link.vpn().clone(), numbers.clone()));
    source.friend_book = Some(Arc::clone(&book));
    source.friend_commands = Some(commands);
    let _reporting = match Reporting::start(&config.status, config.metrics, source, cancel.child_token()).await {
        Ok(status) => status,
        Err(e) => {
            engine.shutdown().await;
            if let Some(v) = vpn {
                v.stop().await;
            }
            tox.shutdown().await;
            return Err(e);
        }
    };
    config.started.signal();

    let mut bridge = Bridge::new(engine, tox.sender(), numbers);
    let mut stats_timer = tokio::time::interval(STATS_INTERVAL);
    let mut last_stats = None;
    let mut progress_timer = tokio::time::interval(progress::INTERVAL);
    let mut online: HashSet<PublicKey> = HashSet::new();
    let mut in_use: HashSet<PublicKey> = HashSet::new();
    let mut refusals = RefusalLog::default();
    let mut expiry_timer = tokio::time::interval(EXPIRY_CHECK);
    expiry_timer.tick().await;
    // Writes the saved friends after a change to them.
    let store = |identity: &mut Identity, book: &Mutex<Book>| {
        if let Err(e) = lock(book).store(identity) {
            tracing::error!("cannot save the friend list: {e}");
        }
    };
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            event = tox.next_event() => match event {
                Some(event) => event,
                None => break,
            },
            Some(event) = vpn_event(&mut vpn) => {
                if let Some(v) = &vpn {
                    log_vpn_event(&v.link, event);
                }
                continue;
            }
            Some(command) = command_rx.recv() => {
                let FriendCommand::Remove { key, reply } = command;
                let removed = lock(&book).remove(&key);
                let answer = match removed {
                    Some(kept) => {
                        tox.remove_friend(key).await?;
                        online.remove(&key);
                        in_use.remove(&key);
                        if kept == Kept::Saved {
                            store(&mut identity, &book);
                        }
                        tracing::info!(friend = %key, "friend removed ({kept})");
                        Ok(format!("removed {key} ({kept})"))
                    }
                    None => Err(format!("{key} is not a friend of this server")),
                };
                let _ = reply.send(answer);
                continue;
            }
            _ = expiry_timer.tick() => {
                let expired = lock(&book).take_expired(unix_now());
                if !expired.is_empty() {
                    for key in &expired {
                        tracing::info!(friend = %key, "forgetting a friend offline for too long (--friend-expiry)");
                        tox.remove_friend(*key).await?;
                    }
                    store(&mut identity, &book);
                }
                continue;
            }
            _ = progress_timer.tick() => {
                if let Some((net, _)) = progress::view(&tox.sender().node(), None).await {
                    join.update(now(), net);
                }
                let gone = lock(&book).take_gone_sessions(now());
                for key in gone {
                    tracing::debug!(friend = %key, "forgetting a client kept for its session only: it left");
                    tox.remove_friend(key).await?;
                }
                let used = friends_in_use(&bridge, vpn.as_ref(), &online);
                if used != in_use {
                    let changes: Vec<(PublicKey, bool)> = used
                        .symmetric_difference(&in_use)
                        .map(|key| (*key, used.contains(key)))
                        .collect();
                    let _ = tox.with(move |node, _| {
                        for (key, used) in changes {
                            node.set_friend_in_use(&key, used);
                        }
                    })
                    .await;
                    in_use = used;
                }
                continue;
            }
            _ = stats_timer.tick() => {
                if let Some(v) = &vpn {
                    let stats = v.link.stats();
                    if last_stats != Some(stats) {
                        tracing::debug!("VPN counters: {}", stats_line(&stats));
                        last_stats = Some(stats);
                    }
                }
                continue;
            }
        };
        match event {
            ToxEvent::FriendRequest { public_key, message } => {
                match check_request(config.secret.as_ref(), &config.allowed, &public_key, &message) {
                    Ok(kept) => {
                        match kept {
                            Kept::Saved => tracing::info!(friend = %public_key, "accepted a friend request"),
                            Kept::Session => tracing::info!(
                                friend = %public_key,
                                "accepted a friend request (kept for this session only: the client has no identity)"
                            ),
                        }
                        tox.add_friend(public_key).await?;
                        lock(&book).accept(public_key, kept, unix_now());
                        if kept == Kept::Saved {
                            store(&mut identity, &book);
                            accepted.record(public_key, config.secret.as_ref());
                            if let Err(e) = accepted.store() {
                                tracing::error!("cannot write {}: {e}", accepted::FILE_NAME);
                            }
                        }
                    }
                    Err(refusal) => {
                        if let Some(quiet) = refusals.allow(now()) {
                            tracing::warn!(
                                from = %public_key,
                                reason = refusal.reason(),
                                not_logged = quiet,
                                "refused a friend request"
                            );
                        }
                    }
                }
            }
            ToxEvent::FriendConnected { public_key, path } => {
                tracing::info!(friend = %public_key, "friend online ({})", path_text(path));
                online.insert(public_key);
                super::notify::status(&friends_status(online.len()));
                if lock(&book).seen(&public_key, true, now(), unix_now()) == Some(Kept::Saved) {
                    store(&mut identity, &book);
                }
                bridge.connected(public_key);
                if let Some(v) = &vpn {
                    v.link.connected(public_key);
                }
            }
            ToxEvent::FriendLost { public_key } => {
                tracing::info!(friend = %public_key, "friend offline");
                // Its in-use mark is cleared at the next tick.
                online.remove(&public_key);
                super::notify::status(&friends_status(online.len()));
                if lock(&book).seen(&public_key, false, now(), unix_now()) == Some(Kept::Saved) {
                    store(&mut identity, &book);
                }
                bridge.lost(&public_key);
                if let Some(v) = &vpn {
                    v.link.lost(public_key);
                }
            }
            ToxEvent::Lossless { public_key, data } => match (Lossless::of(&data), &vpn) {
                (Lossless::Tunnel, _) => bridge.incoming(&public_key, data).await,
                (Lossless::VpnControl, Some(v)) => v.link.control(public_key, &data),
                (Lossless::VpnControl, None) => refuse_vpn(&tox, public_key, &data).await,
                (Lossless::Other, _) => {}
            },
            ToxEvent::Lossy { public_key, data } => {
                if let (Some(&vpn::DATA_ID), Some(v)) = (data.first(), &vpn) {
                    v.link.data(public_key, data).await;
                }
            }
            ToxEvent::Online(online) => tracing::info!(online, "announced on the Tox network"),
        }
    }
    bridge.shutdown().await;
    if let Some(v) = vpn {
        v.stop().await;
    }
    tox.shutdown().await;
    Ok(())
}

/// The online friends something of ours runs over: tunnels open (or
/// asked for), a VPN session.
/// The service manager's status line once friends come and go.
fn friends_status(online: usize) -> String {
    match online {
        1 => "serving; 1 client online".to_owned(),
        n => format!("serving; {n} clients online"),
    }
}

fn friends_in_use(bridge: &Bridge, vpn: Option<&ServerVpn>, online: &HashSet<PublicKey>) -> HashSet<PublicKey> {
    let mut used: HashSet<PublicKey> =
        online.iter().filter(|key| bridge.engine().tunnels_to(bridge.peer_id(**key)) > 0).copied().collect();
    if let Some(v) = vpn {
        let sessions = v.link.vpn().inspect(|engine| engine.sessions());
        used.extend(
            sessions.into_iter().filter_map(|(peer, _)| v.link.key_of(peer)).filter(|key| online.contains(key)),
        );
    }
    used
}

/// The time now.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// The server's running VPN.
struct ServerVpn {
    link: VpnLink,
    events: mpsc::Receiver<vpn::Event>,
    forwarding: Option<Forwarding>,
}

impl ServerVpn {
    /// Goodbyes, the device, then the firewall rules and sysctls, exactly.
    async fn stop(self) {
        let (stats, closed) = self.link.shutdown().await;
        tracing::info!("VPN counters: {}", stats_line(&stats));
        if let Err(e) = closed {
            tracing::error!("cannot delete the VPN device: {e}");
        }
        if let Some(forwarding) = self.forwarding {
            match tokio::task::spawn_blocking(move || forwarding.teardown()).await {
                Ok(Ok(())) => tracing::info!("VPN forwarding rules removed"),
                Ok(Err(e)) => tracing::error!("cannot remove the VPN forwarding rules: {e}"),
                Err(e) => tracing::error!("cannot remove the VPN forwarding rules: {e}"),
            }
        }
    }
}

async fn vpn_event(vpn: &mut Option<ServerVpn>) -> Option<vpn::Event> {
    match vpn {
        Some(v) => v.events.recv().await,
        None => std::future::pending().await,
    }
}

fn log_vpn_event(link: &VpnLink, event: vpn::Event) {
    let friend = |peer| link.key_of(peer).map(|k| k.to_string()).unwrap_or_default();
    match event {
        vpn::Event::ClientUp { peer, v4, v6 } => {
            let addresses: Vec<String> =
                v4.map(|a| a.to_string()).into_iter().chain(v6.map(|a| a.to_string())).collect();
            tracing::info!(friend = %friend(peer), "VPN client up: {}", addresses.join(", "));
        }
        vpn::Event::ClientRefused { peer, reason } => {
            tracing::warn!(friend = %friend(peer), "refused a VPN client: {reason}");
        }
        vpn::Event::ClientDown { peer } => tracing::info!(friend = %friend(peer), "VPN client down"),
        other => tracing::debug!(?other, "VPN event"),
    }
}

/// Without `--vpn`: a VPN client's hello gets a refusal saying so.
async fn refuse_vpn(tox: &Tox, key: PublicKey, packet: &[u8]) {
    if let Some(refusal) = vpn::control::refuse_when_disabled(packet) {
        tracing::warn!(friend = %key, "refused a VPN client: this server runs without --vpn");
        if let Err(e) = tox.send_lossless(key, refusal).await {
            tracing::debug!(friend = %key, "VPN refusal not sent: {e}");
        }
    }
}

/// What the TUN device takes, for error messages.
pub const VPN_NEEDS: &str = "--vpn needs root, or CAP_NET_ADMIN and read-write access to /dev/net/tun";

/// The VPN's engine and TUN device (the one `opened` before, or a new one),
/// made before Tox starts so that a missing privilege stops the server at
/// once.
async fn vpn_device(
    v: &VpnServerConfig,
    opened: Option<vpn::device::OpenedDevice>,
    key: &PublicKey,
) -> anyhow::Result<(vpn::Engine, vpn::device::Device)> {
    let ula = vpn::pool::ula_from_seed(key.as_bytes());
    let engine = vpn::Engine::server(vpn::ServerConfig {
        enabled: true,
        pool_v4: Some(v.pool_v4),
        pool_v6: Some(ula),
        routes: v.routes.clone(),
        mtu: v.mtu,
        allow_clients: v.allow_clients,
    })
    .context("--vpn")?;
    let device = match opened {
        Some(opened) => vpn::device::Device::attach(opened, v.mtu).await,
        None => vpn::device::Device::create(Some(&v.device), v.mtu, true).await,
    }
    .context(VPN_NEEDS)?;
    tracing::info!(
        dev = device.name(),
        offload = device.offload(),
        pool = %v.pool_v4,
        ipv6 = %ula,
        routes = ?v.routes,
        nat = v.nat,
        "VPN device created"
    );
    Ok((engine, device))
}

/// The firewall that keeps clients to what they were offered, and
/// forwarding (and masquerading) toward the offered routes.
async fn forwarding(v: &VpnServerConfig, key: &PublicKey) -> anyhow::Result<Forwarding> {
    let ula = vpn::pool::ula_from_seed(key.as_bytes());
    let (server_v4, server_v6) = vpn::pool::Pool::new(Some(v.pool_v4), Some(ula)).context("--vpn-pool")?.server();
    let config = ForwardConfig {
        device: v.device.clone(),
        pools: vec![IpNet::V4(v.pool_v4), IpNet::V6(ula)],
        routes: v.routes.clone(),
        server_addresses: server_v4.map(IpAddr::V4).into_iter().chain(server_v6.map(IpAddr::V6)).collect(),
        allow_clients: v.allow_clients,
        masquerade: v.nat,
    };
    let forwarding = tokio::task::spawn_blocking(move || Forwarding::setup(&config))
        .await
        .context("forwarding set-up")?
        .context("cannot set up the VPN's firewall rules (needs iptables, CAP_NET_ADMIN and CAP_NET_RAW)")?;
    Ok(forwarding)
}

/// The friend book, locked (a panic elsewhere leaves it usable).
fn lock(book: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::friends::request_message;

    #[test]
    fn refusals_are_logged_in_a_burst_then_once_per_interval() {
        let t = crate::proto::test_epoch();
        let mut log = RefusalLog::default();
        for _ in 0..REFUSAL_LOG_BURST {
            assert_eq!(log.allow(t), Some(0));
        }
        for i in 1..=50 {
            assert_eq!(log.allow(t + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(log.allow(t + REFUSAL_LOG_INTERVAL), Some(50));
        assert_eq!(log.allow(t + REFUSAL_LOG_INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(log.allow(t + REFUSAL_LOG_INTERVAL * 2), Some(1));
        // A quiet hour refills the burst, no more.
        let later = t + Duration::from_secs(3600);
        for _ in 0..REFUSAL_LOG_BURST {
            assert_eq!(log.allow(later), Some(0));
        }
        assert_eq!(log.allow(later), None);
    }

    #[test]
    fn requests_are_checked_like_c_tuntox() {
        let key = PublicKey::from_bytes([1; 32]);
        let other = PublicKey::from_bytes([2; 32]);
        let secret = Secret::new("pw").unwrap();
        assert_eq!(check_request(None, &[], &key, b"anything"), Ok(Kept::Saved));
        assert_eq!(check_request(Some(&secret), &[], &key, b"pw\0"), Ok(Kept::Saved));
        assert_eq!(check_request(Some(&secret), &[], &key, b"pw"), Err(Refusal::WrongSecret));
        assert_eq!(check_request(Some(&secret), &[key], &other, b"pw\0"), Err(Refusal::NotAllowed));
        assert_eq!(check_request(None, &[key], &key, b""), Ok(Kept::Saved));
        // A client without an identity says so after the secret.
        let marked = request_message(Some(&secret), true);
        assert_eq!(check_request(Some(&secret), &[], &key, &marked), Ok(Kept::Session));
        assert_eq!(check_request(None, &[], &key, &request_message(None, true)), Ok(Kept::Session));
        let wrong = request_message(Some(&Secret::new("px").unwrap()), true);
        assert_eq!(check_request(Some(&secret), &[], &key, &wrong), Err(Refusal::WrongSecret));
    }
}
