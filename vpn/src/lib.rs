//! tuntox's VPN: the TUN device, IP packets, per-peer allowed addresses,
//! routes, MSS clamping, the control protocol, and server-side forwarding
//! and NAT.
//!
//! This crate knows nothing of Tox. It exchanges packets with *peers*
//! ([`PeerId`], numbered by the caller, e.g. one per Tox friend) through
//! whatever carries them, in two kinds:
//!
//! - **data**: `[DATA_ID = 0xD8][one IP packet]`, to carry as a Tox custom
//!   *lossy* packet, now or never (no TCP over TCP);
//! - **control**: `[CONTROL_ID = 0xA8][version][type][body]`, to carry as
//!   a Tox custom *lossless* packet, in order.
//!
//! Both are described byte by byte in `docs/protocol.md` (section "VPN")
//! and in [`control`]. The MTU is 1280 by default and at most 1372
//! ([`mtu`]).
//!
//! # Layers
//!
//! - [`Engine`] (sans IO): sessions, the address [`pool`], the routing
//!   table ([`route`], longest prefix to peer, also the AllowedIPs check),
//!   MSS clamping ([`packet`]), counters ([`Stats`]). Tested in memory.
//! - [`device::Device`]: the TUN device (tun-rs, GSO/GRO offload) and its
//!   addresses and routes (rtnetlink).
//! - [`runner::Vpn`]: the engine and the device run by tokio tasks,
//!   batched, with no allocation per packet on the hot path.
//! - [`nat::Forwarding`]: the server's forwarding and `--vpn-nat`
//!   masquerading, removed exactly on exit.
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use tokio_util::sync::CancellationToken;
//! use vpn::device::Device;
//! use vpn::runner::Vpn;
//! use vpn::{ClientConfig, Engine, Event, PeerId};
//!
//! // Client side (`tuntox vpn up --peer ID --route 192.168.1.0/24`).
//! let engine = Engine::client(ClientConfig {
//!     mtu: 1280,
//!     routes: vec!["192.168.1.0/24".parse()?],
//!     avoid: vpn::host::routes("tuntox0")?, // pools over these are refused
//! })?;
//! let device = Device::create(Some("tuntox0"), engine.mtu(), true).await?;
//! // Data packets leave through this sink: one lossy Tox packet each.
//! let sink = |peer: PeerId, packet: Bytes| {
//!     let _ = (peer, packet); // tox.try_send_lossy(key_of(peer), packet)
//!     true
//! };
//! let (vpn, mut out) = Vpn::start(engine, device, sink, CancellationToken::new()).await?;
//!
//! // Control packets leave in order, lossless (one task drains them).
//! tokio::spawn(async move {
//!     while let Some(t) = out.control.recv().await {
//!         let _ = t; // tox.send_lossless(key_of(t.peer), t.packet).await
//!     }
//! });
//!
//! // From the Tox side:
//! let server = PeerId(1);
//! vpn.peer_connected(server, b"the friend's public key"); // friend online: says hello
//! # let (lossless, lossy) = (Bytes::new(), Bytes::new());
//! if lossless.first() == Some(&vpn::CONTROL_ID) {
//!     vpn.handle_control(server, &lossless);
//! }
//! if lossy.first() == Some(&vpn::DATA_ID) {
//!     vpn.handle_data(server, lossy); // queued for the TUN; false = dropped, counted
//! }
//! // The session: the device gets its addresses and routes by itself.
//! while let Some(event) = out.events.recv().await {
//!     match event {
//!         Event::Assigned { assignment, .. } => println!("up: {:?}", assignment.v4),
//!         Event::Refused { reason, text } if reason.is_final() => {
//!             eprintln!("refused: {text}");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! vpn.peer_lost(server); // friend offline: device kept, packets dropped
//! vpn.shutdown().await?; // goodbye, then the device and its routes go
//! # Ok(()) }
//! ```
//!
//! A server is the same with [`Engine::server`] and a [`ServerConfig`]
//! (pool, IPv6 /64 from [`pool::ula_from_seed`], offered routes); its device
//! gets the pool's first addresses at [`runner::Vpn::start`]. With
//! `--vpn-nat`, [`nat::Forwarding::setup`] after the start and
//! [`nat::Forwarding::teardown`] on exit.

pub mod control;
pub mod device;
pub mod engine;
pub mod host;
pub mod mtu;
pub mod nat;
pub mod packet;
pub mod pool;
pub mod route;
pub mod runner;
pub mod stats;

#[cfg(test)]
mod engine_tests;

pub use control::{CONTROL_ID, DATA_ID, Reason};
pub use engine::{Assignment, ClientConfig, ConfigError, ControlPacket, Engine, Event, PeerId, ServerConfig};
pub use stats::{Drop, Dropped, Stats};
