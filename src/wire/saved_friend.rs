//! One friend in the FRIENDS section (type 3) of c-toxcore's save
//! ([`super::savedata`]): c-toxcore's `struct Saved_Friend`, written field by
//! field with the padding bytes an x86-64 compiler puts into the struct, so
//! every record is 2216 bytes. Unlike the rest of the save, its integers are
//! **big-endian**; the nospam is the 4 bytes of the friend's Tox ID as they are.
//!
//! | offset | bytes | field                                                        |
//! |--------|-------|--------------------------------------------------------------|
//! | 0      | 1     | status: 1 added, 2 request sent, 3 confirmed, 4 online       |
//! | 1      | 32    | the friend's long-term public key (`real_pk`)                 |
//! | 33     | 1024  | friend request message (`info`), zero-padded                  |
//! | 1057   | 1     | padding                                                      |
//! | 1058   | 2     | message length (`info_size`), big-endian                      |
//! | 1060   | 128   | the friend's name, zero-padded                                |
//! | 1188   | 2     | name length, big-endian                                      |
//! | 1190   | 1007  | the friend's status message, zero-padded                      |
//! | 2197   | 1     | padding                                                      |
//! | 2198   | 2     | status message length, big-endian                            |
//! | 2200   | 1     | user status (0 none, 1 away, 2 busy)                          |
//! | 2201   | 3     | padding                                                      |
//! | 2204   | 4     | nospam of the friend's Tox ID (`friendrequest_nospam`)        |
//! | 2208   | 8     | last seen, Unix seconds, big-endian                           |
//!
//! Facts from c-toxcore 0.2.18 (`toxcore/Messenger.c`, `friend_size`,
//! `friend_save`, `friend_load`, `friends_list_save`, `friends_list_load`):
//! - Friends we still send a request to (status 1 or 2) carry the message,
//!   its length and the nospam; name, status message, user status and last
//!   seen are zero. Confirmed and online friends are both written as 3, with
//!   name, status message, user status and last seen; the request fields are
//!   zero. `tox_get_savedata` zeroes its buffer first, so padding and the
//!   bytes after each length are zero.
//! - When loading, a record of status 0 is skipped, 1 and 2 are re-added as
//!   requests (`m_addfriend`, which sets status 1 again and refuses an empty
//!   message or one over 1016 bytes), 3 and above as confirmed friends.
//!   Padding is ignored.
//!
//! [`SavedFriend`] keeps what tuntox uses (the key; a pending request's
//! message and nospam) and carries the friend's name, status message, user
//! status and last-seen time as an opaque [`FriendProfile`]. Writing back what
//! was read gives what c-toxcore itself writes after loading the record:
//! status 2 becomes 1 and 4 becomes 3, padding and unused bytes become zero.
//! So a save written by c-toxcore is reproduced byte for byte, except a
//! request c-toxcore had already sent (2), which both sides treat alike.
//!
//! Spec: <https://toktok.ltd/spec.html#state-format> (Friends).

use bytes::{BufMut, Bytes};

use super::friend_request::{MAX_FRIEND_REQUEST_MESSAGE_LEN, MessageLenError};
use super::tox_id::{NoSpam, ToxId};
use super::{DecodeError, Reader};
use crate::crypto::PublicKey;

/// Bytes of one record (`friend_size()` on x86-64).
pub const SAVED_FRIEND_LEN: usize = 2216;
/// Room for a friend request message (`SAVED_FRIEND_REQUEST_SIZE`).
pub const REQUEST_FIELD_LEN: usize = 1024;
/// Room for the friend's name (`MAX_NAME_LENGTH`).
pub const NAME_FIELD_LEN: usize = 128;
/// Room for the friend's status message (`MAX_STATUSMESSAGE_LENGTH`).
pub const STATUS_MESSAGE_FIELD_LEN: usize = 1007;

/// Status byte of a friend we add with a request (`FRIEND_ADDED`).
const STATUS_ADDED: u8 = 1;
/// Status byte of a friend whose request c-toxcore sent (`FRIEND_REQUESTED`).
const STATUS_REQUESTED: u8 = 2;
/// Status byte of a confirmed friend (`FRIEND_CONFIRMED`; online is written as this too).
const STATUS_CONFIRMED: u8 = 3;

/// A friend as the save keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFriend {
    /// The friend's long-term public key.
    pub public_key: PublicKey,
    /// Confirmed, or a request we still send.
    pub status: SavedFriendStatus,
    /// What c-toxcore remembers about the friend; tuntox only carries it.
    pub profile: FriendProfile,
}

/// Where a saved friendship stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedFriendStatus {
    /// We send a friend request until the friend accepts (status 1, or 2
    /// once c-toxcore has sent it; written as 1).
    Requesting {
        /// The nospam of the Tox ID we were given.
        nospam: NoSpam,
        /// The request's message. c-toxcore writes 1 to 1016 bytes; the
        /// field holds 1024, and longer messages are cut to that when written.
        message: Bytes,
    },
    /// The friend accepted, or added us (status 3; online, 4, is written as 3).
    Confirmed,
}

/// The friend's name, status message, user status and last-seen time as
/// c-toxcore saved them. Opaque: tuntox keeps it so that rewriting a save
/// does not lose it. Empty for friends tuntox adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FriendProfile {
    name: Bytes,
    status_message: Bytes,
    user_status: u8,
    last_seen: u64,
}

impl SavedFriend {
    /// A confirmed friend.
    pub fn confirmed(public_key: PublicKey) -> Self {
        Self { public_key, status: SavedFriendStatus::Confirmed, profile: FriendProfile::default() }
    }

    /// A friend we send a request to, at `id`, with `message` (1 to 1016 bytes).
    pub fn requesting(id: &ToxId, message: impl Into<Bytes>) -> Result<Self, MessageLenError> {
        let message = message.into();
        if message.is_empty() || message.len() > MAX_FRIEND_REQUEST_MESSAGE_LEN {
            return Err(MessageLenError(message.len()));
        }
        Ok(Self {
            public_key: *id.public_key(),
            status: SavedFriendStatus::Requesting { nospam: id.nospam(), message },
            profile: FriendProfile::default(),
        })
    }

    /// When the friend was last seen online (Unix seconds; 0: never noted).
    pub fn last_seen(&self) -> u64 {
        self.profile.last_seen
    }

    /// Notes when the friend was last seen online (Unix seconds).
    pub fn set_last_seen(&mut self, unix_secs: u64) {
        self.profile.last_seen = unix_secs;
    }

    /// The Tox ID to send the request to, for a friend we are still requesting.
    pub fn request_id(&self) -> Option<ToxId> {
        match self.status {
            SavedFriendStatus::Requesting { nospam, .. } => Some(ToxId::new(self.public_key, nospam)),
            SavedFriendStatus::Confirmed => None,
        }
    }

    /// Reads one record of exactly [`SAVED_FRIEND_LEN`] bytes. `Ok(None)` for
    /// an empty slot (status 0), which c-toxcore skips too. A length larger
    /// than its field is an error (c-toxcore never writes one).
    pub fn decode(record: impl Into<Bytes>) -> Result<Option<Self>, DecodeError> {
        let mut r = Reader::new(record);
        let status = r.u8("saved friend status")?;
        let public_key = PublicKey::from_bytes(r.array("saved friend public key")?);
        let request = r.bytes("saved friend request message", REQUEST_FIELD_LEN)?;
        r.u8("saved friend padding")?;
        let request_len = usize::from(r.u16_be("saved friend request length")?);
        let name = r.bytes("saved friend name", NAME_FIELD_LEN)?;
        let name_len = usize::from(r.u16_be("saved friend name length")?);
        let status_message = r.bytes("saved friend status message", STATUS_MESSAGE_FIELD_LEN)?;
        r.u8("saved friend padding")?;
        let status_message_len = usize::from(r.u16_be("saved friend status message length")?);
        let user_status = r.u8("saved friend user status")?;
        r.array::<3>("saved friend padding")?;
        let nospam = NoSpam(r.array("saved friend nospam")?);
        let last_seen = r.u64_be("saved friend last seen")?;
        r.finish()?;

        let status = match status {
            0 => return Ok(None),
            STATUS_ADDED | STATUS_REQUESTED => {
                let message = prefix(request, request_len, "saved friend request length")?;
                SavedFriendStatus::Requesting { nospam, message }
            }
            _ => SavedFriendStatus::Confirmed,
        };
        let profile = FriendProfile {
            name: prefix(name, name_len, "saved friend name length")?,
            status_message: prefix(status_message, status_message_len, "saved friend status message length")?,
            user_status,
            last_seen,
        };
        Ok(Some(Self { public_key, status, profile }))
    }

    /// Writes the record: [`SAVED_FRIEND_LEN`] bytes, padding zero.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let (status, nospam, message) = match &self.status {
            SavedFriendStatus::Requesting { nospam, message } => (STATUS_ADDED, nospam.0, &message[..]),
            SavedFriendStatus::Confirmed => (STATUS_CONFIRMED, [0; 4], &[][..]),
        };
        buf.put_u8(status);
        buf.put_slice(self.public_key.as_bytes());
        let message_len = put_padded(buf, message, REQUEST_FIELD_LEN);
        buf.put_u8(0);
        buf.put_u16(message_len);
        let p = &self.profile;
        let name_len = put_padded(buf, &p.name, NAME_FIELD_LEN);
        buf.put_u16(name_len);
        let status_message_len = put_padded(buf, &p.status_message, STATUS_MESSAGE_FIELD_LEN);
        buf.put_u8(0);
        buf.put_u16(status_message_len);
        buf.put_u8(p.user_status);
        buf.put_bytes(0, 3);
        buf.put_slice(&nospam);
        buf.put_u64(p.last_seen);
    }

    /// What [`encode`](Self::encode) writes: always [`SAVED_FRIEND_LEN`].
    pub fn encoded_len(&self) -> usize {
        SAVED_FRIEND_LEN
    }
}

/// The first `len` bytes of a field, or an error naming the length.
fn prefix(field: Bytes, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
    if len > field.len() {
        return Err(DecodeError::Invalid(what));
    }
    Ok(field.slice(..len))
}

/// Writes at most `field` bytes of `data`, zero-fills the field, and returns
/// how many bytes of `data` it holds.
fn put_padded(buf: &mut impl BufMut, data: &[u8], field: usize) -> u16 {
    let data = &data[..data.len().min(field)];
    buf.put_slice(data);
    buf.put_bytes(0, field - data.len());
    // Every field is shorter than 65536 bytes.
    data.len() as u16
}

impl FriendProfile {
    /// The friend's name as they last announced it (UTF-8 by convention).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The friend's status message (UTF-8 by convention).
    pub fn status_message(&self) -> &[u8] {
        &self.status_message
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::test_support::{arb_public_key, encoded};

    fn record_by_hand(fill: &[(usize, &[u8])]) -> Vec<u8> {
        let mut record = vec![0u8; 2216];
        for (at, bytes) in fill {
            record[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        record
    }

    #[test]
    fn a_confirmed_friend_with_a_profile_has_c_toxcores_layout() {
        let key = PublicKey::from_bytes([0x42; 32]);
        let friend = SavedFriend {
            public_key: key,
            status: SavedFriendStatus::Confirmed,
            profile: FriendProfile {
                name: Bytes::from_static(b"alice"),
                status_message: Bytes::from_static(b"busy tunnelling"),
                user_status: 2,
                last_seen: 0x0102_0304_0506_0708,
            },
        };
        let expected = record_by_hand(&[
            (0, &[3]),
            (1, &[0x42; 32]),
            (1060, b"alice"),
            (1188, &[0, 5]),
            (1190, b"busy tunnelling"),
            (2198, &[0, 15]),
            (2200, &[2]),
            (2208, &hex!("0102030405060708")),
        ]);
        assert_eq!(encoded!(friend), expected);
        assert_eq!(SavedFriend::decode(expected).unwrap(), Some(friend));
    }

    #[test]
    fn a_pending_request_has_c_toxcores_layout() {
        let id = ToxId::new(PublicKey::from_bytes([0x17; 32]), NoSpam(hex!("deadbeef")));
        let friend = SavedFriend::requesting(&id, &b"let me in"[..]).unwrap();
        let expected = record_by_hand(&[
            (0, &[1]),
            (1, &[0x17; 32]),
            (33, b"let me in"),
            (1058, &[0, 9]),
            (2204, &hex!("deadbeef")),
        ]);
        assert_eq!(encoded!(friend), expected);
        assert_eq!(SavedFriend::decode(expected).unwrap(), Some(friend.clone()));
        assert_eq!(friend.request_id(), Some(id));
        assert_eq!(SavedFriend::confirmed(*id.public_key()).request_id(), None);
    }

    #[test]
    fn decoding_reads_as_c_toxcore_loads() {
        // Status 2 (request sent) and 4 (online) read as 1 and 3; padding and
        // bytes after a length are ignored and written back as zero.
        let sent = record_by_hand(&[(0, &[2]), (33, b"hi!"), (1058, &[0, 2]), (1057, &[0xff]), (2201, &[9, 9, 9])]);
        let friend = SavedFriend::decode(sent).unwrap().unwrap();
        assert_eq!(
            friend.status,
            SavedFriendStatus::Requesting { nospam: NoSpam([0; 4]), message: Bytes::from_static(b"hi") }
        );
        assert_eq!(encoded!(friend), record_by_hand(&[(0, &[1]), (33, b"hi"), (1058, &[0, 2])]));

        let online = SavedFriend::decode(record_by_hand(&[(0, &[4]), (2197, &[1])])).unwrap().unwrap();
        assert_eq!(online.status, SavedFriendStatus::Confirmed);
        assert_eq!(encoded!(online), record_by_hand(&[(0, &[3])]));

        assert_eq!(SavedFriend::decode(record_by_hand(&[(1, &[7; 32])])).unwrap(), None);
    }

    #[test]
    fn lengths_beyond_their_fields_are_refused() {
        let cases: [(usize, u16, &str); 3] = [
            (1058, 1025, "saved friend request length"),
            (1188, 129, "saved friend name length"),
            (2198, 1008, "saved friend status message length"),
        ];
        for (at, len, what) in cases {
            let record = record_by_hand(&[(0, &[1]), (at, &len.to_be_bytes())]);
            assert_eq!(SavedFriend::decode(record), Err(DecodeError::Invalid(what)));
        }
        // A confirmed friend's request length is not read.
        let record = record_by_hand(&[(0, &[3]), (1058, &[0xff, 0xff])]);
        assert!(SavedFriend::decode(record).unwrap().is_some());

        assert!(matches!(SavedFriend::decode(vec![3; 2215]), Err(DecodeError::UnexpectedEnd { .. })));
        assert_eq!(SavedFriend::decode(vec![3; 2217]), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn requests_take_tox_message_lengths_and_encoding_caps_the_field() {
        let id = ToxId::new(PublicKey::from_bytes([1; 32]), NoSpam([1, 2, 3, 4]));
        assert_eq!(SavedFriend::requesting(&id, Bytes::new()), Err(MessageLenError(0)));
        assert_eq!(SavedFriend::requesting(&id, vec![b'x'; 1017]), Err(MessageLenError(1017)));
        assert!(SavedFriend::requesting(&id, vec![b'x'; 1016]).is_ok());

        let mut long = SavedFriend::requesting(&id, &b"x"[..]).unwrap();
        long.status = SavedFriendStatus::Requesting { nospam: id.nospam(), message: vec![b'y'; 2000].into() };
        let bytes = encoded!(long);
        assert_eq!(bytes[1058..1060], 1024u16.to_be_bytes());
        let SavedFriendStatus::Requesting { message, .. } = SavedFriend::decode(bytes).unwrap().unwrap().status else {
            panic!("not a request");
        };
        assert_eq!(message.len(), 1024);
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
    }

    fn arb_saved_friend() -> impl Strategy<Value = SavedFriend> {
        let status = prop_oneof![
            Just(SavedFriendStatus::Confirmed),
            (any::<[u8; 4]>(), arb_bytes(REQUEST_FIELD_LEN))
                .prop_map(|(nospam, message)| SavedFriendStatus::Requesting { nospam: NoSpam(nospam), message }),
        ];
        let profile = (arb_bytes(NAME_FIELD_LEN), arb_bytes(STATUS_MESSAGE_FIELD_LEN), any::<u8>(), any::<u64>())
            .prop_map(|(name, status_message, user_status, last_seen)| FriendProfile {
                name,
                status_message,
                user_status,
                last_seen,
            });
        (arb_public_key(), status, profile).prop_map(|(public_key, status, profile)| SavedFriend {
            public_key,
            status,
            profile,
        })
    }

    proptest! {
        #[test]
        fn round_trips(friend in arb_saved_friend()) {
            let bytes = encoded!(friend);
            prop_assert_eq!(bytes.len(), SAVED_FRIEND_LEN);
            prop_assert_eq!(SavedFriend::decode(bytes).unwrap(), Some(friend));
        }

        #[test]
        fn any_record_decodes_without_panic_and_rewrites_stably(
            record in proptest::collection::vec(any::<u8>(), SAVED_FRIEND_LEN),
            lengths in any::<[u16; 3]>(),
        ) {
            let mut record = record;
            // Small lengths often enough to reach the Ok path.
            record[1058..1060].copy_from_slice(&(lengths[0] % 1100).to_be_bytes());
            record[1188..1190].copy_from_slice(&(lengths[1] % 140).to_be_bytes());
            record[2198..2200].copy_from_slice(&(lengths[2] % 1100).to_be_bytes());
            if let Ok(Some(friend)) = SavedFriend::decode(record) {
                let again = SavedFriend::decode(encoded!(friend)).unwrap();
                prop_assert_eq!(again, Some(friend));
            }
        }
    }
}
