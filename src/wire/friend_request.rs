//! Friend request (inner kind 32): "add me", with the nospam of the
//! receiver's Tox ID and a message, carried as
//! [onion data](super::onion_data_request) to someone who does not know us yet.
//!
//! | bytes     | field                                                  |
//! |-----------|--------------------------------------------------------|
//! | 1         | 32 (`CRYPTO_PACKET_FRIEND_REQ`)                          |
//! | 4         | nospam, copied from the receiver's Tox ID               |
//! | 1..=1016  | message (UTF-8 by convention; not checked)              |
//!
//! The sender's real public key is not in the packet: it is the key the
//! onion data was sealed with ([`OnionDataEnvelope`](super::onion_data_request::OnionDataEnvelope)),
//! which proves it.
//!
//! Facts from c-toxcore 0.2.18:
//! - `friend_connection.c` `send_friend_request_packet` builds
//!   `[32][nospam][message]` for 1 to `ONION_CLIENT_MAX_DATA_SIZE` - 5 =
//!   1016 message bytes (`friend_requests.h` `MAX_FRIEND_REQUEST_DATA_SIZE`)
//!   and sends it with `send_onion_data`. To a friend already connected over
//!   net_crypto it sends the same bytes with id 18 instead
//!   (`PACKET_ID_FRIEND_REQUESTS`), a lossless packet; this type reads id 32
//!   only.
//! - `friend_requests.c` `friendreq_handlepacket` drops anything of 5 bytes
//!   or less or over 1021, a nospam other than its own (compared as the 4
//!   bytes of its `uint32_t`: opaque, as in the Tox ID) and a key it already
//!   had a request from this session.
//! - Through the onion a c-toxcore receiver takes less than that: its
//!   `handle_data_response` drops onion data responses over 1069 bytes, so a
//!   request arrives only with a message of at most 943 bytes
//!   ([`super::onion_data_request::MAX_ONION_DATA_LEN`] minus 5).
//!
//! Spec: <https://toktok.ltd/spec.html#friend-requests>.

use bytes::{BufMut, Bytes};

use super::tox_id::NoSpam;
use super::{DecodeError, Reader};

/// The inner kind of a friend request (`CRYPTO_PACKET_FRIEND_REQ`).
pub const FRIEND_REQUEST_KIND: u8 = 32;
/// Longest message (`MAX_FRIEND_REQUEST_DATA_SIZE`).
pub const MAX_FRIEND_REQUEST_MESSAGE_LEN: usize = 1016;
/// Longest message we send: c-toxcore 0.2.21 and later drop onion data
/// packets that would carry a longer one, so it would never arrive.
pub const MAX_SENT_MESSAGE_LEN: usize = 921;

/// A message a friend request cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "friend request message is {0} bytes; it must be 1 to {MAX_SENT_MESSAGE_LEN} (longer ones are dropped on the \
     onion path)"
)]
pub struct MessageLenError(pub usize);

/// A friend request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FriendRequest {
    /// The nospam of the Tox ID the sender was given.
    pub nospam: NoSpam,
    message: Bytes,
}

impl FriendRequest {
    /// Shortest encoding: kind, nospam and one message byte.
    pub const MIN_LEN: usize = 1 + 4 + 1;
    /// Longest encoding.
    pub const MAX_LEN: usize = 1 + 4 + MAX_FRIEND_REQUEST_MESSAGE_LEN;

    /// A request with `message`: 1 to 1016 bytes.
    pub fn new(nospam: NoSpam, message: impl Into<Bytes>) -> Result<Self, MessageLenError> {
        let message = message.into();
        if message.is_empty() || message.len() > MAX_FRIEND_REQUEST_MESSAGE_LEN {
            return Err(MessageLenError(message.len()));
        }
        Ok(Self { nospam, message })
    }

    /// The message, 1 to 1016 bytes.
    pub fn message(&self) -> &Bytes {
        &self.message
    }

    /// Reads a whole plaintext, kind byte included.
    pub fn decode(plaintext: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let mut r = Reader::new(plaintext);
        if r.u8("friend request kind")? != FRIEND_REQUEST_KIND {
            return Err(DecodeError::Invalid("friend request kind"));
        }
        let nospam = NoSpam(r.array("friend request nospam")?);
        let message = r.rest();
        if message.is_empty() {
            return Err(DecodeError::UnexpectedEnd { what: "friend request message", needed: 1, available: 0 });
        }
        if message.len() > MAX_FRIEND_REQUEST_MESSAGE_LEN {
            return Err(DecodeError::TrailingBytes(message.len() - MAX_FRIEND_REQUEST_MESSAGE_LEN));
        }
        Ok(Self { nospam, message })
    }

    /// Writes the plaintext.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(FRIEND_REQUEST_KIND);
        buf.put_slice(&self.nospam.0);
        buf.put_slice(&self.message);
    }

    /// What [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + self.message.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::wire::dht_request::FRIEND_REQUEST_ID;
    use crate::wire::onion_data_request::MAX_ONION_DATA_LEN;
    use crate::wire::test_support::damage;

    fn encode(request: &FriendRequest) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!(out.len(), request.encoded_len());
        out
    }

    #[test]
    fn by_hand() {
        // As `send_friend_request_packet` lays it out (the bytes the onion
        // data golden tests carry, opened from c-toxcore's packets).
        let request = FriendRequest::new(NoSpam([0x0a, 0x0b, 0x0c, 0x0d]), &b"hello from tuntox"[..]).unwrap();
        let mut bytes = vec![32, 0x0a, 0x0b, 0x0c, 0x0d];
        bytes.extend_from_slice(b"hello from tuntox");
        assert_eq!(encode(&request), bytes);
        assert_eq!(FriendRequest::decode(bytes), Ok(request));
        assert_eq!(FRIEND_REQUEST_KIND, FRIEND_REQUEST_ID);
    }

    #[test]
    fn message_lengths() {
        let nospam = NoSpam([1, 2, 3, 4]);
        assert_eq!(FriendRequest::new(nospam, Bytes::new()), Err(MessageLenError(0)));
        let longest = FriendRequest::new(nospam, vec![b'x'; 1016]).unwrap();
        assert_eq!(longest.encoded_len(), 1021);
        assert_eq!(FriendRequest::decode(encode(&longest)), Ok(longest));
        assert_eq!(FriendRequest::new(nospam, vec![b'x'; 1017]), Err(MessageLenError(1017)));
        // What still reaches a c-toxcore client through the onion.
        assert_eq!(MAX_ONION_DATA_LEN - 5, 943);

        assert!(matches!(FriendRequest::decode(vec![32, 1, 2, 3, 4]), Err(DecodeError::UnexpectedEnd { .. })));
        assert!(matches!(FriendRequest::decode(vec![32, 1, 2]), Err(DecodeError::UnexpectedEnd { .. })));
        let mut too_long = vec![32, 1, 2, 3, 4];
        too_long.resize(1022, b'x');
        assert_eq!(FriendRequest::decode(too_long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(FriendRequest::decode(vec![18, 1, 2, 3, 4, 5]), Err(DecodeError::Invalid("friend request kind")));
    }

    fn arb_request() -> impl Strategy<Value = FriendRequest> {
        (any::<[u8; 4]>(), proptest::collection::vec(any::<u8>(), 1..=MAX_FRIEND_REQUEST_MESSAGE_LEN))
            .prop_map(|(nospam, message)| FriendRequest::new(NoSpam(nospam), message).unwrap())
    }

    proptest! {
        #[test]
        fn round_trips(request in arb_request()) {
            prop_assert_eq!(FriendRequest::decode(encode(&request)), Ok(request));
        }

        #[test]
        fn damaged_input_never_panics(request in arb_request(), flip in any::<Index>(), bit in 0u8..8, cut in any::<Index>()) {
            let _ = FriendRequest::decode(damage(encode(&request), flip, bit, cut));
        }
    }
}
