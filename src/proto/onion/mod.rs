//! The onion: how Tox peers find each other without revealing their IP
//! addresses (spec: <https://toktok.ltd/spec.html#onion>).
//!
//! - [`relay`]: our part in other nodes' onion paths (peeling layers,
//!   adding return blocks, passing responses back);
//! - [`announce`]: the announce store, where clients announce themselves
//!   and where others search for them and send them onion data;
//! - [`client`]: our own onion paths, announcing ourselves, searching our
//!   friends, and sending and receiving onion data (friend requests and
//!   DHT public-key announcements).

pub mod announce;
pub mod client;
pub mod paths;
pub mod relay;
