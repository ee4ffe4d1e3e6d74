//! Router port mapping, sans-IO: the byte and text formats of the three
//! protocols a home router may speak to let a host be reached from outside
//! on a UDP port, and the rules for a mapping's life.
//!
//! - **PCP** (RFC 6887, [`pcp`]) and its predecessor **NAT-PMP** (RFC
//!   6886, [`natpmp`]): one UDP request to the default gateway's port 5351,
//!   one answer with the external address and port granted and for how long.
//! - **UPnP IGD** ([`ssdp`], [`igd`], [`http`]): an SSDP search multicast
//!   on the LAN finds the gateway's description; its WAN connection service
//!   takes SOAP requests over HTTP (`AddPortMapping`, `DeletePortMapping`,
//!   `GetExternalIPAddress`).
//!
//! These are not Tox formats, so they sit here rather than in
//! [`wire`](crate::wire), but follow its rules: decoders return errors and
//! never panic, every decoder has a property test. The sockets, timers and
//! the order in which the protocols are tried live in
//! [`driver::portmap`](crate::driver::portmap).
//!
//! A mapping is asked for [`LIFETIME`] seconds and renewed at half of what
//! was granted ([`renew_after`]); its external address is announced to
//! friends (in DHT-PK announcements) only when it is a public one
//! ([`announceable`]): a router behind another NAT hands out an address
//! nobody outside can reach.

pub mod http;
pub mod igd;
pub mod natpmp;
pub mod pcp;
pub mod ssdp;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::addr::is_lan;

/// Seconds a mapping is asked for (RFC 6886 recommends two hours).
pub const LIFETIME: u32 = 7200;
/// A mapping is never renewed sooner than this after it was granted,
/// whatever lifetime a gateway grants.
pub const MIN_RENEW: Duration = Duration::from_secs(2);
/// How often a mapping without an end (UPnP lease 0) is added again, so
/// that a router that restarted gets it back.
pub const PERMANENT_REFRESH: Duration = Duration::from_secs(20 * 60);
/// The waits between the copies of a PCP or NAT-PMP request: RFC 6886
/// starts at 250 ms and doubles; we stop after three tries (1.75 s) so that
/// a router without the protocol does not hold up the next one.
pub const RETRANSMITS: [Duration; 3] =
    [Duration::from_millis(250), Duration::from_millis(500), Duration::from_millis(1000)];
/// The description our UPnP mappings carry (routers show it).
pub const DESCRIPTION: &str = "tuntox";

/// The protocol a mapping was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    /// PCP, RFC 6887.
    #[serde(rename = "pcp")]
    Pcp,
    /// NAT-PMP, RFC 6886.
    #[serde(rename = "nat-pmp")]
    NatPmp,
    /// UPnP Internet Gateway Device.
    #[serde(rename = "upnp")]
    Upnp,
}

impl Protocol {
    /// All three, in the order they are tried.
    pub const ALL: [Protocol; 3] = [Protocol::Pcp, Protocol::NatPmp, Protocol::Upnp];
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pcp => "PCP",
            Self::NatPmp => "NAT-PMP",
            Self::Upnp => "UPnP IGD",
        })
    }
}

/// A UDP port mapping a gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mapping {
    /// How it was made.
    pub protocol: Protocol,
    /// The address others reach us at.
    pub external: SocketAddr,
    /// Our port it leads to.
    pub internal_port: u16,
    /// Seconds granted; 0: no end (UPnP's permanent lease).
    pub lifetime: u32,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UDP {} -> port {} by {}", self.external, self.internal_port, self.protocol)?;
        match self.lifetime {
            0 => f.write_str(", no end"),
            secs => write!(f, ", {secs} s"),
        }
    }
}

/// When to renew a mapping granted for `lifetime` seconds: at half of
/// it (RFC 6886 section 3.3), not sooner than [`MIN_RENEW`]; a mapping
/// without an end is refreshed every [`PERMANENT_REFRESH`].
pub fn renew_after(lifetime: u32) -> Duration {
    match lifetime {
        0 => PERMANENT_REFRESH,
        secs => (Duration::from_secs(u64::from(secs)) / 2).max(MIN_RENEW),
    }
}

/// How long to wait before trying again after `failures` attempts in a
/// row found no mapping: 30 s, doubling, at most 10 minutes.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(30u64 << failures.min(5)).min(Duration::from_secs(600))
}

/// Whether an external address is worth telling friends about: a public
/// address (not private, loopback, link-local or shared address space) and
/// a real port.
pub fn announceable(addr: SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast() && !is_lan(addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_half_the_lifetime() {
        assert_eq!(renew_after(7200), Duration::from_secs(3600));
        assert_eq!(renew_after(1), MIN_RENEW);
        assert_eq!(renew_after(0), PERMANENT_REFRESH);
        assert_eq!(retry_after(0), Duration::from_secs(30));
        assert_eq!(retry_after(2), Duration::from_secs(120));
        assert_eq!(retry_after(40), Duration::from_secs(600));
    }

    #[test]
    fn only_public_addresses_are_announced() {
        assert!(announceable("11.0.0.1:33445".parse().unwrap()));
        assert!(!announceable("192.168.1.1:33445".parse().unwrap()));
        assert!(!announceable("100.64.1.1:33445".parse().unwrap()));
        assert!(!announceable("0.0.0.0:33445".parse().unwrap()));
        assert!(!announceable("11.0.0.1:0".parse().unwrap()));
        let mapping = Mapping {
            protocol: Protocol::NatPmp,
            external: "11.0.0.1:40000".parse().unwrap(),
            internal_port: 33445,
            lifetime: 60,
        };
        assert_eq!(mapping.to_string(), "UDP 11.0.0.1:40000 -> port 33445 by NAT-PMP, 60 s");
    }
}
