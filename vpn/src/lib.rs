//! tuntox's VPN engine: the TUN device, IP packets, per-peer allowed
//! addresses, routes and MTU.
//!
//! This crate knows nothing of Tox: it exchanges IP packets with peers
//! through whatever carries them. The tuntox binary carries each packet in
//! one Tox custom lossy packet (ids 200-254), so the inner TCP does its own
//! recovery and there is no TCP-in-TCP meltdown.

pub mod mtu;
