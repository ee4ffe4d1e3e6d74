//! The tuntox client: befriends a server and runs `-L` forwards, `-D`
//! SOCKS5 proxies, one `-W` stream over standard input and output, or `-p`
//! pings, through the tunnel engine's client side.
//!
//! The server is added as a friend with a friend request whose message is
//! the shared secret (and a NUL), sent until the server accepts. Once it is
//! online, frames flow through a [`Bridge`]; when it goes away the tunnels
//! close, the listeners stay, and Tox reconnects by itself. A local
//! connection made while the client is starting waits for the server (at
//! most [`OFFLINE_WAIT`]) unless the server has plainly refused us or
//! stays out of reach after its warning; otherwise one made while the
//! server is not connected is closed at once, and the log says why the
//! server is away (not found, not accepting us: [`progress`](super::progress)). `-W`, `-p` and `tuntox ping` give up
//! after their connect timeout, or once the server has plainly refused us.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tunnel::spec::{DynamicForward, LocalForward, Target};
use tunnel::{Engine, PeerId};

use super::Started;
use super::bridge::Bridge;
use super::friends::request_message;
use super::identity::{DirLock, Identity};
use super::peers::PeerNumbers;
use super::progress::{
    ClientWatch, Diagnosis, GIVE_UP_AFTER_REFUSAL, describe_bootstrap, path_text, refusal_causes, refused,
};
use super::secret::Secret;
use super::status::{Place, Reporting, Source};
use crate::crypto::{KeyPair, PublicKey, SodiumRng};
use crate::driver::tox::{Tox, ToxConfig, ToxEvent};
use crate::wire::tox_id::{NoSpam, ToxId};

/// How long a local connection made while the client is starting waits
/// for the server.
pub const OFFLINE_WAIT: Duration = Duration::from_secs(30);

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
    /// Fail when the server has not accepted us this long after start
    /// (or once it has plainly refused us); `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// How the Tox instance starts (keys are filled in here).
    pub tox: ToxConfig,
    /// Where `tuntox status` is served.
    pub status: Place,
    /// Where Prometheus metrics are served (`--metrics`), if anywhere.
    pub metrics: Option<SocketAddr>,
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
    let bootstrap = describe_bootstrap(&config.tox.bootstrap);
    let causes = refusal_causes(config.secret.is_some(), matches!(config.identity, ClientIdentity::Persistent(_)));
    let (tox, _lock) = start_tox(
        &config.identity,
        config.server,
        config.secret.as_ref(),
        config.id_file.as_deref(),
        config.tox,
        &cancel,
    )
    .await?;
    let engine =
        Engine::new(tunnel::Config { offline_wait: OFFLINE_WAIT, ..tunnel::Config::client() }, cancel.child_token());
    let server_key = *config.server.public_key();
    let mut source = Source::new("client", tox.sender().node());
    source.tox_id = Some(tox.tox_id());
    source.udp = Some(tox.local_addr());
    source.tcp_listen = tox.tcp_addrs().to_vec();
    source.tunnels = Some(engine.clone());
    let _reporting = match Reporting::start(&config.status, config.metrics, source, cancel.child_token()).await {
        Ok(status) => status,
        Err(e) => {
            engine.shutdown().await;
            tox.shutdown().await;
            return Err(e);
        }
    };
    // The bridge gives the server the first peer number.
    let peer = PeerId(1);
    let pinging = matches!(config.mode, ClientMode::Ping { .. });
    let (notes, users) = (engine.clone(), engine.clone());
    let diagnosis = ClientWatch {
        node: tox.sender().node(),
        server: server_key,
        bootstrap,
        causes,
        on_change: Box::new(move |d: &Diagnosis| {
            notes.set_offline_note(peer, (!d.note.is_empty()).then(|| d.note.clone()), d.settled);
        }),
        in_use: Box::new(move || pinging || users.tunnels_to(peer) > 0),
    }
    .spawn(cancel.child_token());
    let bridge = Bridge::new(engine.clone(), tox.sender(), PeerNumbers::new());
    let events = spawn_events(tox, bridge, server_key, cancel.clone());

    let mut started = config.started;
    let wait = Wait { timeout: config.connect_timeout, diagnosis };
    let result = match config.mode {
        ClientMode::Listen { local, dynamic } => {
            listen(&engine, peer, &local, &dynamic, wait, &cancel, &mut started).await
        }
        ClientMode::Stdio(target) => {
            started.signal();
            stdio(&engine, peer, &target, wait, &cancel).await
        }
        ClientMode::Ping { count } => {
            started.signal();
            ping(&engine, peer, count, wait, &cancel).await
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
/// accepts). Shared by the forward client and `tuntox vpn up`. With `-C`,
/// the directory's lock comes back too: hold it while Tox runs.
pub async fn start_tox(
    identity: &ClientIdentity,
    server: ToxId,
    secret: Option<&Secret>,
    id_file: Option<&Path>,
    mut tox: ToxConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<(Tox, Option<DirLock>)> {
    let (keys, nospam, lock) = match identity {
        ClientIdentity::Persistent(dir) => {
            let lock = DirLock::acquire(dir)?;
            let (identity, _) = Identity::load_or_create(dir)?;
            (identity.keys().clone(), identity.nospam(), Some(lock))
        }
        ClientIdentity::Ephemeral => {
            tracing::debug!("using a fresh identity for this run (-C DIR keeps one)");
            (KeyPair::generate(&mut SodiumRng), NoSpam::random(&mut SodiumRng), None)
        }
    };
    let id = ToxId::new(*keys.public(), nospam);
    tracing::info!("Using Tox ID: {id}");
    if let Some(path) = id_file {
        super::identity::write_public(path, id.to_string().as_bytes())
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
    let message = request_message(secret, matches!(identity, ClientIdentity::Ephemeral));
    tox.add_friend_request(server, message)
        .await
        .map_err(|_| anyhow::anyhow!("Tox stopped"))?
        .map_err(|e| anyhow::anyhow!("cannot send the friend request: {e}"))?;
    Ok((tox, lock))
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
                    tracing::info!("connected to the server ({})", path_text(path));
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

/// How long a mode waits for the server, and what it knows meanwhile.
struct Wait {
    /// `None`: forever.
    timeout: Option<Duration>,
    diagnosis: watch::Receiver<Diagnosis>,
}

async fn listen(
    engine: &Engine,
    peer: PeerId,
    local: &[LocalForward],
    dynamic: &[DynamicForward],
    wait: Wait,
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
    if wait.timeout.is_some() {
        wait_online(engine, peer, wait, cancel).await?;
    }
    cancel.cancelled().await;
    Ok(())
}

/// Waits until the server is online: `Ok(false)` when cancelled, an error
/// naming why it is away when the connect timeout passes or it refused us.
async fn wait_online(engine: &Engine, peer: PeerId, wait: Wait, cancel: &CancellationToken) -> anyhow::Result<bool> {
    let Wait { timeout, diagnosis } = wait;
    let latest = diagnosis.clone();
    let Some(limit) = timeout else {
        tokio::select! {
            () = cancel.cancelled() => return Ok(false),
            () = engine.wait_connected(peer) => return Ok(true),
        }
    };
    let refused = refused(diagnosis, GIVE_UP_AFTER_REFUSAL);
    let note = || latest.borrow().note.clone();
    tokio::select! {
        () = cancel.cancelled() => Ok(false),
        () = engine.wait_connected(peer) => Ok(true),
        () = refused => bail!("{}", note()),
        () = tokio::time::sleep(limit) => bail!(
            "the server did not accept us within {} s (--connect-timeout): {}",
            limit.as_secs(),
            note()
        ),
    }
}

async fn stdio(
    engine: &Engine,
    peer: PeerId,
    target: &Target,
    wait: Wait,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    if !wait_online(engine, peer, wait, cancel).await? {
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
    wait: Wait,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    const INTERVAL: Duration = Duration::from_secs(1);
    const PING_TIMEOUT: Duration = Duration::from_secs(10);
    if !wait_online(engine, peer, wait, cancel).await? {
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
