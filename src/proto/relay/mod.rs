//! The Tox TCP relay: a server that lets clients without working UDP reach
//! each other and the onion (c-toxcore's `TCP_server.c`, `TCP_common.c`;
//! spec: <https://toktok.ltd/spec.html#tcp-server>).
//!
//! - [`channel`]: the handshake and the sealed frame stream of one
//!   connection, for either side;
//! - [`server`]: the relay's routing between connected clients, pings and
//!   limits;
//! - [`client`]: one connection to a relay, the client's side (routes,
//!   pings, out-of-band and onion packets);
//! - [`connections`]: the client's set of relay connections: which relays
//!   to keep, which peers to route on which, and the path a packet takes.
//!
//! The byte formats are in [`crate::wire::tcp`]. The relay is part of a
//! [`Node`](super::Node) (its onion requests go to the node's onion relay);
//! the driver (`driver::relay`) runs the sockets.

pub mod channel;
pub mod client;
pub mod connections;
pub mod server;

pub use server::{ClientId, CloseReason, RelayOutput, RelayServer, RelayServerConfig, RelayServerStats};
