//! Server side: the firewall that keeps VPN clients to what they were
//! offered, forwarding toward the offered routes, and optional
//! masquerading (`--vpn-nat`), set up with iptables/ip6tables and removed
//! exactly on [`Forwarding::teardown`].
//!
//! What is added, per address family that has a pool (`DEV` is the VPN
//! device):
//!
//! - filter table: a chain `TUNTOX-FWD-DEV` with, per route, `-i DEV -s
//!   POOL -d ROUTE -j ACCEPT` and `-o DEV -s ROUTE -d POOL -m conntrack
//!   --ctstate RELATED,ESTABLISHED -j ACCEPT`; with client-to-client
//!   traffic allowed, `-i DEV -o DEV -s POOL -d POOL -j ACCEPT`; then `-i
//!   DEV -j DROP`: whatever else a client sends is not forwarded, whatever
//!   the `FORWARD` policy. Jumped to from the first rule of `FORWARD` (so a
//!   DROP policy or later rules do not stop what it accepts).
//! - filter table: a chain `TUNTOX-IN-DEV` with `-i DEV -d SERVER -j
//!   ACCEPT` for the server's VPN address, `-i DEV -d ROUTE -j ACCEPT` per
//!   route, then `-i DEV -j DROP`: a client reaches the server's own other
//!   addresses only when a route offers them. Jumped to from the first rule
//!   of `INPUT`.
//! - sysctl `net.ipv4.ip_forward` (`net.ipv6.conf.all.forwarding`) set to
//!   1 if it was 0, when there are routes (or client-to-client traffic);
//!   put back on teardown.
//! - with masquerading, nat table: a chain `TUNTOX-NAT-DEV` with, per
//!   route, `-s POOL -d ROUTE ! -o DEV -j MASQUERADE`, jumped to from the
//!   end of `POSTROUTING`.
//!
//! Teardown deletes the jump rules and the chains and restores the sysctls
//! it changed: nothing else in the tables is touched. iptables is run by
//! absolute path (`/usr/sbin`, `/sbin`, `/usr/bin`, `/bin`), never through
//! `PATH`. The commands run in
//! the caller's network namespace and need CAP_NET_ADMIN (and CAP_NET_RAW
//! for iptables).
//! `docs/decisions/0004-tun.md` says why iptables rather than nftables.

use std::fs;
use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;

/// What to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The VPN device.
    pub device: String,
    /// The client address pools (an IPv4 one, an IPv6 one, or both).
    pub pools: Vec<IpNet>,
    /// The routes offered to clients.
    pub routes: Vec<IpNet>,
    /// The server's own VPN addresses (clients may reach them).
    pub server_addresses: Vec<IpAddr>,
    /// Forward between clients (`--vpn-allow-clients`).
    pub allow_clients: bool,
    /// Masquerade client traffic toward the routes (`--vpn-nat`).
    pub masquerade: bool,
}

/// A setup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// A command failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        message: String,
    },
    /// A sysctl could not be read or written.
    #[error("{path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The device name does not fit in a chain name.
    #[error("device name {0:?} is too long for a chain name (15 characters at most)")]
    DeviceName(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Where iptables may live: absolute paths only, never `PATH` (the
/// process may hold CAP_NET_ADMIN while its environment is the caller's).
const TOOL_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The tool's absolute path: the first of [`TOOL_DIRS`] that holds it
    /// (the first candidate when none does, for the error message).
    fn tool(self) -> String {
        let candidates = TOOL_DIRS.map(|dir| format!("{dir}/{}", self.name()));
        candidates.iter().find(|p| std::path::Path::new(p).exists()).unwrap_or(&candidates[0]).clone()
    }

    fn sysctl(self) -> &'static str {
        match self {
            Family::V4 => "/proc/sys/net/ipv4/ip_forward",
            Family::V6 => "/proc/sys/net/ipv6/conf/all/forwarding",
        }
    }

    fn of(net: &IpNet) -> Family {
        if net.addr().is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// One change made, to undo.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// A chain created in a table.
    Chain { family: Family, table: &'static str, chain: String },
    /// A jump rule added to a built-in chain.
    Jump { family: Family, table: &'static str, from: &'static str, chain: String },
    /// A sysctl changed from `old`.
    Sysctl { path: &'static str, old: String },
}

/// Forwarding and NAT set up for the VPN; [`teardown`](Self::teardown)
/// removes it (dropping it without teardown also does, logging errors).
#[derive(Debug)]
pub struct Forwarding {
    changes: Vec<Change>,
}

fn run(family: Family, args: &[&str]) -> Result<(), NatError> {
    let tool = family.tool();
    let out = Command::new(&tool).arg("-w").args(args).output().map_err(|e| NatError::Command {
        command: format!("{tool} {}", args.join(" ")),
        message: format!("{e} (install iptables)"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Command {
            command: format!("{tool} {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl Forwarding {
    /// Sets everything up; on failure undoes what was done and returns the
    /// error.
    pub fn setup(config: &ForwardConfig) -> Result<Forwarding, NatError> {
        if config.device.len() > 15 {
            return Err(NatError::DeviceName(config.device.clone()));
        }
        let mut f = Forwarding { changes: Vec::new() };
        match f.apply(config) {
            Ok(()) => Ok(f),
            Err(e) => {
                f.undo();
                Err(e)
            }
        }
    }

    fn apply(&mut self, config: &ForwardConfig) -> Result<(), NatError> {
        let dev = config.device.as_str();
        for family in [Family::V4, Family::V6] {
            let pools: Vec<String> =
                config.pools.iter().filter(|p| Family::of(p) == family).map(|p| p.trunc().to_string()).collect();
            let routes: Vec<String> =
                config.routes.iter().filter(|r| Family::of(r) == family).map(|r| r.trunc().to_string()).collect();
            if pools.is_empty() {
                continue;
            }
            let fwd = format!("TUNTOX-FWD-{dev}");
            self.new_chain(family, "filter", &fwd)?;
            for pool in &pools {
                for route in &routes {
                    run(family, &["-t", "filter", "-A", &fwd, "-i", dev, "-s", pool, "-d", route, "-j", "ACCEPT"])?;
                    run(
                        family,
                        &[
                            "-t",
                            "filter",
                            "-A",
                            &fwd,
                            "-o",
                            dev,
                            "-s",
                            route,
                            "-d",
                            pool,
                            "-m",
                            "conntrack",
                            "--ctstate",
                            "RELATED,ESTABLISHED",
                            "-j",
                            "ACCEPT",
                        ],
                    )?;
                }
                if config.allow_clients {
                    let rule =
                        ["-t", "filter", "-A", &fwd, "-i", dev, "-o", dev, "-s", pool, "-d", pool, "-j", "ACCEPT"];
                    run(family, &rule)?;
                }
            }
            run(family, &["-t", "filter", "-A", &fwd, "-i", dev, "-j", "DROP"])?;
            run(family, &["-t", "filter", "-I", "FORWARD", "1", "-j", &fwd])?;
            self.changes.push(Change::Jump { family, table: "filter", from: "FORWARD", chain: fwd });

            let input = format!("TUNTOX-IN-{dev}");
            self.new_chain(family, "filter", &input)?;
            let own = config.server_addresses.iter().filter(|a| a.is_ipv4() == (family == Family::V4));
            for dst in own.map(ToString::to_string).chain(routes.iter().cloned()) {
                run(family, &["-t", "filter", "-A", &input, "-i", dev, "-d", &dst, "-j", "ACCEPT"])?;
            }
            run(family, &["-t", "filter", "-A", &input, "-i", dev, "-j", "DROP"])?;
            run(family, &["-t", "filter", "-I", "INPUT", "1", "-j", &input])?;
            self.changes.push(Change::Jump { family, table: "filter", from: "INPUT", chain: input });

            if config.masquerade && !routes.is_empty() {
                let nat = format!("TUNTOX-NAT-{dev}");
                self.new_chain(family, "nat", &nat)?;
                for pool in &pools {
                    for route in &routes {
                        run(
                            family,
                            &["-t", "nat", "-A", &nat, "-s", pool, "-d", route, "!", "-o", dev, "-j", "MASQUERADE"],
                        )?;
                    }
                }
                run(family, &["-t", "nat", "-A", "POSTROUTING", "-j", &nat])?;
                self.changes.push(Change::Jump { family, table: "nat", from: "POSTROUTING", chain: nat });
            }
            if !routes.is_empty() || config.allow_clients {
                self.set_sysctl(family.sysctl())?;
            }
        }
        Ok(())
    }

    fn new_chain(&mut self, family: Family, table: &'static str, chain: &str) -> Result<(), NatError> {
        if run(family, &["-t", table, "-N", chain]).is_err() {
            // Left behind by a run that could not clean up (killed): ours by
            // its name, so it goes first.
            tracing::warn!("removing a stale {} chain {chain} (table {table})", family.name());
            remove_chain(family, table, chain, &["FORWARD", "INPUT", "POSTROUTING"]);
            run(family, &["-t", table, "-N", chain])?;
        }
        self.changes.push(Change::Chain { family, table, chain: chain.to_owned() });
        Ok(())
    }

    fn set_sysctl(&mut self, path: &'static str) -> Result<(), NatError> {
        let err = |source| NatError::Sysctl { path: path.to_owned(), source };
        let old = fs::read_to_string(path).map_err(err)?.trim().to_owned();
        if old != "1" {
            fs::write(path, "1").map_err(err)?;
            self.changes.push(Change::Sysctl { path, old });
        }
        Ok(())
    }

    /// Removes everything [`setup`](Self::setup) added.
    pub fn teardown(mut self) -> Result<(), NatError> {
        let errors = self.undo();
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn undo(&mut self) -> Vec<NatError> {
        let mut errors = Vec::new();
        while let Some(change) = self.changes.pop() {
            let result = match &change {
                Change::Jump { family, table, from, chain } => run(*family, &["-t", table, "-D", from, "-j", chain]),
                Change::Chain { family, table, chain } => {
                    run(*family, &["-t", table, "-F", chain]).and_then(|()| run(*family, &["-t", table, "-X", chain]))
                }
                Change::Sysctl { path, old } => {
                    fs::write(path, old).map_err(|source| NatError::Sysctl { path: (*path).to_owned(), source })
                }
            };
            if let Err(e) = result {
                tracing::error!("VPN forwarding cleanup: {e}");
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.undo();
    }
}

fn remove_chain(family: Family, table: &str, chain: &str, builtins: &[&str]) {
    for from in builtins {
        while run(family, &["-t", table, "-D", from, "-j", chain]).is_ok() {}
    }
    let _ = run(family, &["-t", table, "-F", chain]);
    let _ = run(family, &["-t", table, "-X", chain]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_is_run_by_absolute_path_never_through_path() {
        for family in [Family::V4, Family::V6] {
            let tool = family.tool();
            assert!(std::path::Path::new(&tool).is_absolute(), "{tool}");
            assert!(tool.ends_with(family.name()), "{tool}");
        }
    }
}
