//! Config files: TOML that says what the flags say, for running tuntox as a
//! service (`-c FILE`; the server reads [`DEFAULT_FILE`] when it exists and
//! no `-c` is given).
//!
//! The file's layout:
//!
//! - top-level keys: `config_dir` (-C), `log_level` (-q, -d),
//!   `syslog` (-S), `log_file` (--log-file), `log_format` (--log-format:
//!   "text" or "json"), `daemonize` (-z), `pid_file` (-F), `user` (-U),
//!   `status_socket`, `metrics`;
//! - `[network]`: `udp_ports` (-u), `nodes_file` (-b), `bootstrap`, `lan`
//!   (false: --no-lan), `relays` (--relay), `udp` (false: --no-udp),
//!   `portmap` (false: --no-portmap), `aegis` (false: --no-aegis);
//! - `[server]`: `allow` (-i), `secret` or `secret_file`, `id_file` (-I),
//!   `rules` (-f), `tcp_relay_port` (-t), `friend_expiry` (a duration in
//!   whole days); `[server.vpn]` (its presence is --vpn): `pool`, `routes`,
//!   `nat`, `allow_clients`, `allow_anyone`, `device`, `mtu`;
//! - `[client]`: `server` (-i), `secret` or `secret_file`, `id_file`,
//!   `tcp_relay_port`, `connect_timeout` (a duration; "0s" waits forever);
//!   `[forwards]`: `local` (-L, a list), `dynamic` (-D, a list), `stdio`
//!   (-W), `ping` (-p);
//! - `[vpn_client]` (`tuntox vpn up`): `server`, `secret` or `secret_file`,
//!   `routes`, `mtu`, `device`, `connect_timeout`, `id_file`;
//! - `[relay]` (`tuntox relay`): `port`, `tcp_ports`, `max_clients`.
//!
//! Values are written as on the command line (forwards in ssh's syntax,
//! CIDRs, `HOST:PORT:KEY`), durations in words ("30s", "2m", "30days").
//! Unknown keys are refused; every error names the file, line and column.
//! Sections for other modes are ignored, but a file with none for the mode
//! run is refused.
//!
//! Flags given on the command line (or in `TUNTOX_SHARED_SECRET`) win over
//! the file, each for its own setting: a list flag (-L, --bootstrap...)
//! replaces the file's whole list, and -s or --secret-file replaces both
//! `secret` and `secret_file`. The result is the same value the flags alone
//! would give ([`ForwardArgs`], [`VpnUpArgs`], [`RelayArgs`]): the file is
//! applied onto them, and printed from them (`tuntox config check`).
//!
//! Secrets: a `secret_file` is read at start (its first line) and must not
//! be readable by group or others; a file that holds `secret` itself must
//! not be either. Both are refused otherwise, with the `chmod` to run.

use std::fmt::Display;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tunnel::spec::{DynamicForward, LocalForward, Target};

use super::args::{
    CommonArgs, ForwardArgs, JoinArgs, LogFormat, NetArgs, PeerId, PortRange, ProcessArgs, RelayArgs, ServiceArgs,
    StatusSocketArgs, VpnUpArgs, parse_device, parse_mtu,
};
use crate::app::bootstrap::BootstrapSpec;
use crate::app::secret::Secret;
use crate::wire::tox_id::ToxId;

/// The server's config file when no `-c` is given (read only if it exists).
pub const DEFAULT_FILE: &str = "/etc/tuntox/tuntox.toml";

/// Why a config file (or a secret file) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not readable.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, not a source: the message says it all).
        error: io::Error,
    },
    /// Not TOML, an unknown key, or a bad value.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Values that parse but do not fit together, or a secret others may read.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A config file as written: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// -C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<PathBuf>,
    /// -q / -d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// -S.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<bool>,
    /// --log-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// --log-format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// -z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemonize: Option<bool>,
    /// -F.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    /// -U.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// --status-socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_socket: Option<PathBuf>,
    /// --metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// How to join the Tox network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// The server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    /// A forward client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    /// A forward client's forwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwards: Option<Forwards>,
    /// `tuntox vpn up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_client: Option<VpnClient>,
    /// `tuntox relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Relay>,
}

/// `log_level`: -q, the mode's default, -d, -dd, -ddd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// -q.
    Error,
    /// No flag: info for servers and clients.
    Default,
    /// -d.
    Debug,
    /// -dd.
    Trace,
    /// -ddd.
    TraceAll,
}

/// `[network]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// -u.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<Text<PortRange>>,
    /// -b.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_file: Option<PathBuf>,
    /// --bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Vec<Text<BootstrapSpec>>>,
    /// Not --no-lan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan: Option<bool>,
    /// --relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relays: Option<Vec<Text<BootstrapSpec>>>,
    /// Not --no-udp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<bool>,
    /// Not --no-portmap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portmap: Option<bool>,
    /// Not --no-aegis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aegis: Option<bool>,
}

/// `[server]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// -i, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Text<PeerId>>>,
    /// -s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Text<Secret>>,
    /// --secret-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// -I.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_file: Option<PathBuf>,
    /// -f.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// -t.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_relay_port: Option<u16>,
    /// --friend-expiry, in whole days ("0s": never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friend_expiry: Option<Days>,
    /// --vpn and its settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn: Option<ServerVpn>,
}

/// `[server.vpn]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerVpn {
    /// --vpn-pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Text<Ipv4Net>>,
    /// --vpn-route, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Text<IpNet>>>,
    /// --vpn-nat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<bool>,
    /// --vpn-allow-clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_clients: Option<bool>,
    /// --vpn-allow-anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anyone: Option<bool>,
    /// --vpn-dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// --vpn-mtu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
}

/// `[client]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// -i.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Text<ToxId>>,
    /// -s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Text<Secret>>,
    /// --secret-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// -I.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_file: Option<PathBuf>,
    /// -t.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_relay_port: Option<u16>,
    /// --connect-timeout ("0s": forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Secs>,
}

/// `[forwards]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Forwards {
    /// -L, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Vec<Text<LocalForward>>>,
    /// -D, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<Vec<Text<DynamicForward>>>,
    /// -W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<Text<Target>>,
    /// -p.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<bool>,
}

/// `[vpn_client]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VpnClient {
    /// -i.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Text<ToxId>>,
    /// -s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Text<Secret>>,
    /// --secret-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// --route, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Text<IpNet>>>,
    /// --mtu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    /// --dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// --connect-timeout ("0s": forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Secs>,
    /// -I.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_file: Option<PathBuf>,
}

/// `[relay]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// --port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// --tcp-port, repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_ports: Option<Vec<u16>>,
    /// --max-clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<u32>,
}

/// A value written as a string, parsed as its flag's value is and printed
/// back the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<T>(pub T);

impl<'de, T: FromStr> Deserialize<'de> for Text<T>
where
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Text).map_err(serde::de::Error::custom)
    }
}

impl<T: Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A TUN device name (15 characters at most).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device(pub String);

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_device(&String::deserialize(d)?).map(Device).map_err(serde::de::Error::custom)
    }
}

/// A VPN MTU, 576-1372.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mtu(pub u16);

impl<'de> Deserialize<'de> for Mtu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        parse_mtu(&n.to_string()).map(Mtu).map_err(serde::de::Error::custom)
    }
}

/// A duration in whole seconds, written in words ("90s", "2m").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub u64);

/// A duration in whole days, written in words ("30days", "2w").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Days(pub u64);

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("'{s}' is not a duration ({e})")))
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let duration = duration(d)?;
        if duration.subsec_nanos() != 0 {
            return Err(serde::de::Error::custom("a duration in whole seconds"));
        }
        Ok(Secs(duration.as_secs()))
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(Duration::from_secs(self.0)))
    }
}

const DAY: u64 = 86_400;

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let duration = duration(d)?;
        if duration.subsec_nanos() != 0 || duration.as_secs() % DAY != 0 {
            return Err(serde::de::Error::custom("a duration in whole days (\"30days\", \"2w\", \"0s\" for never)"));
        }
        Ok(Days(duration.as_secs() / DAY))
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(Duration::from_secs(self.0 * DAY)))
    }
}

/// Whether a flag (by its clap id) was given on the command line or in
/// its environment variable.
pub type Given<'a> = &'a dyn Fn(&str) -> bool;

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let file = parse(path, &text)?;
    if file.holds_secret() {
        private(path, "holds a secret")?;
    }
    Ok(file)
}

/// Parses a config file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| line_column(text, span.start));
        ConfigError::Parse { path: path.to_owned(), line, column, message: e.message().trim_end().to_owned() }
    })
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Refuses a file that group or others may read.
fn private(path: &Path, what: &str) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let mode = meta.permissions().mode();
    if mode & 0o044 != 0 {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: format!(
                "{what} but others may read it (mode {:04o}): run chmod 600 {}",
                mode & 0o7777,
                path.display()
            ),
        });
    }
    Ok(())
}

/// Reads the shared secret from a `secret_file` / `--secret-file`: its
/// first line, without the line end. Refused when group or others may
/// read the file.
pub fn read_secret_file(path: &Path) -> Result<Secret, ConfigError> {
    private(path, "holds the shared secret")?;
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
    let line = text.lines().next().unwrap_or_default();
    Secret::new(line).map_err(|e| ConfigError::Invalid { path: path.to_owned(), message: e.to_string() })
}

impl ConfigFile {
    fn holds_secret(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.secret.is_some())
            || self.client.as_ref().is_some_and(|c| c.secret.is_some())
            || self.vpn_client.as_ref().is_some_and(|v| v.secret.is_some())
    }

    /// Whether the file configures a forward client.
    pub fn is_client(&self) -> bool {
        self.client.is_some() || self.forwards.is_some()
    }

    /// The sections for modes, as `[name]`, and the command each is for.
    fn modes(&self) -> Vec<(&'static str, &'static str)> {
        let mut modes = Vec::new();
        if self.server.is_some() {
            modes.push(("[server]", "tuntox -c FILE"));
        }
        if self.is_client() {
            modes.push(("[client]", "tuntox -c FILE"));
        }
        if self.vpn_client.is_some() {
            modes.push(("[vpn_client]", "tuntox vpn up -c FILE"));
        }
        if self.relay.is_some() {
            modes.push(("[relay]", "tuntox relay -c FILE"));
        }
        modes
    }
}

/// Refuses a file that has sections for other modes but none for `ours`
/// (`tuntox -c relay.toml` would otherwise run a server).
fn for_this_mode(path: &Path, file: &ConfigFile, ours: &[&str]) -> Result<(), ConfigError> {
    let modes = file.modes();
    if modes.is_empty() || modes.iter().any(|(section, _)| ours.contains(section)) {
        return Ok(());
    }
    let (section, command) = modes[0];
    Err(invalid(path, format!("the file has {section}, which is for `{command}`, and no {}", ours.join(" or "))))
}

/// Sets `target` to the file's `value` unless the flag `id` was given.
fn set<T>(given: Given<'_>, id: &str, target: &mut T, value: Option<T>) {
    if let Some(value) = value.filter(|_| !given(id)) {
        *target = value;
    }
}

fn texts<T: Clone>(list: &Option<Vec<Text<T>>>) -> Option<Vec<T>> {
    list.as_ref().map(|l| l.iter().map(|t| t.0.clone()).collect())
}

/// The top-level keys onto the flags every service mode has.
fn apply_top(
    file: &ConfigFile,
    given: Given<'_>,
    common: &mut CommonArgs,
    status: &mut StatusSocketArgs,
    service: &mut ServiceArgs,
) {
    set(given, "config_dir", &mut common.config_dir, file.config_dir.clone().map(Some));
    if let Some(level) = file.log_level.filter(|_| !given("debug") && !given("quiet")) {
        (common.quiet, common.debug) = match level {
            LogLevel::Error => (true, 0),
            LogLevel::Default => (false, 0),
            LogLevel::Debug => (false, 1),
            LogLevel::Trace => (false, 2),
            LogLevel::TraceAll => (false, 3),
        };
    }
    set(given, "syslog", &mut common.syslog, file.syslog);
    set(given, "log_file", &mut common.log_file, file.log_file.clone().map(Some));
    set(given, "log_format", &mut common.log_format, file.log_format);
    set(given, "status_socket", &mut status.status_socket, file.status_socket.clone().map(Some));
    set(given, "metrics", &mut service.metrics, file.metrics.map(Some));
}

fn apply_process(file: &ConfigFile, given: Given<'_>, process: &mut ProcessArgs) {
    set(given, "daemonize", &mut process.daemonize, file.daemonize);
    set(given, "pid_file", &mut process.pid_file, file.pid_file.clone().map(Some));
    set(given, "user", &mut process.user, file.user.clone().map(Some));
}

fn apply_join(network: &Network, given: Given<'_>, join: &mut JoinArgs) {
    set(given, "bootstrap", &mut join.bootstrap, texts(&network.bootstrap));
    set(given, "no_lan", &mut join.no_lan, network.lan.map(|on| !on));
}

fn apply_network(file: &ConfigFile, given: Given<'_>, net: &mut NetArgs) {
    let Some(network) = &file.network else { return };
    set(given, "udp_ports", &mut net.udp_ports, network.udp_ports.as_ref().map(|t| Some(t.0)));
    set(given, "nodes_file", &mut net.nodes_file, network.nodes_file.clone().map(Some));
    apply_join(network, given, &mut net.join);
    set(given, "relays", &mut net.relays, texts(&network.relays));
    set(given, "no_udp", &mut net.no_udp, network.udp.map(|on| !on));
    set(given, "no_portmap", &mut net.no_portmap, network.portmap.map(|on| !on));
    set(given, "no_aegis", &mut net.no_aegis, network.aegis.map(|on| !on));
}

/// `secret` or `secret_file` (one setting: a flag for either replaces both).
fn apply_secret(
    secret: &Option<Text<Secret>>,
    secret_file: &Option<PathBuf>,
    given: Given<'_>,
    (target, target_file): (&mut Option<Secret>, &mut Option<PathBuf>),
) {
    if given("secret") || given("secret_file") {
        return;
    }
    if let Some(secret) = secret {
        *target = Some(secret.0.clone());
    }
    if let Some(path) = secret_file {
        *target_file = Some(path.clone());
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.to_owned(), message: message.into() }
}

fn one_secret(path: &Path, section: &str, secret: bool, secret_file: bool) -> Result<(), ConfigError> {
    if secret && secret_file {
        return Err(invalid(path, format!("[{section}] has both secret and secret_file; keep one")));
    }
    Ok(())
}

/// Applies `file` (read from `path`) onto the flags of C tuntox's modes:
/// `[server]` or `[client]` and `[forwards]`, with the top-level keys and
/// `[network]`.
pub fn apply_forward(
    path: &Path,
    file: &ConfigFile,
    given: Given<'_>,
    args: &mut ForwardArgs,
) -> Result<(), ConfigError> {
    if file.server.is_some() && file.is_client() {
        return Err(invalid(
            path,
            "a file configures a server ([server]) or a client ([client], [forwards]), not both",
        ));
    }
    let client_flags = ["local", "stdio", "dynamic", "ping"].iter().any(|id| given(id));
    if file.server.is_some() && client_flags {
        return Err(invalid(path, "the file configures a server, but -L, -W, -D or -p make this a client"));
    }
    for_this_mode(path, file, &["[server]", "[client]"])?;
    apply_top(file, given, &mut args.common, &mut args.status, &mut args.service);
    apply_process(file, given, &mut args.process);
    apply_network(file, given, &mut args.net);
    if let Some(server) = &file.server {
        one_secret(path, "server", server.secret.is_some(), server.secret_file.is_some())?;
        set(given, "peers", &mut args.peers, server.allow.as_ref().map(|l| l.iter().map(|t| t.0).collect()));
        apply_secret(&server.secret, &server.secret_file, given, (&mut args.secret, &mut args.secret_file));
        set(given, "id_file", &mut args.id_file, server.id_file.clone().map(Some));
        set(given, "rules", &mut args.rules, server.rules.clone().map(Some));
        set(given, "tcp_relay_port", &mut args.tcp_relay_port, server.tcp_relay_port.map(Some));
        set(given, "friend_expiry", &mut args.friend_expiry, server.friend_expiry.map(|d| d.0));
        if let Some(vpn) = &server.vpn {
            set(given, "vpn", &mut args.vpn, Some(true));
            set(given, "vpn_pool", &mut args.vpn_pool, vpn.pool.as_ref().map(|t| t.0));
            set(given, "vpn_route", &mut args.vpn_route, texts(&vpn.routes));
            set(given, "vpn_nat", &mut args.vpn_nat, vpn.nat);
            set(given, "vpn_allow_clients", &mut args.vpn_allow_clients, vpn.allow_clients);
            set(given, "vpn_allow_anyone", &mut args.vpn_allow_anyone, vpn.allow_anyone);
            set(given, "vpn_dev", &mut args.vpn_dev, vpn.device.as_ref().map(|d| d.0.clone()));
            set(given, "vpn_mtu", &mut args.vpn_mtu, vpn.mtu.map(|m| m.0));
            if args.vpn_nat && args.vpn_route.is_empty() {
                return Err(invalid(path, "[server.vpn] nat needs routes (the networks to masquerade toward)"));
            }
        }
    }
    if let Some(client) = &file.client {
        one_secret(path, "client", client.secret.is_some(), client.secret_file.is_some())?;
        set(given, "peers", &mut args.peers, client.server.as_ref().map(|t| vec![PeerId::ToxId(t.0)]));
        apply_secret(&client.secret, &client.secret_file, given, (&mut args.secret, &mut args.secret_file));
        set(given, "id_file", &mut args.id_file, client.id_file.clone().map(Some));
        set(given, "tcp_relay_port", &mut args.tcp_relay_port, client.tcp_relay_port.map(Some));
        set(given, "connect_timeout", &mut args.connect_timeout, client.connect_timeout.map(|s| Some(s.0)));
    }
    if let Some(forwards) = &file.forwards {
        set(given, "local", &mut args.local, texts(&forwards.local));
        set(given, "dynamic", &mut args.dynamic, texts(&forwards.dynamic));
        set(given, "stdio", &mut args.stdio, forwards.stdio.as_ref().map(|t| Some(t.0.clone())));
        set(given, "ping", &mut args.ping, forwards.ping);
        if args.stdio.is_some() && (!args.local.is_empty() || !args.dynamic.is_empty() || args.ping) {
            return Err(invalid(path, "[forwards] stdio (-W) cannot be combined with local, dynamic or ping"));
        }
    }
    if file.is_client() {
        if args.local.is_empty() && args.dynamic.is_empty() && args.stdio.is_none() && !args.ping {
            return Err(invalid(path, "a client needs a forward: local, dynamic, stdio or ping in [forwards]"));
        }
        if args.peers.is_empty() {
            return Err(invalid(path, "a client needs the server's Tox ID: server in [client]"));
        }
    }
    Ok(())
}

/// Applies `file` onto `tuntox vpn up`'s flags: `[vpn_client]`, the
/// top-level keys and `[network]`.
pub fn apply_vpn_up(path: &Path, file: &ConfigFile, given: Given<'_>, args: &mut VpnUpArgs) -> Result<(), ConfigError> {
    for_this_mode(path, file, &["[vpn_client]"])?;
    apply_top(file, given, &mut args.common, &mut args.status, &mut args.service);
    apply_process(file, given, &mut args.process);
    apply_network(file, given, &mut args.net);
    if let Some(vpn) = &file.vpn_client {
        one_secret(path, "vpn_client", vpn.secret.is_some(), vpn.secret_file.is_some())?;
        set(given, "peer", &mut args.peer, vpn.server.as_ref().map(|t| Some(t.0)));
        apply_secret(&vpn.secret, &vpn.secret_file, given, (&mut args.secret, &mut args.secret_file));
        set(given, "route", &mut args.route, texts(&vpn.routes));
        set(given, "mtu", &mut args.mtu, vpn.mtu.map(|m| m.0));
        set(given, "dev", &mut args.dev, vpn.device.as_ref().map(|d| d.0.clone()));
        set(given, "connect_timeout", &mut args.connect_timeout, vpn.connect_timeout.map(|s| s.0));
        set(given, "id_file", &mut args.id_file, vpn.id_file.clone().map(Some));
    }
    Ok(())
}

/// Applies `file` onto `tuntox relay`'s flags: `[relay]`, the top-level
/// keys it has, and `bootstrap` and `lan` of `[network]`.
pub fn apply_relay(path: &Path, file: &ConfigFile, given: Given<'_>, args: &mut RelayArgs) -> Result<(), ConfigError> {
    for_this_mode(path, file, &["[relay]"])?;
    if file.daemonize.is_some() || file.pid_file.is_some() || file.user.is_some() {
        return Err(invalid(
            path,
            "tuntox relay takes no daemonize, pid_file or user (run it under a service manager)",
        ));
    }
    apply_top(file, given, &mut args.common, &mut args.status, &mut args.service);
    if let Some(network) = &file.network {
        let other = Network { bootstrap: None, lan: None, ..network.clone() };
        if other != Network::default() {
            return Err(invalid(path, "tuntox relay takes only bootstrap and lan from [network]"));
        }
        apply_join(network, given, &mut args.join);
    }
    if let Some(relay) = &file.relay {
        set(given, "port", &mut args.port, relay.port);
        set(given, "tcp_ports", &mut args.tcp_ports, relay.tcp_ports.clone());
        if let Some(max) = relay.max_clients.filter(|_| !given("max_clients")) {
            if max == 0 {
                return Err(invalid(path, "[relay] max_clients must be at least 1"));
            }
            args.max_clients = max;
        }
    }
    Ok(())
}

fn some_if<T>(on: bool, value: T) -> Option<T> {
    on.then_some(value)
}

fn log_level(common: &CommonArgs) -> LogLevel {
    match (common.quiet, common.debug) {
        (true, _) => LogLevel::Error,
        (false, 0) => LogLevel::Default,
        (false, 1) => LogLevel::Debug,
        (false, 2) => LogLevel::Trace,
        (false, _) => LogLevel::TraceAll,
    }
}

fn top(common: &CommonArgs, status: &StatusSocketArgs, service: &ServiceArgs) -> ConfigFile {
    ConfigFile {
        config_dir: common.config_dir.clone(),
        log_level: Some(log_level(common)),
        syslog: Some(common.syslog),
        log_file: common.log_file.clone(),
        log_format: Some(common.log_format),
        status_socket: status.status_socket.clone(),
        metrics: service.metrics,
        ..ConfigFile::default()
    }
}

fn network(net: &NetArgs) -> Network {
    Network {
        udp_ports: net.udp_ports.map(Text),
        nodes_file: net.nodes_file.clone(),
        bootstrap: Some(net.join.bootstrap.iter().cloned().map(Text).collect()),
        lan: Some(!net.join.no_lan),
        relays: Some(net.relays.iter().cloned().map(Text).collect()),
        udp: Some(!net.no_udp),
        portmap: Some(!net.no_portmap),
        aegis: Some(!net.no_aegis),
    }
}

/// The settings of C tuntox's modes written as a config file (secrets
/// print as `<redacted>`).
pub fn forward_file(args: &ForwardArgs) -> ConfigFile {
    let mut file = top(&args.common, &args.status, &args.service);
    file.daemonize = Some(args.process.daemonize);
    file.pid_file = args.process.pid_file.clone();
    file.user = args.process.user.clone();
    file.network = Some(network(&args.net));
    let client = !args.local.is_empty() || args.stdio.is_some() || !args.dynamic.is_empty() || args.ping;
    let secret = args.secret.clone().map(Text);
    if client {
        file.client = Some(Client {
            server: match args.peers.as_slice() {
                [PeerId::ToxId(id)] => Some(Text(*id)),
                _ => None,
            },
            secret,
            secret_file: args.secret_file.clone(),
            id_file: args.id_file.clone(),
            tcp_relay_port: args.tcp_relay_port,
            connect_timeout: args.connect_timeout.map(Secs),
        });
        file.forwards = Some(Forwards {
            local: Some(args.local.iter().cloned().map(Text).collect()),
            dynamic: Some(args.dynamic.iter().copied().map(Text).collect()),
            stdio: args.stdio.clone().map(Text),
            ping: Some(args.ping),
        });
    } else {
        file.server = Some(Server {
            allow: Some(args.peers.iter().copied().map(Text).collect()),
            secret,
            secret_file: args.secret_file.clone(),
            id_file: args.id_file.clone(),
            rules: args.rules.clone(),
            tcp_relay_port: args.tcp_relay_port,
            friend_expiry: Some(Days(args.friend_expiry)),
            vpn: some_if(
                args.vpn,
                ServerVpn {
                    pool: Some(Text(args.vpn_pool)),
                    routes: Some(args.vpn_route.iter().copied().map(Text).collect()),
                    nat: Some(args.vpn_nat),
                    allow_clients: Some(args.vpn_allow_clients),
                    allow_anyone: Some(args.vpn_allow_anyone),
                    device: Some(Device(args.vpn_dev.clone())),
                    mtu: Some(Mtu(args.vpn_mtu)),
                },
            ),
        });
    }
    file
}

/// `tuntox vpn up`'s settings written as a config file.
pub fn vpn_up_file(args: &VpnUpArgs) -> ConfigFile {
    let mut file = top(&args.common, &args.status, &args.service);
    file.daemonize = Some(args.process.daemonize);
    file.pid_file = args.process.pid_file.clone();
    file.user = args.process.user.clone();
    file.network = Some(network(&args.net));
    file.vpn_client = Some(VpnClient {
        server: args.peer.map(Text),
        secret: args.secret.clone().map(Text),
        secret_file: args.secret_file.clone(),
        routes: Some(args.route.iter().copied().map(Text).collect()),
        mtu: Some(Mtu(args.mtu)),
        device: Some(Device(args.dev.clone())),
        connect_timeout: Some(Secs(args.connect_timeout)),
        id_file: args.id_file.clone(),
    });
    file
}

/// `tuntox relay`'s settings written as a config file.
pub fn relay_file(args: &RelayArgs) -> ConfigFile {
    let mut file = top(&args.common, &args.status, &args.service);
    file.network = Some(Network {
        bootstrap: Some(args.join.bootstrap.iter().cloned().map(Text).collect()),
        lan: Some(!args.join.no_lan),
        ..Network::default()
    });
    file.relay = Some(Relay {
        port: Some(args.port),
        tcp_ports: Some(args.tcp_ports.clone()),
        max_clients: Some(args.max_clients),
    });
    file
}

/// A config file as TOML.
pub fn to_toml(file: &ConfigFile) -> String {
    toml::to_string(file).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command, VpnCommand};

    const ID: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

    fn parse_text(text: &str) -> Result<ConfigFile, ConfigError> {
        parse(Path::new("t.toml"), text)
    }

    fn forward_defaults() -> ForwardArgs {
        Cli::try_parse_from(["tuntox"]).unwrap().forward
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let err = parse_text("config_dir = \"/x\"\n\n[server]\nsecret_fil = \"/s\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:4:1: unknown field `secret_fil`"), "{err}");
        let err = parse_text("[network]\nudp_ports = \"9:1\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:13: "), "{err}");
        assert!(err.contains("9 is above 1"), "{err}");
        let err = parse_text("[server.vpn]\nmtu = 9000\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:7: "), "{err}");
        let err = parse_text("[client]\nconnect_timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:2:19: ") && err.contains("not a duration"), "{err}");
        let err = parse_text("[server]\nfriend_expiry = \"36h\"\n").unwrap_err().to_string();
        assert!(err.contains("whole days"), "{err}");
        let err = parse_text("[forwards]\nlocal = [\"2222:h:22\", \"x\"]\n").unwrap_err().to_string();
        // In a list, toml points at the list.
        assert!(err.starts_with("t.toml:2:9: ") && err.contains("expected [bind_address:]port"), "{err}");
        let err = parse_text("log_level = \"loud\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.toml:1:13: "), "{err}");
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let file = parse_text(&format!(
            "log_level = \"debug\"\n[network]\nudp_ports = \"4000:4010\"\nlan = false\n[client]\nserver = \"{ID}\"\n\
             secret = \"s\"\n[forwards]\nlocal = [\"1:h:2\", \"3:h:4\"]\n"
        ))
        .unwrap();
        let mut args = forward_defaults();
        let given = |id: &str| id == "local" || id == "secret";
        args.local = vec!["9:x:9".parse().unwrap()];
        args.secret = Some(Secret::new("flag").unwrap());
        apply_forward(Path::new("t.toml"), &file, &given, &mut args).unwrap();
        assert_eq!(args.local, vec!["9:x:9".parse().unwrap()]);
        assert_eq!(args.secret, Some(Secret::new("flag").unwrap()));
        assert_eq!(args.net.udp_ports, Some(PortRange { first: 4000, last: 4010 }));
        assert!(args.net.join.no_lan);
        assert_eq!(args.common.debug, 1);
        assert_eq!(args.peers, [PeerId::ToxId(ID.parse().unwrap())]);
    }

    #[test]
    fn a_file_is_a_server_or_a_client() {
        let file = parse_text(&format!("[server]\n[client]\nserver = \"{ID}\"\n")).unwrap();
        let err = apply_forward(Path::new("t.toml"), &file, &|_| false, &mut forward_defaults()).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let file = parse_text("[forwards]\nstdio = \"h:22\"\nlocal = [\"1:h:2\"]\n").unwrap();
        let err = apply_forward(Path::new("t.toml"), &file, &|_| false, &mut forward_defaults()).unwrap_err();
        assert!(err.to_string().contains("cannot be combined"), "{err}");
        let file = parse_text("[network]\nudp = false\n").unwrap();
        let mut relay = match Cli::try_parse_from(["tuntox", "relay"]).unwrap().command {
            Some(Command::Relay(r)) => r,
            _ => unreachable!(),
        };
        let err = apply_relay(Path::new("t.toml"), &file, &|_| false, &mut relay.clone()).unwrap_err();
        assert!(err.to_string().contains("only bootstrap and lan"), "{err}");
        // A file for another mode only is refused, naming its command.
        let file = parse_text("[relay]\nport = 1\n").unwrap();
        let err = apply_forward(Path::new("t.toml"), &file, &|_| false, &mut forward_defaults()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("the file has [relay], which is for `tuntox relay -c FILE`, and no [server] or [client]"),
            "{err}"
        );
        let file = parse_text("[server]\n").unwrap();
        let err = apply_relay(Path::new("t.toml"), &file, &|_| false, &mut relay).unwrap_err();
        assert!(err.to_string().contains("no [relay]"), "{err}");
    }

    #[test]
    fn printed_settings_read_back_the_same() {
        let cli = Cli::try_parse_from([
            "tuntox",
            "-C",
            "/d",
            "-i",
            ID,
            "-s",
            "pw",
            "-L",
            "2222:127.0.0.1:22",
            "-D",
            "*:1080",
            "-dd",
            "--metrics",
            "127.0.0.1:9184",
            "--bootstrap",
            &format!("127.0.0.1:33445:{}", &ID[..64]),
            "--no-lan",
            "--connect-timeout",
            "90",
        ])
        .unwrap();
        let file = forward_file(&cli.forward);
        let text = to_toml(&file);
        assert!(text.contains("secret = \"<redacted>\""), "{text}");
        assert!(!text.contains("pw"), "{text}");
        assert!(text.contains("connect_timeout = \"1m 30s\""), "{text}");
        let mut again = forward_defaults();
        let reread = parse_text(&text.replace("<redacted>", "pw")).unwrap();
        apply_forward(Path::new("t.toml"), &reread, &|_| false, &mut again).unwrap();
        assert_eq!(again, cli.forward, "{text}");

        let cli =
            Cli::try_parse_from(["tuntox", "--vpn", "--vpn-route", "192.168.7.0/24", "--vpn-nat", "-i", &ID[..64]])
                .unwrap();
        let text = to_toml(&forward_file(&cli.forward));
        let mut again = forward_defaults();
        apply_forward(Path::new("t.toml"), &parse_text(&text).unwrap(), &|_| false, &mut again).unwrap();
        assert_eq!(again, cli.forward, "{text}");

        let Some(Command::Vpn(VpnCommand::Up(up))) =
            Cli::try_parse_from(["tuntox", "vpn", "up", "-i", ID, "--route", "10.9.0.0/16", "--mtu", "1200"])
                .unwrap()
                .command
        else {
            unreachable!()
        };
        let text = to_toml(&vpn_up_file(&up));
        let Some(Command::Vpn(VpnCommand::Up(mut again))) =
            Cli::try_parse_from(["tuntox", "vpn", "up"]).unwrap().command
        else {
            unreachable!()
        };
        apply_vpn_up(Path::new("t.toml"), &parse_text(&text).unwrap(), &|_| false, &mut again).unwrap();
        assert_eq!(again, up, "{text}");
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_secret_file(&path).unwrap_err().to_string();
        assert!(err.contains("others may read it (mode 0640): run chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), Secret::new("hunter2").unwrap());

        let config = dir.path().join("c.toml");
        std::fs::write(&config, "[server]\nsecret = \"x\"\n").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&config).unwrap_err().to_string().contains("holds a secret but others may read it"));
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&config).is_ok());
    }
}
