//! The application layer: our identity, the shared secret, and (as the
//! engines land) the wiring of Tox friends to the tunnel and VPN engines.

pub mod bootstrap;
pub mod bridge;
pub mod client;
pub mod identity;
pub mod relay;
pub mod secret;
pub mod server;
