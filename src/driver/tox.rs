//! The Tox handle: the async API the rest of tuntox uses.
//!
//! `Tox::start` binds the UDP socket, makes a fresh DHT key pair, starts
//! the node's task and bootstraps. The handle then adds friends, sends
//! custom packets (lossless with backpressure, lossy best effort) and yields
//! [`ToxEvent`]s. The tunnel and VPN engines never see Tox types beyond the
//! friend's public key.

// Real time and real randomness enter here.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::portmap::{Mapper, MapperConfig};
use super::udp::{self, UdpConfig};
use super::{NodeHandle, NodeSender, Stopped};
use crate::app::bootstrap::BootstrapNode;
use crate::crypto::{KeyPair, PublicKey, SodiumRng, fill_random};
use crate::portmap::Mapping;
use crate::proto::dht::DhtConfig;
use crate::proto::net_crypto::session::SendError;
use crate::proto::node::friends::{FriendEvent, Path};
use crate::proto::onion::client::OnionEvent;
use crate::proto::relay::RelayServerConfig;
use crate::proto::{Node, NodeConfig, NodeEvent};
use crate::wire::friend_request::MessageLenError;
use crate::wire::packed_node::PackedNode;
use crate::wire::tox_id::{NoSpam, ToxId};

/// How to start.
#[derive(Debug, Clone)]
pub struct ToxConfig {
    /// Our long-term key pair.
    pub keys: KeyPair,
    /// Our nospam.
    pub nospam: NoSpam,
    /// Where the UDP socket binds.
    pub udp: UdpConfig,
    /// Nodes to join the network through.
    pub bootstrap: Vec<BootstrapNode>,
    /// Announce ourselves on the LAN and answer LAN announcements.
    pub lan_discovery: bool,
    /// Friends to connect to (from the identity file).
    pub friends: Vec<PublicKey>,
    /// Use UDP. Without it no UDP socket is opened: TCP relays only.
    pub udp_enabled: bool,
    /// TCP relays to use (`--relay`), besides the bootstrap nodes' TCP
    /// ports.
    pub tcp_relays: Vec<PackedNode>,
    /// Run a TCP relay server on these ports too (`-t`), and use it.
    pub tcp_server_ports: Vec<u16>,
    /// Offer AEGIS-256 data packets to friends ([`NodeConfig::aegis`]).
    pub aegis: bool,
    /// Ask the router for a mapping of our UDP port (PCP, NAT-PMP, UPnP
    /// IGD; see [`super::portmap`]) and announce it to friends.
    pub portmap: bool,
}

/// What happens to us and our friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxEvent {
    /// Someone (not a friend) asks to be one.
    FriendRequest {
        /// Their public key.
        public_key: PublicKey,
        /// Their message.
        message: Bytes,
    },
    /// A friend is online.
    FriendConnected {
        /// Which.
        public_key: PublicKey,
        /// Direct UDP or a TCP relay.
        path: Path,
    },
    /// A friend went offline.
    FriendLost {
        /// Which.
        public_key: PublicKey,
    },
    /// A custom lossless packet (`[id][data]`), in order.
    Lossless {
        /// From which friend.
        public_key: PublicKey,
        /// The packet.
        data: Bytes,
    },
    /// A custom lossy packet (`[id][data]`).
    Lossy {
        /// From which friend.
        public_key: PublicKey,
        /// The packet.
        data: Bytes,
    },
    /// We are (or stopped being) announced on the network.
    Online(bool),
}

/// A running Tox instance.
#[derive(Debug)]
pub struct Tox {
    handle: NodeHandle,
    tox_id: ToxId,
    mapper: Option<Mapper>,
}

impl Tox {
    /// Binds the socket, starts the node and bootstraps.
    pub async fn start(config: ToxConfig, cancel: CancellationToken) -> io::Result<Self> {
        let lan_discovery = config.lan_discovery && config.udp_enabled;
        let socket = if config.udp_enabled {
            Some(udp::bind(&UdpConfig { broadcast: lan_discovery, ..config.udp.clone() })?)
        } else {
            None
        };
        let ipv6 = match &socket {
            Some(socket) => socket.local_addr()?.is_ipv6(),
            None => false,
        };
        let listeners = config
            .tcp_server_ports
            .iter()
            .map(|port| super::relay::bind(*port, config.udp.bind_ip))
            .collect::<io::Result<Vec<_>>>()?;
        let dht_keys = KeyPair::generate(&mut SodiumRng);
        let mut seed = [0u8; 32];
        fill_random(&mut seed);
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let bootstrap: Vec<_> = config.bootstrap.iter().flat_map(BootstrapNode::udp_nodes).collect();
        let node_config = NodeConfig {
            dht: DhtConfig {
                lan_discovery,
                bootstrap_nodes: if config.udp_enabled { bootstrap.clone() } else { Vec::new() },
                bootstrap_info: None,
            },
            onion_client: true,
            unix_time_at_start: unix,
            nospam: config.nospam,
            tcp_server: (!listeners.is_empty()).then(RelayServerConfig::default),
            udp: config.udp_enabled,
            aegis: config.aegis,
        };
        let relay_keys = dht_keys.clone();
        let mut node = Node::new(config.keys.clone(), dht_keys, node_config, seed);
        let now = Instant::now();
        for relay in &config.tcp_relays {
            node.add_tcp_relay(now, *relay);
        }
        // Our own relay server, over loopback (as c-toxcore adds its own).
        for listener in &listeners {
            let port = listener.local_addr()?.port();
            let relay = PackedNode::tcp(SocketAddr::from(([127, 0, 0, 1], port)), *relay_keys.public());
            node.add_tcp_relay(now, relay);
        }
        // A bootstrap node's TCP relay ports (tox-bootstrapd serves the
        // relay on the same host).
        for boot in &config.bootstrap {
            for addr in boot.udp.iter().filter(|a| a.is_ipv4() || ipv6 || !config.udp_enabled) {
                for port in &boot.tcp_ports {
                    node.add_tcp_relay(now, PackedNode::tcp(SocketAddr::new(addr.ip(), *port), boot.public_key));
                }
            }
        }
        for friend in &config.friends {
            node.add_friend(*friend);
        }
        for boot in bootstrap {
            // An IPv6 node is unreachable from an IPv4-only socket.
            if boot.addr.is_ipv4() || ipv6 {
                node.bootstrap(now, boot);
            }
        }
        if lan_discovery {
            node.dht_mut().set_lan_targets(udp::lan_targets(ipv6));
        }
        let tox_id = node.tox_id();
        let relay_pk = *relay_keys.public();
        let relay_keys = (!listeners.is_empty()).then_some(relay_keys);
        let handle = super::spawn_full(node, socket, listeners, relay_keys, cancel.clone())?;
        for addr in handle.tcp_addrs() {
            // Clients name a relay by address and key: this run's DHT key.
            tracing::info!(%addr, key = %relay_pk, "TCP relay server running");
        }
        let mapper = (config.portmap && config.udp_enabled).then(|| {
            let mapper = Mapper::spawn(MapperConfig::new(handle.local_addr().port()), cancel.child_token());
            announce_mapping(mapper.watch(), handle.sender());
            mapper
        });
        Ok(Self { handle, tox_id, mapper })
    }

    /// The router's port mapping of our UDP port, while one is held.
    pub fn port_mapping(&self) -> Option<Mapping> {
        self.mapper.as_ref().and_then(|m| *m.watch().borrow())
    }

    /// The port mapper's state, for the status report (`None` when port
    /// mapping is off).
    pub fn port_mapping_watch(&self) -> Option<watch::Receiver<Option<Mapping>>> {
        self.mapper.as_ref().map(Mapper::watch)
    }

    /// Our Tox ID.
    pub fn tox_id(&self) -> ToxId {
        self.tox_id
    }

    /// The UDP socket's address (`0.0.0.0:0` with UDP off).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Our TCP relay server's listening addresses (none without `-t`).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        self.handle.tcp_addrs()
    }

    /// A cloneable sender for other tasks.
    pub fn sender(&self) -> ToxSender {
        ToxSender { inner: self.handle.sender() }
    }

    /// Adds a friend whose requests we accept (or who accepted ours earlier).
    pub async fn add_friend(&self, public_key: PublicKey) -> Result<(), Stopped> {
        self.handle.with(move |node, _| node.add_friend(public_key)).await
    }

    /// Adds a friend and sends it a friend request until it connects.
    pub async fn add_friend_request(&self, id: ToxId, message: Bytes) -> Result<Result<(), MessageLenError>, Stopped> {
        self.handle.with(move |node, now| node.add_friend_with_request(now, &id, message)).await
    }

    /// Removes a friend.
    pub async fn remove_friend(&self, public_key: PublicKey) -> Result<(), Stopped> {
        self.handle.with(move |node, _| node.remove_friend(&public_key)).await
    }

    /// Our friends' keys.
    pub async fn friends(&self) -> Result<Vec<PublicKey>, Stopped> {
        self.handle.with(|node, _| node.friend_keys().copied().collect()).await
    }

    /// Queues a custom lossless packet, waiting for room.
    pub async fn send_lossless(&self, public_key: PublicKey, data: Bytes) -> Result<(), SendError> {
        self.handle.send_lossless(public_key, data).await
    }

    /// Queues several custom lossless packets for one friend, in order,
    /// waiting for room; cheaper than one call per packet.
    pub async fn send_lossless_batch(&self, public_key: PublicKey, data: VecDeque<Bytes>) -> Result<(), SendError> {
        self.handle.send_lossless_batch(public_key, data).await
    }

    /// Sends a custom lossy packet; false if dropped.
    pub fn try_send_lossy(&self, public_key: PublicKey, data: Bytes) -> bool {
        self.handle.try_send_lossy(public_key, data)
    }

    /// Runs `f` on the node (status, diagnostics).
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        self.handle.with(f).await
    }

    /// The next event; `None` once stopped.
    pub async fn next_event(&mut self) -> Option<ToxEvent> {
        loop {
            let event = match self.handle.next_event().await? {
                NodeEvent::Friend(FriendEvent::Request { real_pk, message }) => {
                    ToxEvent::FriendRequest { public_key: real_pk, message }
                }
                NodeEvent::Friend(FriendEvent::Connected { real_pk, path }) => {
                    ToxEvent::FriendConnected { public_key: real_pk, path }
                }
                NodeEvent::Friend(FriendEvent::Lost { real_pk }) => ToxEvent::FriendLost { public_key: real_pk },
                NodeEvent::Friend(FriendEvent::Lossless { real_pk, data }) => {
                    ToxEvent::Lossless { public_key: real_pk, data }
                }
                NodeEvent::Friend(FriendEvent::Lossy { real_pk, data }) => {
                    ToxEvent::Lossy { public_key: real_pk, data }
                }
                NodeEvent::Onion(OnionEvent::Connected(online)) => ToxEvent::Online(online),
                _ => continue,
            };
            return Some(event);
        }
    }

    /// Stops the node, after removing the router's port mapping.
    pub async fn shutdown(self) {
        if let Some(mapper) = self.mapper {
            mapper.stop().await;
        }
        self.handle.shutdown().await;
    }
}

/// Tells the node each mapping the mapper gets (or loses), until the
/// mapper or the node stops. Only public addresses are announced.
fn announce_mapping(mut state: watch::Receiver<Option<Mapping>>, node: NodeSender) {
    tokio::spawn(async move {
        loop {
            let external = state.borrow_and_update().map(|m| m.external).filter(|a| crate::portmap::announceable(*a));
            if node.with(move |node, _| node.set_external_addr(external)).await.is_err()
                || state.changed().await.is_err()
            {
                break;
            }
        }
    });
}

/// A cloneable handle for sending from other tasks.
#[derive(Debug, Clone)]
pub struct ToxSender {
    inner: NodeSender,
}

impl ToxSender {
    /// As [`Tox::send_lossless`].
    pub async fn send_lossless(&self, public_key: PublicKey, data: Bytes) -> Result<(), SendError> {
        self.inner.send_lossless(public_key, data).await
    }

    /// As [`Tox::send_lossless_batch`].
    pub async fn send_lossless_batch(&self, public_key: PublicKey, data: VecDeque<Bytes>) -> Result<(), SendError> {
        self.inner.send_lossless_batch(public_key, data).await
    }

    /// As [`Tox::try_send_lossy`].
    pub fn try_send_lossy(&self, public_key: PublicKey, data: Bytes) -> bool {
        self.inner.try_send_lossy(public_key, data)
    }

    /// Sends lossy packets, each to its friend, with one command to the
    /// node; false if all were dropped.
    pub fn try_send_lossy_batch(&self, packets: Vec<(PublicKey, Bytes)>) -> bool {
        self.inner.try_send_lossy_batch(packets)
    }

    /// As [`Tox::add_friend`].
    pub async fn add_friend(&self, public_key: PublicKey) -> Result<(), Stopped> {
        self.inner.with(move |node, _| node.add_friend(public_key)).await
    }

    /// The node's own sender (its `with` runs a closure on the node), for
    /// code that also serves nodes without a [`Tox`] (the relay).
    pub fn node(&self) -> NodeSender {
        self.inner.clone()
    }

    /// Holds or releases a friend's incoming lossless packets (see
    /// [`Node::set_receive_paused`]): the way a slow consumer slows that
    /// friend's sender without holding up anyone else.
    pub async fn set_receive_paused(&self, public_key: PublicKey, paused: bool) -> Result<(), Stopped> {
        self.inner.with(move |node, now| node.set_receive_paused(now, &public_key, paused)).await
    }

    /// Like [`set_receive_paused`](Self::set_receive_paused) with the value
    /// `flag` holds when the node gets to it: tasks that flip the flag and
    /// then call this settle on the latest value whatever order their calls
    /// arrive in.
    pub async fn sync_receive_paused(&self, public_key: PublicKey, flag: Arc<AtomicBool>) -> Result<(), Stopped> {
        self.inner.with(move |node, now| node.set_receive_paused(now, &public_key, flag.load(Ordering::Acquire))).await
    }
}
