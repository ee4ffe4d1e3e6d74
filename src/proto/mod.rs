//! The Tox protocol as sans-IO state machines.
//!
//! Nothing here reads the clock, the random generator or a socket: time
//! comes in as `now`, randomness from a seed, packets through `handle_*`
//! methods; datagrams and events go out through `poll_*` methods. The driver
//! (src/driver/) connects this to real sockets, and the simulator (src/sim/)
//! to a virtual network.

pub mod addr;
pub mod dht;
pub mod key_cache;
pub mod net_crypto;
pub mod node;
pub mod onion;
pub mod punch;
pub mod relay;

pub use dht::Transmit;
pub use node::{Node, NodeConfig, NodeEvent};

/// A starting instant for unit tests (the core never reads the clock; its
/// tests need one real `Instant` to count from).
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    #[allow(clippy::disallowed_methods)]
    std::time::Instant::now()
}
