//! What a mode tells the user while it joins the Tox network and reaches
//! its peer: one log line per change of state (info, or a warning where the
//! user has something to fix), so `-q` silences them.
//!
//! Every mode that joins the network watches the bootstrap ([`JoinWatch`]):
//! "joined the Tox network" once a DHT node or TCP relay answers, a warning
//! naming the bootstrap nodes when none has answered for
//! [`NO_ANSWER_WARNING`], and the same when the network is lost later.
//! The same changes go to the service manager ([`notify`]): `READY=1` when
//! the network first answers, a `STATUS=` line at each change.
//!
//! A client also watches its server ([`ServerWatch`]), whose phases are
//! read off the node once a second: looking for it on the network, found
//! (its announcement is stored on onion nodes) with our friend request sent,
//! accepted (it told us its DHT key, which a server does only to friends),
//! online. A server found but silent for [`REFUSED_AFTER`] after our
//! request reached it has refused us: the warning names what can cause
//! that, given our flags ([`refusal_causes`]). The current phase is also a
//! note for whatever fails because the server is away (a refused local
//! connection, a connect timeout).

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bootstrap::BootstrapNode;
use super::notify;
use crate::crypto::PublicKey;
use crate::driver::NodeSender;
use crate::proto::net_crypto::session::State;
use crate::proto::node::friends::{Path, Status};

/// No bootstrap node (or, later, no DHT node and no TCP relay) answering
/// for this long is worth a warning.
pub const NO_ANSWER_WARNING: Duration = Duration::from_secs(15);
/// The server found on the network for this long after our friend request
/// reached it, without telling us its DHT key: it has not accepted us.
pub const REFUSED_AFTER: Duration = Duration::from_secs(20);
/// The network joined for this long without finding the server: a warning.
pub const NOT_FOUND_WARNING: Duration = Duration::from_secs(30);
/// How often the watches look at the node.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// How far the node got into the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetView {
    /// Good DHT nodes.
    pub dht_nodes: usize,
    /// TCP relays connected.
    pub tcp_relays: usize,
}

impl NetView {
    /// Whether anything of the network answers.
    pub fn answered(&self) -> bool {
        self.dht_nodes > 0 || self.tcp_relays > 0
    }
}

/// What the node knows of one friend (the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerView {
    /// Onion nodes storing its announcement.
    pub announced: usize,
    /// Copies of our friend request sent through the onion so far.
    pub requests_sent: u64,
    /// The DHT key it told us last (a Tox node tells only its friends).
    pub dht_pk: Option<PublicKey>,
    /// Its session is up or being set up from its side: it sent us a
    /// handshake, which a Tox node does only for friends.
    pub session: bool,
    /// Online, and how.
    pub online: Option<Path>,
}

/// Reads the network and (if given) one friend off the node; `None` once
/// the node stopped.
pub async fn view(node: &NodeSender, peer: Option<PublicKey>) -> Option<(NetView, Option<PeerView>)> {
    node.with(move |node, now| {
        let net = NetView {
            dht_nodes: node.dht().close_list().iter().filter(|c| c.is_good(now)).count(),
            tcp_relays: node.tcp_relays().connected(usize::MAX).len(),
        };
        let peer = peer.and_then(|key| {
            let friend = node.friend(&key)?;
            let handshaking = node
                .net_crypto()
                .session(&key)
                .is_some_and(|s| matches!(s.state, State::NotConfirmed | State::Established));
            Some(PeerView {
                announced: node.onion().friend_announced(&key, now),
                requests_sent: friend.requests_sent,
                dht_pk: friend.dht_pk,
                session: handshaking || friend.status != Status::Connecting,
                online: node.friend_path(&key, now),
            })
        });
        (net, peer)
    })
    .await
    .ok()
}

/// The bootstrap nodes, briefly, for messages.
pub fn describe_bootstrap(nodes: &[BootstrapNode]) -> String {
    let addrs: Vec<String> = nodes.iter().flat_map(|n| n.udp.iter().map(ToString::to_string)).collect();
    match addrs.len() {
        0 => "no bootstrap node given".to_owned(),
        1..=3 => addrs.join(", "),
        n => format!("{}, and {} more", addrs[..3].join(", "), n - 3),
    }
}

/// Joining the network: logs when it first answers, and warns when it
/// does not (at the start, or later).
#[derive(Debug)]
pub struct JoinWatch {
    bootstrap: String,
    state: Join,
    since: Instant,
    warned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// Nothing answered yet.
    Waiting,
    /// Something answers.
    Joined,
    /// Something answered, and now nothing does.
    Lost,
}

impl JoinWatch {
    /// Starts watching at `now` (and says so to the service manager);
    /// `bootstrap` names the bootstrap nodes.
    pub fn new(now: Instant, bootstrap: String) -> Self {
        notify::status(&format!("joining the Tox network through {bootstrap}"));
        Self { bootstrap, state: Join::Waiting, since: now, warned: false }
    }

    /// Whether the network answers now.
    pub fn joined(&self) -> bool {
        self.state == Join::Joined
    }

    /// What is wrong, when the network does not answer.
    pub fn note(&self) -> Option<String> {
        match self.state {
            Join::Joined => None,
            Join::Waiting => Some(format!("no bootstrap node has answered yet ({})", self.bootstrap)),
            Join::Lost => Some("no DHT node or TCP relay answers any more".to_owned()),
        }
    }

    /// Takes in what the node sees now; logs a change.
    pub fn update(&mut self, now: Instant, net: NetView) {
        let waited = now.saturating_duration_since(self.since);
        match (self.state, net.answered()) {
            (Join::Waiting, true) => {
                tracing::info!(
                    "joined the Tox network: {} DHT nodes, {} TCP relays answer",
                    net.dht_nodes,
                    net.tcp_relays
                );
                notify::ready(&format!(
                    "on the Tox network: {} DHT nodes, {} TCP relays answer",
                    net.dht_nodes, net.tcp_relays
                ));
                self.enter(now, Join::Joined);
            }
            (Join::Lost, true) => {
                if self.warned {
                    tracing::info!(
                        "the Tox network answers again: {} DHT nodes, {} TCP relays",
                        net.dht_nodes,
                        net.tcp_relays
                    );
                }
                notify::status(&format!(
                    "back on the Tox network: {} DHT nodes, {} TCP relays answer",
                    net.dht_nodes, net.tcp_relays
                ));
                self.enter(now, Join::Joined);
            }
            (Join::Joined, false) => {
                notify::status("no DHT node or TCP relay answers: reconnecting to the Tox network");
                self.enter(now, Join::Lost);
            }
            (Join::Waiting, false) if !self.warned && waited >= NO_ANSWER_WARNING => {
                tracing::warn!(
                    "no bootstrap node has answered in {} s ({}): check each node's address, port and key \
                     (--bootstrap HOST:PORT:KEY), and that this machine reaches it over UDP (tuntox netcheck \
                     tells)",
                    waited.as_secs(),
                    self.bootstrap
                );
                notify::status(&format!("no bootstrap node answers ({})", self.bootstrap));
                self.warned = true;
            }
            (Join::Lost, false) if !self.warned && waited >= NO_ANSWER_WARNING => {
                tracing::warn!(
                    "no DHT node or TCP relay has answered for {} s: the Tox network is out of reach",
                    waited.as_secs()
                );
                self.warned = true;
            }
            _ => {}
        }
    }

    fn enter(&mut self, now: Instant, state: Join) {
        self.state = state;
        self.since = now;
        self.warned = false;
    }
}

/// Where a client stands with its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The network does not answer (yet).
    Joining,
    /// Looking for the server's announcement.
    Searching,
    /// Found; our friend request goes to it.
    Requested,
    /// Found and asked long enough ago: it does not accept us.
    NotAccepted,
    /// It knows us; the session is being set up.
    Accepted,
    /// It was online and went away; it has not shown itself since (a new
    /// DHT key, a handshake).
    Reconnecting,
    /// Online.
    Online(Path),
}

/// The state a client publishes for the parts that fail while the server
/// is away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Where we stand.
    pub phase: Phase,
    /// Why the server is not connected, in words (empty when it is).
    pub note: String,
    /// When the phase began.
    pub since: Instant,
    /// Whether the note names a problem that waiting will not solve (the
    /// server refused us, the network or the server stays unfound after
    /// its warning): local connections are then refused at once instead
    /// of waiting for the server.
    pub settled: bool,
}

/// A client's view of reaching its server; see the module's description.
#[derive(Debug)]
pub struct ServerWatch {
    causes: String,
    phase: Phase,
    since: Instant,
    /// When our request first went to the server found on the network, in
    /// the current attempt.
    requested: Option<Instant>,
    not_found_warned: bool,
    /// After a loss, the DHT key the server had while online: hearing it
    /// again says nothing, a new one says it restarted and knows us.
    lost_dht: Option<Option<PublicKey>>,
}

impl ServerWatch {
    /// Starts at `now`; `causes` is what [`refusal_causes`] says.
    pub fn new(now: Instant, causes: String) -> Self {
        Self { causes, phase: Phase::Joining, since: now, requested: None, not_found_warned: false, lost_dht: None }
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What the user should know while the server is not connected.
    pub fn note(&self, join: &JoinWatch) -> String {
        match self.phase {
            Phase::Joining => join.note().unwrap_or_else(|| "joining the Tox network".to_owned()),
            Phase::Searching => "the server is not found on the Tox network (is it running? is -i its Tox ID?)".into(),
            Phase::Requested => "waiting for the server to accept our friend request".into(),
            Phase::NotAccepted => format!("the server has not accepted us: {}", self.causes),
            Phase::Accepted => "the server accepted us; setting up the session".into(),
            Phase::Reconnecting => "lost the server; reconnecting".into(),
            Phase::Online(_) => String::new(),
        }
    }

    /// The state in a few words, for the service manager.
    pub fn service_status(&self, join: &JoinWatch) -> String {
        match self.phase {
            Phase::Searching => "on the Tox network; looking for the server".to_owned(),
            Phase::Requested => "found the server; friend request sent".to_owned(),
            Phase::Online(path) => format!("connected to the server ({})", path_text(path)),
            _ => self.note(join),
        }
    }

    /// The diagnosis to publish.
    pub fn diagnosis(&self, join: &JoinWatch) -> Diagnosis {
        let settled = match self.phase {
            Phase::NotAccepted => true,
            Phase::Joining => join.warned,
            Phase::Searching => self.not_found_warned,
            _ => false,
        };
        Diagnosis { phase: self.phase, note: self.note(join), since: self.since, settled }
    }

    /// Takes in what the node sees now; logs a change of phase and returns
    /// whether there was one.
    pub fn update(&mut self, now: Instant, joined: bool, peer: PeerView) -> bool {
        if let (Phase::Online(_), None) = (self.phase, peer.online) {
            self.lost_dht = Some(peer.dht_pk);
        }
        let new_key = peer.dht_pk.is_some() && self.lost_dht.is_none_or(|lost| lost != peer.dht_pk);
        let phase = match peer.online {
            Some(path) => Phase::Online(path),
            None if peer.session || new_key => Phase::Accepted,
            None if self.lost_dht.is_some() => Phase::Reconnecting,
            None if peer.announced > 0 && peer.requests_sent > 0 => {
                let asked = *self.requested.get_or_insert(now);
                if now.saturating_duration_since(asked) >= REFUSED_AFTER {
                    Phase::NotAccepted
                } else {
                    Phase::Requested
                }
            }
            None if joined => Phase::Searching,
            None => Phase::Joining,
        };
        if matches!(phase, Phase::Accepted | Phase::Online(_)) {
            self.requested = None;
        }
        if matches!(phase, Phase::Online(_)) {
            self.lost_dht = None;
        }
        if phase == Phase::Searching
            && self.phase == Phase::Searching
            && !self.not_found_warned
            && now.saturating_duration_since(self.since) >= NOT_FOUND_WARNING
        {
            tracing::warn!(
                "the server is not found on the Tox network after {} s of looking: is it running, and is -i its \
                 Tox ID?",
                now.saturating_duration_since(self.since).as_secs()
            );
            self.not_found_warned = true;
        }
        if phase == self.phase {
            return false;
        }
        match phase {
            // The client logs the loss and the connection as they happen.
            Phase::Joining | Phase::Online(_) | Phase::Reconnecting => {}
            Phase::Searching => tracing::info!("looking for the server on the Tox network"),
            Phase::Requested => tracing::info!("found the server on the Tox network; friend request sent"),
            Phase::NotAccepted => tracing::warn!(
                "the server is on the Tox network but has not accepted us {} s after our friend request reached \
                 it: {}",
                REFUSED_AFTER.as_secs(),
                self.causes
            ),
            Phase::Accepted => tracing::info!("the server accepted us; setting up the session"),
        }
        self.phase = phase;
        self.since = now;
        if phase != Phase::Searching {
            self.not_found_warned = false;
        }
        true
    }
}

/// Why a server may not accept us, given whether we send a secret and
/// whether our identity is kept (`-C`).
pub fn refusal_causes(secret: bool, persistent: bool) -> String {
    let secret = if secret { "a wrong secret (-s)" } else { "no secret given, while the server requires one (-s)" };
    let listed = if persistent {
        "this client's key missing from the server's allow-list (-i)"
    } else {
        "the server's allow-list (-i), which cannot name this client: without -C it has a new key each run"
    };
    format!("{secret}, or {listed}")
}

/// How long a refusal ([`Phase::NotAccepted`]) lasts before a mode with a
/// connect timeout gives up on the server.
pub const GIVE_UP_AFTER_REFUSAL: Duration = Duration::from_secs(10);

/// Resolves once the server has refused us ([`Phase::NotAccepted`]) for
/// `after`; never if the watch ends first.
pub async fn refused(mut diagnosis: watch::Receiver<Diagnosis>, after: Duration) {
    loop {
        let (phase, since) = {
            let d = diagnosis.borrow_and_update();
            (d.phase, d.since)
        };
        let changed = if phase == Phase::NotAccepted {
            let give_up = tokio::time::Instant::from_std(since + after);
            tokio::select! {
                () = tokio::time::sleep_until(give_up) => return,
                changed = diagnosis.changed() => changed,
            }
        } else {
            diagnosis.changed().await
        };
        if changed.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `Online(Udp)` -> "direct UDP", for messages.
pub fn path_text(path: Path) -> &'static str {
    match path {
        Path::Udp => "direct UDP",
        Path::Tcp => "through a TCP relay",
    }
}

/// What a client's watch does besides logging.
pub struct ClientWatch {
    /// The node.
    pub node: NodeSender,
    /// The server's key.
    pub server: PublicKey,
    /// [`describe_bootstrap`].
    pub bootstrap: String,
    /// [`refusal_causes`].
    pub causes: String,
    /// Called on every change of phase with the new diagnosis.
    pub on_change: Box<dyn FnMut(&Diagnosis) + Send>,
    /// Whether something of ours uses the server now (tunnels open, pings,
    /// a VPN): the node then notices its loss within
    /// [`IN_USE_TIMEOUT`](crate::proto::node::friends::IN_USE_TIMEOUT).
    pub in_use: Box<dyn FnMut() -> bool + Send>,
}

impl std::fmt::Debug for ClientWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientWatch").field("server", &self.server).finish_non_exhaustive()
    }
}

impl ClientWatch {
    /// Runs the watch until `cancel` fires or the node stops; the returned
    /// receiver holds the latest diagnosis.
    pub fn spawn(mut self, cancel: CancellationToken) -> watch::Receiver<Diagnosis> {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut join = JoinWatch::new(start, std::mem::take(&mut self.bootstrap));
        let mut server = ServerWatch::new(start, std::mem::take(&mut self.causes));
        let (tx, rx) = watch::channel(server.diagnosis(&join));
        (self.on_change)(&server.diagnosis(&join));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            let mut used = false;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some((net, Some(peer))) = view(&self.node, Some(self.server)).await else { break };
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                let (was, settled) = (join.note(), server.diagnosis(&join).settled);
                join.update(now, net);
                let changed = server.update(now, join.joined(), peer);
                if changed
                    || (server.phase() == Phase::Joining && join.note() != was)
                    || server.diagnosis(&join).settled != settled
                {
                    let diagnosis = server.diagnosis(&join);
                    if join.joined() {
                        notify::status(&server.service_status(&join));
                    }
                    (self.on_change)(&diagnosis);
                    tx.send_replace(diagnosis);
                }
                let in_use = (self.in_use)();
                if in_use != used {
                    let key = self.server;
                    if self.node.with(move |node, _| node.set_friend_in_use(&key, in_use)).await.is_err() {
                        break;
                    }
                    used = in_use;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(announced: usize, requests_sent: u64, dht: u8, online: Option<Path>) -> PeerView {
        let dht_pk = (dht > 0).then(|| PublicKey::from_bytes([dht; 32]));
        PeerView { announced, requests_sent, dht_pk, session: online.is_some(), online }
    }

    #[test]
    fn the_server_s_phases_follow_what_the_node_sees() {
        let t0 = crate::proto::test_epoch();
        let mut w = ServerWatch::new(t0, refusal_causes(true, false));
        let s = Duration::from_secs;
        assert!(!w.update(t0, false, peer(0, 0, 0, None)));
        assert_eq!(w.phase(), Phase::Joining);
        assert!(w.update(t0 + s(1), true, peer(0, 0, 0, None)));
        assert_eq!(w.phase(), Phase::Searching);
        assert!(w.update(t0 + s(2), true, peer(2, 1, 0, None)));
        assert_eq!(w.phase(), Phase::Requested);
        assert!(!w.update(t0 + s(21), true, peer(2, 5, 0, None)), "not yet {REFUSED_AFTER:?}");
        assert!(w.update(t0 + s(22), true, peer(2, 6, 0, None)));
        assert_eq!(w.phase(), Phase::NotAccepted);
        let join = JoinWatch::new(t0, "127.0.0.1:1".into());
        let note = w.note(&join);
        assert!(note.contains("has not accepted us") && note.contains("wrong secret (-s)"), "{note}");
        assert!(note.contains("without -C"), "{note}");
        // The server takes us after all (its DHT key comes), then the
        // session comes up.
        assert!(w.update(t0 + s(23), true, peer(2, 6, 1, None)));
        assert_eq!(w.phase(), Phase::Accepted);
        assert!(w.update(t0 + s(24), true, peer(2, 6, 1, Some(Path::Udp))));
        assert_eq!(w.phase(), Phase::Online(Path::Udp));
        assert_eq!(w.note(&join), "");
        // Lost: the old DHT key proves nothing; a new one (a restart that
        // kept us) does.
        assert!(w.update(t0 + s(100), true, peer(2, 7, 1, None)));
        assert_eq!(w.phase(), Phase::Reconnecting);
        assert!(!w.update(t0 + s(130), true, peer(2, 9, 1, None)), "no refusal seen in a reconnection");
        assert!(w.update(t0 + s(131), true, peer(2, 9, 2, None)));
        assert_eq!(w.phase(), Phase::Accepted);
        assert!(w.update(t0 + s(132), true, peer(2, 9, 2, Some(Path::Tcp))));
    }

    #[test]
    fn causes_name_what_the_flags_allow() {
        assert_eq!(
            refusal_causes(true, true),
            "a wrong secret (-s), or this client's key missing from the server's allow-list (-i)"
        );
        assert!(refusal_causes(false, true).starts_with("no secret given, while the server requires one (-s)"));
    }

    #[test]
    fn joining_notes_and_bootstrap_descriptions() {
        let t0 = crate::proto::test_epoch();
        let mut j = JoinWatch::new(t0, "127.0.0.1:1".into());
        assert!(j.note().unwrap().contains("no bootstrap node has answered yet (127.0.0.1:1)"));
        j.update(t0 + Duration::from_secs(2), NetView { dht_nodes: 1, tcp_relays: 0 });
        assert!(j.joined() && j.note().is_none());
        j.update(t0 + Duration::from_secs(3), NetView::default());
        assert!(!j.joined());
        let node = |port| BootstrapNode {
            public_key: PublicKey::from_bytes([1; 32]),
            udp: vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))],
            tcp_ports: Vec::new(),
        };
        assert_eq!(describe_bootstrap(&[node(1)]), "127.0.0.1:1");
        let many: Vec<_> = (1..=5).map(node).collect();
        assert_eq!(describe_bootstrap(&many), "127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, and 2 more");
    }
}
