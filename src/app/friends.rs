//! The server's friends: which are kept in `tox_save` and for how long, and
//! what `tuntox friends` reads and changes.
//!
//! A client marks its friend request when it keeps no identity (no `-C`):
//! after the message C tuntox defines (the secret and a NUL, or
//! `Hi, fell`) it adds [`SESSION_MARK`] and a NUL. C tuntox servers still
//! accept such a request (they compare up to the first NUL, and want the last
//! byte to be a NUL). Our server keeps such a client for the session only:
//! never in `tox_save`, and forgotten once it has been away for
//! [`SESSION_GRACE`] (it sends its request again when it comes back).
//! Every other client is saved, with the time it was last seen online
//! (c-toxcore's last-seen field), and forgotten once offline for longer than
//! the server's expiry (`--friend-expiry`, [`DEFAULT_EXPIRY_DAYS`] by
//! default; a friend without a time starts its clock at the first start
//! that reads it).

// Last-seen times are wall-clock times, read here.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::path::{Path, PathBuf};

use anyhow::bail;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::identity::{DirLock, Identity, IdentityError, SAVE_FILE_NAME};
use super::secret::Secret;
use super::status;
use crate::crypto::PublicKey;
use crate::wire::friend_request::MAX_SENT_MESSAGE_LEN;
use crate::wire::saved_friend::{SavedFriend, SavedFriendStatus};

/// What a client without an identity adds to its friend request.
pub const SESSION_MARK: &[u8] = b"tuntox-session";
/// Saved friends offline this many days are forgotten by default.
pub const DEFAULT_EXPIRY_DAYS: u64 = 30;
/// A session-only friend away this long is forgotten.
pub const SESSION_GRACE: Duration = Duration::from_secs(120);
/// C tuntox's message without a secret: the first 8 bytes of its greeting.
const NO_SECRET_MESSAGE: &[u8] = b"Hi, fell";

/// How long the server keeps a friend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// In `tox_save`, until it expires or is removed.
    Saved,
    /// In memory, while it comes and goes (a client without `-C`).
    Session,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Saved => "saved",
            Self::Session => "this session only",
        })
    }
}

/// The friend-request message of a client: the secret and a NUL, or C
/// tuntox's historical 8 bytes when there is no secret; `session_only` adds
/// [`SESSION_MARK`] and a NUL where it fits.
pub fn request_message(secret: Option<&Secret>, session_only: bool) -> Bytes {
    let mut message = match secret {
        Some(secret) => secret.request_message(),
        None => NO_SECRET_MESSAGE.to_vec(),
    };
    let nul = message.last() != Some(&0);
    // The NUL after the base (when it has none), the mark and its NUL.
    let marked_len = message.len() + usize::from(nul) + SESSION_MARK.len() + 1;
    if session_only && marked_len <= MAX_SENT_MESSAGE_LEN {
        if nul {
            message.push(0);
        }
        message.extend_from_slice(SESSION_MARK);
        message.push(0);
    }
    Bytes::from(message)
}

/// A request message without its session mark, and whether it had one.
pub fn split_request(message: &[u8]) -> (&[u8], bool) {
    let tail = SESSION_MARK.len() + 1;
    if message.len() > tail
        && message.ends_with(&[0])
        && &message[message.len() - tail..message.len() - 1] == SESSION_MARK
        && message[message.len() - tail - 1] == 0
    {
        let base = &message[..message.len() - tail];
        // Without a secret the base was `Hi, fell`, and the NUL before the
        // mark is ours.
        let base = if base.len() == NO_SECRET_MESSAGE.len() + 1 && base.starts_with(NO_SECRET_MESSAGE) {
            &base[..NO_SECRET_MESSAGE.len()]
        } else {
            base
        };
        return (base, true);
    }
    (message, false)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One friend of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Saved or for this session.
    pub kept: Kept,
    /// Last seen online (Unix seconds; now while online).
    pub last_seen: u64,
    /// Online now.
    pub online: bool,
    /// Since when it is offline (session friends' grace).
    offline_since: Option<Instant>,
}

/// The server's friends, shared with the status report.
#[derive(Debug, Default)]
pub struct Book {
    entries: BTreeMap<PublicKey, Entry>,
    /// Saved friends that are to leave `tox_save` at the next write.
    removed: HashSet<PublicKey>,
    /// Saved friends offline this long are forgotten (`None`: never).
    expiry: Option<Duration>,
}

impl Book {
    /// Reads the saved friends of `identity` (those on `allowed`, when it is
    /// not empty), forgetting those offline longer than `expiry`; returns the
    /// book and whether `tox_save` should be written (times started,
    /// friends forgotten).
    pub fn load(
        identity: &Identity,
        allowed: &[PublicKey],
        expiry: Option<Duration>,
        now_unix: u64,
    ) -> Result<(Book, bool), IdentityError> {
        let mut book = Book { expiry, ..Book::default() };
        let mut changed = false;
        for friend in identity.friends()? {
            if !matches!(friend.status, SavedFriendStatus::Confirmed) {
                continue;
            }
            let key = friend.public_key;
            if !allowed.is_empty() && !allowed.contains(&key) {
                tracing::warn!(friend = %key, "ignoring a saved friend: not on the -i allow-list");
                continue;
            }
            let mut last_seen = friend.last_seen();
            if last_seen == 0 {
                last_seen = now_unix;
                changed = true;
            }
            if book.expired(last_seen, now_unix) {
                tracing::info!(
                    friend = %key,
                    "forgetting a friend not seen for {} days (--friend-expiry)",
                    now_unix.saturating_sub(last_seen) / 86_400
                );
                book.removed.insert(key);
                changed = true;
                continue;
            }
            book.entries.insert(key, Entry { kept: Kept::Saved, last_seen, online: false, offline_since: None });
        }
        Ok((book, changed))
    }

    fn expired(&self, last_seen: u64, now_unix: u64) -> bool {
        self.expiry.is_some_and(|expiry| now_unix.saturating_sub(last_seen) > expiry.as_secs())
    }

    /// The friends, by key.
    pub fn entries(&self) -> &BTreeMap<PublicKey, Entry> {
        &self.entries
    }

    /// The saved friends' keys.
    pub fn saved(&self) -> Vec<PublicKey> {
        self.entries.iter().filter(|(_, e)| e.kept == Kept::Saved).map(|(k, _)| *k).collect()
    }

    /// A friend accepted now.
    pub fn accept(&mut self, key: PublicKey, kept: Kept, now_unix: u64) {
        self.removed.remove(&key);
        let entry =
            self.entries.entry(key).or_insert(Entry { kept, last_seen: now_unix, online: false, offline_since: None });
        // A client that keeps an identity after all is saved from now on.
        if kept == Kept::Saved {
            entry.kept = Kept::Saved;
        }
        entry.last_seen = now_unix;
    }

    /// A friend came online or went offline; `Some(kept)` when it is ours.
    pub fn seen(&mut self, key: &PublicKey, online: bool, now: Instant, now_unix: u64) -> Option<Kept> {
        let entry = self.entries.get_mut(key)?;
        entry.online = online;
        entry.last_seen = now_unix;
        entry.offline_since = (!online).then_some(now);
        Some(entry.kept)
    }

    /// Session friends away for [`SESSION_GRACE`], removed from the book.
    pub fn take_gone_sessions(&mut self, now: Instant) -> Vec<PublicKey> {
        let gone: Vec<PublicKey> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.kept == Kept::Session
                    && e.offline_since.is_some_and(|t| now.saturating_duration_since(t) >= SESSION_GRACE)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in &gone {
            self.entries.remove(key);
        }
        gone
    }

    /// Saved friends offline past the expiry, removed from the book (and
    /// from `tox_save` at the next [`store`](Self::store)).
    pub fn take_expired(&mut self, now_unix: u64) -> Vec<PublicKey> {
        let expired: Vec<PublicKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.kept == Kept::Saved && !e.online && self.expired(e.last_seen, now_unix))
            .map(|(k, _)| *k)
            .collect();
        for key in &expired {
            self.entries.remove(key);
            self.removed.insert(*key);
        }
        expired
    }

    /// Removes a friend; its kind, if it was one.
    pub fn remove(&mut self, key: &PublicKey) -> Option<Kept> {
        let entry = self.entries.remove(key)?;
        if entry.kept == Kept::Saved {
            self.removed.insert(*key);
        }
        Some(entry.kept)
    }

    /// Writes the saved friends to `identity`'s file: their last-seen times,
    /// the new ones, without the removed ones. Records the file holds that
    /// we do not use (pending requests, friends off the allow-list) stay.
    pub fn store(&mut self, identity: &mut Identity) -> Result<(), IdentityError> {
        let mut friends = identity.friends()?;
        friends.retain(|f| !(matches!(f.status, SavedFriendStatus::Confirmed) && self.removed.contains(&f.public_key)));
        for friend in &mut friends {
            if let (SavedFriendStatus::Confirmed, Some(entry)) = (&friend.status, self.entries.get(&friend.public_key))
                && entry.kept == Kept::Saved
            {
                friend.set_last_seen(entry.last_seen);
            }
        }
        for (key, entry) in self.entries.iter().filter(|(_, e)| e.kept == Kept::Saved) {
            if !friends.iter().any(|f| f.public_key == *key) {
                let mut friend = SavedFriend::confirmed(*key);
                friend.set_last_seen(entry.last_seen);
                friends.push(friend);
            }
        }
        identity.set_friends(&friends);
        identity.store()?;
        self.removed.clear();
        Ok(())
    }
}

/// What a status client may ask the server to do with its friends.
#[derive(Debug)]
pub enum FriendCommand {
    /// Forget a friend: out of the node, the book and `tox_save`.
    Remove {
        /// Which.
        key: PublicKey,
        /// What happened, in words, or why not.
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
}

/// One friend as `tuntox friends list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Its public key.
    pub public_key: String,
    /// Online now (known from a running server only).
    pub online: Option<bool>,
    /// How long it is kept (unknown from a tuntox that is not a server).
    pub kept: Option<Kept>,
    /// Last seen online, Unix seconds (unknown: never noted).
    pub last_seen: Option<u64>,
}

impl Listed {
    /// One line of text.
    pub fn render(&self, now_unix: u64) -> String {
        let online = match self.online {
            Some(true) => "online",
            Some(false) => "offline",
            None => "-",
        };
        let kept = self.kept.map_or_else(|| "-".to_owned(), |k| k.to_string());
        let seen = match (self.online, self.last_seen) {
            (Some(true), _) => "last seen now".to_owned(),
            (_, Some(t)) => format!("last seen {} ({} ago)", format_time(t), ago(t, now_unix)),
            (_, None) => "never seen".to_owned(),
        };
        format!("{}  {online:<7}  {kept:<17}  {seen}", self.public_key)
    }
}

/// Where `tuntox friends` finds the friend list.
#[derive(Debug)]
pub enum FriendsAt {
    /// A config directory no process uses; held while we work on it.
    Dir(DirLock),
    /// A running tuntox, through its status socket.
    Running(PathBuf),
}

impl FriendsAt {
    /// The running server at `socket`, or the one holding `dir`, or `dir`
    /// itself when none does.
    pub fn find(dir: &Path, socket: Option<&Path>) -> anyhow::Result<FriendsAt> {
        if let Some(socket) = socket {
            return Ok(FriendsAt::Running(socket.to_owned()));
        }
        if !dir.join(SAVE_FILE_NAME).exists() {
            bail!("no {SAVE_FILE_NAME} in {}: not the config directory of a tuntox server (-C DIR)", dir.display());
        }
        match DirLock::acquire(dir) {
            Ok(lock) => Ok(FriendsAt::Dir(lock)),
            Err(IdentityError::Locked { pid: Some(pid), .. }) => {
                let socket = status::default_dir().join(status::socket_name(pid));
                if socket.exists() {
                    Ok(FriendsAt::Running(socket))
                } else {
                    bail!(
                        "{} is in use by tuntox process {pid}, whose status socket is not {}: pass --socket PATH \
                         (its --status-socket)",
                        dir.display(),
                        socket.display()
                    )
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The friends.
    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        match self {
            FriendsAt::Dir(lock) => {
                let identity = Identity::load(lock.dir())?
                    .ok_or_else(|| anyhow::anyhow!("no {SAVE_FILE_NAME} in {}", lock.dir().display()))?;
                Ok(identity
                    .friends()?
                    .iter()
                    .filter(|f| matches!(f.status, SavedFriendStatus::Confirmed))
                    .map(|f| Listed {
                        public_key: f.public_key.to_string(),
                        online: None,
                        kept: Some(Kept::Saved),
                        last_seen: (f.last_seen() != 0).then_some(f.last_seen()),
                    })
                    .collect())
            }
            FriendsAt::Running(socket) => {
                let report = status::query(socket, QUERY_TIMEOUT)?;
                Ok(report
                    .friends
                    .into_iter()
                    .map(|f| Listed {
                        public_key: f.public_key,
                        online: Some(f.online),
                        kept: f.kept,
                        last_seen: f.last_seen,
                    })
                    .collect())
            }
        }
    }

    /// Removes a friend; what was done, in words.
    pub fn remove(&self, key: &PublicKey) -> anyhow::Result<String> {
        match self {
            FriendsAt::Dir(lock) => {
                let mut identity = Identity::load(lock.dir())?
                    .ok_or_else(|| anyhow::anyhow!("no {SAVE_FILE_NAME} in {}", lock.dir().display()))?;
                let mut friends = identity.friends()?;
                let before = friends.len();
                friends.retain(|f| f.public_key != *key);
                if friends.len() == before {
                    bail!("{key} is not a friend in {}", identity.path().display());
                }
                identity.set_friends(&friends);
                identity.store()?;
                Ok(format!("removed {key} from {}", identity.path().display()))
            }
            FriendsAt::Running(socket) => {
                let answer = status::request(
                    socket,
                    &status::Request::RemoveFriend { public_key: key.to_string() },
                    QUERY_TIMEOUT,
                )?;
                if answer.ok { Ok(answer.message) } else { bail!("{}", answer.message) }
            }
        }
    }
}

/// How long `tuntox friends` waits for a running server.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Unix seconds as `2026-12-07 16:13:11 UTC`.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

/// How long ago `unix` was, briefly: `5s`, `3m`, `2h`, `4d`.
pub fn ago(unix: u64, now_unix: u64) -> String {
    let secs = now_unix.saturating_sub(unix);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_marks_survive_c_tuntox_s_check_and_come_off() {
        let secret = Secret::new("pw").unwrap();
        let plain = request_message(Some(&secret), false);
        let marked = request_message(Some(&secret), true);
        assert_eq!(&plain[..], b"pw\0");
        assert_eq!(&marked[..], b"pw\0tuntox-session\0");
        // C tuntox: the last byte is a NUL and the text up to the first NUL
        // is the secret.
        assert_eq!(marked.last(), Some(&0));
        assert!(marked.starts_with(b"pw\0"));
        assert_eq!(split_request(&marked), (&b"pw\0"[..], true));
        assert_eq!(split_request(&plain), (&b"pw\0"[..], false));
        let none = request_message(None, true);
        assert_eq!(&none[..], b"Hi, fell\0tuntox-session\0");
        assert_eq!(split_request(&none), (&b"Hi, fell"[..], true));
        assert_eq!(split_request(b"Hi, fell"), (&b"Hi, fell"[..], false));
        // A secret too long for the mark goes without it.
        let long = Secret::new("x".repeat(910)).unwrap();
        assert_eq!(request_message(Some(&long), true).len(), 911);
        // Look-alikes are not marks.
        assert!(!split_request(b"tuntox-session\0").1);
        assert!(!split_request(b"pwtuntox-session\0").1);
    }

    #[test]
    fn the_book_keeps_saves_times_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let (mut identity, _) = Identity::load_or_create(dir.path()).unwrap();
        let (a, b, c) =
            (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]), PublicKey::from_bytes([3; 32]));
        let day = 86_400;
        let now = 100 * day;
        let t = crate::proto::test_epoch();
        let (mut book, changed) = Book::load(&identity, &[], Some(Duration::from_secs(30 * day)), now).unwrap();
        assert!(!changed && book.entries().is_empty());
        book.accept(a, Kept::Saved, now - 40 * day);
        book.accept(b, Kept::Saved, now);
        book.accept(c, Kept::Session, now);
        book.store(&mut identity).unwrap();
        let saved: Vec<PublicKey> = identity.friends().unwrap().iter().map(|f| f.public_key).collect();
        assert_eq!(saved, [a, b], "the session friend is not saved");

        // Loading again: a is 40 days old and goes.
        let (mut book, changed) = Book::load(&identity, &[], Some(Duration::from_secs(30 * day)), now).unwrap();
        assert!(changed);
        assert_eq!(book.saved(), [b]);
        book.store(&mut identity).unwrap();
        let friends = identity.friends().unwrap();
        assert_eq!(friends.len(), 1);
        assert_eq!((friends[0].public_key, friends[0].last_seen()), (b, now));

        // Session friends go after their grace; saved ones after the expiry.
        book.accept(c, Kept::Session, now);
        assert_eq!(book.seen(&c, true, t, now), Some(Kept::Session));
        assert_eq!(book.seen(&c, false, t, now), Some(Kept::Session));
        assert!(book.take_gone_sessions(t + SESSION_GRACE / 2).is_empty());
        assert_eq!(book.take_gone_sessions(t + SESSION_GRACE), [c]);
        assert!(book.take_expired(now + 29 * day).is_empty());
        assert_eq!(book.take_expired(now + 31 * day), [b]);
        book.store(&mut identity).unwrap();
        assert!(identity.friends().unwrap().is_empty());
    }

    #[test]
    fn times_read_as_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(1_796_659_991), "2026-12-07 16:13:11 UTC");
        assert_eq!(ago(100, 160), "1m");
        assert_eq!(ago(0, 3 * 86_400), "3d");
    }
}
