//! The first byte of every Tox UDP datagram: the packet kind, which picks the
//! handler.
//!
//! | bytes | field                                        |
//! |-------|----------------------------------------------|
//! | 1     | packet kind (see [`PacketKind`])             |
//! | ...   | payload, whose layout the kind determines    |
//!
//! The ids are those of c-toxcore 0.2.18's `network.h` (`Net_Packet_Type`,
//! the build without `USE_TEST_NETWORK`, which shifts every id). Two ids
//! there differ from the spec's table: c-toxcore names 0x83/0x84
//! `NET_PACKET_ANNOUNCE_REQUEST_OLD`/`_RESPONSE_OLD`, yet they are what
//! 0.2.18 clients still send, and the newer 0x87/0x88 (announce with group
//! data) are not forwarded by onion exit hops. 0x90-0x98 belong to the new
//! DHT group-chat announcements, which tuntox does not implement; they are
//! named so that they can be dropped deliberately.
//!
//! One id is tuntox's own: 0x1c, data packets sealed with AEGIS-256, which
//! only two tuntox peers send each other (docs/protocol.md).
//!
//! Spec: <https://toktok.ltd/spec.html#packet-kind>.

/// The kind of a top-level packet: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 0x00: DHT ping request.
    PingRequest,
    /// 0x01: DHT ping response.
    PingResponse,
    /// 0x02: DHT nodes request (c-toxcore `NET_PACKET_GET_NODES`).
    NodesRequest,
    /// 0x04: DHT nodes response (c-toxcore `NET_PACKET_SEND_NODES_IPV6`).
    NodesResponse,
    /// 0x18: net_crypto cookie request.
    CookieRequest,
    /// 0x19: net_crypto cookie response.
    CookieResponse,
    /// 0x1a: net_crypto handshake.
    CryptoHandshake,
    /// 0x1b: net_crypto data.
    CryptoData,
    /// 0x1c: net_crypto data sealed with AEGIS-256, between two tuntox
    /// peers that agreed on it ([`aegis_data`](super::aegis_data)); not a
    /// Tox packet, and free in c-toxcore's table.
    AegisData,
    /// 0x20: a request routed through the DHT (c-toxcore `NET_PACKET_CRYPTO`).
    DhtRequest,
    /// 0x21: LAN discovery.
    LanDiscovery,
    /// 0x80: onion request, first hop.
    OnionRequest0,
    /// 0x81: onion request, second hop.
    OnionRequest1,
    /// 0x82: onion request, third hop.
    OnionRequest2,
    /// 0x83: onion announce request (c-toxcore `..._ANNOUNCE_REQUEST_OLD`).
    AnnounceRequest,
    /// 0x84: onion announce response (c-toxcore `..._ANNOUNCE_RESPONSE_OLD`).
    AnnounceResponse,
    /// 0x85: onion data request.
    OnionDataRequest,
    /// 0x86: onion data response.
    OnionDataResponse,
    /// 0x87: announce request carrying group data (c-toxcore `NET_PACKET_ANNOUNCE_REQUEST`).
    AnnounceRequestNew,
    /// 0x88: announce response carrying group data (c-toxcore `NET_PACKET_ANNOUNCE_RESPONSE`).
    AnnounceResponseNew,
    /// 0x8c: onion response, third hop back.
    OnionResponse3,
    /// 0x8d: onion response, second hop back.
    OnionResponse2,
    /// 0x8e: onion response, first hop back.
    OnionResponse1,
    /// 0x90: forward request (group announcements).
    ForwardRequest,
    /// 0x91: forwarding (group announcements).
    Forwarding,
    /// 0x92: forward reply (group announcements).
    ForwardReply,
    /// 0x93: data search request (group announcements).
    DataSearchRequest,
    /// 0x94: data search response (group announcements).
    DataSearchResponse,
    /// 0x95: data retrieve request (group announcements).
    DataRetrieveRequest,
    /// 0x96: data retrieve response (group announcements).
    DataRetrieveResponse,
    /// 0x97: store announce request (group announcements).
    StoreAnnounceRequest,
    /// 0x98: store announce response (group announcements).
    StoreAnnounceResponse,
    /// 0xf0: bootstrap node info request and response.
    BootstrapInfo,
    /// Any other first byte. [`PacketKind::from`] never puts a known id here.
    Unknown(u8),
}

impl PacketKind {
    /// The kind of a datagram, from its first byte; `None` if it is empty.
    pub fn of(datagram: &[u8]) -> Option<Self> {
        datagram.first().map(|&byte| Self::from(byte))
    }

    /// The id byte.
    pub const fn id(self) -> u8 {
        match self {
            Self::PingRequest => 0x00,
            Self::PingResponse => 0x01,
            Self::NodesRequest => 0x02,
            Self::NodesResponse => 0x04,
            Self::CookieRequest => 0x18,
            Self::CookieResponse => 0x19,
            Self::CryptoHandshake => 0x1a,
            Self::CryptoData => 0x1b,
            Self::AegisData => 0x1c,
            Self::DhtRequest => 0x20,
            Self::LanDiscovery => 0x21,
            Self::OnionRequest0 => 0x80,
            Self::OnionRequest1 => 0x81,
            Self::OnionRequest2 => 0x82,
            Self::AnnounceRequest => 0x83,
            Self::AnnounceResponse => 0x84,
            Self::OnionDataRequest => 0x85,
            Self::OnionDataResponse => 0x86,
            Self::AnnounceRequestNew => 0x87,
            Self::AnnounceResponseNew => 0x88,
            Self::OnionResponse3 => 0x8c,
            Self::OnionResponse2 => 0x8d,
            Self::OnionResponse1 => 0x8e,
            Self::ForwardRequest => 0x90,
            Self::Forwarding => 0x91,
            Self::ForwardReply => 0x92,
            Self::DataSearchRequest => 0x93,
            Self::DataSearchResponse => 0x94,
            Self::DataRetrieveRequest => 0x95,
            Self::DataRetrieveResponse => 0x96,
            Self::StoreAnnounceRequest => 0x97,
            Self::StoreAnnounceResponse => 0x98,
            Self::BootstrapInfo => 0xf0,
            Self::Unknown(id) => id,
        }
    }
}

impl From<u8> for PacketKind {
    fn from(id: u8) -> Self {
        match id {
            0x00 => Self::PingRequest,
            0x01 => Self::PingResponse,
            0x02 => Self::NodesRequest,
            0x04 => Self::NodesResponse,
            0x18 => Self::CookieRequest,
            0x19 => Self::CookieResponse,
            0x1a => Self::CryptoHandshake,
            0x1b => Self::CryptoData,
            0x1c => Self::AegisData,
            0x20 => Self::DhtRequest,
            0x21 => Self::LanDiscovery,
            0x80 => Self::OnionRequest0,
            0x81 => Self::OnionRequest1,
            0x82 => Self::OnionRequest2,
            0x83 => Self::AnnounceRequest,
            0x84 => Self::AnnounceResponse,
            0x85 => Self::OnionDataRequest,
            0x86 => Self::OnionDataResponse,
            0x87 => Self::AnnounceRequestNew,
            0x88 => Self::AnnounceResponseNew,
            0x8c => Self::OnionResponse3,
            0x8d => Self::OnionResponse2,
            0x8e => Self::OnionResponse1,
            0x90 => Self::ForwardRequest,
            0x91 => Self::Forwarding,
            0x92 => Self::ForwardReply,
            0x93 => Self::DataSearchRequest,
            0x94 => Self::DataSearchResponse,
            0x95 => Self::DataRetrieveRequest,
            0x96 => Self::DataRetrieveResponse,
            0x97 => Self::StoreAnnounceRequest,
            0x98 => Self::StoreAnnounceResponse,
            0xf0 => Self::BootstrapInfo,
            other => Self::Unknown(other),
        }
    }
}

impl From<PacketKind> for u8 {
    fn from(kind: PacketKind) -> Self {
        kind.id()
    }
}

/// The kind a datagram's first byte names.
pub fn packet_kind(first_byte: u8) -> PacketKind {
    PacketKind::from(first_byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_to_a_kind_and_back() {
        for byte in 0..=u8::MAX {
            let kind = packet_kind(byte);
            assert_eq!(kind.id(), byte);
            assert_eq!(u8::from(kind), byte);
        }
        let known = (0..=u8::MAX).filter(|&byte| !matches!(packet_kind(byte), PacketKind::Unknown(_))).count();
        assert_eq!(known, 33);
    }

    #[test]
    fn ids_match_c_toxcore_network_h() {
        // Spot checks written out from network.h, independent of the table.
        assert_eq!(packet_kind(0x00), PacketKind::PingRequest);
        assert_eq!(packet_kind(0x04), PacketKind::NodesResponse);
        assert_eq!(packet_kind(0x03), PacketKind::Unknown(0x03));
        assert_eq!(packet_kind(0x18), PacketKind::CookieRequest);
        assert_eq!(packet_kind(0x20), PacketKind::DhtRequest);
        assert_eq!(packet_kind(0x21), PacketKind::LanDiscovery);
        assert_eq!(packet_kind(0x83), PacketKind::AnnounceRequest);
        assert_eq!(packet_kind(0x8e), PacketKind::OnionResponse1);
        assert_eq!(packet_kind(0x8f), PacketKind::Unknown(0x8f));
        assert_eq!(packet_kind(0xf0), PacketKind::BootstrapInfo);
        assert_eq!(packet_kind(0xf1), PacketKind::Unknown(0xf1));
        assert_eq!(PacketKind::of(&[0x1b, 0xff]), Some(PacketKind::CryptoData));
        assert_eq!(PacketKind::of(&[]), None);
    }
}
