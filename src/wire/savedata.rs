//! c-toxcore's save format (`tox_get_savedata`), the `tox_save` file.
//!
//! Unlike the wire, it is **little-endian**:
//!
//! | bytes | field                                                    |
//! |-------|----------------------------------------------------------|
//! | 4     | zero                                                     |
//! | 4     | magic `0x15ed1b1f`                                       |
//! | ...   | sections until an END section or the end of the data     |
//!
//! A section is `[length u32][type u16][0x01ce u16][length bytes]`. The
//! types c-toxcore 0.2.18 writes are listed in [`SectionKind`]; the one that
//! makes an identity is NOSPAMKEYS: `[nospam 4][public key 32][secret key 32]`.
//! FRIENDS is a run of fixed-size records, one per friend
//! ([`super::saved_friend`]); c-toxcore refuses the whole save when its
//! length is not a multiple of the record size.
//!
//! We keep every section we do not interpret byte for byte, so a save
//! rewritten by tuntox still carries c-toxcore's friends, relays and name.
//! Spec: <https://toktok.ltd/spec.html#state-format>.

use bytes::{BufMut, Bytes};
use zeroize::Zeroizing;

use super::saved_friend::{SAVED_FRIEND_LEN, SavedFriend};
use super::tox_id::NoSpam;
use super::{DecodeError, Reader};
use crate::crypto::{KeyPair, PublicKey, SecretKey};

/// The magic number after the leading zero word.
pub const MAGIC: u32 = 0x15ed_1b1f;
/// The cookie in every section header.
pub const SECTION_COOKIE: u16 = 0x01ce;
const NOSPAMKEYS_LEN: usize = 4 + 32 + 32;

/// Section types c-toxcore 0.2.18 writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum SectionKind {
    /// Nospam and the long-term key pair.
    NoSpamKeys = 1,
    /// DHT nodes.
    Dht = 2,
    /// The friend list.
    Friends = 3,
    /// Our name.
    Name = 4,
    /// Our status message.
    StatusMessage = 5,
    /// Our user status.
    Status = 6,
    /// TCP relays we were connected to.
    TcpRelay = 10,
    /// Nodes for onion paths.
    PathNode = 11,
    /// Conferences.
    Conferences = 20,
    /// The end marker.
    End = 255,
}

/// Why a save could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveDataError {
    /// Truncated header or section.
    #[error("truncated save data: {0}")]
    Truncated(DecodeError),
    /// The header is not c-toxcore's.
    #[error("not a Tox save file (bad header)")]
    BadHeader,
    /// A section header has the wrong cookie.
    #[error("save file garbled: section {index} has cookie {cookie:#06x}, expected 0x01ce")]
    BadSectionCookie {
        /// Which section, counting from 0.
        index: usize,
        /// The cookie found.
        cookie: u16,
    },
    /// A NOSPAMKEYS section of the wrong size.
    #[error("NOSPAMKEYS section is {0} bytes, expected 68")]
    BadNoSpamKeysLength(usize),
    /// The stored public key is not the one of the stored secret key.
    #[error("the public key in the save does not belong to its secret key")]
    KeyMismatch,
    /// A FRIENDS section that is not a whole number of records.
    #[error("FRIENDS section is {0} bytes, not a multiple of {SAVED_FRIEND_LEN}")]
    BadFriendsLength(usize),
    /// A friend record that cannot be read.
    #[error("friend {index} in the save: {cause}")]
    BadFriend {
        /// Which record, counting from 0.
        index: usize,
        /// What is wrong with it.
        cause: DecodeError,
    },
}

impl From<DecodeError> for SaveDataError {
    fn from(e: DecodeError) -> Self {
        Self::Truncated(e)
    }
}

/// One section, kept as raw bytes. Its data is zeroized when dropped, since
/// NOSPAMKEYS holds a secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (see [`SectionKind`]; others are kept as they are).
    pub kind: u16,
    /// The section body.
    pub data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Section").field("kind", &self.kind).field("len", &self.data.len()).finish()
    }
}

/// A decoded save: its sections in order, without the END marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveData {
    sections: Vec<Section>,
}

impl SaveData {
    /// A save holding only an identity.
    pub fn with_identity(nospam: NoSpam, keys: &KeyPair) -> Self {
        let mut save = Self::default();
        save.set_identity(nospam, keys);
        save
    }

    /// Reads a save. Sections after an END section are ignored, as
    /// c-toxcore ignores them.
    pub fn decode(data: impl Into<Bytes>) -> Result<Self, SaveDataError> {
        let mut r = Reader::new(data);
        if r.u32_le("header")? != 0 || r.u32_le("magic")? != MAGIC {
            return Err(SaveDataError::BadHeader);
        }
        let mut sections = Vec::new();
        while !r.is_empty() {
            let len = r.u32_le("section length")? as usize;
            let kind = r.u16_le("section type")?;
            let cookie = r.u16_le("section cookie")?;
            if cookie != SECTION_COOKIE {
                return Err(SaveDataError::BadSectionCookie { index: sections.len(), cookie });
            }
            let body = r.bytes("section body", len)?;
            if kind == SectionKind::End as u16 {
                break;
            }
            sections.push(Section { kind, data: Zeroizing::new(body.to_vec()) });
        }
        let save = Self { sections };
        // Check the identity now, so a bad save fails when loaded.
        save.identity().transpose()?;
        Ok(save)
    }

    /// Writes the save, ending with an END section.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.encoded_len()));
        out.put_u32_le(0);
        out.put_u32_le(MAGIC);
        let end = Section { kind: SectionKind::End as u16, data: Zeroizing::new(Vec::new()) };
        for section in self.sections.iter().chain(std::iter::once(&end)) {
            out.put_u32_le(section.data.len() as u32);
            out.put_u16_le(section.kind);
            out.put_u16_le(SECTION_COOKIE);
            out.put_slice(&section.data);
        }
        out
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        8 + self.sections.iter().map(|s| 8 + s.data.len()).sum::<usize>() + 8
    }

    /// The sections, in order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind as u16)
    }

    /// Replaces the first section of `section.kind` in place, or inserts
    /// `section` right after the NOSPAMKEYS section (first if there is none).
    fn put_section(&mut self, section: Section) {
        if let Some(existing) = self.sections.iter_mut().find(|s| s.kind == section.kind) {
            *existing = section;
            return;
        }
        let at = self.sections.iter().position(|s| s.kind == SectionKind::NoSpamKeys as u16).map_or(0, |i| i + 1);
        self.sections.insert(at, section);
    }

    /// The identity (nospam and long-term keys), if the save has one.
    pub fn identity(&self) -> Option<Result<(NoSpam, KeyPair), SaveDataError>> {
        let data = &self.section(SectionKind::NoSpamKeys)?.data;
        Some(decode_nospam_keys(data))
    }

    /// Sets the identity, replacing an existing NOSPAMKEYS section in place
    /// or putting a new one first.
    pub fn set_identity(&mut self, nospam: NoSpam, keys: &KeyPair) {
        let mut data = Zeroizing::new(Vec::with_capacity(NOSPAMKEYS_LEN));
        // c-toxcore writes its nospam word little-endian, and that word's
        // memory holds the address bytes: on the little-endian hosts tuntox
        // runs on, file bytes and address bytes are the same.
        data.put_u32_le(u32::from_ne_bytes(nospam.0));
        data.put_slice(keys.public().as_bytes());
        data.put_slice(keys.secret().as_bytes());
        self.put_section(Section { kind: SectionKind::NoSpamKeys as u16, data });
    }

    /// The friends in the FRIENDS section, in order; none without one.
    /// Empty slots (status 0) are skipped, as c-toxcore skips them.
    pub fn friends(&self) -> Result<Vec<SavedFriend>, SaveDataError> {
        let Some(section) = self.section(SectionKind::Friends) else {
            return Ok(Vec::new());
        };
        if section.data.len() % SAVED_FRIEND_LEN != 0 {
            return Err(SaveDataError::BadFriendsLength(section.data.len()));
        }
        let data = Bytes::copy_from_slice(&section.data);
        let mut friends = Vec::with_capacity(data.len() / SAVED_FRIEND_LEN);
        for index in 0..data.len() / SAVED_FRIEND_LEN {
            let record = data.slice(index * SAVED_FRIEND_LEN..(index + 1) * SAVED_FRIEND_LEN);
            match SavedFriend::decode(record) {
                Ok(Some(friend)) => friends.push(friend),
                Ok(None) => {}
                Err(cause) => return Err(SaveDataError::BadFriend { index, cause }),
            }
        }
        Ok(friends)
    }

    /// Sets the friend list: replaces the FRIENDS section in place, or adds
    /// it after NOSPAMKEYS. Confirmed friends are written with status 3,
    /// requests with status 1. An empty list writes an empty section, as
    /// c-toxcore does.
    pub fn set_friends(&mut self, friends: &[SavedFriend]) {
        let mut data = Zeroizing::new(Vec::with_capacity(friends.len() * SAVED_FRIEND_LEN));
        for friend in friends {
            friend.encode(&mut *data);
        }
        self.put_section(Section { kind: SectionKind::Friends as u16, data });
    }
}

fn decode_nospam_keys(data: &[u8]) -> Result<(NoSpam, KeyPair), SaveDataError> {
    if data.len() != NOSPAMKEYS_LEN {
        return Err(SaveDataError::BadNoSpamKeysLength(data.len()));
    }
    let mut r = Reader::new(Bytes::copy_from_slice(&data[..4 + 32]));
    let nospam = NoSpam(r.u32_le("nospam")?.to_ne_bytes());
    let public = PublicKey::from_bytes(r.array("public key")?);
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(&data[4 + 32..]);
    let keys = KeyPair::from_secret(SecretKey::from_bytes(*secret));
    if *keys.public() != public {
        return Err(SaveDataError::KeyMismatch);
    }
    Ok((nospam, keys))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::wire::saved_friend::SavedFriendStatus;
    use crate::wire::tox_id::ToxId;

    /// Written by c-toxcore 0.2.18's tox_get_savedata (see tests/data/README.md).
    const C_SAVE: &[u8] = include_bytes!("../../tests/data/c-toxcore-0.2.18.tox_save");
    const C_ADDRESS: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

    /// The same identity with two confirmed friends and a pending request,
    /// from tox_get_savedata (see tests/data/README.md).
    const C_FRIENDS_SAVE: &[u8] = include_bytes!("../../tests/data/c-toxcore-0.2.18-friends.tox_save");

    /// `bytes` up to and including the END section: what `encode` writes.
    fn up_to_end(bytes: &[u8]) -> &[u8] {
        let end = bytes.windows(4).position(|w| w == [0xff, 0x00, 0xce, 0x01]).unwrap() + 4;
        &bytes[..end]
    }

    fn sample_keys(seed: u64) -> (NoSpam, KeyPair) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (NoSpam::random(&mut rng), KeyPair::generate(&mut rng))
    }

    #[test]
    fn reads_a_c_toxcore_save_and_keeps_its_sections() {
        let save = SaveData::decode(C_SAVE).unwrap();
        let (nospam, keys) = save.identity().unwrap().unwrap();
        assert_eq!(ToxId::new(*keys.public(), nospam).to_string(), C_ADDRESS);
        let secret: Vec<u8> = (0..32u8).map(|i| i * 7 + 1).collect();
        assert_eq!(&keys.secret().as_bytes()[..], &secret[..]);
        let kinds: Vec<u16> = save.sections().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [1, 2, 3, 4, 5, 6, 10, 11, 20]);

        // Rewriting keeps every section, byte for byte, up to the END marker.
        let again = save.encode();
        let end = C_SAVE.windows(4).position(|w| w == [0xff, 0x00, 0xce, 0x01]).unwrap() + 4;
        assert_eq!(&again[..], &C_SAVE[..end]);
        assert_eq!(again.len(), save.encoded_len());
        assert_eq!(SaveData::decode(again.to_vec()).unwrap(), save);
    }

    #[test]
    fn replacing_the_identity_keeps_the_rest() {
        let mut save = SaveData::decode(C_SAVE).unwrap();
        let (nospam, keys) = sample_keys(3);
        save.set_identity(nospam, &keys);
        let reread = SaveData::decode(save.encode().to_vec()).unwrap();
        let (n2, k2) = reread.identity().unwrap().unwrap();
        assert_eq!((n2, k2), (nospam, keys));
        assert_eq!(reread.sections().len(), 9);
        assert_eq!(reread.sections()[0].kind, SectionKind::NoSpamKeys as u16);
    }

    #[test]
    fn malformed_saves_are_refused_with_a_reason() {
        assert_eq!(SaveData::decode(&b"\0\0\0\0\x1f\x1b\xed\x16"[..]), Err(SaveDataError::BadHeader));
        assert!(matches!(SaveData::decode(&C_SAVE[..6]), Err(SaveDataError::Truncated(_))));
        assert!(matches!(SaveData::decode(&C_SAVE[..40]), Err(SaveDataError::Truncated(_))));

        let mut garbled = C_SAVE.to_vec();
        garbled[14] = 0xcf;
        assert_eq!(SaveData::decode(garbled), Err(SaveDataError::BadSectionCookie { index: 0, cookie: 0x01cf }));

        // A public key that is not the secret key's.
        let mut mismatched = C_SAVE.to_vec();
        mismatched[20] ^= 1;
        assert_eq!(SaveData::decode(mismatched), Err(SaveDataError::KeyMismatch));

        let short_keys = SaveData { sections: vec![Section { kind: 1, data: Zeroizing::new(vec![0; 67]) }] };
        assert_eq!(SaveData::decode(short_keys.encode().to_vec()), Err(SaveDataError::BadNoSpamKeysLength(67)));
    }

    #[test]
    fn reads_the_friends_of_a_c_toxcore_save_and_writes_them_back_byte_for_byte() {
        let save = SaveData::decode(C_FRIENDS_SAVE).unwrap();
        let (nospam, keys) = save.identity().unwrap().unwrap();
        assert_eq!(ToxId::new(*keys.public(), nospam).to_string(), C_ADDRESS);
        let friends = save.friends().unwrap();
        let keys: Vec<[u8; 32]> = friends.iter().map(|f| *f.public_key.as_bytes()).collect();
        let first: [u8; 32] = std::array::from_fn(|i| 0x10 + i as u8);
        let second: [u8; 32] = std::array::from_fn(|i| 0x7f - i as u8);
        let third: [u8; 32] = std::array::from_fn(|i| 0x40 + 2 * i as u8);
        assert_eq!(keys, [first, second, third]);
        assert_eq!(friends[0].status, SavedFriendStatus::Confirmed);
        assert_eq!(friends[1].status, SavedFriendStatus::Confirmed);
        assert_eq!(
            friends[2].status,
            SavedFriendStatus::Requesting {
                nospam: NoSpam([0xde, 0xad, 0xbe, 0xef]),
                message: Bytes::from_static(b"tuntox saved-friend fixture: please accept"),
            }
        );
        assert_eq!(
            friends[2].request_id().unwrap().to_string(),
            "40424446484A4C4E50525456585A5C5E60626466686A6C6E70727476787A7C7EDEADBEEF6042"
        );
        assert!(friends.iter().all(|f| f.profile.name().is_empty() && f.profile.status_message().is_empty()));

        let mut rewritten = save.clone();
        rewritten.set_friends(&friends);
        assert_eq!(rewritten, save);
        assert_eq!(&rewritten.encode()[..], up_to_end(C_FRIENDS_SAVE));
    }

    #[test]
    fn set_friends_replaces_in_place_or_adds_after_the_identity() {
        let (nospam, keys) = sample_keys(5);
        let mut save = SaveData::with_identity(nospam, &keys);
        save.sections.push(Section { kind: SectionKind::Dht as u16, data: Zeroizing::new(vec![1, 2, 3]) });
        assert_eq!(save.friends().unwrap(), []);

        let peer = ToxId::new(*sample_keys(6).1.public(), NoSpam([9, 8, 7, 6]));
        let friends = [
            SavedFriend::confirmed(*sample_keys(7).1.public()),
            SavedFriend::requesting(&peer, &b"tuntox"[..]).unwrap(),
        ];
        save.set_friends(&friends);
        let kinds: Vec<u16> = save.sections().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [1, 3, 2]);
        assert_eq!(save.sections()[1].data.len(), 2 * SAVED_FRIEND_LEN);
        let reread = SaveData::decode(save.encode().to_vec()).unwrap();
        assert_eq!(reread.friends().unwrap(), friends);

        // Replacing keeps the section's place and the other sections.
        let mut c_save = SaveData::decode(C_SAVE).unwrap();
        c_save.set_friends(&friends[..1]);
        let kinds: Vec<u16> = c_save.sections().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [1, 2, 3, 4, 5, 6, 10, 11, 20]);
        assert_eq!(c_save.friends().unwrap(), friends[..1]);
        c_save.set_friends(&[]);
        assert_eq!(c_save.sections()[2].data.len(), 0);
        assert_eq!(&c_save.encode()[..], up_to_end(C_SAVE), "C_SAVE has an empty FRIENDS section");

        // Without an identity the section goes first.
        let mut bare = SaveData::default();
        bare.set_friends(&friends);
        assert_eq!(bare.sections()[0].kind, SectionKind::Friends as u16);
    }

    #[test]
    fn bad_friends_sections_are_refused_as_c_toxcore_refuses_them() {
        let mut save = SaveData::decode(C_FRIENDS_SAVE).unwrap();
        let friends = &mut save.sections.iter_mut().find(|s| s.kind == SectionKind::Friends as u16).unwrap().data;
        friends.pop();
        assert_eq!(save.friends(), Err(SaveDataError::BadFriendsLength(3 * SAVED_FRIEND_LEN - 1)));

        let mut save = SaveData::decode(C_FRIENDS_SAVE).unwrap();
        let friends = &mut save.sections.iter_mut().find(|s| s.kind == SectionKind::Friends as u16).unwrap().data;
        // The second record's name length: 129 > 128.
        friends[SAVED_FRIEND_LEN + 1188..SAVED_FRIEND_LEN + 1190].copy_from_slice(&129u16.to_be_bytes());
        let err = save.friends().unwrap_err();
        assert_eq!(err, SaveDataError::BadFriend { index: 1, cause: DecodeError::Invalid("saved friend name length") });
        assert_eq!(err.to_string(), "friend 1 in the save: invalid saved friend name length");
        // Loading the save does not read the friends: the identity still loads.
        assert!(SaveData::decode(save.encode().to_vec()).is_ok());

        // An empty slot (status 0) is skipped.
        let mut save = SaveData::decode(C_FRIENDS_SAVE).unwrap();
        let friends = &mut save.sections.iter_mut().find(|s| s.kind == SectionKind::Friends as u16).unwrap().data;
        friends[0] = 0;
        assert_eq!(save.friends().unwrap().len(), 2);
    }

    #[test]
    fn a_save_without_identity_has_none() {
        let empty = SaveData::default();
        assert!(empty.identity().is_none());
        assert_eq!(&empty.encode()[..], &[0, 0, 0, 0, 0x1f, 0x1b, 0xed, 0x15, 0, 0, 0, 0, 0xff, 0, 0xce, 0x01]);
    }

    proptest! {
        #[test]
        fn round_trips_with_unknown_sections(
            seed in any::<u64>(),
            extra in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..5),
        ) {
            let (nospam, keys) = sample_keys(seed);
            let mut save = SaveData::with_identity(nospam, &keys);
            for (kind, data) in extra {
                if kind != SectionKind::End as u16 && kind != SectionKind::NoSpamKeys as u16 {
                    save.sections.push(Section { kind, data: Zeroizing::new(data) });
                }
            }
            let bytes = save.encode();
            prop_assert_eq!(bytes.len(), save.encoded_len());
            prop_assert_eq!(SaveData::decode(bytes.to_vec()).unwrap(), save);
        }

        #[test]
        fn truncated_or_flipped_input_never_panics(cut in 0usize..200, at in 0usize..200, flip in any::<u8>()) {
            let mut data = C_SAVE[..cut.min(C_SAVE.len())].to_vec();
            if let Some(byte) = data.get_mut(at) {
                *byte ^= flip;
            }
            let _ = SaveData::decode(data);
        }
    }
}
