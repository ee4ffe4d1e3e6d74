//! tuntox: reach machines behind NATs over the Tox peer-to-peer network.
//!
//! This package is both the Tox library and the `tuntox` binary. Its layers,
//! from the bottom up (docs/architecture.md draws them):
//!
//! - [`crypto`]: the only module that touches a crypto library (libsodium);
//! - [`wire`]: Tox byte formats, one per file, decode and encode, no state;
//! - [`proto`]: the Tox protocol as sans-IO state machines, composed into a
//!   [`proto::Node`];
//! - [`portmap`]: the router port-mapping protocols' formats (PCP, NAT-PMP,
//!   UPnP IGD), sans-IO;
//! - [`sim`]: a deterministic network simulator for those nodes;
//! - [`driver`]: runs a node on a real UDP socket and clock (tokio);
//! - [`app`]: identity storage and the wiring of Tox friends to the tunnel
//!   and VPN engines;
//! - [`cli`]: the command line, logging, and the `run` entry point the
//!   binary calls.

pub mod app;
pub mod cli;
pub mod crypto;
pub mod driver;
pub mod portmap;
pub mod proto;
pub mod sim;
pub mod wire;
