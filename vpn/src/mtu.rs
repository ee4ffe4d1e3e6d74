//! The tunnel MTU: what one Tox lossy packet can carry.
//!
//! A Tox custom packet holds at most 1373 bytes including its packet-id
//! byte, so one IP packet of at most 1372 bytes fits. IPv6 needs links of at
//! least 1280 bytes, which is also our default.

/// The most a Tox custom packet carries, id byte included.
pub const TOX_MAX_CUSTOM_PACKET: usize = 1373;
/// The largest IP packet one Tox lossy packet carries.
pub const MAX_MTU: u16 = (TOX_MAX_CUSTOM_PACKET - 1) as u16;
/// The smallest link MTU IPv6 allows, and the default.
pub const DEFAULT_MTU: u16 = 1280;
/// The smallest MTU we accept (IPv4's minimum datagram size).
pub const MIN_MTU: u16 = 576;

/// An MTU outside what the tunnel can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("MTU {0} is outside {MIN_MTU}-{MAX_MTU} (one IP packet per Tox lossy packet)")]
pub struct MtuError(pub u16);

/// Checks an MTU requested by the user or a peer.
pub fn check_mtu(mtu: u16) -> Result<u16, MtuError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) { Ok(mtu) } else { Err(MtuError(mtu)) }
}

/// Whether IPv6 can run over a link with this MTU.
pub fn carries_ipv6(mtu: u16) -> bool {
    mtu >= 1280
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(MAX_MTU, 1372);
        assert_eq!(check_mtu(DEFAULT_MTU), Ok(1280));
        assert_eq!(check_mtu(1372), Ok(1372));
        assert_eq!(check_mtu(1373), Err(MtuError(1373)));
        assert_eq!(check_mtu(575), Err(MtuError(575)));
        assert!(carries_ipv6(DEFAULT_MTU) && !carries_ipv6(1279));
        assert_eq!(MtuError(1500).to_string(), "MTU 1500 is outside 576-1372 (one IP packet per Tox lossy packet)");
    }
}
