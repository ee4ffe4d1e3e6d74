//! Router port mapping, the I/O: asks the home router for a UDP mapping of
//! the node's port, keeps it alive and removes it at the end.
//!
//! Where requests go: only to this network namespace's IPv4 default
//! gateway (read from the calling thread's `/proc/thread-self/net/route`):
//! PCP and NAT-PMP to its UDP port 5351, and UPnP's HTTP to the gateway
//! itself (a description or control URL naming any other host is
//! refused); the SSDP search is multicast (TTL 2) on the gateway's
//! interface only. Without a default route, or when our own address toward
//! the gateway is public (no NAT to map through), nothing is sent.
//!
//! The order: a PCP MAP request (a NAT-PMP-only gateway answers it with
//! "unsupported version", and NAT-PMP is tried at once), meanwhile an SSDP
//! search; then NAT-PMP when PCP got no answer, then UPnP's
//! `AddPortMapping` when the search found a gateway. The first that grants
//! a mapping is kept: renewed at half its lifetime (the same PCP nonce,
//! the same external port), and deleted when the [`Mapper`] stops. A
//! renewal that fails is retried until the mapping would expire; then,
//! like when nothing was found, the whole search starts again after 30 s
//! (doubling to 10 minutes). The current mapping is published on a
//! `watch` channel ([`Mapper::watch`]); [`Tox`](super::tox::Tox) passes it
//! to its node, which announces it to friends.
//!
//! [`probe`] is `tuntox netcheck`'s look at the router: which protocols
//! answer and the external address each reports.

// Real time and real randomness enter here.
#![allow(clippy::disallowed_methods)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::crypto::fill_random;
use crate::portmap::http::{self, HttpUrl, Malformed};
use crate::portmap::igd::{self, Reply, WanService};
use crate::portmap::{
    DESCRIPTION, LIFETIME, Mapping, Protocol, RETRANSMITS, natpmp, pcp, renew_after, retry_after, ssdp,
};
use crate::proto::addr::is_lan;

/// How long an SSDP search waits for answers.
pub const SSDP_WAIT: Duration = Duration::from_millis(1500);
/// How long one HTTP exchange with the gateway may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long removing the mapping at exit may take.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// The default gateway and our address toward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// The gateway's address.
    pub addr: Ipv4Addr,
    /// Our address on the link to it (what PCP and UPnP name as the
    /// internal client).
    pub local: Ipv4Addr,
}

/// The IPv4 default gateway in a `/proc/net/route` table: the up route to
/// 0.0.0.0/0 through a gateway with the lowest metric.
pub fn parse_route_table(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(dest), Some(gateway), Some(flags), Some(metric), Some(mask)) =
            (fields.get(1), fields.get(2), fields.get(3), fields.get(6), fields.get(7))
        else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(gateway), Some(flags), Some(mask)) = (hex(dest), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        let metric = metric.parse::<u32>().unwrap_or(u32::MAX);
        if dest != 0 || mask != 0 || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY || gateway == 0 {
            continue;
        }
        // The kernel prints the address in memory order (network order).
        let addr = Ipv4Addr::from(gateway.to_le_bytes());
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, addr));
        }
    }
    best.map(|(_, addr)| addr)
}

/// This namespace's default gateway, or `None` when there is no IPv4
/// default route.
pub async fn default_gateway() -> io::Result<Option<Gateway>> {
    // The calling thread's namespace (`/proc/net` would show the main
    // thread's, which may be another).
    let table = match std::fs::read_to_string("/proc/thread-self/net/route") {
        Ok(table) => table,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(addr) = parse_route_table(&table) else { return Ok(None) };
    // A connected UDP socket learns its source address; nothing is sent.
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((addr, natpmp::SERVER_PORT)).await?;
    let local = match socket.local_addr()?.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => return Ok(None),
    };
    Ok(Some(Gateway { addr, local }))
}

/// Why a protocol gave no mapping.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// No default route: nobody to ask.
    #[error("no IPv4 default gateway")]
    NoGateway,
    /// Our address toward the gateway is public: no NAT to map through.
    #[error("this host's address {0} is public: nothing to map")]
    PublicAddress(Ipv4Addr),
    /// The gateway did not answer (or refused the packets).
    #[error("no answer from {0}")]
    NoAnswer(SocketAddr),
    /// A NAT-PMP gateway answered PCP: use NAT-PMP.
    #[error("the gateway speaks NAT-PMP, not PCP")]
    NatPmpOnly,
    /// The gateway answered with an error.
    #[error("{protocol} refused: {reason}")]
    Refused {
        /// Which protocol.
        protocol: Protocol,
        /// The gateway's reason.
        reason: String,
    },
    /// No UPnP gateway answered the search.
    #[error("no UPnP gateway answered")]
    NoUpnp,
    /// A UPnP action was refused.
    #[error("{action}: {description} (UPnP error {})", code.map_or("without a code".to_owned(), |c| c.to_string()))]
    UpnpFault {
        /// The action.
        action: &'static str,
        /// The UPnP error code, when the fault has one.
        code: Option<u16>,
        /// The fault's text.
        description: String,
    },
    /// Every protocol failed; what each said.
    #[error("{0}")]
    Nothing(String),
    /// A malformed answer.
    #[error("{protocol}: {err}")]
    Malformed {
        /// Which protocol.
        protocol: Protocol,
        /// What was wrong.
        err: Malformed,
    },
    /// A socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What to map and how.
#[derive(Debug, Clone)]
pub struct MapperConfig {
    /// Our UDP port (the node's).
    pub internal_port: u16,
    /// Seconds to ask for.
    pub lifetime: u32,
    /// The protocols to use, in the order of [`Protocol::ALL`].
    pub protocols: Vec<Protocol>,
}

impl MapperConfig {
    /// Every protocol, the default lifetime.
    pub fn new(internal_port: u16) -> Self {
        Self { internal_port, lifetime: LIFETIME, protocols: Protocol::ALL.to_vec() }
    }
}

/// A mapping being kept alive: what renewing and deleting it take.
#[derive(Debug, Clone)]
enum Lease {
    Pcp { gateway: Gateway, nonce: [u8; 12] },
    NatPmp { gateway: Gateway },
    Upnp { gateway: Gateway, service: WanService, lease: u32 },
}

/// The running port mapper of a node.
#[derive(Debug)]
pub struct Mapper {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    state: watch::Receiver<Option<Mapping>>,
}

impl Mapper {
    /// Starts looking for a mapping of `config.internal_port`, on the
    /// current runtime. The task ends, removing the mapping, when `cancel`
    /// fires or [`stop`](Self::stop) is called.
    pub fn spawn(config: MapperConfig, cancel: CancellationToken) -> Mapper {
        let (tx, state) = watch::channel(None);
        let token = cancel.clone();
        let task = tokio::spawn(async move { run(config, tx, token).await });
        Mapper { cancel, task, state }
    }

    /// The current mapping, and its changes.
    pub fn watch(&self) -> watch::Receiver<Option<Mapping>> {
        self.state.clone()
    }

    /// Removes the mapping from the router (bounded by
    /// [`RELEASE_TIMEOUT`]) and ends the task.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(RELEASE_TIMEOUT + Duration::from_secs(1), self.task).await;
    }
}

async fn run(config: MapperConfig, state: watch::Sender<Option<Mapping>>, cancel: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let found = tokio::select! {
            () = cancel.cancelled() => return,
            found = obtain(&config) => found,
        };
        match found {
            Ok((mapping, lease)) => {
                failures = 0;
                tracing::info!(%mapping, "port mapping made");
                state.send_replace(Some(mapping));
                if !keep(&config, mapping, lease, &state, &cancel).await {
                    return;
                }
            }
            Err(e) if failures == 0 => tracing::info!("no router port mapping: {e}"),
            Err(e) => tracing::debug!("no router port mapping: {e}"),
        }
        let wait = retry_after(failures);
        failures += 1;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Renews a mapping until it is lost (`true`: look for another) or
/// `cancel` fires (`false`: it was removed, stop).
async fn keep(
    config: &MapperConfig,
    mut mapping: Mapping,
    mut lease: Lease,
    state: &watch::Sender<Option<Mapping>>,
    cancel: &CancellationToken,
) -> bool {
    let mut granted = Instant::now();
    let mut next = granted + renew_after(mapping.lifetime);
    loop {
        let renewed = tokio::select! {
            () = cancel.cancelled() => None,
            renewed = async {
                tokio::time::sleep_until(next.into()).await;
                renew(config, &mapping, &lease).await
            } => Some(renewed),
        };
        let Some(renewed) = renewed else {
            release(&mapping, &lease).await;
            state.send_replace(None);
            return false;
        };
        let now = Instant::now();
        match renewed {
            Ok((renewed, renewed_lease)) => {
                if renewed == mapping {
                    tracing::debug!(mapping = %renewed, "port mapping renewed");
                } else {
                    tracing::info!(mapping = %renewed, "port mapping renewed, changed");
                    state.send_replace(Some(renewed));
                }
                mapping = renewed;
                lease = renewed_lease;
                granted = now;
                next = granted + renew_after(mapping.lifetime);
            }
            Err(e) if mapping.lifetime == 0 => {
                tracing::debug!(%mapping, "port mapping refresh failed, will retry: {e}");
                next = now + Duration::from_secs(60);
            }
            Err(e) => {
                let expires = granted + Duration::from_secs(u64::from(mapping.lifetime));
                let left = expires.saturating_duration_since(now);
                if left <= Duration::from_secs(4) {
                    tracing::info!(%mapping, "port mapping lost: {e}");
                    state.send_replace(None);
                    return true;
                }
                tracing::debug!(%mapping, "port mapping renewal failed, will retry: {e}");
                next = now + (left / 4).max(Duration::from_secs(2));
            }
        }
    }
}

/// Tries the protocols of `config`: PCP, then NAT-PMP, while an SSDP search
/// runs; then UPnP when the search found the gateway.
async fn obtain(config: &MapperConfig) -> Result<(Mapping, Lease), MapError> {
    let gateway = default_gateway().await?.ok_or(MapError::NoGateway)?;
    if !is_lan(IpAddr::V4(gateway.local)) {
        return Err(MapError::PublicAddress(gateway.local));
    }
    let wants = |p| config.protocols.contains(&p);
    let pmp = async {
        let mut error = None;
        if wants(Protocol::Pcp) {
            let mut nonce = [0u8; 12];
            fill_random(&mut nonce);
            match map_pcp(gateway, nonce, config.internal_port, None, config.lifetime).await {
                Ok(found) => return Ok(found),
                Err(e) => error = Some(format!("PCP: {e}")),
            }
        }
        if wants(Protocol::NatPmp) {
            let pmp = map_natpmp(gateway, config.internal_port, None, config.lifetime).await;
            return pmp.map_err(|e| {
                let pmp = format!("NAT-PMP: {e}");
                error.map_or(pmp.clone(), |pcp| format!("{pcp}; {pmp}"))
            });
        }
        Err(error.unwrap_or_default())
    };
    let upnp = async { if wants(Protocol::Upnp) { Some(discover_upnp(gateway).await) } else { None } };
    let (pmp, upnp) = tokio::join!(pmp, upnp);
    let mut errors: Vec<String> = Vec::new();
    match pmp {
        Ok(found) => return Ok(found),
        Err(e) if !e.is_empty() => errors.push(e),
        Err(_) => {}
    }
    match upnp {
        Some(Ok(service)) => match map_upnp(gateway, service, config.internal_port, None, config.lifetime).await {
            Ok(found) => return Ok(found),
            Err(e) => errors.push(format!("UPnP: {e}")),
        },
        Some(Err(e)) => errors.push(format!("UPnP: {e}")),
        None => {}
    }
    Err(MapError::Nothing(errors.join("; ")))
}

async fn renew(config: &MapperConfig, mapping: &Mapping, lease: &Lease) -> Result<(Mapping, Lease), MapError> {
    let port = Some(mapping.external.port());
    match lease {
        Lease::Pcp { gateway, nonce } => map_pcp(*gateway, *nonce, config.internal_port, port, config.lifetime).await,
        Lease::NatPmp { gateway } => map_natpmp(*gateway, config.internal_port, port, config.lifetime).await,
        Lease::Upnp { gateway, service, lease } => {
            add_upnp(*gateway, service, config.internal_port, mapping.external.port(), *lease, mapping.external.ip())
                .await
        }
    }
}

/// Deletes the mapping, within [`RELEASE_TIMEOUT`].
async fn release(mapping: &Mapping, lease: &Lease) {
    let deleted = tokio::time::timeout(RELEASE_TIMEOUT, async {
        match lease {
            Lease::Pcp { gateway, nonce } => {
                let request = pcp_delete(mapping, gateway, nonce);
                let matches =
                    |r: &pcp::Response| matches!(r, pcp::Response::Pcp { map: Some(m), .. } if m.nonce == *nonce);
                match exchange_pcp(gateway.addr, request.to_bytes(), matches).await? {
                    pcp::Response::Pcp { result: pcp::SUCCESS, .. } => Ok(()),
                    pcp::Response::Pcp { result, .. } => {
                        Err(MapError::Refused { protocol: Protocol::Pcp, reason: pcp::result_text(result).into() })
                    }
                    pcp::Response::NatPmpOnly => Err(MapError::NatPmpOnly),
                }
            }
            Lease::NatPmp { gateway } => {
                let request = natpmp::Request::Map {
                    transport: natpmp::Transport::Udp,
                    internal_port: mapping.internal_port,
                    external_port: 0,
                    lifetime: 0,
                };
                match exchange_natpmp(gateway.addr, &request).await? {
                    natpmp::Response::Map { result: natpmp::SUCCESS, .. } => Ok(()),
                    natpmp::Response::Map { result, .. } => Err(MapError::Refused {
                        protocol: Protocol::NatPmp,
                        reason: natpmp::result_text(result).into(),
                    }),
                    _ => Err(MapError::NoAnswer(SocketAddr::from((gateway.addr, natpmp::SERVER_PORT)))),
                }
            }
            Lease::Upnp { gateway, service, .. } => {
                let request = igd::delete_port_mapping(service, mapping.external.port());
                match soap(*gateway, service, &request).await? {
                    Reply::Done(_) => Ok(()),
                    Reply::Fault { code, description } => {
                        Err(MapError::UpnpFault { action: "DeletePortMapping", code, description })
                    }
                }
            }
        }
    })
    .await;
    match deleted {
        Ok(Ok(())) => tracing::info!(%mapping, "port mapping removed"),
        Ok(Err(e)) => tracing::warn!(%mapping, "cannot remove the port mapping: {e}"),
        Err(_) => tracing::warn!(%mapping, "cannot remove the port mapping: no answer within {RELEASE_TIMEOUT:?}"),
    }
}

// ---- PCP and NAT-PMP -------------------------------------------------------

/// Sends `request` to the gateway's port 5351 and waits for a reply that
/// `decode` accepts, resending after each of [`RETRANSMITS`].
async fn exchange<T>(
    gateway: Ipv4Addr,
    request: &[u8],
    mut decode: impl FnMut(Bytes) -> Option<T>,
) -> Result<T, MapError> {
    let server = SocketAddr::from((gateway, natpmp::SERVER_PORT));
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    // Connected: only the gateway's port 5351 can answer.
    socket.connect(server).await?;
    let mut buf = vec![0u8; pcp::MAX_LEN + 1];
    for wait in RETRANSMITS {
        if let Err(e) = socket.send(request).await {
            // ICMP unreachable from an earlier copy: nobody listens.
            if e.kind() == io::ErrorKind::ConnectionRefused {
                return Err(MapError::NoAnswer(server));
            }
            return Err(e.into());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(n)) => {
                    if let Some(reply) = decode(Bytes::copy_from_slice(&buf[..n])) {
                        return Ok(reply);
                    }
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(MapError::NoAnswer(server));
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
    Err(MapError::NoAnswer(server))
}

async fn exchange_pcp(
    gateway: Ipv4Addr,
    request: Bytes,
    matches: impl Fn(&pcp::Response) -> bool,
) -> Result<pcp::Response, MapError> {
    exchange(gateway, &request, |data| {
        let response = pcp::Response::decode(data).ok()?;
        (response == pcp::Response::NatPmpOnly || matches(&response)).then_some(response)
    })
    .await
}

async fn exchange_natpmp(gateway: Ipv4Addr, request: &natpmp::Request) -> Result<natpmp::Response, MapError> {
    let want_map = matches!(request, natpmp::Request::Map { .. });
    let internal = match request {
        natpmp::Request::Map { internal_port, .. } => *internal_port,
        natpmp::Request::ExternalAddress => 0,
    };
    exchange(gateway, &request.to_bytes(), |data| match natpmp::Response::decode(data).ok()? {
        r @ natpmp::Response::Map { internal_port, transport: natpmp::Transport::Udp, .. }
            if want_map && internal_port == internal =>
        {
            Some(r)
        }
        r @ natpmp::Response::ExternalAddress { .. } if !want_map => Some(r),
        _ => None,
    })
    .await
}

async fn map_pcp(
    gateway: Gateway,
    nonce: [u8; 12],
    internal_port: u16,
    prefer: Option<u16>,
    lifetime: u32,
) -> Result<(Mapping, Lease), MapError> {
    let request = pcp::Request {
        lifetime,
        client_ip: IpAddr::V4(gateway.local),
        map: Some(pcp::Map {
            nonce,
            protocol: pcp::PROTO_UDP,
            internal_port,
            external_port: prefer.unwrap_or(internal_port),
            external_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }),
    };
    let matches = |r: &pcp::Response| {
        matches!(r, pcp::Response::Pcp { opcode: pcp::OP_MAP, map: Some(m), .. }
            if m.nonce == nonce && m.protocol == pcp::PROTO_UDP && m.internal_port == internal_port)
            || matches!(r, pcp::Response::Pcp { opcode: pcp::OP_MAP, result, map: None, .. } if *result != pcp::SUCCESS)
    };
    match exchange_pcp(gateway.addr, request.to_bytes(), matches).await? {
        pcp::Response::NatPmpOnly => Err(MapError::NatPmpOnly),
        pcp::Response::Pcp { result: pcp::SUCCESS, lifetime, map: Some(map), .. } => {
            let mapping = Mapping {
                protocol: Protocol::Pcp,
                external: SocketAddr::new(map.external_ip, map.external_port),
                internal_port,
                lifetime: lifetime.max(1),
            };
            Ok((mapping, Lease::Pcp { gateway, nonce }))
        }
        pcp::Response::Pcp { result, .. } => {
            Err(MapError::Refused { protocol: Protocol::Pcp, reason: pcp::result_text(result).into() })
        }
    }
}

async fn map_natpmp(
    gateway: Gateway,
    internal_port: u16,
    prefer: Option<u16>,
    lifetime: u32,
) -> Result<(Mapping, Lease), MapError> {
    let external_ip = match exchange_natpmp(gateway.addr, &natpmp::Request::ExternalAddress).await? {
        natpmp::Response::ExternalAddress { result: natpmp::SUCCESS, addr, .. } => addr,
        natpmp::Response::ExternalAddress { result, .. } => {
            return Err(MapError::Refused { protocol: Protocol::NatPmp, reason: natpmp::result_text(result).into() });
        }
        _ => return Err(MapError::NoAnswer(SocketAddr::from((gateway.addr, natpmp::SERVER_PORT)))),
    };
    let request = natpmp::Request::Map {
        transport: natpmp::Transport::Udp,
        internal_port,
        external_port: prefer.unwrap_or(internal_port),
        lifetime,
    };
    match exchange_natpmp(gateway.addr, &request).await? {
        natpmp::Response::Map { result: natpmp::SUCCESS, external_port, lifetime, .. } if external_port != 0 => {
            let mapping = Mapping {
                protocol: Protocol::NatPmp,
                external: SocketAddr::from((external_ip, external_port)),
                internal_port,
                lifetime: lifetime.max(1),
            };
            Ok((mapping, Lease::NatPmp { gateway }))
        }
        natpmp::Response::Map { result, .. } => {
            Err(MapError::Refused { protocol: Protocol::NatPmp, reason: natpmp::result_text(result).into() })
        }
        _ => Err(MapError::NoAnswer(SocketAddr::from((gateway.addr, natpmp::SERVER_PORT)))),
    }
}

// ---- UPnP IGD --------------------------------------------------------------

/// Searches the gateway's interface for an Internet gateway device and
/// reads its description: the WAN connection service. Only the default
/// gateway's own answer is taken.
pub async fn discover_upnp(gateway: Gateway) -> Result<WanService, MapError> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Out of the gateway's interface only, and no further than the LAN.
    socket.set_multicast_if_v4(&gateway.local)?;
    socket.set_multicast_ttl_v4(2)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(gateway.local, 0)).into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    for target in ssdp::GATEWAY_TARGETS {
        socket.send_to(&ssdp::search(target, 1), ssdp::MULTICAST).await?;
    }
    let deadline = tokio::time::Instant::now() + SSDP_WAIT;
    let mut buf = vec![0u8; 2048];
    let mut last_error = MapError::NoUpnp;
    while let Ok(got) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let (n, from) = got?;
        if from.ip() != IpAddr::V4(gateway.addr) {
            continue;
        }
        let found = match ssdp::parse_answer(&buf[..n]) {
            Ok(found) if found.location.addr.ip() == from.ip() => found,
            Ok(_) => continue,
            Err(err) => {
                last_error = MapError::Malformed { protocol: Protocol::Upnp, err };
                continue;
            }
        };
        match describe(gateway, &found.location).await {
            Ok(service) => return Ok(service),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Fetches a description and finds its WAN connection service, which must
/// be on the gateway itself.
async fn describe(gateway: Gateway, location: &HttpUrl) -> Result<WanService, MapError> {
    let response = fetch(gateway, location.addr, &http::get(location)).await?;
    if response.status != 200 {
        return Err(MapError::Refused {
            protocol: Protocol::Upnp,
            reason: format!("description: HTTP status {}", response.status),
        });
    }
    let text = String::from_utf8_lossy(&response.body);
    let service =
        igd::find_wan_service(&text, location).map_err(|err| MapError::Malformed { protocol: Protocol::Upnp, err })?;
    if service.control.addr.ip() != IpAddr::V4(gateway.addr) {
        return Err(MapError::Refused {
            protocol: Protocol::Upnp,
            reason: format!("control URL on {}, not on the gateway", service.control.addr.ip()),
        });
    }
    Ok(service)
}

/// One HTTP exchange with the gateway: connect, send, read to the end.
async fn fetch(gateway: Gateway, addr: SocketAddr, request: &[u8]) -> Result<http::Response, MapError> {
    if addr.ip() != IpAddr::V4(gateway.addr) {
        return Err(MapError::Refused { protocol: Protocol::Upnp, reason: format!("{addr} is not the gateway") });
    }
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut data = Vec::new();
        let mut limited = (&mut stream).take(http::MAX_RESPONSE as u64);
        limited.read_to_end(&mut data).await?;
        Ok::<_, io::Error>(data)
    };
    let data = tokio::time::timeout(HTTP_TIMEOUT, exchange).await.map_err(|_| MapError::NoAnswer(addr))??;
    http::Response::parse(&data).map_err(|err| MapError::Malformed { protocol: Protocol::Upnp, err })
}

async fn soap(gateway: Gateway, service: &WanService, request: &[u8]) -> Result<Reply, MapError> {
    let response = fetch(gateway, service.control.addr, request).await?;
    Reply::parse(&response).map_err(|err| MapError::Malformed { protocol: Protocol::Upnp, err })
}

/// The external address a UPnP gateway reports.
pub async fn upnp_external_ip(gateway: Gateway, service: &WanService) -> Result<IpAddr, MapError> {
    match soap(gateway, service, &igd::get_external_ip(service)).await? {
        Reply::Done(body) => {
            igd::external_ip(&body).map_err(|err| MapError::Malformed { protocol: Protocol::Upnp, err })
        }
        Reply::Fault { code, description } => {
            Err(MapError::UpnpFault { action: "GetExternalIPAddress", code, description })
        }
    }
}

/// Maps `internal_port` with `AddPortMapping`: the same external port if
/// free, else a few others; a gateway that grants only permanent leases
/// gets lease 0.
async fn map_upnp(
    gateway: Gateway,
    service: WanService,
    internal_port: u16,
    prefer: Option<u16>,
    lifetime: u32,
) -> Result<(Mapping, Lease), MapError> {
    let external_ip = upnp_external_ip(gateway, &service).await?;
    let first = prefer.unwrap_or(internal_port);
    let mut candidates = vec![first];
    let mut random = [0u8; 6];
    fill_random(&mut random);
    for pair in random.chunks_exact(2) {
        candidates.push(1024 + u16::from_be_bytes([pair[0], pair[1]]) % (65535 - 1024));
    }
    let mut last = MapError::NoUpnp;
    let mut lease = lifetime;
    for port in candidates {
        match add_upnp(gateway, &service, internal_port, port, lease, external_ip).await {
            Ok(done) => return Ok(done),
            Err(MapError::UpnpFault { code: Some(igd::ONLY_PERMANENT_LEASES_SUPPORTED), .. }) if lease != 0 => {
                lease = 0;
                match add_upnp(gateway, &service, internal_port, port, lease, external_ip).await {
                    Ok(done) => return Ok(done),
                    Err(e) => last = e,
                }
            }
            Err(e @ MapError::UpnpFault { code: Some(igd::CONFLICT_IN_MAPPING_ENTRY), .. }) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn add_upnp(
    gateway: Gateway,
    service: &WanService,
    internal_port: u16,
    external_port: u16,
    lease: u32,
    external_ip: IpAddr,
) -> Result<(Mapping, Lease), MapError> {
    let request =
        igd::add_port_mapping(service, external_port, IpAddr::V4(gateway.local), internal_port, DESCRIPTION, lease);
    match soap(gateway, service, &request).await? {
        Reply::Done(_) => {
            let mapping = Mapping {
                protocol: Protocol::Upnp,
                external: SocketAddr::new(external_ip, external_port),
                internal_port,
                lifetime: lease,
            };
            Ok((mapping, Lease::Upnp { gateway, service: service.clone(), lease }))
        }
        Reply::Fault { code, description } => Err(MapError::UpnpFault { action: "AddPortMapping", code, description }),
    }
}

// ---- netcheck --------------------------------------------------------------

/// What one protocol said when probed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeResult {
    /// Which protocol.
    pub protocol: Protocol,
    /// The external address it reported, when it answered.
    pub external_ip: Option<IpAddr>,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Asks the gateway which protocols it answers and the external address
/// each reports, making no lasting mapping: NAT-PMP's external address
/// request; a PCP mapping of `port` for a few seconds, deleted at once;
/// UPnP's search and `GetExternalIPAddress`. `None` without a gateway.
pub async fn probe(port: u16) -> io::Result<Option<(Gateway, Vec<ProbeResult>)>> {
    let Some(gateway) = default_gateway().await? else { return Ok(None) };
    let pcp = async {
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce);
        match map_pcp(gateway, nonce, port, None, 30).await {
            Ok((mapping, lease)) => {
                let _ = tokio::time::timeout(RELEASE_TIMEOUT, release_quietly(&mapping, &lease)).await;
                Ok(mapping.external.ip())
            }
            Err(e) => Err(e),
        }
    };
    let natpmp = async {
        match exchange_natpmp(gateway.addr, &natpmp::Request::ExternalAddress).await? {
            natpmp::Response::ExternalAddress { result: natpmp::SUCCESS, addr, .. } => Ok(IpAddr::V4(addr)),
            natpmp::Response::ExternalAddress { result, .. } => {
                Err(MapError::Refused { protocol: Protocol::NatPmp, reason: natpmp::result_text(result).into() })
            }
            _ => Err(MapError::NoAnswer(SocketAddr::from((gateway.addr, natpmp::SERVER_PORT)))),
        }
    };
    let upnp = async {
        let service = discover_upnp(gateway).await?;
        upnp_external_ip(gateway, &service).await
    };
    let (pcp, natpmp, upnp) = tokio::join!(pcp, natpmp, upnp);
    let result = |protocol, outcome: Result<IpAddr, MapError>| match outcome {
        Ok(ip) => ProbeResult { protocol, external_ip: Some(ip), error: None },
        Err(e) => ProbeResult { protocol, external_ip: None, error: Some(e.to_string()) },
    };
    Ok(Some((
        gateway,
        vec![result(Protocol::Pcp, pcp), result(Protocol::NatPmp, natpmp), result(Protocol::Upnp, upnp)],
    )))
}

/// The PCP request that deletes `mapping` (a lifetime of 0).
fn pcp_delete(mapping: &Mapping, gateway: &Gateway, nonce: &[u8; 12]) -> pcp::Request {
    pcp::Request {
        lifetime: 0,
        client_ip: IpAddr::V4(gateway.local),
        map: Some(pcp::Map {
            nonce: *nonce,
            protocol: pcp::PROTO_UDP,
            internal_port: mapping.internal_port,
            external_port: 0,
            external_ip: pcp::any_like(mapping.external.ip()),
        }),
    }
}

async fn release_quietly(mapping: &Mapping, lease: &Lease) {
    if let Lease::Pcp { gateway, nonce } = lease {
        let request = pcp_delete(mapping, gateway, nonce);
        let _ = exchange_pcp(gateway.addr, request.to_bytes(), |_| true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_is_found() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000090A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth1\t00000000\t0200090A\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
                     eth0\t00000000\t0100090A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                     eth2\t00000000\t0300090A\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\
                     junk\n";
        assert_eq!(parse_route_table(table), Some(Ipv4Addr::new(10, 9, 0, 1)));
        let no_default = "Iface\tDestination\tGateway\n eth0\t0000090A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_route_table(no_default), None);
        assert_eq!(parse_route_table(""), None);
    }
}
