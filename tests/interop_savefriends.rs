//! Friend lists in `tox_save` against a live libtoxcore 0.2.18.
//!
//! What these tests prove:
//! - A save tuntox writes with friends (confirmed ones and a pending
//!   request) loads in libtoxcore: `tox_new` accepts it (a FRIENDS section it
//!   cannot read fails the load, and the peer would report `error tox_new`)
//!   with our Tox ID, and libtoxcore really adopts the friends: the save it
//!   writes right after loading holds the same FRIENDS section, byte for
//!   byte.
//! - A save libtoxcore writes with friends (`tox_friend_add_norequest`,
//!   `tox_friend_add` with a message) reads in tuntox as the same confirmed
//!   friends and request, message and nospam included, and tuntox writes it
//!   back byte for byte; libtoxcore still loads that rewrite as the same Tox.
//! - The committed fixture `tests/data/c-toxcore-0.2.18-friends.tox_save`
//!   (decoded by the unit tests) says what a live libtoxcore says about it.
//!
//! Not proven here: that libtoxcore then talks to those friends (the
//! simulator and the other interop tests cover the protocol). The libtoxcore
//! peer runs in a private network namespace and exits right after start
//! (or is only given commands), so nothing goes on a network. Needs root and
//! libtoxcore-dev (scripts/test installs it); never skips.

mod support;

use std::path::Path;
use std::time::Duration;

use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};
use tuntox::app::identity::{Identity, SAVE_FILE_NAME};
use tuntox::crypto::{KeyPair, SodiumRng};
use tuntox::wire::saved_friend::{SavedFriend, SavedFriendStatus};
use tuntox::wire::savedata::{SaveData, SectionKind};
use tuntox::wire::tox_id::{NoSpam, ToxId};

/// Loads `save` in libtoxcore, which writes its own save to `out` right
/// after `tox_new`; returns the address it reports.
fn load_in_libtoxcore(netns: &Netns, save: &Path, out: &Path) -> String {
    let peer = ToxPeer::spawn(
        netns,
        &PeerOptions {
            save: Some(save.to_owned()),
            save_out: Some(out.to_owned()),
            exit_after_start: true,
            ..PeerOptions::new("loader")
        },
    );
    peer.address().to_owned()
}

/// The body of the FRIENDS section of a save file.
fn friends_section(path: &Path) -> Vec<u8> {
    let save = SaveData::decode(std::fs::read(path).unwrap()).unwrap();
    let section = save.sections().iter().find(|s| s.kind == SectionKind::Friends as u16);
    section.expect("a FRIENDS section").data.to_vec()
}

/// `bytes` up to and including the END section: what tuntox writes of a
/// libtoxcore save (libtoxcore pads its saves with zeros after END).
fn up_to_end(bytes: &[u8]) -> &[u8] {
    let end = bytes.windows(4).position(|w| w == [0xff, 0x00, 0xce, 0x01]).expect("an END section") + 4;
    &bytes[..end]
}

#[test]
fn libtoxcore_loads_the_friends_we_save() {
    let netns = Netns::new("frload");
    let dir = tempfile::tempdir().unwrap();
    let (mut identity, _) = Identity::load_or_create(dir.path()).unwrap();
    let friend_key = || *KeyPair::generate(&mut SodiumRng).public();
    let requested = ToxId::new(friend_key(), NoSpam([0xc0, 0xff, 0xee, 0x42]));
    let friends = [
        SavedFriend::confirmed(friend_key()),
        SavedFriend::requesting(&requested, &b"tuntox wants to be your friend"[..]).unwrap(),
        SavedFriend::confirmed(friend_key()),
    ];
    identity.set_friends(&friends);
    identity.store().unwrap();
    let ours = identity.path().to_owned();

    let out = dir.path().join("libtoxcore.tox_save");
    assert_eq!(load_in_libtoxcore(&netns, &ours, &out), identity.tox_id().to_string());
    assert_eq!(friends_section(&out), friends_section(&ours), "libtoxcore writes back the friends it loaded");
    let theirs = SaveData::decode(std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(theirs.friends().unwrap(), friends);
}

#[test]
fn we_read_the_friends_libtoxcore_saves_and_write_them_back_byte_for_byte() {
    let netns = Netns::new("frread");
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join(SAVE_FILE_NAME);
    let mut peer = ToxPeer::spawn(
        &netns,
        &PeerOptions { save_out: Some(save.clone()), nospam: Some(0x0BAD_F00D), ..PeerOptions::new("writer") },
    );
    let address = peer.address().to_owned();
    let confirmed: Vec<_> = (0..2).map(|_| *KeyPair::generate(&mut SodiumRng).public()).collect();
    for key in &confirmed {
        peer.send(&format!("add_norequest {key}"));
        peer.wait_for(|l| l.starts_with("friend_added ") && l.ends_with(&key.to_string()), Duration::from_secs(5));
    }
    let requested = ToxId::new(*KeyPair::generate(&mut SodiumRng).public(), NoSpam([1, 2, 3, 4]));
    assert_eq!(peer.add_friend(&requested.to_string(), "hello from libtoxcore"), 2);
    peer.send("save");
    peer.wait_value("saved ", Duration::from_secs(5));
    peer.quit();
    let written = std::fs::read(&save).unwrap();

    let mut identity = Identity::load(dir.path()).unwrap().unwrap();
    assert_eq!(identity.tox_id().to_string(), address);
    let friends = identity.friends().unwrap();
    let keys: Vec<_> = friends.iter().map(|f| f.public_key).collect();
    assert_eq!(keys, [confirmed[0], confirmed[1], *requested.public_key()]);
    assert_eq!(friends[0].status, SavedFriendStatus::Confirmed);
    assert_eq!(friends[1].status, SavedFriendStatus::Confirmed);
    assert_eq!(
        friends[2].status,
        SavedFriendStatus::Requesting { nospam: requested.nospam(), message: "hello from libtoxcore".into() }
    );
    assert_eq!(friends[2].request_id(), Some(requested));

    identity.set_friends(&friends);
    identity.store().unwrap();
    let rewritten = std::fs::read(&save).unwrap();
    assert_eq!(rewritten[..], *up_to_end(&written), "tuntox rewrites libtoxcore's save byte for byte");
    let out = dir.path().join("reloaded.tox_save");
    assert_eq!(load_in_libtoxcore(&netns, &save, &out), address);
    assert_eq!(friends_section(&out), friends_section(&save));
}

#[test]
fn the_fixture_reads_the_same_in_libtoxcore_and_in_tuntox() {
    let netns = Netns::new("frfixture");
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/c-toxcore-0.2.18-friends.tox_save");
    let out = dir.path().join("libtoxcore.tox_save");
    assert_eq!(
        load_in_libtoxcore(&netns, &fixture, &out),
        "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2"
    );
    assert_eq!(friends_section(&out), friends_section(&fixture));
    let ours = SaveData::decode(std::fs::read(&fixture).unwrap()).unwrap().friends().unwrap();
    assert_eq!(ours.len(), 3);
    let theirs = SaveData::decode(std::fs::read(&out).unwrap()).unwrap().friends().unwrap();
    assert_eq!(theirs, ours);
}
