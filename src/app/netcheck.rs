//! `tuntox netcheck`: what this network lets Tox do, without a peer.
//!
//! Four checks run side by side:
//! - **UDP and the NAT** ([`Probe`]): from
//!   a fresh UDP port, each bootstrap node (and up to
//!   [`MAX_LEARNED`] nodes they name) is asked for the nodes around our own
//!   DHT key until it names us, with the address it sees us at. No answer
//!   at all: UDP is blocked. The same address from every destination: an
//!   endpoint-independent mapping, where hole punching works; a different
//!   port per destination: direct paths need a port mapping or the peer's
//!   side to be open.
//! - **The router's port mapping** ([`portmap::probe`]): which of
//!   PCP, NAT-PMP and UPnP IGD the default gateway answers, and the
//!   external address each reports (PCP's test mapping is deleted at once).
//! - **Round trips**: each DHT node's first answer; each TCP relay's
//!   connect time and relay handshake time (the relays of `--relay` and the
//!   bootstrap nodes' TCP ports).
//!
//! The report is text or JSON ([`Report`]).

// Real time and real randomness enter here.
#![allow(clippy::disallowed_methods)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::bootstrap::BootstrapNode;
use crate::crypto::{KeyPair, SodiumRng, fill_random};
use crate::driver::portmap::{self, ProbeResult};
use crate::proto::dht::probe::Probe;
use crate::proto::relay::client::RelayClient;
use crate::wire::packed_node::PackedNode;
use crate::wire::tcp::ServerHandshake;

/// Nodes named by the bootstrap nodes that are asked too, at most.
pub const MAX_LEARNED: usize = 4;
/// How long one TCP relay's connect, then its handshake, may take.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// What to check.
#[derive(Debug, Clone)]
pub struct NetcheckConfig {
    /// The DHT nodes to ask (their IPv4 UDP addresses are used).
    pub bootstrap: Vec<BootstrapNode>,
    /// TCP relays to time, besides the bootstrap nodes' TCP ports.
    pub relays: Vec<PackedNode>,
    /// Probe the router's port mapping protocols.
    pub portmap: bool,
    /// How long the DHT nodes have to name us.
    pub timeout: Duration,
}

/// How the NAT (if any) maps our UDP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatKind {
    /// No DHT node answered over UDP.
    UdpBlocked,
    /// Nodes answered but none named us (too few nodes, or too little time).
    Unknown,
    /// Only one destination named us: nothing to compare.
    OneDestination,
    /// Every destination sees our own address and port: no NAT.
    NoNat,
    /// Every destination sees the same external address.
    EndpointIndependent,
    /// Destinations see the same address with different ports.
    PortPerDestination,
    /// Destinations see different addresses.
    AddressPerDestination,
}

impl NatKind {
    /// The words the report uses.
    pub fn text(self) -> &'static str {
        match self {
            Self::UdpBlocked => "UDP blocked",
            Self::Unknown => "unknown (no DHT node named our address)",
            Self::OneDestination => "unknown (only one destination named our address)",
            Self::NoNat => "no NAT (a public address)",
            Self::EndpointIndependent => "endpoint-independent mapping",
            Self::PortPerDestination => "port per destination",
            Self::AddressPerDestination => "address per destination",
        }
    }

    /// What it means for reaching peers.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::UdpBlocked => "only TCP relays can carry Tox traffic",
            Self::Unknown | Self::OneDestination => "give more bootstrap nodes (on different addresses) to tell",
            Self::NoNat => "peers can reach this host directly",
            Self::EndpointIndependent => "one external address for every destination: hole punching can work",
            Self::PortPerDestination | Self::AddressPerDestination => {
                "each destination sees another port: direct paths need a router port mapping or an open peer"
            }
        }
    }
}

/// Classifies what the destinations saw (`(destination, seen)` pairs)
/// from our socket at `local`; `answered` says whether any node answered.
pub fn classify(local: SocketAddr, seen: &[(SocketAddr, SocketAddr)], answered: bool) -> NatKind {
    if !answered {
        return NatKind::UdpBlocked;
    }
    let Some(&(_, first)) = seen.first() else { return NatKind::Unknown };
    if seen.iter().all(|(_, s)| *s == first) && first == local {
        return NatKind::NoNat;
    }
    let destinations = {
        let mut d: Vec<SocketAddr> = seen.iter().map(|(d, _)| *d).collect();
        d.sort();
        d.dedup();
        d.len()
    };
    if destinations < 2 {
        return NatKind::OneDestination;
    }
    if seen.iter().all(|(_, s)| *s == first) {
        NatKind::EndpointIndependent
    } else if seen.iter().all(|(_, s)| s.ip() == first.ip()) {
        NatKind::PortPerDestination
    } else {
        NatKind::AddressPerDestination
    }
}

/// One DHT node asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Named by another node rather than given.
    pub learned: bool,
    /// Its first answer's round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Where it sees us.
    pub sees_us_at: Option<SocketAddr>,
}

/// One TCP relay timed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayReport {
    /// Its address.
    pub addr: SocketAddr,
    /// The TCP connect's duration, in milliseconds.
    pub connect_ms: Option<f64>,
    /// The relay handshake's round trip, in milliseconds.
    pub handshake_ms: Option<f64>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The gateway's port mapping protocols.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortmapReport {
    /// The default gateway (none: no IPv4 default route).
    pub gateway: Option<IpAddr>,
    /// Each protocol's answer.
    pub protocols: Vec<ProbeResult>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Whether a DHT node answered over UDP.
    pub udp: bool,
    /// Our UDP socket's port.
    pub local_port: u16,
    /// The NAT's behaviour.
    pub nat: NatKind,
    /// The external address, when every destination agrees on it.
    pub external: Option<SocketAddr>,
    /// The DHT nodes asked.
    pub dht_nodes: Vec<NodeReport>,
    /// The router's port mapping (`None` when not probed).
    pub portmap: Option<PortmapReport>,
    /// The TCP relays timed.
    pub tcp_relays: Vec<RelayReport>,
}

impl Report {
    /// Whether Tox can work from here: UDP, or at least one TCP relay.
    pub fn usable(&self) -> bool {
        self.udp || self.tcp_relays.iter().any(|r| r.handshake_ms.is_some())
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Runs the checks.
pub async fn run(config: &NetcheckConfig) -> anyhow::Result<Report> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    let local_port = socket.local_addr()?.port();
    let nodes: Vec<PackedNode> = config
        .bootstrap
        .iter()
        .flat_map(BootstrapNode::udp_nodes)
        .filter(|n| n.addr.is_ipv4() || n.addr.ip().to_canonical().is_ipv4())
        .collect();
    let mut relays = config.relays.clone();
    for node in &config.bootstrap {
        for addr in &node.udp {
            for port in &node.tcp_ports {
                let relay = PackedNode::tcp(SocketAddr::new(addr.ip(), *port), node.public_key);
                if !relays.iter().any(|r| r.addr == relay.addr) {
                    relays.push(relay);
                }
            }
        }
    }
    let udp = probe_udp(socket, &nodes, config.timeout);
    let portmap = async {
        if !config.portmap {
            return Ok(None);
        }
        // A port of its own, held while PCP maps it for a moment.
        let held = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let probed = portmap::probe(held.local_addr()?.port()).await?;
        drop(held);
        Ok::<_, std::io::Error>(Some(match probed {
            Some((gateway, protocols)) => PortmapReport { gateway: Some(IpAddr::V4(gateway.addr)), protocols },
            None => PortmapReport { gateway: None, protocols: Vec::new() },
        }))
    };
    let tcp = async {
        let mut set = tokio::task::JoinSet::new();
        for (i, relay) in relays.iter().copied().enumerate() {
            set.spawn(async move { (i, time_relay(relay).await) });
        }
        let mut timed = set.join_all().await;
        timed.sort_by_key(|(i, _)| *i);
        timed.into_iter().map(|(_, report)| report).collect::<Vec<_>>()
    };
    let (probe, portmap, tcp_relays) = tokio::join!(udp, portmap, tcp);
    let probe = probe?;
    let local = SocketAddr::from((local_ip_toward(&nodes).unwrap_or(Ipv4Addr::UNSPECIFIED), local_port));
    let seen: Vec<(SocketAddr, SocketAddr)> =
        probe.targets().iter().filter_map(|t| t.reported.map(|s| (t.node.addr, s))).collect();
    let answered = probe.targets().iter().any(|t| t.answered());
    let nat = classify(local, &seen, answered);
    let external = match nat {
        NatKind::NoNat | NatKind::EndpointIndependent | NatKind::OneDestination => seen.first().map(|(_, s)| *s),
        _ => None,
    };
    let dht_nodes = probe
        .targets()
        .iter()
        .map(|t| NodeReport { addr: t.node.addr, learned: t.learned, rtt_ms: t.rtt.map(ms), sees_us_at: t.reported })
        .collect();
    Ok(Report {
        udp: answered,
        local_port,
        nat,
        external,
        dht_nodes,
        portmap: portmap.unwrap_or_else(|e| {
            Some(PortmapReport {
                gateway: None,
                protocols: vec![ProbeResult {
                    protocol: crate::portmap::Protocol::Pcp,
                    external_ip: None,
                    error: Some(e.to_string()),
                }],
            })
        }),
        tcp_relays,
    })
}

/// Our address toward the first node (a connected UDP socket's; nothing
/// is sent).
fn local_ip_toward(nodes: &[PackedNode]) -> Option<Ipv4Addr> {
    let node = nodes.first()?;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(node.addr).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

async fn probe_udp(socket: UdpSocket, nodes: &[PackedNode], timeout: Duration) -> anyhow::Result<Probe> {
    let mut seed = [0u8; 32];
    fill_random(&mut seed);
    let mut probe = Probe::new(KeyPair::generate(&mut SodiumRng), seed, nodes, MAX_LEARNED);
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        probe.handle_timeout(now);
        while let Some(t) = probe.poll_transmit() {
            // An unreachable node is the same as a silent one.
            let _ = socket.send_to(&t.payload, t.dst).await;
        }
        if probe.finished() || now >= deadline {
            return Ok(probe);
        }
        let wake = probe.poll_timeout().map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = got {
                    probe.handle_packet(Instant::now(), from, Bytes::copy_from_slice(&buf[..n]));
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Connects to a TCP relay and does its handshake, timing both.
async fn time_relay(relay: PackedNode) -> RelayReport {
    let mut report = RelayReport { addr: relay.addr, connect_ms: None, handshake_ms: None, error: None };
    let started = Instant::now();
    let mut stream = match tokio::time::timeout(RELAY_TIMEOUT, TcpStream::connect(relay.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            report.error = Some(format!("connect: {e}"));
            return report;
        }
        Err(_) => {
            report.error = Some(format!("connect: no answer within {RELAY_TIMEOUT:?}"));
            return report;
        }
    };
    report.connect_ms = Some(ms(started.elapsed()));
    let keys = KeyPair::generate(&mut SodiumRng);
    let (mut client, hello) = match RelayClient::start(&mut SodiumRng, &keys, relay, Instant::now()) {
        Ok(started) => started,
        Err(e) => {
            report.error = Some(format!("handshake: {e}"));
            return report;
        }
    };
    let mut bytes = Vec::new();
    hello.encode(&mut bytes);
    let started = Instant::now();
    let exchange = async {
        stream.write_all(&bytes).await?;
        let mut response = vec![0u8; ServerHandshake::LEN];
        stream.read_exact(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(RELAY_TIMEOUT, exchange).await {
        Ok(Ok(response)) => match ServerHandshake::decode(response) {
            Ok(response) if client.handle_handshake(Instant::now(), &response).is_some() => {
                report.handshake_ms = Some(ms(started.elapsed()));
            }
            _ => report.error = Some("handshake: the relay's answer does not open with its key".to_owned()),
        },
        Ok(Err(e)) => report.error = Some(format!("handshake: {e}")),
        Err(_) => report.error = Some(format!("handshake: no answer within {RELAY_TIMEOUT:?}")),
    }
    report
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let answered = report.dht_nodes.iter().filter(|n| n.rtt_ms.is_some()).count();
    if report.udp {
        let _ = writeln!(out, "UDP:          usable ({answered} of {} DHT nodes answered)", report.dht_nodes.len());
    } else {
        let _ = writeln!(out, "UDP:          blocked (none of {} DHT nodes answered over UDP)", report.dht_nodes.len());
    }
    if let Some(external) = report.external {
        let preserved = if external.port() == report.local_port { ", port preserved" } else { "" };
        let _ = writeln!(out, "External:     {external} (local port {}{preserved})", report.local_port);
    }
    let _ = writeln!(out, "NAT mapping:  {}: {}", report.nat.text(), report.nat.meaning());
    match &report.portmap {
        None => {}
        Some(PortmapReport { gateway: None, .. }) => {
            let _ = writeln!(out, "Port mapping: no IPv4 default gateway");
        }
        Some(PortmapReport { gateway: Some(gateway), protocols }) => {
            let found: Vec<String> = protocols
                .iter()
                .filter_map(|p| p.external_ip.map(|ip| format!("{} (external address {ip})", p.protocol)))
                .collect();
            if found.is_empty() {
                let _ = writeln!(out, "Port mapping: gateway {gateway} answers none of PCP, NAT-PMP, UPnP IGD");
            } else {
                let _ = writeln!(out, "Port mapping: gateway {gateway} answers {}", found.join(", "));
            }
        }
    }
    if !report.dht_nodes.is_empty() {
        let _ = writeln!(out, "DHT nodes (UDP round trip, where they see us):");
        for node in &report.dht_nodes {
            let rtt = node.rtt_ms.map_or("no answer".to_owned(), |ms| format!("{ms} ms"));
            let seen = node.sees_us_at.map_or(String::new(), |a| format!(", sees us at {a}"));
            let learned = if node.learned { " (named by another node)" } else { "" };
            let _ = writeln!(out, "  {}{learned}: {rtt}{seen}", node.addr);
        }
    }
    if !report.tcp_relays.is_empty() {
        let _ = writeln!(out, "TCP relays (connect, relay handshake):");
        for relay in &report.tcp_relays {
            match (relay.connect_ms, relay.handshake_ms, &relay.error) {
                (Some(c), Some(h), _) => {
                    let _ = writeln!(out, "  {}: {c} ms, {h} ms", relay.addr);
                }
                (_, _, error) => {
                    let _ = writeln!(out, "  {}: {}", relay.addr, error.as_deref().unwrap_or("failed"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nat_kinds_are_told_apart() {
        let local = a("10.9.0.2:40000");
        let (d1, d2) = (a("11.0.1.2:33445"), a("11.0.2.2:33445"));
        assert_eq!(classify(local, &[], false), NatKind::UdpBlocked);
        assert_eq!(classify(local, &[], true), NatKind::Unknown);
        assert_eq!(classify(local, &[(d1, a("12.1.0.2:40000"))], true), NatKind::OneDestination);
        let same = [(d1, a("12.1.0.2:40000")), (d2, a("12.1.0.2:40000"))];
        assert_eq!(classify(local, &same, true), NatKind::EndpointIndependent);
        let ports = [(d1, a("12.1.0.2:40000")), (d2, a("12.1.0.2:51000"))];
        assert_eq!(classify(local, &ports, true), NatKind::PortPerDestination);
        let addrs = [(d1, a("12.1.0.2:40000")), (d2, a("12.1.0.3:40000"))];
        assert_eq!(classify(local, &addrs, true), NatKind::AddressPerDestination);
        let public = a("12.1.0.2:40000");
        assert_eq!(classify(public, &same, true), NatKind::NoNat);
        assert_eq!(NatKind::EndpointIndependent.text(), "endpoint-independent mapping");
    }

    #[test]
    fn the_text_report_says_what_was_found() {
        let report = Report {
            udp: false,
            local_port: 40000,
            nat: NatKind::UdpBlocked,
            external: None,
            dht_nodes: vec![NodeReport { addr: a("11.0.1.2:33445"), learned: false, rtt_ms: None, sees_us_at: None }],
            portmap: Some(PortmapReport {
                gateway: Some("10.9.0.1".parse().unwrap()),
                protocols: vec![
                    ProbeResult {
                        protocol: crate::portmap::Protocol::Pcp,
                        external_ip: Some("12.1.0.2".parse().unwrap()),
                        error: None,
                    },
                    ProbeResult {
                        protocol: crate::portmap::Protocol::Upnp,
                        external_ip: None,
                        error: Some("no UPnP gateway answered".into()),
                    },
                ],
            }),
            tcp_relays: vec![RelayReport {
                addr: a("11.0.1.2:33446"),
                connect_ms: Some(0.3),
                handshake_ms: Some(1.2),
                error: None,
            }],
        };
        let text = render(&report);
        assert!(text.contains("UDP:          blocked (none of 1 DHT nodes answered over UDP)"), "{text}");
        assert!(text.contains("NAT mapping:  UDP blocked: only TCP relays"), "{text}");
        assert!(text.contains("Port mapping: gateway 10.9.0.1 answers PCP (external address 12.1.0.2)\n"), "{text}");
        assert!(text.contains("  11.0.1.2:33445: no answer\n"), "{text}");
        assert!(text.contains("  11.0.1.2:33446: 0.3 ms, 1.2 ms\n"), "{text}");
        assert!(report.usable());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nat"], "udp-blocked");
        assert_eq!(json["portmap"]["protocols"][0]["protocol"], "pcp");
    }
}
