//! The identity store: our long-term Tox key pair and nospam, kept in
//! `<config dir>/tox_save` in c-toxcore's save format.
//!
//! A `tox_save` written by C tuntox or any c-toxcore program keeps its Tox ID
//! here, and ours loads in c-toxcore. Sections we do not interpret are kept
//! when we rewrite the file. The file is created with mode 0600 and every
//! write is atomic (a temporary file in the same directory, fsync, rename),
//! so a crash never leaves a half-written identity. Unlike C tuntox, a
//! client given `-C` keeps its identity too.
//!
//! The same file keeps the friend list (c-toxcore's FRIENDS section): read it
//! with [`Identity::friends`], change it with [`Identity::set_friends`] and
//! write it with [`Identity::store`]. Loading does not read the friends, so a
//! damaged friend list never costs the identity.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::{KeyPair, SodiumRng};
use crate::wire::saved_friend::SavedFriend;
use crate::wire::savedata::{SaveData, SaveDataError};
use crate::wire::tox_id::{NoSpam, ToxId};

/// The file name inside the config directory, as C tuntox names it.
pub const SAVE_FILE_NAME: &str = "tox_save";

/// Why the identity could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file-system operation failed.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// What we tried to do.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error (part of the message, so not a separate source).
        cause: io::Error,
    },
    /// The file is not a valid save.
    #[error("{}: {cause}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (part of the message, so not a separate
        /// source).
        cause: SaveDataError,
    },
    /// The save holds no key pair (no NOSPAMKEYS section).
    #[error("{}: the save holds no identity (no NOSPAMKEYS section)", path.display())]
    NoIdentity {
        /// The file.
        path: PathBuf,
    },
    /// Another process holds the directory's lock.
    #[error(
        "{} is in use by another tuntox{}: one process per config directory (-C), or their friend lists would \
         overwrite each other",
        dir.display(),
        pid.map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    Locked {
        /// The config directory.
        dir: PathBuf,
        /// The process holding it, when it wrote its ID.
        pid: Option<u32>,
    },
}

fn io_error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> IdentityError + 'p {
    move |cause| IdentityError::Io { action, path: path.to_owned(), cause }
}

/// Our identity and the save it lives in.
#[derive(Debug)]
pub struct Identity {
    path: PathBuf,
    nospam: NoSpam,
    keys: KeyPair,
    save: SaveData,
}

impl Identity {
    /// Loads `<dir>/tox_save`, or creates a fresh identity there (and the
    /// directory, mode 0700) when the file does not exist. Returns whether
    /// it was created.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), IdentityError> {
        if let Some(identity) = Self::load(dir)? {
            return Ok((identity, false));
        }
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error("create directory", dir))?;
        let mut rng = SodiumRng;
        let nospam = NoSpam::random(&mut rng);
        let keys = KeyPair::generate(&mut rng);
        let identity =
            Self { path: dir.join(SAVE_FILE_NAME), save: SaveData::with_identity(nospam, &keys), nospam, keys };
        identity.store()?;
        tracing::info!(
            target: NOTICE,
            "created a new Tox identity in {} (Tox ID {}): there was none in {}",
            identity.path.display(),
            identity.tox_id(),
            dir.display()
        );
        Ok((identity, true))
    }

    /// Loads `<dir>/tox_save`; `Ok(None)` when it does not exist.
    pub fn load(dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = dir.join(SAVE_FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let save = SaveData::decode(bytes).map_err(|cause| IdentityError::Format { path: path.clone(), cause })?;
        let (nospam, keys) = match save.identity() {
            Some(Ok(identity)) => identity,
            Some(Err(cause)) => return Err(IdentityError::Format { path, cause }),
            None => return Err(IdentityError::NoIdentity { path }),
        };
        if let Ok(meta) = fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the identity file is readable by other users; it holds a secret key (chmod 600 it)"
            );
        }
        Ok(Some(Self { path, nospam, keys, save }))
    }

    /// Our Tox ID.
    pub fn tox_id(&self) -> ToxId {
        ToxId::new(*self.keys.public(), self.nospam)
    }

    /// Our long-term key pair.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// Our nospam.
    pub fn nospam(&self) -> NoSpam {
        self.nospam
    }

    /// The file this identity lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The friends kept in the save (none in a fresh one).
    pub fn friends(&self) -> Result<Vec<SavedFriend>, IdentityError> {
        self.save.friends().map_err(|cause| IdentityError::Format { path: self.path.clone(), cause })
    }

    /// Replaces the friend list in memory; [`store`](Self::store) writes it.
    /// Every other section of the save is kept.
    pub fn set_friends(&mut self, friends: &[SavedFriend]) {
        self.save.set_friends(friends);
    }

    /// Writes the save atomically, mode 0600.
    pub fn store(&self) -> Result<(), IdentityError> {
        write_atomic(&self.path, &self.save.encode())
    }
}

/// The lock file in a config directory: held (flock) by the process that
/// uses the identity, so that two processes never share one.
pub const LOCK_FILE_NAME: &str = "tox_save.lock";

/// The log target of messages a user must see whatever the log level
/// (unless `-q`): the command line always lets it through at info.
pub const NOTICE: &str = "tuntox::notice";

/// A config directory held by this process: the identity and friend list
/// in it are ours until dropped (or the process ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    _lock: nix::fcntl::Flock<File>,
    dir: PathBuf,
}

impl DirLock {
    /// Takes `<dir>/tox_save.lock` (making the directory, mode 0700, when
    /// missing), or fails with [`IdentityError::Locked`] naming the process
    /// that holds it. Our process ID goes into the file.
    pub fn acquire(dir: &Path) -> Result<Self, IdentityError> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error("create directory", dir))?;
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            // A lock file another user made (before -U, say): locking needs
            // no write access.
            .or_else(|e| if e.kind() == io::ErrorKind::PermissionDenied { File::open(&path) } else { Err(e) })
            .map_err(io_error("open", &path))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0).and_then(|()| writeln!(&mut *lock, "{}", std::process::id()));
                Ok(Self { _lock: lock, dir: dir.to_owned() })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                Err(IdentityError::Locked { dir: dir.to_owned(), pid: Self::holder(dir) })
            }
            Err((_, errno)) => Err(IdentityError::Io { action: "lock", path, cause: io::Error::from(errno) }),
        }
    }

    /// The process ID written in `dir`'s lock file, if any.
    pub fn holder(dir: &Path) -> Option<u32> {
        fs::read_to_string(dir.join(LOCK_FILE_NAME)).ok()?.trim().parse().ok()
    }

    /// The directory held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// created anew (`O_EXCL | O_NOFOLLOW`: a file or link someone left at its
/// name is removed first, never written through) with mode 0600, synced,
/// then renamed over `path`; the directory is synced so the rename survives
/// a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error("remove", &tmp)(e)),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_error("create", &tmp))?;
        file.write_all(bytes).map_err(io_error("write", &tmp))?;
        file.sync_all().map_err(io_error("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_error("replace", path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("sync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a public file (`-I`'s Tox ID): a regular file of ours gets mode
/// 0644 whatever the umask (others, such as `/dev/null`, keep theirs);
/// never through a symbolic link at `path` (`O_NOFOLLOW`).
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o777 != 0o644 {
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // A link where the temporary file of an atomic write goes.
        let target = dir.path().join("tox_save");
        let tmp = dir.path().join(format!(".tox_save.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&target, b"new contents").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&target).unwrap(), b"new contents");
        assert!(!fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        // The ID file: a link at its name is refused.
        let id = dir.path().join("id");
        std::os::unix::fs::symlink(&victim, &id).unwrap();
        assert!(write_public(&id, b"ID").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let plain = dir.path().join("id2");
        write_public(&plain, b"ID").unwrap();
        assert_eq!(fs::metadata(&plain).unwrap().permissions().mode() & 0o777, 0o644);
        // A device stays as it is.
        write_public(Path::new("/dev/null"), b"ID").unwrap();
    }

    #[test]
    fn creates_once_then_loads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        let (first, created) = Identity::load_or_create(&conf).unwrap();
        assert!(created);
        let (second, created) = Identity::load_or_create(&conf).unwrap();
        assert!(!created);
        assert_eq!(first.tox_id(), second.tox_id());
        assert_eq!(first.keys(), second.keys());

        let mode = fs::metadata(conf.join(SAVE_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&conf).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&conf).unwrap().count(), 1);
    }

    #[test]
    fn a_c_toxcore_save_keeps_its_id_and_sections() {
        let dir = tempfile::tempdir().unwrap();
        let c_save = include_bytes!("../../tests/data/c-toxcore-0.2.18.tox_save");
        fs::write(dir.path().join(SAVE_FILE_NAME), c_save).unwrap();
        let identity = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!(
            identity.tox_id().to_string(),
            "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2"
        );
        identity.store().unwrap();
        let rewritten = fs::read(dir.path().join(SAVE_FILE_NAME)).unwrap();
        assert_eq!(rewritten[..], c_save[..rewritten.len()]);
    }

    #[test]
    fn friends_are_stored_and_loaded_with_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (mut identity, _) = Identity::load_or_create(dir.path()).unwrap();
        assert!(identity.friends().unwrap().is_empty());
        let (other, _) = Identity::load_or_create(&dir.path().join("other")).unwrap();
        let friends = [
            SavedFriend::confirmed(*other.keys().public()),
            SavedFriend::requesting(&other.tox_id(), &b"tuntox"[..]).unwrap(),
        ];
        identity.set_friends(&friends);
        identity.store().unwrap();

        let (reloaded, created) = Identity::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(reloaded.tox_id(), identity.tox_id());
        assert_eq!(reloaded.friends().unwrap(), friends);
        assert_eq!(fs::metadata(reloaded.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_c_toxcore_save_keeps_its_friends() {
        let dir = tempfile::tempdir().unwrap();
        let c_save = include_bytes!("../../tests/data/c-toxcore-0.2.18-friends.tox_save");
        fs::write(dir.path().join(SAVE_FILE_NAME), c_save).unwrap();
        let mut identity = Identity::load(dir.path()).unwrap().unwrap();
        let friends = identity.friends().unwrap();
        assert_eq!(friends.len(), 3);
        identity.set_friends(&friends);
        identity.store().unwrap();
        let rewritten = fs::read(dir.path().join(SAVE_FILE_NAME)).unwrap();
        assert_eq!(rewritten[..], c_save[..rewritten.len()]);
    }

    #[test]
    fn a_bad_friend_list_is_an_error_naming_the_file_but_keeps_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let mut save = SaveData::decode(&include_bytes!("../../tests/data/c-toxcore-0.2.18.tox_save")[..]).unwrap();
        save.set_friends(&[SavedFriend::confirmed(crate::crypto::PublicKey::from_bytes([1; 32]))]);
        let mut bytes = save.encode().to_vec();
        // Cut the last byte of the friend record: the FRIENDS section follows
        // NOSPAMKEYS and DHT, so its length field is at a known place.
        let dht_len = u32::from_le_bytes(bytes[84..88].try_into().unwrap()) as usize;
        let friends_header = 84 + 8 + dht_len;
        assert_eq!(bytes[friends_header + 4..friends_header + 8], [3, 0, 0xce, 0x01]);
        bytes[friends_header..friends_header + 4].copy_from_slice(&2215u32.to_le_bytes());
        bytes.remove(friends_header + 8);
        fs::write(dir.path().join(SAVE_FILE_NAME), &bytes).unwrap();

        let (identity, created) = Identity::load_or_create(dir.path()).unwrap();
        assert!(!created);
        let err = identity.friends().unwrap_err().to_string();
        assert!(err.contains("tox_save") && err.contains("FRIENDS section is 2215 bytes"), "{err}");
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SAVE_FILE_NAME);
        fs::write(&path, b"not a save").unwrap();
        let err = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tox_save") && err.contains("bad header"), "{err}");

        fs::write(&path, SaveData::default().encode()).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no identity"), "{err}");

        assert!(Identity::load(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn atomic_write_replaces_and_tightens_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_atomic(&dir.path().join("no/such/dir/f"), b"x").unwrap_err().to_string();
        assert!(err.starts_with("cannot create"), "{err}");
    }
}
