//! The tuntox client: befriends a server and runs `-L` forwards, `-D`
//! SOCKS5 proxies, one `-W` stream over standard input and output, or `-p`
//! pings, through the tunnel engine's client side.
//!
//! The server is added as a friend with a friend request whose message is
//! the shared secret (and a NUL), sent until the server accepts. Once it is
//! online, frames flow through a [`Bridge`]; when it goes away the tunnels
//! close, the listeners stay, and Tox reconnects by itself. A connection
//! made while the server is offline waits for it up to
//! [`ClientConfig::offline_wait`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tunnel::spec::{DynamicForward, LocalForward, Target};
use tunnel::{Engine, PeerId};

use super::Started;
use super::bridge::Bridge;
use super::identity::Identity;
use super::peers::PeerNumbers;
use super::secret::Secret;
use super::server::request_message;
use super::status::{Place, Source, StatusServer};
use crate::crypto::{KeyPair, PublicKey, SodiumRng};
use crate::driver::tox::{Tox, ToxConfig, ToxEvent};
use crate::wire::tox_id::{NoSpam, ToxId};

/// Where the client's identity comes from.
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    /// `<dir>/tox_save`, created when missing, so a server's allow-list
    /// (`-i`) can name this client.
    Persistent(PathBuf),
    /// A fresh identity for this run only.
    Ephemeral,
}

/// What the client does once it runs.
#[derive(Debug, Clone)]
pub enum ClientMode {
    /// `-L` and `-D` listeners, until stopped.
    Listen {
        /// `-L`.
        local: Vec<LocalForward>,
        /// `-D`.
        dynamic: Vec<DynamicForward>,
    },
    /// `-W`: standard input and output to this target, then exit.
    Stdio(Target),
    /// `-p` (forever) or `tuntox ping -c COUNT`.
    Ping {
        /// Stop after this many round trips.
        count: Option<u32>,
    },
}

/// How the client runs.
#[derive(Debug)]
pub struct ClientConfig {
    /// Our identity.
    pub identity: ClientIdentity,
    /// The server.
    pub server: ToxId,
    /// The shared secret the server requires.
    pub secret: Option<Secret>,
    /// Write our Tox ID here.
    pub id_file: Option<PathBuf>,
    /// What to do.
    pub mode: ClientMode,
    /// Fail when the server has not accepted us this long after start;
    /// `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// How long a connection made before the server was first online waits
    /// for it.
    pub offline_wait: Duration,
    /// How the Tox instance starts (keys are filled in here).
    pub tox: ToxConfig,
    /// Where `tuntox status` is served.
    pub status: Place,
    /// Told once the Tox socket, the status socket and the listeners (`-L`,
    /// `-D`) are bound.
    pub started: Started,
}

/// The events task: Tox events in, bridge calls out.
struct Events {
    task: JoinHandle<Tox>,
}

/// Runs the client until `cancel` fires or its mode is over.
pub async fn run(config: ClientConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let tox = start_tox(
        &config.identity,
        config.server,
        config.secret.as_ref(),
        config.id_file.as_deref(),
        config.tox,
        &cancel,
    )
    .await?;
    let mut tunnel_config = tunnel::Config::client();
    tunnel_config.offline_wait = config.offline_wait;
    let engine = Engine::new(tunnel_config, cancel.child_token());
    let server_key = *config.server.public_key();
    let mut source = Source::new("client", tox.sender().node());
    source.tox_id = Some(tox.tox_id());
    source.udp = Some(tox.local_addr());
    source.tcp_listen = tox.tcp_addrs().to_vec();
    source.tunnels = Some(engine.clone());
    let _status = match StatusServer::start(&config.status, source, cancel.child_token()) {
        Ok(status) => status,
        Err(e) => {
            engine.shutdown().await;
            tox.shutdown().await;
            return Err(e);
        }
    };
    let bridge = Bridge::new(engine.clone(), tox.sender(), PeerNumbers::new());
    let events = spawn_events(tox, bridge, server_key, cancel.clone());
    // The bridge gives the server the first peer number.
    let peer = PeerId(1);

    let mut started = config.started;
    let result = match config.mode {
        ClientMode::Listen { local, dynamic } => {
            listen(&engine, peer, &local, &dynamic, config.connect_timeout, &cancel, &mut started).await
        }
        ClientMode::Stdio(target) => {
            started.signal();
            stdio(&engine, peer, &target, config.connect_timeout, &cancel).await
        }
        ClientMode::Ping { count } => {
            started.signal();
            ping(&engine, peer, count, config.connect_timeout, &cancel).await
        }
    };
    cancel.cancel();
    engine.shutdown().await;
    if let Ok(tox) = events.task.await {
        tox.shutdown().await;
    }
    result
}

/// Loads (or makes) the client's identity, writes its Tox ID to `id_file`,
/// starts Tox and sends the server a friend request (repeated until it
/// accepts). Shared by the forward client and `tuntox vpn up`.
pub async fn start_tox(
    identity: &ClientIdentity,
    server: ToxId,
    secret: Option<&Secret>,
    id_file: Option<&Path>,
    mut tox: ToxConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<Tox> {
    let (keys, nospam) = match identity {
        ClientIdentity::Persistent(dir) => {
            let (identity, _) = Identity::load_or_create(dir)?;
            (identity.keys().clone(), identity.nospam())
        }
        ClientIdentity::Ephemeral => {
            tracing::debug!("using a fresh identity for this run (-C DIR keeps one)");
            (KeyPair::generate(&mut SodiumRng), NoSpam::random(&mut SodiumRng))
        }
    };
    let id = ToxId::new(*keys.public(), nospam);
    tracing::info!("Using Tox ID: {id}");
    if let Some(path) = id_file {
        std::fs::write(path, id.to_string())
            .with_context(|| format!("cannot write the Tox ID to {}", path.display()))?;
    }
    if *server.public_key() == *keys.public() {
        bail!("the server's Tox ID is our own (is -C the server's config directory?)");
    }
    tox.keys = keys;
    tox.nospam = nospam;
    tox.friends = Vec::new();
    let tox = Tox::start(tox, cancel.clone()).await.context("cannot start Tox")?;
    tracing::debug!(addr = %tox.local_addr(), "Tox started");
    let message = request_message(secret);
    tox.add_friend_request(server, message)
        .await
        .map_err(|_| anyhow::anyhow!("Tox stopped"))?
        .map_err(|e| anyhow::anyhow!("cannot send the friend request: {e}"))?;
    Ok(tox)
}

fn spawn_events(mut tox: Tox, mut bridge: Bridge, server: PublicKey, cancel: CancellationToken) -> Events {
    // Reserve the first peer number for the server.
    let _ = bridge.peer_id(server);
    let task = tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => break,
                event = tox.next_event() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            match event {
                ToxEvent::FriendConnected { public_key, path } if public_key == server => {
                    tracing::info!(?path, "connected to the server");
                    bridge.connected(public_key);
                }
                ToxEvent::FriendLost { public_key } if public_key == server => {
                    tracing::warn!("lost the server; reconnecting");
                    bridge.lost(&public_key);
                }
                ToxEvent::Lossless { public_key, data } if public_key == server => {
                    bridge.incoming(&public_key, data).await;
                }
                ToxEvent::FriendRequest { public_key, .. } => {
                    tracing::debug!(from = %public_key, "ignored a friend request (clients accept none)");
                }
                ToxEvent::Online(online) => tracing::debug!(online, "announced on the Tox network"),
                _ => {}
            }
        }
        bridge.shutdown().await;
        tox
    });
    Events { task }
}

async fn listen(
    engine: &Engine,
    peer: PeerId,
    local: &[LocalForward],
    dynamic: &[DynamicForward],
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    started: &mut Started,
) -> anyhow::Result<()> {
    for forward in local {
        engine.listen(peer, forward).await.with_context(|| format!("cannot listen on {}", forward.listen))?;
    }
    for forward in dynamic {
        engine.listen_socks(peer, forward).await.with_context(|| format!("cannot listen on {}", forward.listen))?;
    }
    started.signal();
    if timeout.is_some() {
        wait_online(engine, peer, timeout, cancel).await?;
    }
    cancel.cancelled().await;
    Ok(())
}

async fn wait_online(
    engine: &Engine,
    peer: PeerId,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let wait = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, engine.wait_connected(peer)).await.is_ok(),
            None => {
                engine.wait_connected(peer).await;
                true
            }
        }
    };
    tokio::select! {
        () = cancel.cancelled() => Ok(false),
        online = wait => {
            if online {
                Ok(true)
            } else {
                bail!(
                    "the server did not accept us within {} s (--connect-timeout): wrong secret (-s), not on \
                     its allow-list (-i), or not running",
                    timeout.unwrap_or_default().as_secs()
                )
            }
        }
    }
}

async fn stdio(
    engine: &Engine,
    peer: PeerId,
    target: &Target,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if !wait_online(engine, peer, timeout, cancel).await? {
        return Ok(());
    }
    let stream = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    tokio::select! {
        () = cancel.cancelled() => Ok(()),
        result = engine.forward_stream(peer, target, stream) => {
            result.with_context(|| format!("cannot open a tunnel to {target}"))
        }
    }
}

async fn ping(
    engine: &Engine,
    peer: PeerId,
    count: Option<u32>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    const INTERVAL: Duration = Duration::from_secs(1);
    const PING_TIMEOUT: Duration = Duration::from_secs(10);
    if !wait_online(engine, peer, timeout, cancel).await? {
        return Ok(());
    }
    let (mut sent, mut received) = (0u32, 0u32);
    let mut rtts = Vec::new();
    while count.is_none_or(|c| sent < c) && !cancel.is_cancelled() {
        sent += 1;
        let result = tokio::select! {
            () = cancel.cancelled() => break,
            r = tokio::time::timeout(PING_TIMEOUT, engine.ping(peer)) => r,
        };
        match result {
            Ok(Ok(rtt)) => {
                received += 1;
                rtts.push(rtt);
                say(format_args!("pong from the server: seq={sent} time={:.2} ms", rtt.as_secs_f64() * 1000.0));
            }
            Ok(Err(e)) => say(format_args!("seq={sent}: {e}")),
            Err(_) => say(format_args!("seq={sent}: no answer within {} s", PING_TIMEOUT.as_secs())),
        }
        if count.is_none_or(|c| sent < c) {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }
    if !rtts.is_empty() {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let min = rtts.iter().min().copied().unwrap_or_default();
        let max = rtts.iter().max().copied().unwrap_or_default();
        let avg = rtts.iter().sum::<Duration>() / u32::try_from(rtts.len()).unwrap_or(u32::MAX);
        say(format_args!(
            "{sent} sent, {received} received; rtt min/avg/max = {:.2}/{:.2}/{:.2} ms",
            ms(min),
            ms(avg),
            ms(max)
        ));
    }
    if sent > 0 && received == 0 {
        bail!("no answer from the server");
    }
    Ok(())
}

/// One line of `-p` output on standard output (a closed pipe is ignored:
/// the user stopped reading).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}
