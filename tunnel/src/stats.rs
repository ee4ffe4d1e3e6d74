//! Counters the engine keeps: frames dropped by reason, tunnels, bytes.
//! Cheap atomics updated on the data path; [`Stats`] is a snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::frame::DecodeError;

/// Frames dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Shorter than the 8-byte header.
    pub too_short: u64,
    /// Protocol version 1 (magic 0xA26A).
    pub version1: u64,
    /// Another magic.
    pub bad_magic: u64,
    /// Shorter than the declared payload.
    pub truncated: u64,
    /// Declared payload above 1365 bytes.
    pub too_long: u64,
    /// Unknown frame type.
    pub unknown_type: u64,
    /// Known type, malformed payload.
    pub malformed: u64,
    /// For a tunnel id we do not know (often: it just closed).
    pub unknown_tunnel: u64,
    /// For a tunnel that belongs to another peer.
    pub wrong_peer: u64,
    /// Not expected here (an ACK nobody waits for, data after FIN, a
    /// request to a client, a WINDOW without flow control...).
    pub unexpected: u64,
    /// From a peer that is not connected.
    pub unknown_peer: u64,
    /// Data beyond the credit we granted (the tunnel is reset).
    pub window_exceeded: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.too_short
            + self.version1
            + self.bad_magic
            + self.truncated
            + self.too_long
            + self.unknown_type
            + self.malformed
            + self.unknown_tunnel
            + self.wrong_peer
            + self.unexpected
            + self.unknown_peer
            + self.window_exceeded
    }
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the engine.
    pub frames_in: u64,
    /// Frames the engine queued for peers.
    pub frames_out: u64,
    /// Stream bytes read from local sockets and sent to peers.
    pub bytes_to_peers: u64,
    /// Stream bytes received from peers.
    pub bytes_from_peers: u64,
    /// Tunnels open now.
    pub tunnels_open: u64,
    /// Tunnels opened since start.
    pub tunnels_opened: u64,
    /// Requests denied (exit side: DENY sent; client side: DENY received).
    pub tunnels_denied: u64,
    /// Client requests that failed otherwise (no answer, peer lost).
    pub requests_failed: u64,
    /// Tunnels aborted (RESET sent or received, window exceeded, I/O error).
    pub tunnels_reset: u64,
    /// WINDOW frames for tunnels that had just closed (credit racing the
    /// close; harmless, so not counted as dropped).
    pub stale_windows: u64,
    /// Times a tunnel's receive window doubled because the round trip
    /// limited its sender.
    pub windows_grown: u64,
    /// Frames dropped, by reason.
    pub dropped: Dropped,
}

macro_rules! counters {
    ($($name:ident),* ; $($drop:ident),*) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
            $(pub(crate) $drop: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $($name: self.$name.load(Relaxed),)*
                    dropped: Dropped { $($drop: self.$drop.load(Relaxed),)* },
                }
            }
        }
    };
}

counters!(
    frames_in, frames_out, bytes_to_peers, bytes_from_peers, tunnels_open, tunnels_opened, tunnels_denied,
    requests_failed, tunnels_reset, stale_windows, windows_grown;
    too_short, version1, bad_magic, truncated, too_long, unknown_type, malformed, unknown_tunnel, wrong_peer,
    unexpected, unknown_peer, window_exceeded
);

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Relaxed);
    }

    pub(crate) fn decode_error(&self, e: &DecodeError) {
        Self::inc(match e {
            DecodeError::TooShort { .. } => &self.too_short,
            DecodeError::Version1 => &self.version1,
            DecodeError::BadMagic(_) => &self.bad_magic,
            DecodeError::Truncated { .. } => &self.truncated,
            DecodeError::TooLong { .. } => &self.too_long,
            DecodeError::UnknownType(_) => &self.unknown_type,
            DecodeError::Malformed { .. } => &self.malformed,
        });
    }
}
