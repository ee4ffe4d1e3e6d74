//! Which shared secret accepted each saved friend, so that changing `-s`
//! revokes the friends the old secret let in.
//!
//! The file `accepted_by` in the config directory holds a random salt and,
//! per saved friend, a tag of the secret that accepted it: SHA-256 of a
//! label, the salt, and the secret's request message (nothing for no
//! secret). At start, a saved friend whose tag differs from the current
//! secret's is forgotten (it must send a friend request again, with the
//! right secret); one without a tag (saved before the file existed) gets
//! the current secret's. The file is private (mode 0600) and written
//! through a new temporary file renamed over it.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::friends::Book;
use super::secret::Secret;
use crate::crypto::{PublicKey, ct_eq, fill_random, sha256};

/// The file's name in the config directory.
pub const FILE_NAME: &str = "accepted_by";
const LABEL: &[u8] = b"tuntox accepted-by v1";

/// The tags of the saved friends.
#[derive(Debug)]
pub struct AcceptedBy {
    path: PathBuf,
    salt: [u8; 32],
    tags: BTreeMap<PublicKey, [u8; 32]>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl AcceptedBy {
    /// Reads the file in `dir`; a missing one starts empty with a new salt.
    /// Lines that do not parse are skipped (their friends count as
    /// untagged).
    pub fn load(dir: &Path) -> io::Result<AcceptedBy> {
        let path = dir.join(FILE_NAME);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut salt = None;
        let mut tags = BTreeMap::new();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("salt", s)) => salt = unhex32(s),
                Some((key, tag)) => {
                    if let (Some(key), Some(tag)) = (unhex32(key), unhex32(tag)) {
                        tags.insert(PublicKey::from_bytes(key), tag);
                    }
                }
                None => {}
            }
        }
        let salt = salt.unwrap_or_else(|| {
            tags.clear();
            let mut salt = [0u8; 32];
            fill_random(&mut salt);
            salt
        });
        Ok(AcceptedBy { path, salt, tags })
    }

    fn tag(&self, secret: Option<&Secret>) -> [u8; 32] {
        let message = secret.map(Secret::request_message).unwrap_or_default();
        sha256(&[LABEL, &self.salt, &message].concat())
    }

    /// Notes that `secret` accepted `key`.
    pub fn record(&mut self, key: PublicKey, secret: Option<&Secret>) {
        let tag = self.tag(secret);
        self.tags.insert(key, tag);
    }

    /// Whether `key` was accepted by a secret other than `secret`.
    pub fn other_secret(&self, key: &PublicKey, secret: Option<&Secret>) -> bool {
        self.tags.get(key).is_some_and(|tag| !ct_eq(tag, &self.tag(secret)))
    }

    /// Forgets `key`'s tag.
    pub fn forget(&mut self, key: &PublicKey) {
        self.tags.remove(key);
    }

    /// Writes the file.
    pub fn store(&self) -> io::Result<()> {
        let mut text = format!("salt {}\n", hex(&self.salt));
        for (key, tag) in &self.tags {
            text.push_str(&format!("{} {}\n", hex(key.as_bytes()), hex(tag)));
        }
        let tmp = self.path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}

/// At start: forgets the saved friends of `book` that another secret
/// accepted, and tags the untagged ones with `secret`. Returns the
/// forgotten keys (the caller writes `tox_save` and the tags when anything
/// changed).
pub fn revoke_other_secrets(book: &mut Book, accepted: &mut AcceptedBy, secret: Option<&Secret>) -> Vec<PublicKey> {
    let mut revoked = Vec::new();
    for key in book.saved() {
        if accepted.other_secret(&key, secret) {
            tracing::info!(friend = %key, "forgetting a friend accepted with another shared secret (-s changed)");
            book.remove(&key);
            accepted.forget(&key);
            revoked.push(key);
        } else if !accepted.tags.contains_key(&key) {
            accepted.record(key, secret);
        }
    }
    revoked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::friends::Kept;

    #[test]
    fn a_changed_secret_revokes_those_the_old_one_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (Secret::new("old").unwrap(), Secret::new("new").unwrap());
        let keys: Vec<PublicKey> = (1..=4).map(|i| PublicKey::from_bytes([i; 32])).collect();
        let mut accepted = AcceptedBy::load(dir.path()).unwrap();
        accepted.record(keys[0], Some(&old));
        accepted.record(keys[1], Some(&new));
        accepted.record(keys[2], None);
        accepted.store().unwrap();
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("old") && !text.contains(&hex(b"new")), "no secret in the file");
        let mode = fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

        let mut book = Book::default();
        for key in &keys {
            book.accept(*key, Kept::Saved, 1_000);
        }
        let mut accepted = AcceptedBy::load(dir.path()).unwrap();
        let revoked = revoke_other_secrets(&mut book, &mut accepted, Some(&new));
        assert_eq!(revoked, vec![keys[0], keys[2]]);
        assert_eq!(book.saved(), vec![keys[1], keys[3]], "the untagged one stays");
        // ...and is tagged with the current secret from now on.
        assert!(accepted.other_secret(&keys[3], Some(&old)));
        assert!(!accepted.other_secret(&keys[3], Some(&new)));
        // Another salt, another tag for the same secret.
        let other_dir = tempfile::tempdir().unwrap();
        let other = AcceptedBy::load(other_dir.path()).unwrap();
        assert_ne!(other.tag(Some(&new)), accepted.tag(Some(&new)));
    }
}
