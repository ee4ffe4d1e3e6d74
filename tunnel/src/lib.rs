//! The tuntox forwarding protocol and its engines: the client side (`-L`,
//! `-W`, `-D`) and the server's exit side.
//!
//! This crate knows nothing of Tox: it exchanges frames with peers through
//! whatever carries them (the tuntox binary adapts Tox friends to it; tests
//! use in-memory pairs). The wire protocol is C tuntox's v2 (magic 0xA26B),
//! described in docs/protocol.md.

pub mod spec;
