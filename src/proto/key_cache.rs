//! A bounded cache of precomputed keys.
//!
//! `crypto_box_beforenm` (an X25519 multiplication) costs far more than
//! sealing a packet, and every DHT packet from a peer needs the same key, so
//! each layer keeps the keys of recent peers. Two generations make a cheap
//! approximate LRU: lookups hit the current map, then the previous one
//! (promoting the key); when the current map is full it becomes the previous
//! one and the old previous is dropped. Memory stays at most twice `capacity`.

use std::collections::HashMap;

use crate::crypto::{CryptoError, PublicKey, SecretKey, SharedKey};

/// Precomputed keys between our secret key and peers' public keys.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    current: HashMap<PublicKey, SharedKey>,
    previous: HashMap<PublicKey, SharedKey>,
}

impl KeyCache {
    /// A cache keeping at least the `capacity` most recently used keys.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { capacity, current: HashMap::with_capacity(capacity), previous: HashMap::new() }
    }

    /// The key shared with `peer`, computed on a miss. Fails for low-order keys.
    pub fn get(&mut self, peer: &PublicKey, ours: &SecretKey) -> Result<&SharedKey, CryptoError> {
        if !self.current.contains_key(peer) {
            let key = match self.previous.remove(peer) {
                Some(key) => key,
                None => SharedKey::precompute(peer, ours)?,
            };
            if self.current.len() >= self.capacity {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(*peer, key);
        }
        self.current.get(peer).ok_or(CryptoError::Init)
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::crypto::{KeyPair, Nonce};

    #[test]
    fn caches_and_stays_bounded() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let ours = KeyPair::generate(&mut rng);
        let peers: Vec<KeyPair> = (0..10).map(|_| KeyPair::generate(&mut rng)).collect();
        let mut cache = KeyCache::new(4);
        for peer in &peers {
            let key = cache.get(peer.public(), ours.secret()).unwrap().clone();
            let direct = SharedKey::precompute(ours.public(), peer.secret()).unwrap();
            let sealed = key.seal(&Nonce::ZERO, b"x");
            assert_eq!(direct.open(&Nonce::ZERO, &sealed).unwrap(), b"x");
            assert!(cache.len() <= 8);
        }
        // The most recent key survives; a low-order key is refused.
        cache.get(peers[9].public(), ours.secret()).unwrap();
        assert!(cache.current.contains_key(peers[9].public()));
        assert_eq!(cache.get(&PublicKey::from_bytes([0; 32]), ours.secret()).unwrap_err(), CryptoError::LowOrderKey);
    }
}
