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
//!
//! The VPN (`--vpn`, `vpn up`) opens `/dev/net/tun` and creates its TUN
//! device *before* the switch, with root's file rights: that node is often
//! root's alone (mode 0600), and no capability kept below would open it.
//! The descriptor stays open across the switch (and the `-z` fork); closing
//! it at exit deletes the device. What the VPN does afterwards needs two of
//! root's capabilities for its whole run: CAP_NET_ADMIN (the device's MTU,
//! addresses, routes and deletion, the firewall rules, the forwarding
//! sysctls) and CAP_NET_RAW (iptables). For it [`switch_keeping`] keeps
//! those two across the switch (`PR_SET_KEEPCAPS`, then `capset` with only
//! them permitted, effective and inheritable) and raises them as *ambient*
//! capabilities, so the iptables commands it runs, at start and at exit,
//! get them too. Every other capability is gone, and the process cannot
//! become root again. The nf_tables iptables (Debian's default) needs
//! nothing more; the legacy one also opens the lock file
//! `/run/xtables.lock`, which only root may, so `--vpn-route` with `-U`
//! fails there with the lock file's error.

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

/// A capability kept by [`switch_keeping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// CAP_NET_ADMIN (12).
    NetAdmin = 12,
    /// CAP_NET_RAW (13).
    NetRaw = 13,
}

/// What the VPN keeps.
pub const VPN_CAPABILITIES: &[Capability] = &[Capability::NetAdmin, Capability::NetRaw];

/// Becomes `account` for good.
pub fn switch_to(account: &Account) -> anyhow::Result<()> {
    switch_keeping(account, &[])
}

/// Becomes `account` for good, keeping `keep` (see the module's
/// documentation).
pub fn switch_keeping(account: &Account, keep: &[Capability]) -> anyhow::Result<()> {
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
    if !keep.is_empty() {
        set_keepcaps(true).with_context(|| format!("-U {name}: cannot keep capabilities across the switch"))?;
    }
    setuid(account.uid).with_context(|| format!("-U {name}: cannot switch to uid {}", account.uid))?;
    if !keep.is_empty() {
        set_keepcaps(false).with_context(|| format!("-U {name}: cannot reset PR_SET_KEEPCAPS"))?;
        let mask = keep.iter().fold(0u32, |m, c| m | 1 << (*c as u32));
        set_capabilities(mask).with_context(|| format!("-U {name}: cannot keep CAP_NET_ADMIN and CAP_NET_RAW"))?;
        for cap in keep {
            raise_ambient(*cap).with_context(|| format!("-U {name}: cannot pass {cap:?} on to child processes"))?;
        }
    }
    if !account.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        bail!("-U {name}: could become root again after dropping privileges; refusing to run");
    }
    let groups = getgroups().map(|g| g.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    tracing::info!(
        user = %name,
        uid = %geteuid(),
        gid = %getegid(),
        groups = %groups.unwrap_or_default(),
        kept = ?keep,
        "dropped privileges"
    );
    Ok(())
}

fn check(rc: libc::c_long) -> std::io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn set_keepcaps(on: bool) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_KEEPCAPS) takes an integer flag and touches no
    // memory of ours.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) }.into())
}

/// The kernel's capability ABI, version 3 (`linux/capability.h`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Makes `mask` (capabilities 0-31) our permitted, effective and
/// inheritable sets, and nothing else.
fn set_capabilities(mask: u32) -> std::io::Result<()> {
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: mask, permitted: mask, inheritable: mask }, CapData::default()];
    // SAFETY: capset reads one header and two data structs (version 3), both
    // laid out as the kernel defines them and alive for the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
}

fn raise_ambient(cap: Capability) -> std::io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap) takes integers
    // and touches no memory of ours.
    let rc = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0, 0)
    };
    check(rc.into())
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
