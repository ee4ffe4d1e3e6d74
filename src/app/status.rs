//! `tuntox status`: every running tuntox (server, client, `vpn up`, relay)
//! serves a small read-only report of its state on a Unix socket, and
//! `tuntox status` reads and prints it.
//!
//! # Where
//!
//! `--status-socket PATH`, or else `tuntox-<PID>.sock` in the status
//! directory of the user the process runs as (after `-U`):
//!
//! - root: `/run/tuntox/`;
//! - another user: `$XDG_RUNTIME_DIR/tuntox/` when `XDG_RUNTIME_DIR` is set
//!   and is theirs, else `/tmp/tuntox-<UID>/`;
//! - whoever: `$TUNTOX_STATUS_DIR` when set (the tests give each network
//!   namespace its own).
//!
//! The directory is made with mode 0700 and is used only if it belongs to
//! the user and others cannot write to it. The socket has mode 0600, so
//! only its owner (and root) may read the report. It is removed when the
//! process stops. One killed (SIGKILL) leaves its socket behind, which then
//! refuses connections: `tuntox status` says so, and the next tuntox to
//! start in that directory removes it. A socket that cannot be made in the
//! status directory costs a warning only; one asked for with
//! `--status-socket` stops the start.
//!
//! # Protocol
//!
//! The reader connects, shuts its side down (or writes one JSON
//! [`Request`] and then shuts it down), and reads one JSON document up to
//! the end of the stream: a [`Status`], or for a request an [`Answer`]. A
//! reader that neither writes nor shuts down gets the report after
//! [`READ_TIMEOUT`]. Each connection gets a fresh snapshot, taken from the
//! Tox node (friends, paths, DHT), the tunnel engine and the VPN (counters,
//! addresses), and has [`WRITE_TIMEOUT`] to take it. Requests change
//! things (`tuntox friends remove`), so they are served only to the
//! socket's owner, like the report (the socket is 0600).

// Uptime is real time, read outside the sans-IO core.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::friends::{Book, FriendCommand, Kept};
use super::peers::PeerNumbers;
use crate::crypto::PublicKey;
use crate::driver::NodeSender;
use crate::proto::net_crypto::session::DataCipher;
use crate::proto::node::friends::{Path as FriendPath, Status as FriendState};
use crate::proto::relay::RelayServerStats;
use crate::proto::relay::connections::RelayClientStats;
use crate::wire::tox_id::ToxId;

/// The version of the report's layout.
pub const FORMAT_VERSION: u32 = 1;
/// How long a reader has to take a report.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server waits for a request (or the end of one) before it
/// sends the report.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// The largest request read.
pub const MAX_REQUEST: u64 = 4096;
/// The largest report `tuntox status` reads.
pub const MAX_REPORT: u64 = 1 << 20;
/// Status directory of root.
pub const ROOT_DIR: &str = "/run/tuntox";
/// The environment variable that replaces the status directory.
pub const DIR_ENV: &str = "TUNTOX_STATUS_DIR";

/// A running tuntox's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// `server`, `client`, `vpn client` or `relay`.
    pub mode: String,
    /// The process ID.
    pub pid: u32,
    /// Seconds since the report's source started.
    pub uptime_secs: u64,
    /// Our Tox ID (not for the relay, which has none).
    #[serde(default)]
    pub tox_id: Option<String>,
    /// The relay's DHT public key (the relay only).
    #[serde(default)]
    pub relay_key: Option<String>,
    /// The UDP socket's address.
    #[serde(default)]
    pub udp: Option<String>,
    /// Our TCP relay server's listening addresses.
    #[serde(default)]
    pub tcp_listen: Vec<String>,
    /// The public address a router port mapping leads to our UDP port,
    /// announced to friends (none: no mapping, or `--no-portmap`).
    #[serde(default)]
    pub port_mapping: Option<String>,
    /// Good nodes in the DHT's close list.
    #[serde(default)]
    pub dht_nodes: u64,
    /// TCP relays we are connected to (as a client).
    #[serde(default)]
    pub tcp_relays: u64,
    /// Our friends (clients: the server).
    #[serde(default)]
    pub friends: Vec<FriendStatus>,
    /// Tunnels open now (modes with tunnels).
    #[serde(default)]
    pub tunnels_open: Option<u64>,
    /// The VPN (`--vpn`, `vpn up`).
    #[serde(default)]
    pub vpn: Option<VpnStatus>,
    /// Counters by group (`tunnels`, `vpn`, `relay`, `tcp_relay_client`):
    /// name to value.
    #[serde(default)]
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One friend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendStatus {
    /// Its public key (64 hex characters).
    pub public_key: String,
    /// Whether it is online (data flows).
    pub online: bool,
    /// `udp` or `tcp` (through a TCP relay), when online.
    #[serde(default)]
    pub path: Option<String>,
    /// Seconds since the path last changed (between direct UDP and a
    /// relay), or since the session's first packet when it never did.
    #[serde(default)]
    pub path_since_secs: Option<u64>,
    /// The cipher of the data packets we send it (`xsalsa20-poly1305`,
    /// Tox's; `aegis-256` with a tuntox peer), when online.
    #[serde(default)]
    pub cipher: Option<String>,
    /// Its VPN addresses: a server lists each client's, a client the
    /// server's.
    #[serde(default)]
    pub vpn_addresses: Vec<String>,
    /// Why there is no direct UDP path, when it is not `udp`: where hole
    /// punching stands, or what rules it out (a router that maps each
    /// destination to a new port, UDP off, a friend that is no tuntox...).
    #[serde(default)]
    pub direct_note: Option<String>,
    /// When it was last seen online, Unix seconds (a server's friends).
    #[serde(default)]
    pub last_seen: Option<u64>,
    /// How long the server keeps it: `saved` (in `tox_save`) or `session`.
    #[serde(default)]
    pub kept: Option<Kept>,
    /// Its Tox session's counters and congestion control, while one is
    /// established or being set up.
    #[serde(default)]
    pub session: Option<SessionStatus>,
}

/// One friend's Tox session (net_crypto): what went each way, the round
/// trip and the congestion window. Counters start afresh with each session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// Data packets sent.
    pub packets_sent: u64,
    /// Data packets received and opened.
    pub packets_received: u64,
    /// Bytes of the data packets sent, sealed, without UDP or relay framing.
    pub bytes_sent: u64,
    /// Bytes of the data packets received, sealed.
    pub bytes_received: u64,
    /// Lossless packets sent again.
    pub retransmissions: u64,
    /// Data packets that failed to open or fell outside the window.
    pub packets_dropped: u64,
    /// The smoothed round trip, in microseconds.
    pub rtt_us: u64,
    /// The congestion window: packets allowed in flight.
    pub window: u64,
}

/// What a reader may ask instead of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// `tuntox friends remove`: forget a friend (a server only).
    RemoveFriend {
        /// Its public key (64 hex characters).
        public_key: String,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether it was done.
    pub ok: bool,
    /// What was done, or why not.
    pub message: String,
}

/// The VPN device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnStatus {
    /// Its name.
    pub device: String,
    /// Our addresses on it (a client's: none until the server assigns them).
    pub addresses: Vec<String>,
    /// Routes: those a server offers, those a client has through it.
    pub routes: Vec<String>,
}

/// What a report is taken from; cheap handles onto the running mode.
#[derive(Debug, Clone)]
pub struct Source {
    /// [`Status::mode`].
    pub mode: &'static str,
    /// Our Tox ID.
    pub tox_id: Option<ToxId>,
    /// The relay's key.
    pub relay_key: Option<PublicKey>,
    /// The UDP socket's address.
    pub udp: Option<SocketAddr>,
    /// Our TCP relay server's addresses.
    pub tcp_listen: Vec<SocketAddr>,
    /// The Tox node.
    pub node: NodeSender,
    /// The tunnel engine.
    pub tunnels: Option<tunnel::Engine>,
    /// The VPN, with the numbers its peers have.
    pub vpn: Option<(vpn::runner::Vpn, PeerNumbers)>,
    /// When the mode started.
    pub started: Instant,
    /// A server's friends: how long each is kept, when it was last seen.
    pub friend_book: Option<Arc<Mutex<Book>>>,
    /// Where a server takes [`Request::RemoveFriend`].
    pub friend_commands: Option<mpsc::Sender<FriendCommand>>,
}

/// A friend's path, and how long it has been on it.
type PathSince = (FriendPath, Option<Duration>);

/// One friend as the node sees it: key, online, path and how long it has
/// been on it, cipher, why not direct, its session.
type FriendView = (PublicKey, bool, Option<PathSince>, Option<DataCipher>, Option<String>, Option<SessionStatus>);

/// What the node tells, in one visit to its task.
#[derive(Debug, Default)]
struct NodeView {
    friends: Vec<FriendView>,
    punch: crate::proto::punch::PunchStats,
    dht_nodes: usize,
    external: Option<SocketAddr>,
    tcp_relays: usize,
    relay_client: RelayClientStats,
    relay_server: Option<(usize, RelayServerStats)>,
}

impl Source {
    /// A source with only the node; fill in the rest.
    pub fn new(mode: &'static str, node: NodeSender) -> Source {
        Source {
            mode,
            tox_id: None,
            relay_key: None,
            udp: None,
            tcp_listen: Vec::new(),
            node,
            tunnels: None,
            vpn: None,
            started: Instant::now(),
            friend_book: None,
            friend_commands: None,
        }
    }

    /// The report now. A stopped node leaves its parts empty.
    pub async fn snapshot(&self) -> Status {
        let view = self
            .node
            .with(|node, now| {
                let mut friends: Vec<_> = node
                    .friend_keys()
                    .map(|key| {
                        let online = node.friend(key).is_some_and(|f| f.status == FriendState::Online);
                        let path = node.friend_path(key, now);
                        let note =
                            (online && path != Some(FriendPath::Udp)).then(|| node.direct_note(key, now)).flatten();
                        let path = path.map(|p| (p, node.friend_path_age(key, now)));
                        let session = node.net_crypto().session(key).map(|s| {
                            let stats = s.stats();
                            SessionStatus {
                                packets_sent: stats.packets_sent,
                                packets_received: stats.packets_received,
                                bytes_sent: stats.bytes_sent,
                                bytes_received: stats.bytes_received,
                                retransmissions: stats.retransmissions,
                                packets_dropped: stats.packets_dropped,
                                rtt_us: u64::try_from(s.congestion().rtt().as_micros()).unwrap_or(u64::MAX),
                                window: s.congestion().window() as u64,
                            }
                        });
                        (*key, online, path, node.friend_cipher(key), note, session)
                    })
                    .collect();
                friends.sort_by_key(|(key, ..)| *key.as_bytes());
                NodeView {
                    friends,
                    dht_nodes: node.dht().close_list().iter().filter(|c| c.is_good(now)).count(),
                    external: node.onion().external_addr(),
                    tcp_relays: node.tcp_relays().connected(usize::MAX).len(),
                    relay_client: node.tcp_relays().stats(),
                    relay_server: node.tcp_server().map(|s| (s.clients(), s.stats())),
                    punch: node.punch_stats(),
                }
            })
            .await
            .unwrap_or_default();
        let mut status = Status {
            version: FORMAT_VERSION,
            mode: self.mode.to_owned(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            tox_id: self.tox_id.map(|id| id.to_string()),
            relay_key: self.relay_key.map(|k| k.to_string()),
            udp: self.udp.map(|a| a.to_string()),
            tcp_listen: self.tcp_listen.iter().map(ToString::to_string).collect(),
            dht_nodes: view.dht_nodes as u64,
            port_mapping: view.external.map(|a| a.to_string()),
            tcp_relays: view.tcp_relays as u64,
            friends: view
                .friends
                .iter()
                .map(|(key, online, path, cipher, note, session)| FriendStatus {
                    public_key: key.to_string(),
                    online: *online,
                    path: path.map(|(p, _)| match p {
                        FriendPath::Udp => "udp".to_owned(),
                        FriendPath::Tcp => "tcp".to_owned(),
                    }),
                    path_since_secs: path.and_then(|(_, age)| age).map(|a| a.as_secs()),
                    cipher: cipher.map(|c| c.name().to_owned()),
                    vpn_addresses: Vec::new(),
                    direct_note: note.clone(),
                    last_seen: None,
                    kept: None,
                    session: *session,
                })
                .collect(),
            ..Status::default()
        };
        if let Some(book) = &self.friend_book {
            let book = book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for friend in &mut status.friends {
                let entry = crate::wire::tox_id::parse_public_key(&friend.public_key)
                    .ok()
                    .and_then(|key| book.entries().get(&key).cloned());
                if let Some(entry) = entry {
                    friend.last_seen = Some(if friend.online { super::friends::unix_now() } else { entry.last_seen });
                    friend.kept = Some(entry.kept);
                }
            }
        }
        if self.mode != "relay" {
            status.counters.insert("tcp_relay_client".into(), relay_client_counters(&view.relay_client));
            status.counters.insert("hole_punching".into(), punch_counters(&view.punch));
        }
        if let Some((clients, stats)) = &view.relay_server {
            status.counters.insert("relay".into(), relay_server_counters(*clients, stats));
        }
        if let Some(engine) = &self.tunnels {
            let stats = engine.stats();
            status.tunnels_open = Some(stats.tunnels_open);
            status.counters.insert("tunnels".into(), tunnel_counters(&stats));
        }
        if let Some((vpn, numbers)) = &self.vpn {
            self.add_vpn(&mut status, vpn, numbers);
        }
        status
    }

    fn add_vpn(&self, status: &mut Status, vpn: &vpn::runner::Vpn, numbers: &PeerNumbers) {
        let strings = |nets: &mut dyn Iterator<Item = ipnet::IpNet>| nets.map(|n| n.to_string()).collect::<Vec<_>>();
        // A server's sessions by friend; a client's server (its only friend).
        let (addresses, routes, sessions, server) = vpn.inspect(|engine| {
            if engine.is_server() {
                let sessions: Vec<(Option<PublicKey>, Vec<String>)> = engine
                    .sessions()
                    .into_iter()
                    .map(|(peer, nets)| (numbers.key_of(peer.0), strings(&mut nets.into_iter())))
                    .collect();
                let addresses = strings(&mut engine.server_addresses().into_iter());
                (addresses, strings(&mut engine.offered_routes().iter().copied()), sessions, Vec::new())
            } else if let Some(a) = engine.assignment() {
                let server = a.v4.iter().chain(a.v6.iter()).map(|x| x.server.to_string()).collect();
                (strings(&mut a.addresses()), strings(&mut a.routes.iter().copied()), Vec::new(), server)
            } else {
                (Vec::new(), Vec::new(), Vec::new(), Vec::new())
            }
        });
        for (key, addrs) in sessions {
            let Some(key) = key.map(|k| k.to_string()) else { continue };
            if let Some(friend) = status.friends.iter_mut().find(|f| f.public_key == key) {
                friend.vpn_addresses = addrs;
            }
        }
        if let [friend] = &mut status.friends[..] {
            if !server.is_empty() {
                friend.vpn_addresses = server;
            }
        }
        status.vpn = Some(VpnStatus { device: vpn.device_name().to_owned(), addresses, routes });
        status.counters.insert("vpn".into(), vpn_counters(&vpn.stats()));
    }
}

fn counters<const N: usize>(pairs: [(&str, u64); N]) -> BTreeMap<String, u64> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn tunnel_counters(s: &tunnel::Stats) -> BTreeMap<String, u64> {
    let d = &s.dropped;
    let mut map = counters([
        ("frames_in", s.frames_in),
        ("frames_out", s.frames_out),
        ("bytes_to_peers", s.bytes_to_peers),
        ("bytes_from_peers", s.bytes_from_peers),
        ("tunnels_opened", s.tunnels_opened),
        ("tunnels_denied", s.tunnels_denied),
        ("requests_failed", s.requests_failed),
        ("tunnels_reset", s.tunnels_reset),
        ("dropped", d.total()),
    ]);
    let reasons = [
        ("too_short", d.too_short),
        ("version1", d.version1),
        ("bad_magic", d.bad_magic),
        ("truncated", d.truncated),
        ("too_long", d.too_long),
        ("unknown_type", d.unknown_type),
        ("malformed", d.malformed),
        ("unknown_tunnel", d.unknown_tunnel),
        ("wrong_peer", d.wrong_peer),
        ("unexpected", d.unexpected),
        ("unknown_peer", d.unknown_peer),
        ("window_exceeded", d.window_exceeded),
    ];
    for (reason, n) in reasons.into_iter().filter(|(_, n)| *n > 0) {
        map.insert(format!("dropped_{reason}"), n);
    }
    map
}

fn vpn_counters(s: &vpn::Stats) -> BTreeMap<String, u64> {
    let mut map = counters([
        ("packets_in", s.packets_in),
        ("bytes_in", s.bytes_in),
        ("packets_out", s.packets_out),
        ("bytes_out", s.bytes_out),
        ("mss_clamped", s.mss_clamped),
        ("control_in", s.control_in),
        ("control_out", s.control_out),
        ("control_bad", s.control_bad),
        ("refused", s.refused),
        ("dropped", s.dropped.total()),
    ]);
    for (reason, n) in s.dropped.nonzero() {
        map.insert(format!("dropped_{reason}"), n);
    }
    map
}

fn relay_client_counters(s: &RelayClientStats) -> BTreeMap<String, u64> {
    counters([
        ("connects", s.connects),
        ("confirmed", s.confirmed),
        ("closed", s.closed),
        ("data_sent", s.data_sent),
        ("oob_sent", s.oob_sent),
        ("unroutable", s.unroutable),
        ("dropped", s.dropped),
    ])
}

fn punch_counters(s: &crate::proto::punch::PunchStats) -> BTreeMap<String, u64> {
    counters([
        ("attempts", s.attempts),
        ("wide_attempts", s.wide_attempts),
        ("found", s.found),
        ("failed", s.failed),
        ("openers", s.openers),
        ("knocks", s.knocks),
        ("sprayed", s.sprayed),
        ("sockets_opened", s.sockets_opened),
    ])
}

fn relay_server_counters(clients: usize, s: &RelayServerStats) -> BTreeMap<String, u64> {
    counters([
        ("clients", clients as u64),
        ("accepted", s.accepted),
        ("refused_full", s.refused_full),
        ("refused_source", s.refused_source),
        ("evicted", s.evicted),
        ("confirmed", s.confirmed),
        ("replaced", s.replaced),
        ("confirm_timeouts", s.confirm_timeouts),
        ("ping_timeouts", s.ping_timeouts),
        ("protocol_errors", s.protocol_errors),
        ("bad_handshakes", s.bad_handshakes),
        ("bad_frames", s.bad_frames),
        ("undecryptable", s.undecryptable),
        ("too_slow", s.too_slow),
        ("routing_refused", s.routing_refused),
        ("data_routed", s.data_routed),
        ("data_unlinked", s.data_unlinked),
        ("oob_routed", s.oob_routed),
        ("oob_unknown", s.oob_unknown),
        ("onion_requests", s.onion_requests),
        ("onion_responses", s.onion_responses),
        ("onion_responses_lost", s.onion_responses_lost),
        ("forwards_ignored", s.forwards_ignored),
        ("send_dropped", s.send_dropped),
    ])
}

/// The report as text, for people: one `Label: value` line per item,
/// friends and counter groups indented below their heading.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
    line("tuntox", &format!("{}, pid {}, up {}", status.mode, status.pid, duration(status.uptime_secs)));
    if let Some(id) = &status.tox_id {
        line("Tox ID", id);
    }
    if let Some(key) = &status.relay_key {
        line("Relay key", key);
    }
    if let Some(udp) = &status.udp {
        line("UDP", udp);
    }
    if let Some(mapped) = &status.port_mapping {
        line("Port mapping", &format!("{mapped} (router)"));
    }
    if !status.tcp_listen.is_empty() {
        line("TCP relay on", &status.tcp_listen.join(", "));
    }
    line("DHT", &format!("{} good nodes, {} TCP relays connected", status.dht_nodes, status.tcp_relays));
    if status.mode != "relay" || !status.friends.is_empty() {
        let online = status.friends.iter().filter(|f| f.online).count();
        line("Friends", &format!("{online} of {} online", status.friends.len()));
    }
    for friend in &status.friends {
        let state = match (friend.online, friend.path.as_deref()) {
            (false, _) => "offline".to_owned(),
            (true, Some("udp")) => "online, direct UDP".to_owned(),
            (true, Some("tcp")) => "online, through a TCP relay".to_owned(),
            (true, Some(other)) => format!("online, {other}"),
            (true, None) => "online".to_owned(),
        };
        let state = match (friend.online, friend.path_since_secs) {
            (true, Some(secs)) => format!("{state} for {}", duration(secs)),
            _ => state,
        };
        let state = match (&friend.cipher, friend.online) {
            (Some(cipher), true) => format!("{state}, {cipher}"),
            _ => state,
        };
        let state = match (&friend.session, friend.online) {
            (Some(session), true) => format!("{state}, rtt {} ms", session.rtt_us.div_ceil(1000)),
            _ => state,
        };
        let state = match (&friend.direct_note, friend.online) {
            (Some(note), true) => format!("{state} (no direct path: {note})"),
            _ => state,
        };
        let vpn = if friend.vpn_addresses.is_empty() {
            String::new()
        } else {
            format!("; VPN {}", friend.vpn_addresses.join(", "))
        };
        out.push_str(&format!("  {} {state}{vpn}\n", friend.public_key));
    }
    let mut line = |label: &str, value: &str| out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
    if let Some(open) = status.tunnels_open {
        line("Tunnels open", &open.to_string());
    }
    if let Some(vpn) = &status.vpn {
        let addresses = if vpn.addresses.is_empty() { "no address yet".to_owned() } else { vpn.addresses.join(", ") };
        line("VPN", &format!("{} {addresses}", vpn.device));
        line("VPN routes", &if vpn.routes.is_empty() { "none".to_owned() } else { vpn.routes.join(", ") });
    }
    if !status.counters.is_empty() {
        out.push_str("Counters:\n");
        for (group, values) in &status.counters {
            let values: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("  {group}: {}\n", values.join(" ")));
        }
    }
    out
}

/// `3725` -> `1h 02m 05s`.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h}h {m:02}m"),
    }
}

/// Where a mode serves its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Place {
    /// `tuntox-<PID>.sock` in the status directory; a failure is a warning.
    #[default]
    Default,
    /// This path (`--status-socket`); a failure stops the start.
    At(PathBuf),
    /// Nowhere (`tuntox ping`).
    Off,
}

/// The status directory for a user: `uid`, with `xdg` the value of
/// `XDG_RUNTIME_DIR` and the owner of that directory, if any.
pub fn dir_for(uid: u32, xdg: Option<(&Path, Option<u32>)>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from(ROOT_DIR);
    }
    match xdg {
        Some((dir, Some(owner))) if owner == uid && dir.is_absolute() => dir.join("tuntox"),
        _ => PathBuf::from(format!("/tmp/tuntox-{uid}")),
    }
}

/// The status directory of the user we run as (or [`DIR_ENV`]).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let uid = nix::unistd::geteuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let owner = xdg.as_deref().and_then(|d| std::fs::metadata(d).ok()).filter(|m| m.is_dir()).map(|m| m.uid());
    dir_for(uid, xdg.as_deref().map(|d| (d, owner)))
}

/// The socket name of process `pid` in a status directory.
pub fn socket_name(pid: u32) -> String {
    format!("tuntox-{pid}.sock")
}

/// The process ID in a socket name, when it is one of ours.
pub fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix("tuntox-")?.strip_suffix(".sock")?.parse().ok()
}

/// The report sockets in `dir`, by process ID.
pub fn sockets_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(pid_of) else { continue };
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            found.push((pid, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// Makes the status directory (mode 0700) and checks that it is ours
/// alone to write.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the status directory {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!("the status directory {} is not a directory", dir.display());
    }
    if meta.uid() != uid || meta.mode() & 0o022 != 0 {
        bail!(
            "the status directory {} belongs to uid {} with mode {:o}; it must be ours (uid {uid}) and not writable \
             by others",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Removes the sockets in `dir` that no process listens on any more.
fn sweep_stale(dir: &Path) {
    for path in sockets_in(dir).unwrap_or_default() {
        if let Err(e) = std::os::unix::net::UnixStream::connect(&path)
            && e.kind() == io::ErrorKind::ConnectionRefused
            && std::fs::remove_file(&path).is_ok()
        {
            tracing::debug!(path = %path.display(), "removed a stale status socket");
        }
    }
}

/// What a running mode serves about itself: its status socket and, with
/// `--metrics`, its Prometheus endpoint, both from one [`Source`].
/// Dropping it stops both.
#[derive(Debug)]
pub struct Reporting {
    /// The status socket (none for [`Place::Off`], or when the default
    /// place failed).
    pub status: Option<StatusServer>,
    /// The metrics endpoint (`--metrics`).
    pub metrics: Option<super::metrics::MetricsServer>,
}

impl Reporting {
    /// Starts serving reports at `place` and metrics on `metrics`. An
    /// address that cannot be bound, or a `--status-socket` that cannot be
    /// made, stops the start.
    pub async fn start(
        place: &Place,
        metrics: Option<SocketAddr>,
        source: Source,
        cancel: CancellationToken,
    ) -> anyhow::Result<Reporting> {
        let metrics = match metrics {
            Some(addr) => Some(super::metrics::MetricsServer::start(addr, source.clone(), cancel.clone()).await?),
            None => None,
        };
        let status = StatusServer::start(place, source, cancel)?;
        Ok(Reporting { status, metrics })
    }
}

/// A report socket being served; dropping it stops serving and removes
/// the socket (if it is still ours).
#[derive(Debug)]
pub struct StatusServer {
    path: PathBuf,
    inode: (u64, u64),
    task: JoinHandle<()>,
}

impl StatusServer {
    /// Serves reports from `source` at `place` until `cancel` fires or the
    /// server is dropped. Must run inside the async runtime. `None` for
    /// [`Place::Off`], or when the default place failed (logged).
    pub fn start(place: &Place, source: Source, cancel: CancellationToken) -> anyhow::Result<Option<StatusServer>> {
        let path = match place {
            Place::Off => return Ok(None),
            Place::At(path) => path.clone(),
            Place::Default => {
                let dir = default_dir();
                let made = prepare_dir(&dir).and_then(|()| {
                    sweep_stale(&dir);
                    let path = dir.join(socket_name(std::process::id()));
                    bind(&path).map(|bound| (path, bound))
                });
                return match made {
                    Ok((path, bound)) => Ok(Some(Self::serve(path, bound, source, cancel))),
                    Err(e) => {
                        tracing::warn!("no status socket (tuntox status will not see this process): {e:#}");
                        Ok(None)
                    }
                };
            }
        };
        let bound = bind(&path).with_context(|| format!("--status-socket {}", path.display()))?;
        Ok(Some(Self::serve(path, bound, source, cancel)))
    }

    fn serve(
        path: PathBuf,
        (listener, inode): (tokio::net::UnixListener, (u64, u64)),
        source: Source,
        cancel: CancellationToken,
    ) -> StatusServer {
        tracing::debug!(path = %path.display(), "serving tuntox status");
        let task = tokio::spawn(serve(listener, source, cancel));
        StatusServer { path, inode, task }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.task.abort();
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.inode);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot remove the status socket {}: {e}", self.path.display());
        }
    }
}

/// Binds the socket at `path` with mode 0600, replacing a stale one (no
/// process listening) but nothing else.
fn bind(path: &Path) -> anyhow::Result<(tokio::net::UnixListener, (u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!("{} is in use: another tuntox serves its status there", path.display()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove the stale status socket {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("{} exists and cannot be checked", path.display())),
        },
        Ok(_) => bail!("{} exists and is not a socket; not replacing it", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot check {}", path.display())),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot make the status socket {}", path.display()))?;
    let made = (|| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(path)?;
        listener.set_nonblocking(true)?;
        Ok::<_, io::Error>((tokio::net::UnixListener::from_std(listener)?, (meta.dev(), meta.ino())))
    })();
    made.inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
    .with_context(|| format!("cannot set up the status socket {}", path.display()))
}

async fn serve(listener: tokio::net::UnixListener, source: Source, cancel: CancellationToken) {
    loop {
        let mut stream = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("status socket: {e}");
                    // Never spin on an error that repeats (out of descriptors).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let answer = async {
            let request = read_request(&mut stream).await;
            let mut json = match request {
                Some(request) => serde_json::to_vec(&source.answer(request).await),
                None => serde_json::to_vec(&source.snapshot().await),
            }
            .map_err(io::Error::other)?;
            json.push(b'\n');
            stream.write_all(&json).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("status report not sent: {e}"),
            Err(_) => tracing::debug!("status reader too slow; report dropped"),
        }
    }
}

/// The reader's request, if it wrote one: read until it shuts its side
/// down, at most [`MAX_REQUEST`] bytes and [`READ_TIMEOUT`]. Anything that
/// is not a request counts as none (the report is sent).
async fn read_request(stream: &mut tokio::net::UnixStream) -> Option<Result<Request, String>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(READ_TIMEOUT, (&mut *stream).take(MAX_REQUEST).read_to_end(&mut bytes)).await;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(match read {
        Ok(Ok(_)) => serde_json::from_slice(&bytes).map_err(|e| format!("not a request: {e}")),
        Ok(Err(e)) => Err(format!("cannot read the request: {e}")),
        Err(_) => Err("the request did not end".to_owned()),
    })
}

impl Source {
    /// Carries out a request.
    async fn answer(&self, request: Result<Request, String>) -> Answer {
        let done = match request {
            Err(why) => Err(why),
            Ok(Request::RemoveFriend { public_key }) => {
                match (crate::wire::tox_id::parse_public_key(&public_key), &self.friend_commands) {
                    (Err(e), _) => Err(format!("'{public_key}' is not a public key: {e}")),
                    (Ok(_), None) => {
                        Err(format!("this tuntox ({}) keeps no friend list; only a server does", self.mode))
                    }
                    (Ok(key), Some(commands)) => {
                        let (reply, done) = tokio::sync::oneshot::channel();
                        match commands.send(FriendCommand::Remove { key, reply }).await {
                            Ok(()) => done.await.unwrap_or_else(|_| Err("the server is stopping".to_owned())),
                            Err(_) => Err("the server is stopping".to_owned()),
                        }
                    }
                }
            }
        };
        match done {
            Ok(message) => Answer { ok: true, message },
            Err(message) => Answer { ok: false, message },
        }
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nothing at the path.
    #[error("no status socket at {0}: is tuntox running?")]
    Missing(PathBuf),
    /// A socket no process listens on.
    #[error("{} is a stale status socket: the tuntox that made it{} is no longer running", .0.display(), pid_note(.0))]
    Stale(PathBuf),
    /// Another failure.
    #[error("cannot read the status at {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An answer that is not a report.
    #[error("{} did not answer with a tuntox status: {why}", path.display())]
    Garbage {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

fn pid_note(path: &Path) -> String {
    match path.file_name().and_then(|n| n.to_str()).and_then(pid_of) {
        Some(pid) => format!(" (process {pid})"),
        None => String::new(),
    }
}

/// Reads the report at `path`, waiting at most `timeout` for each step.
pub fn query(path: &Path, timeout: Duration) -> Result<Status, QueryError> {
    let io_err = |source: io::Error| QueryError::Io { path: path.to_owned(), source };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(QueryError::Missing(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(QueryError::Stale(path.to_owned())),
        Err(e) => return Err(io_err(e)),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    // Asking nothing: the report comes at once.
    stream.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
    let mut report = Vec::new();
    (&mut stream).take(MAX_REPORT + 1).read_to_end(&mut report).map_err(io_err)?;
    if report.len() as u64 > MAX_REPORT {
        return Err(QueryError::Garbage { path: path.to_owned(), why: format!("more than {MAX_REPORT} bytes") });
    }
    let status: Status = serde_json::from_slice(&report)
        .map_err(|e| QueryError::Garbage { path: path.to_owned(), why: e.to_string() })?;
    if status.version != FORMAT_VERSION {
        return Err(QueryError::Garbage {
            path: path.to_owned(),
            why: format!("report version {} (this tuntox reads version {FORMAT_VERSION})", status.version),
        });
    }
    Ok(status)
}

/// Sends `request` to the tuntox serving `path` and returns its answer,
/// waiting at most `timeout` for each step.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> Result<Answer, QueryError> {
    use std::io::Write;
    let io_err = |source: io::Error| QueryError::Io { path: path.to_owned(), source };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(QueryError::Missing(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(QueryError::Stale(path.to_owned())),
        Err(e) => return Err(io_err(e)),
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let json = serde_json::to_vec(request).map_err(|e| io_err(io::Error::other(e)))?;
    stream.write_all(&json).and_then(|()| stream.shutdown(std::net::Shutdown::Write)).map_err(io_err)?;
    let mut answer = Vec::new();
    (&mut stream).take(MAX_REPORT + 1).read_to_end(&mut answer).map_err(io_err)?;
    serde_json::from_slice(&answer).map_err(|e| QueryError::Garbage {
        path: path.to_owned(),
        why: format!("{e} (a tuntox too old to take requests?)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        let key = |b: u8| PublicKey::from_bytes([b; 32]).to_string();
        Status {
            version: FORMAT_VERSION,
            mode: "server".into(),
            pid: 4242,
            uptime_secs: 3725,
            tox_id: Some("AB".repeat(38)),
            udp: Some("0.0.0.0:33445".into()),
            port_mapping: Some("203.0.113.7:33445".into()),
            dht_nodes: 8,
            tcp_relays: 1,
            friends: vec![
                FriendStatus {
                    public_key: key(1),
                    online: true,
                    path: Some("udp".into()),
                    path_since_secs: None,
                    cipher: Some("aegis-256".into()),
                    vpn_addresses: vec!["10.77.0.2/32".into(), "fd00::2/128".into()],
                    direct_note: None,
                    last_seen: None,
                    kept: Some(Kept::Session),
                    session: Some(SessionStatus {
                        packets_sent: 10,
                        packets_received: 12,
                        bytes_sent: 1500,
                        bytes_received: 1800,
                        retransmissions: 1,
                        packets_dropped: 0,
                        rtt_us: 25_000,
                        window: 64,
                    }),
                },
                FriendStatus {
                    public_key: key(2),
                    online: true,
                    path: Some("tcp".into()),
                    path_since_secs: Some(75),
                    cipher: None,
                    vpn_addresses: vec![],
                    direct_note: Some("the friend's router maps each destination to a new port".into()),
                    last_seen: None,
                    kept: None,
                    session: None,
                },
                FriendStatus {
                    public_key: key(3),
                    online: false,
                    last_seen: Some(1_796_659_991),
                    kept: Some(Kept::Saved),
                    ..FriendStatus::default()
                },
            ],
            tunnels_open: Some(2),
            vpn: Some(VpnStatus {
                device: "tuntox-srv0".into(),
                addresses: vec!["10.77.0.1/24".into(), "fd00::1/64".into()],
                routes: vec!["192.168.77.0/24".into()],
            }),
            counters: BTreeMap::from([
                ("tunnels".into(), counters([("tunnels_opened", 5), ("dropped", 0)])),
                ("vpn".into(), counters([("packets_in", 7), ("dropped_no_route", 1)])),
            ]),
            ..Status::default()
        }
    }

    #[test]
    fn the_text_report_has_one_line_per_item() {
        let text = render(&sample());
        let key = |b: u8| PublicKey::from_bytes([b; 32]).to_string();
        let expected = format!(
            "tuntox:       server, pid 4242, up 1h 02m 05s\n\
             Tox ID:       {}\n\
             UDP:          0.0.0.0:33445\n\
             Port mapping: 203.0.113.7:33445 (router)\n\
             DHT:          8 good nodes, 1 TCP relays connected\n\
             Friends:      2 of 3 online\n\
             \x20 {} online, direct UDP, aegis-256, rtt 25 ms; VPN 10.77.0.2/32, fd00::2/128\n\
             \x20 {} online, through a TCP relay for 1m 15s (no direct path: the friend's router maps each destination to a new port)\n\
             \x20 {} offline\n\
             Tunnels open: 2\n\
             VPN:          tuntox-srv0 10.77.0.1/24, fd00::1/64\n\
             VPN routes:   192.168.77.0/24\n\
             Counters:\n\
             \x20 tunnels: dropped=0 tunnels_opened=5\n\
             \x20 vpn: dropped_no_route=1 packets_in=7\n",
            "AB".repeat(38),
            key(1),
            key(2),
            key(3)
        );
        assert_eq!(text, expected);

        // A relay: its key, no friends line, no tunnels or VPN.
        let relay = Status {
            version: FORMAT_VERSION,
            mode: "relay".into(),
            pid: 7,
            uptime_secs: 59,
            relay_key: Some(key(9)),
            tcp_listen: vec!["0.0.0.0:33445".into()],
            ..Status::default()
        };
        let text = render(&relay);
        assert!(text.starts_with("tuntox:       relay, pid 7, up 59s\nRelay key:    "), "{text}");
        assert!(text.contains("TCP relay on: 0.0.0.0:33445\n") && !text.contains("Friends"), "{text}");
        // A client whose VPN has no session yet.
        let waiting = Status {
            mode: "vpn client".into(),
            vpn: Some(VpnStatus { device: "tuntox0".into(), ..VpnStatus::default() }),
            ..Status::default()
        };
        let text = render(&waiting);
        assert!(text.contains("Friends:      0 of 0 online\n"), "{text}");
        assert!(text.contains("VPN:          tuntox0 no address yet\nVPN routes:   none\n"), "{text}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(61), "1m 01s");
        assert_eq!(duration(3600), "1h 00m 00s");
        assert_eq!(duration(2 * 86_400 + 3 * 3600 + 4 * 60 + 5), "2d 3h 04m");
    }

    #[test]
    fn the_json_report_round_trips_and_tolerates_what_it_does_not_know() {
        let status = sample();
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);
        // A newer tuntox may add fields; an older one may lack optional ones.
        let lean: Status =
            serde_json::from_str(r#"{"version":1,"mode":"client","pid":3,"uptime_secs":1,"later":true}"#).unwrap();
        assert_eq!((lean.mode.as_str(), lean.pid, lean.friends.len(), lean.vpn), ("client", 3, 0, None));
    }

    #[test]
    fn the_status_directory_depends_on_the_user() {
        let xdg = Path::new("/run/user/1000");
        assert_eq!(dir_for(0, Some((xdg, Some(0)))), Path::new("/run/tuntox"));
        assert_eq!(dir_for(1000, Some((xdg, Some(1000)))), Path::new("/run/user/1000/tuntox"));
        // Someone else's XDG_RUNTIME_DIR (left over from `su`), or none.
        assert_eq!(dir_for(65534, Some((xdg, Some(1000)))), Path::new("/tmp/tuntox-65534"));
        assert_eq!(dir_for(1000, Some((xdg, None))), Path::new("/tmp/tuntox-1000"));
        assert_eq!(dir_for(1000, Some((Path::new("relative"), Some(1000)))), Path::new("/tmp/tuntox-1000"));
        assert_eq!(dir_for(1000, None), Path::new("/tmp/tuntox-1000"));
        assert_eq!(pid_of(&socket_name(31337)), Some(31337));
        assert_eq!(pid_of("tuntox-x.sock"), None);
        assert_eq!(pid_of("other-1.sock"), None);
    }

    fn source() -> Source {
        let mut source = Source::new("client", NodeSender::stopped());
        source.tunnels = Some(tunnel::Engine::new(tunnel::Config::client(), CancellationToken::new()));
        source
    }

    #[tokio::test]
    async fn a_served_report_is_read_back_and_the_socket_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server =
            StatusServer::start(&Place::At(path.clone()), source(), CancellationToken::new()).unwrap().unwrap();
        assert_eq!(server.path(), path);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o600);
        let read = path.clone();
        let status = tokio::task::spawn_blocking(move || query(&read, Duration::from_secs(5))).await.unwrap().unwrap();
        assert_eq!((status.mode.as_str(), status.pid, status.tunnels_open), ("client", std::process::id(), Some(0)));
        assert!(status.friends.is_empty(), "a stopped node has nothing to tell");
        assert_eq!(status.counters["tunnels"]["tunnels_opened"], 0);

        // A second one at the same place is refused: the first serves there.
        let err = StatusServer::start(&Place::At(path.clone()), source(), CancellationToken::new()).unwrap_err();
        assert!(format!("{err:#}").contains("is in use"), "{err:#}");
        drop(server);
        assert!(!path.exists(), "the socket is left behind");
        assert_eq!(StatusServer::start(&Place::Off, source(), CancellationToken::new()).unwrap().map(|_| ()), None);
    }

    #[tokio::test]
    async fn stale_sockets_are_replaced_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(socket_name(1));
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let err = query(&stale, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, QueryError::Stale(_)), "{err}");
        assert!(err.to_string().ends_with("the tuntox that made it (process 1) is no longer running"), "{err}");
        assert_eq!(sockets_in(dir.path()).unwrap(), vec![stale.clone()]);
        sweep_stale(dir.path());
        assert!(sockets_in(dir.path()).unwrap().is_empty(), "the stale socket was not swept");

        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let server =
            StatusServer::start(&Place::At(stale.clone()), source(), CancellationToken::new()).unwrap().unwrap();
        let read = stale.clone();
        let status = tokio::task::spawn_blocking(move || query(&read, Duration::from_secs(5))).await.unwrap();
        assert!(status.is_ok(), "{status:?}");
        drop(server);

        let file = dir.path().join("notes");
        std::fs::write(&file, "keep me").unwrap();
        let err = StatusServer::start(&Place::At(file.clone()), source(), CancellationToken::new()).unwrap_err();
        assert!(format!("{err:#}").contains("is not a socket; not replacing it"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        let err = query(&dir.path().join("none.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, QueryError::Missing(_)), "{err}");
    }

    #[test]
    fn an_answer_that_is_not_a_report_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let answers = std::thread::spawn(move || {
            for answer in [&b"hello\n"[..], br#"{"version":99,"mode":"x","pid":1,"uptime_secs":0}"#] {
                use std::io::Write;
                let (mut stream, _) = listener.accept().unwrap();
                stream.write_all(answer).unwrap();
            }
        });
        let err = query(&path, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, QueryError::Garbage { .. }), "{err}");
        let err = query(&path, Duration::from_secs(5)).unwrap_err().to_string();
        assert!(err.contains("report version 99"), "{err}");
        answers.join().unwrap();
    }

    #[test]
    fn the_status_directory_must_be_ours_alone() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("a/b");
        prepare_dir(&made).unwrap();
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_dir(&made).unwrap_err().to_string();
        assert!(err.contains("not writable by others"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_dir(&file).is_err());
    }
}
