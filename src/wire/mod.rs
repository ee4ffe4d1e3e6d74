//! Tox byte formats: one format per file, decode and encode, no state.
//!
//! Conventions every codec here follows:
//! - decoding reads from a [`bytes::Bytes`] (payloads are split off it, not
//!   copied), returns a [`DecodeError`] on anything malformed and never
//!   panics or indexes untrusted input;
//! - encoding writes into a [`bytes::BufMut`], and `encoded_len` is exactly
//!   what `encode` writes;
//! - multi-byte integers on the wire are big-endian unless the format says
//!   otherwise (the save file is little-endian).
//!
//! Spec: <https://toktok.ltd/spec.html>.

pub mod aegis_data;
pub mod bootstrap_info;
pub mod cipher_offer;
pub mod cookie;
pub mod cookie_request;
pub mod cookie_response;
pub mod crypto_data;
pub mod crypto_handshake;
pub mod dht_packet;
pub mod dht_pk_announce;
pub mod dht_request;
pub mod friend_request;
pub mod lan_discovery;
pub mod nat_ping;
pub mod nodes_request;
pub mod nodes_response;
pub mod onion_announce_request;
pub mod onion_announce_response;
pub mod onion_data_request;
pub mod onion_data_response;
pub mod onion_ip_port;
pub mod onion_request;
pub mod onion_response;
pub mod packed_node;
pub mod packet_kind;
pub mod packet_request;
pub mod ping_request;
pub mod ping_response;
pub mod punch;
mod reader;
pub mod saved_friend;
pub mod savedata;
pub mod tcp;
#[cfg(test)]
pub(crate) mod test_support;
pub mod tox_id;

pub use reader::Reader;

/// Why bytes could not be decoded. Small and `Copy`; never carries the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the format did.
    #[error("input ends early: {what} needs {needed} more bytes, {available} left")]
    UnexpectedEnd {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes were left over after a format that must fill its input.
    #[error("{0} trailing bytes after the packet")]
    TrailingBytes(usize),
}
