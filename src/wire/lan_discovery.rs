//! LAN discovery (0x21): "a Tox node is here", broadcast on the local
//! network, unencrypted.
//!
//! | bytes | field                      |
//! |-------|----------------------------|
//! | 1     | 0x21                       |
//! | 32    | sender's DHT public key    |
//!
//! The receiver answers with a nodes request to the sender, so the key is
//! proven before the node enters any list. Facts from c-toxcore 0.2.18:
//! `LAN_discovery.c` `lan_discovery_send` writes these 33 bytes to every
//! interface's broadcast address, 255.255.255.255 and ff02::1; `DHT.c`
//! `handle_LANdiscovery` drops the packet unless LAN discovery is enabled,
//! the source is a LAN address (`ip_is_lan`) and it is exactly 33 bytes,
//! then calls `dht_bootstrap` (a nodes request).
//!
//! Spec: <https://toktok.ltd/spec.html#lan-discovery>.

use bytes::{BufMut, Bytes};

use super::{DecodeError, Reader};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};

/// The packet kind.
pub const LAN_DISCOVERY_KIND: u8 = 0x21;

/// A LAN discovery packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanDiscovery {
    /// The sender's DHT public key.
    pub public_key: PublicKey,
}

impl LanDiscovery {
    /// Length of the datagram.
    pub const LEN: usize = 1 + PUBLIC_KEY_LEN;

    /// The packet announcing this DHT key.
    pub const fn new(public_key: PublicKey) -> Self {
        Self { public_key }
    }

    /// Reads a whole datagram: exactly 33 bytes.
    pub fn decode(packet: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(packet);
        if r.u8("LAN discovery kind")? != LAN_DISCOVERY_KIND {
            return Err(DecodeError::Invalid("LAN discovery kind"));
        }
        let public_key = PublicKey::from_bytes(r.array("LAN discovery public key")?);
        r.finish()?;
        Ok(Self { public_key })
    }

    /// Writes the datagram.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(LAN_DISCOVERY_KIND);
        buf.put_slice(self.public_key.as_bytes());
    }

    /// What [`encode`](Self::encode) writes: always 33 bytes.
    pub const fn encoded_len(&self) -> usize {
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::test_support::{arb_public_key, damage};

    fn encode(packet: &LanDiscovery) -> Vec<u8> {
        let mut out = Vec::new();
        packet.encode(&mut out);
        assert_eq!(out.len(), packet.encoded_len());
        out
    }

    #[test]
    fn by_hand() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mut bytes = vec![33];
        bytes.extend(0..32u8);
        let packet = LanDiscovery::new(PublicKey::from_bytes(key));
        assert_eq!(encode(&packet), bytes);
        assert_eq!(LanDiscovery::decode(bytes.clone()), Ok(packet));

        bytes.push(0);
        assert_eq!(LanDiscovery::decode(bytes.clone()), Err(DecodeError::TrailingBytes(1)));
        bytes.truncate(32);
        assert!(matches!(LanDiscovery::decode(bytes.clone()), Err(DecodeError::UnexpectedEnd { .. })));
        bytes[0] = 0x20;
        bytes.push(0);
        assert_eq!(LanDiscovery::decode(bytes), Err(DecodeError::Invalid("LAN discovery kind")));
    }

    proptest! {
        #[test]
        fn round_trips(key in arb_public_key()) {
            let packet = LanDiscovery::new(key);
            prop_assert_eq!(LanDiscovery::decode(encode(&packet)), Ok(packet));
        }

        #[test]
        fn damaged_input_never_panics(key in arb_public_key(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = LanDiscovery::decode(damage(encode(&LanDiscovery::new(key)), flip, bit, cut));
        }
    }
}
