//! The Tox TCP relay: a server that lets clients without working UDP reach
//! each other and the onion (c-toxcore's `TCP_server.c`, `TCP_common.c`;
//! spec: <https://toktok.ltd/spec.html#tcp-server>).
//!
//! - [`channel`]: the handshake and the sealed frame stream of one
//!   connection, for either side;
//! - [`server`]: the relay's routing between connected clients, pings and
//!   limits.
//!
//! The byte formats are in [`crate::wire::tcp`]. The relay is part of a
//! [`Node`](super::Node) (its onion requests go to the node's onion relay);
//! the driver (`driver::relay`) runs the sockets.

pub mod channel;
pub mod server;

pub use server::{ClientId, CloseReason, RelayOutput, RelayServer, RelayServerConfig, RelayServerStats};
