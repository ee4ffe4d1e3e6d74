//! Numbers for Tox friends, as the tunnel and VPN engines know them.
//!
//! The engines know peers only as small numbers. Each friend gets one on
//! first use and keeps it for the life of the process, so one friend has
//! the same number in both engines (and in the logs). The table is shared
//! between tasks: the VPN's packet path maps numbers back to keys for each
//! batch it sends, under one read lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::crypto::PublicKey;

/// The friend <-> number table (cheap to clone; clones share it).
#[derive(Debug, Clone, Default)]
pub struct PeerNumbers {
    inner: Arc<RwLock<Table>>,
}

#[derive(Debug, Default)]
struct Table {
    by_key: HashMap<PublicKey, u32>,
    /// `keys[n - 1]` has number `n`.
    keys: Vec<PublicKey>,
}

impl Table {
    fn key_of(&self, number: u32) -> Option<PublicKey> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.keys.get(index).copied()
    }
}

/// A read view of the table, for mapping many numbers at once.
#[derive(Debug)]
pub struct Lookup<'a>(RwLockReadGuard<'a, Table>);

impl Lookup<'_> {
    /// The friend a number belongs to.
    pub fn key_of(&self, number: u32) -> Option<PublicKey> {
        self.0.key_of(number)
    }
}

impl PeerNumbers {
    /// An empty table; the first friend gets number 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of a friend, given on first use.
    pub fn number(&self, key: PublicKey) -> u32 {
        if let Some(n) = self.lookup().0.by_key.get(&key) {
            return *n;
        }
        let mut table = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.by_key.get(&key) {
            return *n;
        }
        table.keys.push(key);
        let n = u32::try_from(table.keys.len()).unwrap_or(u32::MAX);
        table.by_key.insert(key, n);
        n
    }

    /// The friend a number belongs to.
    pub fn key_of(&self, number: u32) -> Option<PublicKey> {
        self.lookup().key_of(number)
    }

    /// A read view, for mapping a batch under one lock.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup(self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_shared() {
        let (a, b) = (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
        let numbers = PeerNumbers::new();
        let shared = numbers.clone();
        assert_eq!(numbers.number(a), 1);
        assert_eq!(shared.number(b), 2);
        assert_eq!(numbers.number(a), 1);
        assert_eq!(numbers.key_of(2), Some(b));
        assert_eq!(shared.lookup().key_of(1), Some(a));
        assert_eq!(numbers.key_of(0), None);
        assert_eq!(numbers.key_of(3), None);
    }
}
