//! Dropping privileges (`-U USER`): a process started as root becomes
//! USER with USER's primary group and supplementary groups
//! (initgroups, setgid, setuid, in that order), and checks that it cannot
//! become root again.
//!
//! This happens before the Tox identity in `-C` is read or created and
//! before any socket is bound, so the identity file belongs to USER and no
//! packet is handled with root's rights. The cost: ports below 1024 (`-u`)
//! are out of reach, since setuid drops root's capabilities.
//!
//! Without root, only "becoming" ourselves is possible, and it is a no-op.

use std::ffi::CString;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User, getegid, geteuid, getgroups, getuid, initgroups, setgid, setuid};

/// The account `-U` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User ID.
    pub uid: Uid,
    /// Primary group ID.
    pub gid: Gid,
}

/// Finds USER in the password database, by name first, then as a number.
pub fn lookup(user: &str) -> anyhow::Result<Account> {
    let found = User::from_name(user).with_context(|| format!("-U {user}: cannot read the user database"))?;
    let found = match found {
        Some(found) => Some(found),
        None => match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid))
                .with_context(|| format!("-U {user}: cannot read the user database"))?,
            Err(_) => None,
        },
    };
    let Some(found) = found else {
        bail!("-U {user}: no such user in the user database");
    };
    Ok(Account { name: found.name, uid: found.uid, gid: found.gid })
}

/// What switching to an account takes, given who we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// We already are that user.
    Nothing,
    /// Root switches.
    Switch,
}

/// Decides, for our real and effective user IDs, whether we can become
/// `account`.
pub fn plan(account: &Account, uid: Uid, euid: Uid) -> anyhow::Result<Plan> {
    if euid.is_root() {
        return Ok(Plan::Switch);
    }
    if uid == account.uid && euid == account.uid {
        return Ok(Plan::Nothing);
    }
    bail!(
        "-U {}: only root can switch to another user (running as uid {euid}); start as root or leave -U out",
        account.name
    )
}

/// Becomes `account` for good.
pub fn switch_to(account: &Account) -> anyhow::Result<()> {
    match plan(account, getuid(), geteuid())? {
        Plan::Nothing => {
            tracing::debug!(user = %account.name, "-U names the user we run as; nothing to drop");
            return Ok(());
        }
        Plan::Switch => {}
    }
    let name = &account.name;
    let c_name = CString::new(name.as_bytes()).with_context(|| format!("-U {name}: the name holds a NUL byte"))?;
    initgroups(&c_name, account.gid).with_context(|| format!("-U {name}: cannot set the supplementary groups"))?;
    setgid(account.gid).with_context(|| format!("-U {name}: cannot switch to group {}", account.gid))?;
    setuid(account.uid).with_context(|| format!("-U {name}: cannot switch to uid {}", account.uid))?;
    if !account.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        bail!("-U {name}: could become root again after dropping privileges; refusing to run");
    }
    let groups = getgroups().map(|g| g.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    tracing::info!(
        user = %name,
        uid = %geteuid(),
        gid = %getegid(),
        groups = %groups.unwrap_or_default(),
        "dropped privileges"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: u32) -> Account {
        Account { name: "someone".into(), uid: Uid::from_raw(uid), gid: Gid::from_raw(uid) }
    }

    #[test]
    fn only_root_switches_and_ourselves_is_a_no_op() {
        let (root, me, other) = (Uid::from_raw(0), Uid::from_raw(1000), Uid::from_raw(1001));
        assert_eq!(plan(&account(1001), root, root).unwrap(), Plan::Switch);
        assert_eq!(plan(&account(0), root, root).unwrap(), Plan::Switch);
        assert_eq!(plan(&account(1000), me, me).unwrap(), Plan::Nothing);
        let err = plan(&account(1001), me, me).unwrap_err().to_string();
        assert!(err.contains("only root can switch to another user (running as uid 1000)"), "{err}");
        assert!(plan(&account(1000), other, me).is_err());
    }

    #[test]
    fn users_are_found_by_name_or_number() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (Uid::from_raw(0), Gid::from_raw(0)));
        assert_eq!(lookup("0").unwrap().name, "root");
        let err = lookup("no-such-user-tuntox").unwrap_err().to_string();
        assert!(err.contains("no such user"), "{err}");
        assert!(lookup("4000000000").is_err());
    }
}
