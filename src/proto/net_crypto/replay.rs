//! A sliding-window replay check on data packet nonces, as WireGuard and
//! IPsec keep one (RFC 6479): the highest nonce seen and a bitmap of the
//! [`WINDOW`] nonces below it. A packet whose nonce was seen, or is older
//! than the window, is a replay (or too late) and is dropped.
//!
//! Lossless packets are deduplicated by their packet numbers; lossy ones
//! (all VPN traffic) have nothing else, so a captured packet could be
//! played again within the nonce window the receiver accepts. The check
//! runs after a packet opened, on the low 64 bits of its 24-byte nonce
//! (the nonce counts up big-endian from a random start: the low 64 bits
//! count up too, wrapping at most once, which the wrapping comparison
//! handles).

use crate::crypto::Nonce;

/// Nonces below the highest one that are still accepted once. The
/// receiver accepts nonces up to 65535 ahead of its base, which moves
/// ahead by a third of that; a peer's packets arrive reordered by far less.
pub const WINDOW: u64 = 8192;

const WORDS: usize = (WINDOW / 64) as usize;

/// The window of one direction of one session.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest counter seen, if any.
    top: Option<u64>,
    /// Bit `c % WINDOW` is set when counter `c` (within the window) was seen.
    bits: Box<[u64; WORDS]>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow { top: None, bits: Box::new([0; WORDS]) }
    }
}

/// The counter of a nonce: its low 64 bits.
pub fn counter(nonce: &Nonce) -> u64 {
    let bytes = nonce.as_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[bytes.len() - 8..]);
    u64::from_be_bytes(low)
}

impl ReplayWindow {
    /// Whether `counter` is new; marks it seen if so. Call it only for
    /// packets that opened (an attacker cannot move the window).
    pub fn accept(&mut self, counter: u64) -> bool {
        let Some(top) = self.top else {
            self.top = Some(counter);
            self.set(counter);
            return true;
        };
        let ahead = counter.wrapping_sub(top);
        if ahead != 0 && ahead < u64::MAX / 2 {
            // Newer: clear the slots the window slides over.
            if ahead >= WINDOW {
                self.bits.fill(0);
            } else {
                for c in 1..=ahead {
                    self.clear(top.wrapping_add(c));
                }
            }
            self.top = Some(counter);
            self.set(counter);
            return true;
        }
        let behind = top.wrapping_sub(counter);
        if behind >= WINDOW || self.is_set(counter) {
            return false;
        }
        self.set(counter);
        true
    }

    fn slot(counter: u64) -> (usize, u64) {
        let at = counter % WINDOW;
        ((at / 64) as usize, 1 << (at % 64))
    }

    fn set(&mut self, counter: u64) {
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= bit;
    }

    fn clear(&mut self, counter: u64) {
        let (word, bit) = Self::slot(counter);
        self.bits[word] &= !bit;
    }

    fn is_set(&self, counter: u64) -> bool {
        let (word, bit) = Self::slot(counter);
        self.bits[word] & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn replays_and_stale_counters_are_refused() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(100));
        assert!(!w.accept(100), "replay of the first");
        assert!(w.accept(102));
        assert!(w.accept(101), "reordered, within the window");
        assert!(!w.accept(101));
        assert!(w.accept(100 + WINDOW));
        assert!(!w.accept(100), "fell out of the window");
        assert!(!w.accept(102), "still in the window, and seen");
        assert!(w.accept(103), "in the window, never seen");
        // Far ahead: the whole window is new.
        assert!(w.accept(10 * WINDOW));
        assert!(w.accept(10 * WINDOW - 1));
        assert!(!w.accept(10 * WINDOW - 1));
        // Wrapping at 2^64.
        let mut w = ReplayWindow::default();
        assert!(w.accept(u64::MAX - 1));
        assert!(w.accept(1));
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX));
        assert!(!w.accept(1));
        assert!(w.accept(0));
    }

    #[test]
    fn the_counter_is_the_nonce_s_low_64_bits() {
        let mut n = Nonce::from_bytes([0xff; 24]);
        assert_eq!(counter(&n), u64::MAX);
        n.increment();
        assert_eq!(counter(&n), 0);
    }

    proptest! {
        /// Against a set of everything seen: a counter is accepted exactly
        /// when it is new and not older than the window.
        #[test]
        fn matches_a_model(start in any::<u64>(), steps in prop::collection::vec(-9000i64..9000, 1..300)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            let mut top: Option<u64> = None;
            let mut c = start;
            for step in steps {
                c = c.wrapping_add_signed(step);
                let fresh = !seen.contains(&c);
                let in_window = top.is_none_or(|t| {
                    let ahead = c.wrapping_sub(t);
                    (ahead != 0 && ahead < u64::MAX / 2) || t.wrapping_sub(c) < WINDOW
                });
                let want = fresh && in_window;
                prop_assert_eq!(w.accept(c), want, "counter {}", c);
                if want {
                    seen.insert(c);
                    if top.is_none_or(|t| { let a = c.wrapping_sub(t); a != 0 && a < u64::MAX / 2 }) {
                        top = Some(c);
                    }
                }
            }
        }
    }
}
