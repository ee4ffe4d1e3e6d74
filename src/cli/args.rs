//! The command line, declared with clap. The doc comments are the help text;
//! docs/cli.md is generated from them (and a test keeps it in step).
//!
//! Without a subcommand, tuntox takes C tuntox's flags: it is a client when
//! `-L`, `-W`, `-D` or `-p` is given and a server otherwise.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use ipnet::{IpNet, Ipv4Net};
use tunnel::spec::{DynamicForward, LocalForward, Target};

use crate::app::bootstrap::BootstrapSpec;
use crate::app::secret::Secret;
use crate::crypto::PublicKey;
use crate::wire::tox_id::{ParseIdError, TOX_ID_HEX_LEN, ToxId, parse_public_key};

/// The default config directory, as in C tuntox.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/tuntox/";
/// The server's default VPN pool.
pub const DEFAULT_VPN_POOL: &str = "10.77.0.0/24";
/// The server's default VPN device name.
pub const DEFAULT_VPN_SERVER_DEVICE: &str = "tuntox-srv0";
/// `tuntox relay --bootstrap`'s help: the relay needs no bootstrap node.
const RELAY_BOOTSTRAP_HELP: &str = "Join the Tox network through this node; repeatable. IPv6 hosts in brackets. \
                                    Without it the relay is a network of its own that others bootstrap from";

/// `tuntox --version`: the package version and, when built from a git
/// checkout, the commit (see build.rs).
pub const VERSION: &str = env!("TUNTOX_VERSION");

/// Reach machines behind NATs over the Tox network.
///
/// Run `tuntox` on the remote machine (the server); it prints its Tox ID.
/// On your machine, `tuntox -i <ToxID> -L 2222:127.0.0.1:22` makes port 2222
/// reach the server's port 22; `ssh -o ProxyCommand='tuntox -i <ToxID> -W
/// 127.0.0.1:%p' user@server` does the same for one ssh session (the
/// server connects to HOST:PORT as it sees them: 127.0.0.1 is the server
/// itself). Use `-s SECRET` on both sides.
#[derive(Debug, Parser)]
#[command(name = "tuntox", version = VERSION, args_conflicts_with_subcommands = true, disable_help_subcommand = true)]
pub struct Cli {
    /// A subcommand; without one, tuntox runs as C tuntox does.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// C tuntox's flags.
    #[command(flatten)]
    pub forward: ForwardArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print our Tox ID (creating the identity when missing) and exit.
    Id(IdArgs),
    /// Run an IP tunnel (TUN device) to a tuntox server.
    #[command(subcommand)]
    Vpn(VpnCommand),
    /// Run a Tox bootstrap node and TCP relay.
    ///
    /// A DHT node on UDP `--port` that others bootstrap from (with onion
    /// relaying and the announce store), and a Tox TCP relay on each
    /// `--tcp-port` for clients without working UDP. Its key pair is fixed
    /// and kept in DIR/relay_keys (-C DIR, default /etc/tuntox/), in
    /// tox-bootstrapd's key file layout; clients name the relay by its
    /// public key (`--print-key`).
    Relay(RelayArgs),
    /// Show the state of the running tuntox processes: Tox ID, friends
    /// online, how they are reached and since when, tunnels, VPN addresses,
    /// counters.
    ///
    /// Exits 1 when no running tuntox is found (a socket left by one that
    /// was killed is named as stale).
    Status(StatusArgs),
    /// Measure the round trip to a tuntox server over Tox.
    Ping(PingArgs),
    /// List or remove the clients a server keeps as friends.
    ///
    /// A server keeps each client it accepted in its config directory
    /// (`tox_save`), with the time it was last seen, until the client has
    /// been away for --friend-expiry days; clients without an identity
    /// (no -C) only while they come and go. This works on a stopped
    /// server's directory (-C) and on a running server through its status
    /// socket: the server holding the directory is found by its lock.
    #[command(subcommand)]
    Friends(FriendsCommand),
    /// Check what this network lets Tox do, without a peer.
    ///
    /// Asks the bootstrap nodes over UDP where they see us (from a fresh
    /// port): whether UDP works, our external address, and whether the NAT
    /// keeps one mapping for every destination ("endpoint-independent
    /// mapping") or gives each its own port ("port per destination"); it
    /// takes two DHT nodes on different addresses to tell, and nodes the
    /// bootstrap nodes name are asked too. Asks the default gateway which
    /// port mapping protocols it answers (PCP, NAT-PMP, UPnP IGD) and the
    /// external address each reports, and times each bootstrap node (UDP)
    /// and TCP relay (connect and relay handshake). Never announces itself
    /// on the LAN.
    ///
    /// Exit status: 0 when Tox can work from here (UDP or a TCP relay
    /// answered), 1 when nothing answered or the check could not run, 2 for
    /// a usage error.
    Netcheck(NetcheckArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script for tuntox on standard output.
    ///
    /// For bash: `tuntox completions bash >
    /// /usr/share/bash-completion/completions/tuntox`; zsh: to `_tuntox` in
    /// a directory of `$fpath`; fish: to
    /// `~/.config/fish/completions/tuntox.fish`.
    Completions(CompletionsArgs),
}

/// `tuntox config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file and print the settings it gives each mode it
    /// configures, defaults filled in and secrets masked (a secret file
    /// is read to check it). An unknown key or a bad value is an error
    /// naming the file, line and column; exit status 1.
    Check(ConfigCheckArgs),
}

/// `tuntox config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The config file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `tuntox completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: Shell,
}

/// The shells `tuntox completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (with bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Options every mode shares.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct CommonArgs {
    /// Config directory: holds our identity (`tox_save`). Default
    /// /etc/tuntox/ for the server and `tuntox id`; a client without -C uses
    /// a fresh identity each run, with -C it keeps one in DIR.
    #[arg(short = 'C', value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// More logging: -d debug, -dd trace for tuntox, -ddd trace for everything.
    /// RUST_LOG, when set, overrides -d and -q.
    #[arg(short = 'd', action = clap::ArgAction::Count)]
    pub debug: u8,

    /// Log errors only.
    #[arg(short = 'q', conflicts_with = "debug")]
    pub quiet: bool,

    /// Log to syslog instead of standard error: facility LOCAL1, identifier
    /// `tuntox` with the process ID, through /dev/log (which must exist).
    #[arg(short = 'S')]
    pub syslog: bool,

    /// Append the log to FILE instead of standard error (or, with -z,
    /// syslog). Reopened on SIGHUP, so that logrotate can move it away.
    #[arg(long, value_name = "FILE", conflicts_with = "syslog")]
    pub log_file: Option<PathBuf>,

    /// How log lines look: `text`, or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines of text.
    Text,
    /// One JSON object per line.
    Json,
}

impl CommonArgs {
    /// `-C`, or the default.
    pub fn config_dir(&self) -> PathBuf {
        self.config_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR))
    }
}

/// C tuntox's flags: server by default, client with -L, -W, -D or -p.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ForwardArgs {
    /// Client: forward a local port to HOST:HOSTPORT as seen from the server.
    /// OpenSSH syntax; `@` may replace `:`; IPv6 in brackets. Binds 127.0.0.1
    /// unless a bind address is given (`*` for all interfaces). Repeatable.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:HOSTPORT")]
    pub local: Vec<LocalForward>,

    /// Client: connect standard input and output to HOST:PORT as seen from
    /// the server (for ssh's ProxyCommand).
    #[arg(short = 'W', value_name = "HOST:PORT", conflicts_with_all = ["local", "dynamic", "ping"])]
    pub stdio: Option<Target>,

    /// Client: a SOCKS5 proxy on PORT (or BIND:PORT) whose connections the server
    /// makes. Binds 127.0.0.1 unless a bind address is given.
    #[arg(short = 'D', value_name = "[BIND:]PORT")]
    pub dynamic: Vec<DynamicForward>,

    /// Client: ping the server and print round-trip times.
    #[arg(short = 'p')]
    pub ping: bool,

    /// Client: exit with an error when the server has not accepted us
    /// within SECS of start (0 waits forever). Default: 120 for -W and -p;
    /// -L and -D wait forever.
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<u64>,

    /// Client: the server's Tox ID. Server: a Tox ID or public key allowed
    /// to connect; repeatable; all others are refused.
    #[arg(short = 'i', value_name = "TOXID")]
    pub peers: Vec<PeerId>,

    /// Shared secret: the client sends it, the server requires it. At most
    /// 920 bytes.
    #[arg(short = 's', value_name = "SECRET", env = "TUNTOX_SHARED_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,

    /// Read the shared secret from FILE (its first line), at start. FILE
    /// must not be readable by group or others.
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,

    /// Write our Tox ID to FILE.
    #[arg(short = 'I', value_name = "FILE")]
    pub id_file: Option<PathBuf>,

    /// Server: only allow destinations listed in FILE (`host:port` lines).
    #[arg(short = 'f', value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Also run a Tox TCP relay on PORT (off unless given; 0: off). We use
    /// it ourselves, so friends without UDP can reach us through it; its key
    /// is this run's DHT key, logged at start ("TCP relay server running").
    #[arg(short = 't', value_name = "PORT")]
    pub tcp_relay_port: Option<u16>,

    /// Server: serve VPN clients (`tuntox vpn up`) on a TUN device too.
    /// Needs root, or CAP_NET_ADMIN and CAP_NET_RAW (firewall rules).
    /// Clients get an address from --vpn-pool and one from an IPv6 /64
    /// derived from the server's key, the same each time they come back.
    #[arg(long)]
    pub vpn: bool,

    /// Server: the VPN's IPv4 pool, a /16 to a /30; the server takes the
    /// first address. Clients refuse a pool that overlaps networks they
    /// already route.
    #[arg(long, value_name = "CIDR", default_value = DEFAULT_VPN_POOL, requires = "vpn")]
    pub vpn_pool: Ipv4Net,

    /// Server: offer CIDR to VPN clients and forward their packets there
    /// (sets up IP forwarding and firewall rules, removed on exit).
    /// Repeatable. Clients reach nothing else: not other networks, not the
    /// server's other addresses (the firewall drops the rest of what comes
    /// in on the VPN device).
    #[arg(long, value_name = "CIDR", requires = "vpn")]
    pub vpn_route: Vec<IpNet>,

    /// Server: masquerade VPN clients' packets toward the --vpn-route
    /// networks behind the server's own address (hosts there need no route
    /// back to the pool).
    #[arg(long, requires = "vpn_route")]
    pub vpn_nat: bool,

    /// Server: let VPN clients reach each other. Without it a client
    /// reaches only the server's VPN addresses and the --vpn-route networks.
    #[arg(long, requires = "vpn")]
    pub vpn_allow_clients: bool,

    /// Server: serve VPN clients without -s and -i, that is anyone who
    /// knows the Tox ID (refused otherwise).
    #[arg(long, requires = "vpn")]
    pub vpn_allow_anyone: bool,

    /// Server: name of the VPN's TUN device (15 characters at most).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_VPN_SERVER_DEVICE, requires = "vpn", value_parser = parse_device)]
    pub vpn_dev: String,

    /// Server: the largest MTU a VPN session may have, 576-1372 (clients
    /// ask with `vpn up --mtu`).
    #[arg(long, value_name = "BYTES", default_value_t = vpn::mtu::DEFAULT_MTU, value_parser = parse_mtu, requires = "vpn")]
    pub vpn_mtu: u16,

    /// Server: forget a saved client (one with its own identity, -C) once it
    /// has been offline for DAYS (0: never). Clients without an identity are
    /// never saved: they are kept while they come and go.
    #[arg(long, value_name = "DAYS", default_value_t = crate::app::friends::DEFAULT_EXPIRY_DAYS)]
    pub friend_expiry: u64,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub process: ProcessArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub status: StatusSocketArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// The settings file and the metrics endpoint, for the modes that run as
/// services.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ServiceArgs {
    /// Read settings from FILE (TOML; see docs/config.md). Flags
    /// given here override it. The server reads /etc/tuntox/tuntox.toml
    /// when there is one and no -c.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (off unless
    /// given; docs/metrics.md). No authentication: use a loopback address
    /// such as 127.0.0.1:9184 (another is served with a warning).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
}

/// How a mode joins the Tox network.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct NetArgs {
    /// UDP port range for Tox, FIRST:LAST (default 33445:33545).
    #[arg(short = 'u', value_name = "FIRST:LAST")]
    pub udp_ports: Option<PortRange>,

    /// Bootstrap nodes from FILE in nodes.tox.chat JSON format, instead of
    /// the built-in list.
    #[arg(short = 'b', value_name = "FILE")]
    pub nodes_file: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub join: JoinArgs,

    /// Use this Tox TCP relay (besides the bootstrap nodes' TCP ports);
    /// repeatable. IPv6 hosts in brackets.
    #[arg(long = "relay", value_name = "HOST:PORT:KEY")]
    pub relays: Vec<BootstrapSpec>,

    /// Do not use UDP at all: reach the network and friends through TCP
    /// relays only (--relay, the bootstrap nodes' TCP ports).
    #[arg(long)]
    pub no_udp: bool,

    /// Do not ask the router to forward our UDP port. Without this flag
    /// tuntox asks the default gateway for a UDP port mapping (PCP, then
    /// NAT-PMP, then UPnP IGD), renews it and removes it on exit, and tells
    /// friends the mapped address, so that they can reach us directly.
    #[arg(long)]
    pub no_portmap: bool,

    /// Seal data with Tox's XSalsa20-Poly1305 only. Without this flag two
    /// tuntox peers whose CPUs have AES instructions agree on AEGIS-256,
    /// several times cheaper per byte; other Tox peers are not affected.
    #[arg(long)]
    pub no_aegis: bool,
}

/// Where a node finds the Tox network: `--bootstrap` and `--no-lan`, for
/// the modes that join it ([`NetArgs`]) and for `tuntox relay`, which words
/// `--bootstrap`'s help its own way.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct JoinArgs {
    /// Bootstrap from this node instead of the built-in list; repeatable.
    /// IPv6 hosts in brackets.
    #[arg(long = "bootstrap", value_name = "HOST:PORT:KEY")]
    pub bootstrap: Vec<BootstrapSpec>,

    /// Do not announce ourselves on the local network (LAN discovery).
    #[arg(long)]
    pub no_lan: bool,
}

/// What becomes of the process: background, PID file, user.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ProcessArgs {
    /// Run in the background, logging to syslog (-S) unless --log-file is
    /// given. The command returns once tuntox
    /// runs (identity loaded, sockets bound): status 0, or 1 and the reason it
    /// could not start. The background process has no terminal, works from /
    /// and has standard input, output and error on /dev/null; relative paths
    /// given in -C, -I, -f, -b, -F, --status-socket and --log-file are resolved first. Not with -W.
    #[arg(short = 'z')]
    pub daemonize: bool,

    /// Write the process ID (and a newline) to FILE while running; removed
    /// when tuntox stops. Refuses to start if FILE names a running process.
    /// Written after -z and -U, so with -U, USER must be able to create and
    /// delete FILE.
    #[arg(short = 'F', value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Run as USER (a name or uid), with USER's group and supplementary
    /// groups. Needs root, unless USER is the current user. The switch
    /// happens before the identity in -C is read or created and before any
    /// socket is bound, so USER must own or be able to write the -C
    /// directory (and -I and -F), and -u ports below 1024 are not possible.
    /// With --vpn and `vpn up`, the TUN device is opened and created before
    /// the switch (USER need not be able to open /dev/net/tun), and USER
    /// keeps two of root's capabilities and no other: CAP_NET_ADMIN (the
    /// device, its addresses and routes, the firewall) and CAP_NET_RAW
    /// (iptables), passed on to the iptables commands it runs.
    #[arg(short = 'U', value_name = "USER")]
    pub user: Option<String>,
}

/// Where a running tuntox serves `tuntox status`.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct StatusSocketArgs {
    /// Serve `tuntox status` on this Unix socket (mode 0600, removed on
    /// exit) instead of tuntox-PID.sock in the status directory:
    /// /run/tuntox/ for root, else $XDG_RUNTIME_DIR/tuntox/ or
    /// /tmp/tuntox-UID/ (after -U: USER's).
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
}

/// `tuntox id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox vpn ...`.
#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum VpnCommand {
    /// Bring up a TUN device linked to a tuntox server and run in the
    /// foreground until stopped.
    Up(VpnUpArgs),
    /// Stop a running `tuntox vpn up` (found through its status socket): it
    /// says goodbye to the server, which frees its session at once, and
    /// removes its device.
    Down(VpnDownArgs),
}

/// `tuntox vpn down`.
#[derive(Debug, Args)]
#[command(mut_arg("config_dir", |arg| arg.hide(true)))]
pub struct VpnDownArgs {
    /// The device of the `vpn up` to stop (its --dev). Needed when several
    /// run.
    #[arg(long, value_name = "NAME", value_parser = parse_device)]
    pub dev: Option<String>,

    /// The `vpn up` serving `tuntox status` on this socket (its
    /// --status-socket). Without it: those in our status directory.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// How long to wait for it to stop, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub wait: u64,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox vpn up`.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(mut_arg("daemonize", |arg| arg.help(VPN_UP_DAEMONIZE_HELP)))]
pub struct VpnUpArgs {
    /// The server's Tox ID (`--peer TOXID` is the same). Required, here
    /// or in the config file.
    #[arg(short = 'i', alias = "peer", value_name = "TOXID")]
    pub peer: Option<ToxId>,

    /// Shared secret the server requires.
    #[arg(short = 's', value_name = "SECRET", env = "TUNTOX_SHARED_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,

    /// Read the shared secret from FILE (its first line), at start. FILE
    /// must not be readable by group or others.
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,

    /// Route CIDR through the server (it must offer it). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub route: Vec<IpNet>,

    /// MTU of the TUN device, 576-1372 (one IP packet per Tox packet).
    #[arg(long, value_name = "BYTES", default_value_t = vpn::mtu::DEFAULT_MTU, value_parser = parse_mtu)]
    pub mtu: u16,

    /// Name of the TUN device (15 characters at most).
    #[arg(long, value_name = "NAME", default_value = "tuntox0", value_parser = parse_device)]
    pub dev: String,

    /// Exit with an error when the server has not accepted us within SECS
    /// of start (0 waits forever). Once accepted, a lost server is waited
    /// for without limit.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub connect_timeout: u64,

    /// Write our Tox ID to FILE.
    #[arg(short = 'I', value_name = "FILE")]
    pub id_file: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub process: ProcessArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub status: StatusSocketArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox relay`.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(
    mut_arg("bootstrap", |arg| arg.help(RELAY_BOOTSTRAP_HELP)),
    mut_arg("config_dir", |arg| arg.help(RELAY_CONFIG_HELP)),
    mut_arg("status_socket", |arg| arg.help(RELAY_STATUS_SOCKET_HELP))
)]
pub struct RelayArgs {
    /// UDP port of the DHT bootstrap node.
    #[arg(long, value_name = "PORT", default_value_t = 33445)]
    pub port: u16,

    /// TCP relay port; repeatable (default 33445).
    #[arg(long = "tcp-port", value_name = "PORT")]
    pub tcp_ports: Vec<u16>,

    /// Print the relay's public key (64 hex characters, creating the key
    /// pair in the config directory when missing) and exit.
    #[arg(long)]
    pub print_key: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub join: JoinArgs,

    /// TCP relay connections at most; more are refused.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_clients: u32,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub service: ServiceArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub status: StatusSocketArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox status`.
#[derive(Debug, Args)]
#[command(mut_arg("config_dir", |arg| arg.hide(true)))]
pub struct StatusArgs {
    /// Read the status of the tuntox serving it on this socket (its
    /// --status-socket). Without it: every tuntox in our status directory
    /// (/run/tuntox/ for root, else $XDG_RUNTIME_DIR/tuntox/ or
    /// /tmp/tuntox-UID/).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Print JSON instead of text: one object per line, one line per
    /// running tuntox.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox ping`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["peer", "peer_arg"])))]
pub struct PingArgs {
    /// The server's Tox ID (`--peer TOXID` is the same).
    #[arg(short = 'i', alias = "peer", value_name = "TOXID")]
    pub peer: Option<ToxId>,

    /// The server's Tox ID, as -i gives it (for `tuntox ping TOXID`).
    #[arg(value_name = "TOXID", conflicts_with = "peer")]
    pub peer_arg: Option<ToxId>,

    /// Shared secret the server requires.
    #[arg(short = 's', value_name = "SECRET", env = "TUNTOX_SHARED_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,

    /// Stop after COUNT round trips.
    #[arg(short = 'c', value_name = "COUNT")]
    pub count: Option<u32>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub net: NetArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox netcheck`.
#[derive(Debug, Args)]
#[command(mut_arg("config_dir", |arg| arg.hide(true)))]
pub struct NetcheckArgs {
    /// Bootstrap nodes from FILE in nodes.tox.chat JSON format, instead of
    /// the built-in list.
    #[arg(short = 'b', value_name = "FILE")]
    pub nodes_file: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub join: JoinArgs,

    /// Also time this Tox TCP relay; repeatable. IPv6 hosts in brackets.
    #[arg(long = "relay", value_name = "HOST:PORT:KEY")]
    pub relays: Vec<BootstrapSpec>,

    /// Do not ask the default gateway about port mapping.
    #[arg(long)]
    pub no_portmap: bool,

    /// How long the DHT nodes have to say where they see us.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: u64,

    /// Print JSON instead of text (one object).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `tuntox friends ...`.
#[derive(Debug, Subcommand)]
pub enum FriendsCommand {
    /// Print each friend: its public key, whether it is online (on a
    /// running server), how long it is kept, and when it was last seen.
    List(FriendsListArgs),
    /// Forget a friend: it leaves the friend list and `tox_save`. A client
    /// that still has the secret (and is on the -i allow-list, if any) is
    /// accepted again when it asks: change the secret to keep it out.
    Remove(FriendsRemoveArgs),
}

/// `tuntox friends list`.
#[derive(Debug, Args)]
pub struct FriendsListArgs {
    /// Print JSON instead of text: one object per line, one line per friend.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: FriendsTarget,
}

/// `tuntox friends remove`.
#[derive(Debug, Args)]
pub struct FriendsRemoveArgs {
    /// The friend's public key (64 hex characters) or Tox ID.
    #[arg(value_name = "KEY")]
    pub key: PeerId,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: FriendsTarget,
}

/// Which server's friends.
#[derive(Debug, Args)]
#[command(mut_arg("config_dir", |arg| arg.help(FRIENDS_CONFIG_HELP)))]
pub struct FriendsTarget {
    /// The running server serving `tuntox status` on this socket (its
    /// --status-socket). Without it, the server is found by the lock on its
    /// config directory, or the directory is read directly when no server
    /// runs on it.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// `vpn up -z`'s help: the main command's names flags `vpn up` does not take.
const VPN_UP_DAEMONIZE_HELP: &str = "Run in the background, logging to syslog (-S) unless --log-file is given. The command returns once tuntox runs (the \
                                     device made, identity loaded, sockets bound): status 0, or 1 and the reason it \
                                     could not start. The background process has no terminal, works from / and has \
                                     standard input, output and error on /dev/null; relative paths given in -C, -I, \
                                     -b, -F, --status-socket and --log-file are resolved first";
/// `tuntox relay -C`'s help.
const RELAY_CONFIG_HELP: &str = "Config directory: holds the relay's key pair (`relay_keys`, made when missing). \
                                 Default /etc/tuntox/";
/// `tuntox relay --status-socket`'s help (the relay has no -U).
const RELAY_STATUS_SOCKET_HELP: &str = "Serve `tuntox status` on this Unix socket (mode 0600, removed on exit) \
                                        instead of tuntox-PID.sock in the status directory: /run/tuntox/ for root, \
                                        else $XDG_RUNTIME_DIR/tuntox/ or /tmp/tuntox-UID/";
/// `tuntox friends -C`'s help.
const FRIENDS_CONFIG_HELP: &str = "The server's config directory (its -C), holding `tox_save` and the friend list. \
                                   Default /etc/tuntox/";

pub(crate) fn parse_device(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != "..";
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not a device name (1-15 letters, digits, '-', '_' or '.')"))
    }
}

pub(crate) fn parse_mtu(s: &str) -> Result<u16, String> {
    let mtu = s.parse::<u16>().map_err(|_| format!("'{s}' is not a number"))?;
    vpn::mtu::check_mtu(mtu).map_err(|e| e.to_string())
}

/// `-i`: a full Tox ID, or (on a server's allow-list) just a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerId {
    /// 76 hex characters.
    ToxId(ToxId),
    /// 64 hex characters.
    PublicKey(PublicKey),
}

impl PeerId {
    /// The peer's long-term public key.
    pub fn public_key(&self) -> &PublicKey {
        match self {
            Self::ToxId(id) => id.public_key(),
            Self::PublicKey(key) => key,
        }
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ToxId(id) => id.fmt(f),
            Self::PublicKey(key) => key.fmt(f),
        }
    }
}

impl FromStr for PeerId {
    type Err = PeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().chars().count() {
            TOX_ID_HEX_LEN => s.parse().map(Self::ToxId).map_err(PeerIdError::Parse),
            64 => parse_public_key(s).map(Self::PublicKey).map_err(PeerIdError::Parse),
            got => Err(PeerIdError::Length(got)),
        }
    }
}

/// Why an `-i` value is not a Tox ID or public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    /// Neither 76 nor 64 characters.
    #[error("expected a Tox ID (76 hex characters) or a public key (64), got {0} characters")]
    Length(usize),
    /// Right length, bad content.
    #[error(transparent)]
    Parse(ParseIdError),
}

/// `-u FIRST:LAST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port, included.
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected FIRST:LAST, two ports in 1-65535 with FIRST <= LAST";
        let (first, last) = s.split_once(':').ok_or_else(|| format!("no ':'; {expected}"))?;
        let port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("'{p}' is not a port; {expected}")),
            Ok(port) => Ok(port),
        };
        let (first, last) = (port(first)?, port(last)?);
        if first > last {
            return Err(format!("{first} is above {last}; {expected}"));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    const ID: &str = "C8FECA81BE196CDF2CADEABF13C4903D7632DCE4955AA68B6E5D9ADEF54E2616123456786FC2";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tuntox").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn c_tuntox_client_flags() {
        let cli = parse(&["-i", ID, "-s", "pw", "-L", "2222:127.0.0.1:22", "-L", "8080@web@80", "-d", "-d"]).unwrap();
        assert!(cli.command.is_none());
        let f = &cli.forward;
        assert_eq!(f.local.len(), 2);
        assert_eq!(f.peers, [PeerId::ToxId(ID.parse().unwrap())]);
        assert_eq!(f.secret, Some(Secret::new("pw").unwrap()));
        assert_eq!(f.common.debug, 2);
        assert_eq!(f.common.config_dir(), PathBuf::from("/etc/tuntox/"));
    }

    #[test]
    fn server_flags_and_subcommands() {
        let cli =
            parse(&["-C", "/tmp/x", "-i", &ID[..64], "-u", "4000:4010", "-t", "0", "-z", "-U", "nobody"]).unwrap();
        assert_eq!(cli.forward.net.udp_ports, Some(PortRange { first: 4000, last: 4010 }));
        assert!(matches!(cli.forward.peers[0], PeerId::PublicKey(_)));

        let cli = parse(&["id", "-C", "/tmp/t1"]).unwrap();
        let Some(Command::Id(id)) = cli.command else { panic!("not id") };
        assert_eq!(id.common.config_dir(), PathBuf::from("/tmp/t1"));

        let cli = parse(&["vpn", "up", "--peer", ID, "--route", "192.168.77.0/24"]).unwrap();
        let Some(Command::Vpn(VpnCommand::Up(up))) = cli.command else { panic!("not vpn up") };
        assert_eq!(up.route, ["192.168.77.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(up.mtu, 1280);

        let key = &ID[..64];
        let boot = format!("127.0.0.1:33445:{key}");
        let cli =
            parse(&["relay", "--tcp-port", "443", "--tcp-port", "3389", "--bootstrap", &boot, "--no-lan"]).unwrap();
        let Some(Command::Relay(relay)) = cli.command else { panic!("not relay") };
        assert_eq!((relay.port, relay.tcp_ports.as_slice(), relay.max_clients), (33445, &[443, 3389][..], 4096));
        assert!(relay.join.no_lan && !relay.print_key);
        assert_eq!(relay.join.bootstrap[0].port, 33445);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["-L", "99999:x:1"][..],
            &["-i", "NOTHEX"],
            &["-W", "host"],
            &["-W", "h:22", "-L", "1:h:2"],
            &["-u", "10:5"],
            &["-q", "-d"],
            &["-s", ""],
            &["vpn", "up", "--peer", "x"],
            &["vpn", "up", "--peer", ID, "--mtu", "1500"],
            &["-C", "/x", "id"],
            &["relay", "--tcp-port", "70000"],
            &["relay", "--max-clients", "0"],
            &["relay", "--bootstrap", "host:1"],
        ] {
            let err = parse(args).unwrap_err();
            assert_ne!(err.exit_code(), 0, "{args:?}");
        }
        let err = parse(&["-i", "NOTHEX"]).unwrap_err().to_string();
        assert!(err.contains("expected a Tox ID (76 hex characters) or a public key (64), got 6"), "{err}");
    }
}
