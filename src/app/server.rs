//! The tuntox server: the remote side that clients reach.
//!
//! It keeps a fixed Tox identity in the config directory, accepts friend
//! requests as C tuntox does (with a shared secret the request message must
//! be the secret followed by a NUL byte, compared in constant time; with an
//! allow-list only listed keys are accepted), remembers accepted friends in
//! `tox_save` so they reconnect after a restart without a new request, and
//! opens the tunnels its friends ask for through the tunnel engine's exit
//! side.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tunnel::{Engine, ExitConfig, Rules};

use super::Started;
use super::bridge::Bridge;
use super::identity::{Identity, IdentityError};
use super::secret::Secret;
use crate::crypto::PublicKey;
use crate::driver::tox::{Tox, ToxConfig, ToxEvent};
use crate::wire::saved_friend::{SavedFriend, SavedFriendStatus};

/// How the server runs.
#[derive(Debug)]
pub struct ServerConfig {
    /// Where the identity lives.
    pub config_dir: PathBuf,
    /// The shared secret friend requests must carry.
    pub secret: Option<Secret>,
    /// Keys allowed to befriend us; empty means anyone.
    pub allowed: Vec<PublicKey>,
    /// Write our Tox ID here.
    pub id_file: Option<PathBuf>,
    /// The destination rules file (`-f`).
    pub rules: Option<PathBuf>,
    /// How the Tox instance starts (keys and friends are filled in here).
    pub tox: ToxConfig,
    /// Told once the identity is loaded and the Tox socket bound.
    pub started: Started,
}

/// Why a friend request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message is not the secret.
    WrongSecret,
    /// The key is not on the allow-list.
    NotAllowed,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Self::WrongSecret => "wrong shared secret",
            Self::NotAllowed => "not on the -i allow-list",
        }
    }
}

/// Decides a friend request as C tuntox does.
pub fn check_request(
    secret: Option<&Secret>,
    allowed: &[PublicKey],
    key: &PublicKey,
    message: &[u8],
) -> Result<(), Refusal> {
    if !allowed.is_empty() && !allowed.contains(key) {
        return Err(Refusal::NotAllowed);
    }
    match secret {
        Some(secret) if !secret.matches_request(message) => Err(Refusal::WrongSecret),
        _ => Ok(()),
    }
}

/// Runs the server until `cancel` fires.
pub async fn run(mut config: ServerConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let (mut identity, created) = Identity::load_or_create(&config.config_dir)?;
    if created {
        tracing::info!(path = %identity.path().display(), "created a new identity");
    }
    let id = identity.tox_id();
    tracing::info!("Using Tox ID: {id}");
    if let Some(path) = &config.id_file {
        std::fs::write(path, id.to_string())
            .with_context(|| format!("cannot write the Tox ID to {}", path.display()))?;
    }
    let rules = match &config.rules {
        Some(path) => Some(Rules::load(path)?),
        None => {
            tracing::warn!("no rules file (-f): clients may reach any host and port this machine can reach");
            None
        }
    };
    if config.secret.is_none() && config.allowed.is_empty() {
        tracing::warn!("no shared secret (-s) and no allow-list (-i): anyone with the Tox ID can connect");
    }
    config.tox.keys = identity.keys().clone();
    config.tox.nospam = identity.nospam();
    let mut friends = saved_friends(&identity)?;
    if !config.allowed.is_empty() {
        friends.retain(|key| {
            let allowed = config.allowed.contains(key);
            if !allowed {
                tracing::warn!(friend = %key, "ignoring a saved friend: not on the -i allow-list");
            }
            allowed
        });
    }
    config.tox.friends = friends;
    let friends = config.tox.friends.len();
    let mut tox = Tox::start(config.tox, cancel.clone()).await.context("cannot start Tox")?;
    tracing::info!(addr = %tox.local_addr(), friends, "listening");
    config.started.signal();

    let engine = Engine::new(tunnel::Config::exit(ExitConfig { rules, ..ExitConfig::default() }), cancel.child_token());
    let mut bridge = Bridge::new(engine, tox.sender());
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            event = tox.next_event() => match event {
                Some(event) => event,
                None => break,
            },
        };
        match event {
            ToxEvent::FriendRequest { public_key, message } => {
                match check_request(config.secret.as_ref(), &config.allowed, &public_key, &message) {
                    Ok(()) => {
                        tracing::info!(friend = %public_key, "accepted a friend request");
                        tox.add_friend(public_key).await?;
                        if let Err(e) = save_friend(&mut identity, public_key) {
                            tracing::error!("cannot save the new friend: {e}");
                        }
                    }
                    Err(refusal) => {
                        tracing::warn!(from = %public_key, reason = refusal.reason(), "refused a friend request");
                    }
                }
            }
            ToxEvent::FriendConnected { public_key, path } => {
                tracing::info!(friend = %public_key, ?path, "friend online");
                bridge.connected(public_key);
            }
            ToxEvent::FriendLost { public_key } => {
                tracing::info!(friend = %public_key, "friend offline");
                bridge.lost(&public_key);
            }
            ToxEvent::Lossless { public_key, data } => bridge.incoming(&public_key, data).await,
            ToxEvent::Lossy { .. } => {}
            ToxEvent::Online(online) => tracing::info!(online, "announced on the Tox network"),
        }
    }
    bridge.shutdown().await;
    tox.shutdown().await;
    Ok(())
}

/// The friends kept in the identity file. A save c-toxcore wrote may hold
/// pending requests too; a server only uses the friends it accepted.
fn saved_friends(identity: &Identity) -> anyhow::Result<Vec<PublicKey>> {
    let friends = identity.friends()?;
    Ok(friends.iter().filter(|f| matches!(f.status, SavedFriendStatus::Confirmed)).map(|f| f.public_key).collect())
}

/// Adds a friend to the identity file (once).
fn save_friend(identity: &mut Identity, key: PublicKey) -> Result<(), IdentityError> {
    let mut friends = identity.friends()?;
    if friends.iter().any(|f| f.public_key == key && matches!(f.status, SavedFriendStatus::Confirmed)) {
        return Ok(());
    }
    friends.retain(|f| f.public_key != key);
    friends.push(SavedFriend::confirmed(key));
    identity.set_friends(&friends);
    identity.store()
}

/// The friend-request message of a client: the secret and a NUL, or C
/// tuntox's historical 8 bytes when there is no secret.
pub fn request_message(secret: Option<&Secret>) -> Bytes {
    match secret {
        Some(secret) => Bytes::from(secret.request_message()),
        None => Bytes::from_static(b"Hi, fell"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_like_c_tuntox() {
        let key = PublicKey::from_bytes([1; 32]);
        let other = PublicKey::from_bytes([2; 32]);
        let secret = Secret::new("pw").unwrap();
        assert_eq!(check_request(None, &[], &key, b"anything"), Ok(()));
        assert_eq!(check_request(Some(&secret), &[], &key, b"pw\0"), Ok(()));
        assert_eq!(check_request(Some(&secret), &[], &key, b"pw"), Err(Refusal::WrongSecret));
        assert_eq!(check_request(Some(&secret), &[key], &other, b"pw\0"), Err(Refusal::NotAllowed));
        assert_eq!(check_request(None, &[key], &key, b""), Ok(()));
        assert_eq!(&request_message(Some(&secret))[..], b"pw\0");
        assert_eq!(&request_message(None)[..], b"Hi, fell");
    }
}
