//! Helpers shared by the integration tests: building the C programs that
//! link Debian's libraries (libsodium, libtoxcore), network namespaces, a
//! link emulator between them (delay, loss, rate, queue), a namespaced
//! tox-bootstrapd, our Tox nodes on it, the libtoxcore test peer, and a NAT
//! test bed of home routers.
//!
//! Each test file includes this module with `mod support;`; not every test
//! uses every helper.
#![allow(dead_code)]

pub mod bootstrapd;
pub mod cbuild;
pub mod deadline;
pub mod devlog;
pub mod e2e;
pub mod exchange;
pub mod homenet;
pub mod linkem;
pub mod natbed;
pub mod netns;
pub mod procfs;
pub mod relaybed;
pub mod tox;
pub mod toxpeer;
pub mod tuntox;
pub mod wan;
