//! tuntox's VPN engine: the TUN device, IP packets, per-peer allowed
//! addresses, routes and MTU.
//!
//! This crate knows nothing of Tox: it exchanges IP packets with peers
//! through whatever carries them. The tuntox binary carries each packet in
//! one Tox custom lossy packet (ids 200-254), so the inner TCP does its own
//! recovery and there is no TCP-in-TCP meltdown.

pub mod control;
pub mod device;
pub mod engine;
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
