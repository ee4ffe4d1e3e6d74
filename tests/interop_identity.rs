//! Identity files against a live libtoxcore 0.2.18: a `tox_save` written by
//! tuntox loads in c-toxcore with the same Tox ID, and a save written by
//! c-toxcore keeps its Tox ID (and its other sections) with tuntox.
//!
//! The libtoxcore peer runs in a private network namespace and exits right
//! after printing its identity; `tuntox id` opens no socket. Needs root and
//! libtoxcore-dev (scripts/test installs it); never skips.

mod support;

use std::path::Path;
use std::process::Command;

use support::netns::Netns;
use support::toxpeer::{PeerOptions, ToxPeer};
use tuntox::app::identity::Identity;

fn tuntox_id(config_dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tuntox"))
        .args(["id", "-C"])
        .arg(config_dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tuntox id");
    assert!(out.status.success(), "tuntox id failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.len(), 77, "{text:?}");
    text.trim_end().to_owned()
}

/// The address a libtoxcore peer reports after loading `save`.
fn libtoxcore_address(netns: &Netns, save: &Path) -> String {
    let peer = ToxPeer::spawn(
        netns,
        &PeerOptions { save: Some(save.to_owned()), exit_after_start: true, ..PeerOptions::new("loader") },
    );
    peer.address().to_owned()
}

#[test]
fn libtoxcore_loads_our_save_with_our_tox_id() {
    let netns = Netns::new("idload");
    let dir = tempfile::tempdir().unwrap();
    let ours = tuntox_id(dir.path());
    assert_eq!(libtoxcore_address(&netns, &dir.path().join("tox_save")), ours);
}

#[test]
fn we_keep_the_tox_id_of_a_libtoxcore_save() {
    let netns = Netns::new("idread");
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("tox_save");
    let peer = ToxPeer::spawn(
        &netns,
        &PeerOptions {
            save_out: Some(save.clone()),
            nospam: Some(0xC0FFEE42),
            exit_after_start: true,
            ..PeerOptions::new("writer")
        },
    );
    let theirs = peer.address().to_owned();
    drop(peer);
    let written = std::fs::read(&save).expect("the peer wrote its save");

    assert_eq!(tuntox_id(dir.path()), theirs);
    assert_eq!(std::fs::read(&save).unwrap(), written, "reading must not rewrite the file");

    // Rewriting the save (as tuntox does when it stores friends) keeps every
    // section c-toxcore wrote, so libtoxcore still loads it as the same Tox.
    let identity = Identity::load(dir.path()).unwrap().unwrap();
    identity.store().unwrap();
    assert_eq!(libtoxcore_address(&netns, &save), theirs);
    let rewritten = std::fs::read(&save).unwrap();
    assert_eq!(rewritten[..], written[..rewritten.len()], "sections are kept byte for byte up to END");
}
