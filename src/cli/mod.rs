//! The command line: parsing, logging, and dispatch to the engines.
//!
//! Exit codes: 0 success, 1 a runtime failure (the message says what; for
//! `tuntox status`, also: no running tuntox found; a config file that
//! cannot be used), 2 a usage error. Errors
//! are one line on standard error, prefixed `tuntox:` (and also logged when
//! logging goes to syslog). Standard output carries only what a command
//! promises (the Tox ID for `id`, the byte stream for `-W`, the report of
//! `status`).
//!
//! A forward mode starts in this order: the config file (`-c`, see
//! [`config`]) is read and applied under the flags, flags are checked and
//! paths made absolute (`-z`), logging starts (syslog for `-S` and `-z`),
//! the secret file is read (`--secret-file`), the Tox settings are read
//! (`-b`, `--bootstrap`), the VPN's TUN device is opened
//! and created (`--vpn`, `vpn up`: opening `/dev/net/tun` may need root's
//! file rights), privileges are dropped (`-U`), the process forks into the
//! background (`-z`), the PID file is written (`-F`), and only then does
//! the async runtime start and the mode load its identity from `-C`, bind
//! its sockets and configure the device.

pub mod args;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod pidfile;
pub mod privileges;
pub mod syslog;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::args::{
    Cli, Command, CommonArgs, ConfigCommand, ForwardArgs, FriendsCommand, JoinArgs, NetArgs, NetcheckArgs, PeerId,
    PingArgs, ProcessArgs, RelayArgs, StatusArgs, StatusSocketArgs, VpnCommand, VpnDownArgs, VpnUpArgs,
};
use self::daemon::{Forked, Readiness};
use self::logging::DefaultLevel;
use self::pidfile::PidFile;
use self::privileges::Account;
use self::syslog::Syslog;
use crate::app::Started;
use crate::app::bootstrap::{BootstrapNode, builtin_nodes, read_nodes_file};
use crate::app::client::{self, ClientConfig, ClientIdentity, ClientMode};
use crate::app::identity::Identity;
use crate::app::server::{self, ServerConfig, VpnServerConfig};
use crate::app::status::{self, Place};
use crate::app::vpn_client::{self, VpnClientConfig, route_covering};
use crate::crypto::{KeyPair, SodiumRng};
use crate::driver::tox::ToxConfig;
use crate::driver::udp::UdpConfig;
use crate::wire::packed_node::PackedNode;
use crate::wire::tox_id::NoSpam;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags that parse but do not fit together; the help to see.
    #[error("{0} (see {1} --help)")]
    Usage(String, &'static str),
    /// The process `-z` started in the background failed to start; it has
    /// logged the error itself.
    #[error(transparent)]
    Background(anyhow::Error),
    /// Anything else, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Usage(..) => ExitCode::from(2),
            Self::Background(_) | Self::Other(_) => ExitCode::from(1),
        }
    }
}

/// Parses `args` (the first is the program name) and runs the command.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match effective(&args) {
        Ok(cli) => cli,
        Err(Effective::Usage(err)) => return report_usage_error(&err, &args),
        Err(Effective::Config(err)) => {
            eprintln!("tuntox: {err}");
            return ExitCode::from(1);
        }
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if logging::elsewhere() && !matches!(err, CliError::Background(_)) {
                tracing::error!("{err:#}");
            }
            eprintln!("tuntox: {err:#}");
            err.exit_code()
        }
    }
}

/// Why the command line and config file give no settings.
#[derive(Debug, thiserror::Error)]
pub enum Effective {
    /// The command line does not parse.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// The settings the arguments (the first is the program name) give: the
/// flags, and for the modes that take one the config file (`-c`, or for
/// the server [`config::DEFAULT_FILE`] when it exists) under them. A file
/// and the flags that say the same give equal values.
pub fn effective(args: &[OsString]) -> Result<Cli, Effective> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let given_in = |matches: &clap::ArgMatches, id: &str| {
        matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
    };
    match &mut cli.command {
        None => {
            let given = |id: &str| given_in(&matches, id);
            let client_flags = ["local", "stdio", "dynamic", "ping"].iter().any(|id| given(id));
            let default = Path::new(config::DEFAULT_FILE);
            let path = match &cli.forward.service.config {
                Some(path) => path.clone(),
                None if !client_flags && default.exists() => default.to_owned(),
                None => return Ok(cli),
            };
            let file = config::load(&path)?;
            if cli.forward.service.config.is_none() && file.is_client() {
                return Err(config::ConfigError::Invalid {
                    path,
                    message: "the default config file is the server's; it has [client] or [forwards] (a client \
                              reads its file with -c)"
                        .to_owned(),
                }
                .into());
            }
            config::apply_forward(&path, &file, &given, &mut cli.forward)?;
            cli.forward.service.config = Some(path);
        }
        Some(Command::Vpn(VpnCommand::Up(args))) => {
            let Some(path) = args.service.config.clone() else { return Ok(cli) };
            let sub = matches.subcommand_matches("vpn").and_then(|m| m.subcommand_matches("up"));
            let given = |id: &str| sub.is_some_and(|m| given_in(m, id));
            config::apply_vpn_up(&path, &config::load(&path)?, &given, args)?;
        }
        Some(Command::Relay(args)) => {
            let Some(path) = args.service.config.clone() else { return Ok(cli) };
            let sub = matches.subcommand_matches("relay");
            let given = |id: &str| sub.is_some_and(|m| given_in(m, id));
            config::apply_relay(&path, &config::load(&path)?, &given, args)?;
        }
        _ => {}
    }
    Ok(cli)
}

/// Help and version go to standard output with status 0; a usage error is
/// one line on standard error with status 2, with clap's tip (a similar
/// flag) and the help of the command it is about.
fn report_usage_error(err: &clap::Error, args: &[OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return ExitCode::from(2);
    }
    let rendered = err.to_string();
    let mut line = one_line(&rendered);
    for tip in rendered.lines().filter_map(|l| l.trim().strip_prefix("tip: ")) {
        line.push_str("; ");
        line.push_str(tip);
    }
    eprintln!("tuntox: {line} (see {} --help)", command_of(args));
    ExitCode::from(2)
}

/// The command the arguments run: `tuntox`, or `tuntox` and the
/// subcommand's names (`tuntox vpn up`), as far as they are right.
fn command_of(args: &[OsString]) -> String {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut words = vec!["tuntox".to_owned()];
    for arg in args.iter().skip(1) {
        let Some(name) = arg.to_str() else { break };
        let Some(sub) = command.find_subcommand(name).cloned() else { break };
        words.push(name.to_owned());
        command = sub;
    }
    words.join(" ")
}

/// A clap error in one line: its first line, and when that ends with a
/// colon ("required arguments were not provided:") the indented list
/// after it.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if line.ends_with(':') {
        let items: Vec<&str> =
            lines.take_while(|l| l.starts_with(' ') && !l.trim().is_empty()).map(str::trim).collect();
        if !items.is_empty() {
            line.push(' ');
            line.push_str(&items.join(", "));
        }
    }
    line
}

fn dispatch(cli: Cli) -> Result<(), CliError> {
    set_command(match &cli.command {
        None => "tuntox",
        Some(Command::Id(_)) => "tuntox id",
        Some(Command::Vpn(VpnCommand::Up(_))) => "tuntox vpn up",
        Some(Command::Vpn(VpnCommand::Down(_))) => "tuntox vpn down",
        Some(Command::Relay(_)) => "tuntox relay",
        Some(Command::Status(_)) => "tuntox status",
        Some(Command::Ping(_)) => "tuntox ping",
        Some(Command::Friends(FriendsCommand::List(_))) => "tuntox friends list",
        Some(Command::Friends(FriendsCommand::Remove(_))) => "tuntox friends remove",
        Some(Command::Netcheck(_)) => "tuntox netcheck",
        Some(Command::Config(ConfigCommand::Check(_))) => "tuntox config check",
        Some(Command::Completions(_)) => "tuntox completions",
    });
    match cli.command {
        Some(Command::Id(args)) => {
            start(&args.common, DefaultLevel::Warn, false)?;
            print_id(&args.common)
        }
        Some(Command::Vpn(VpnCommand::Up(args))) => run_vpn_up(args),
        Some(Command::Vpn(VpnCommand::Down(args))) => run_vpn_down(&args),
        Some(Command::Relay(args)) => run_relay(args),
        Some(Command::Status(args)) => run_status(&args),
        Some(Command::Ping(args)) => run_ping(args),
        Some(Command::Friends(command)) => run_friends(command),
        Some(Command::Netcheck(args)) => run_netcheck(&args),
        Some(Command::Config(ConfigCommand::Check(args))) => run_config_check(&args.file),
        Some(Command::Completions(args)) => print_completions(args.shell),
        None => run_forward(cli.forward),
    }
}

/// Sets up logging for a mode: to the `--log-file`; else to syslog with
/// `-S` or `-z` (`daemonize`); else to standard error (which may be the
/// journal).
fn start(common: &CommonArgs, default: DefaultLevel, daemonize: bool) -> Result<(), CliError> {
    if let Some(path) = &common.log_file {
        let file = logging::LogFile::open(path)
            .map_err(|e| anyhow::anyhow!("--log-file: cannot open {} for appending: {e}", path.display()))?;
        logging::init(common, default, logging::Sink::File(file));
        return Ok(());
    }
    if !common.syslog && !daemonize {
        logging::init(common, default, logging::Sink::stderr());
        return Ok(());
    }
    let path = Path::new(syslog::DEFAULT_SOCKET);
    let syslog = Syslog::connect(path).map_err(|e| {
        let (flag, instead) = if daemonize {
            ("-z logs to syslog", "or log to a file with --log-file FILE")
        } else {
            ("-S", "or log to standard error without -S, or to a file with --log-file FILE")
        };
        anyhow::anyhow!(
            "{flag}: cannot reach the syslog daemon at {}: {e} (start journald, rsyslog or syslogd, {instead})",
            path.display()
        )
    })?;
    logging::init(common, default, logging::Sink::Syslog(syslog));
    Ok(())
}

/// Connects to the service manager when it asked for notifications
/// (`NOTIFY_SOCKET`, see [`crate::app::notify`]).
fn service_manager() -> Result<(), CliError> {
    crate::app::notify::init().map_err(|e| {
        anyhow::anyhow!("cannot use the service manager's socket ({}): {e}", crate::app::notify::SOCKET_ENV)
    })?;
    Ok(())
}

/// `tuntox completions SHELL`: the script on standard output.
fn print_completions(shell: args::Shell) -> Result<(), CliError> {
    let mut script = Vec::new();
    completions(shell, &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// The completion script for `shell`.
pub fn completions(shell: args::Shell, out: &mut Vec<u8>) {
    use clap::CommandFactory;
    use clap_complete::shells;
    let mut command = Cli::command();
    match shell {
        args::Shell::Bash => clap_complete::generate(shells::Bash, &mut command, "tuntox", out),
        args::Shell::Zsh => clap_complete::generate(shells::Zsh, &mut command, "tuntox", out),
        args::Shell::Fish => clap_complete::generate(shells::Fish, &mut command, "tuntox", out),
    }
}

/// The manual pages: `tuntox.1`, and `tuntox-SUB.1` for each subcommand
/// (`tuntox-vpn-up.1`), as (file name, roff text). Their version is the
/// package's, without the commit, so that they change only with the
/// program's options.
pub fn manpages() -> Vec<(String, Vec<u8>)> {
    use clap::CommandFactory;
    fn walk(command: clap::Command, name: String, pages: &mut Vec<(String, Vec<u8>)>) {
        let command = command.name(name.clone()).bin_name(name.replace('-', " "));
        let mut page = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = clap_mangen::Man::new(command.clone()).render(&mut page);
        pages.push((format!("{name}.1"), page));
        for sub in command.get_subcommands() {
            walk(sub.clone().version(env!("CARGO_PKG_VERSION")), format!("{name}-{}", sub.get_name()), pages);
        }
    }
    let mut pages = Vec::new();
    walk(Cli::command().version(env!("CARGO_PKG_VERSION")), "tuntox".to_owned(), &mut pages);
    pages
}

/// `tuntox id`: the Tox ID and a newline on standard output, nothing else.
fn print_id(common: &CommonArgs) -> Result<(), CliError> {
    let (identity, _) = Identity::load_or_create(&common.config_dir()).map_err(|e| CliError::Other(e.into()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", identity.tox_id())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// C tuntox's modes: server, or client with -L, -W, -D or -p.
fn run_forward(mut args: ForwardArgs) -> Result<(), CliError> {
    let client = !args.local.is_empty() || args.stdio.is_some() || !args.dynamic.is_empty() || args.ping;
    let default = if args.stdio.is_some() { DefaultLevel::Error } else { DefaultLevel::Info };
    if args.process.daemonize && args.stdio.is_some() {
        return Err(usage("-z cannot be used with -W (-W needs standard input and output)"));
    }
    if client && args.vpn {
        return Err(usage("--vpn is a server flag; a VPN client runs `tuntox vpn up -i TOXID`"));
    }
    let no_secret = args.secret.is_none() && args.secret_file.is_none();
    if !client && args.vpn && no_secret && args.peers.is_empty() && !args.vpn_allow_anyone {
        return Err(usage(
            "--vpn without -s or -i lets anyone who knows the Tox ID onto this machine's networks: give -s SECRET \
             or -i KEY, or --vpn-allow-anyone",
        ));
    }
    if args.process.daemonize {
        let paths = [&mut args.common.config_dir, &mut args.id_file, &mut args.rules, &mut args.net.nodes_file];
        let paths = paths.into_iter().chain([&mut args.secret_file]);
        let more = [&mut args.process.pid_file, &mut args.status.status_socket, &mut args.common.log_file];
        absolute_paths(paths.chain(more))?;
    }
    start(&args.common, default, args.process.daemonize)?;
    service_manager()?;
    // Read before -U drops root's rights.
    if let Some(path) = &args.secret_file {
        args.secret = Some(config::read_secret_file(path).map_err(|e| CliError::Other(e.into()))?);
    }
    let mut tox = tox_config(&args.net)?;
    // -t 0 is C tuntox's "no relay".
    if let Some(port) = args.tcp_relay_port.filter(|port| *port != 0) {
        tox.tcp_server_ports = vec![port];
    }
    let keep = if args.vpn { privileges::VPN_CAPABILITIES } else { &[] };
    let process = Process::new(&args.process, keep)?;
    if client {
        let server = match args.peers.as_slice() {
            [PeerId::ToxId(id)] => *id,
            [] => return Err(usage("a client needs the server's Tox ID (-i TOXID)")),
            [PeerId::PublicKey(_)] => {
                return Err(usage("-i needs the server's full Tox ID (76 hex characters), not only its public key"));
            }
            _ => return Err(usage("a client takes one -i (the server's Tox ID)")),
        };
        let mode = if let Some(target) = args.stdio.clone() {
            ClientMode::Stdio(target)
        } else if args.ping {
            if !args.local.is_empty() || !args.dynamic.is_empty() {
                return Err(usage("-p cannot be combined with -L or -D"));
            }
            ClientMode::Ping { count: None }
        } else {
            ClientMode::Listen { local: args.local.clone(), dynamic: args.dynamic.clone() }
        };
        let mut config = ClientConfig {
            identity: client_identity(&args.common),
            server,
            secret: args.secret.clone(),
            id_file: args.id_file.clone(),
            connect_timeout: match args.connect_timeout {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None if matches!(mode, ClientMode::Listen { .. }) => None,
                None => Some(CONNECT_TIMEOUT),
            },
            mode,
            tox,
            status: place(&args.status),
            metrics: args.service.metrics,
            started: Started::default(),
        };
        launch(process, |cancel, started| {
            config.started = started;
            client::run(config, cancel)
        })
    } else {
        // Before `launch` drops root's rights (-U).
        let vpn_device = if args.vpn { Some(open_device(&args.vpn_dev, server::VPN_NEEDS)?) } else { None };
        let mut config = ServerConfig {
            config_dir: args.common.config_dir(),
            secret: args.secret.clone(),
            allowed: args.peers.iter().map(|p| *p.public_key()).collect(),
            friend_expiry: (args.friend_expiry > 0).then(|| Duration::from_secs(args.friend_expiry * 86_400)),
            id_file: args.id_file.clone(),
            rules: args.rules.clone(),
            tox,
            vpn: args.vpn.then(|| VpnServerConfig {
                pool_v4: args.vpn_pool,
                routes: args.vpn_route.clone(),
                nat: args.vpn_nat,
                allow_clients: args.vpn_allow_clients,
                device: args.vpn_dev.clone(),
                mtu: args.vpn_mtu,
            }),
            vpn_device,
            status: place(&args.status),
            metrics: args.service.metrics,
            started: Started::default(),
        };
        launch(process, |cancel, started| {
            config.started = started;
            server::run(config, cancel)
        })
    }
}

/// `tuntox vpn up`.
fn run_vpn_up(mut args: VpnUpArgs) -> Result<(), CliError> {
    if args.process.daemonize {
        let paths = [&mut args.common.config_dir, &mut args.id_file, &mut args.net.nodes_file];
        let paths = paths.into_iter().chain([&mut args.secret_file]);
        let more = [&mut args.process.pid_file, &mut args.status.status_socket, &mut args.common.log_file];
        absolute_paths(paths.chain(more))?;
    }
    start(&args.common, DefaultLevel::Info, args.process.daemonize)?;
    service_manager()?;
    let Some(server) = args.peer else {
        return Err(usage("vpn up needs the server's Tox ID (-i TOXID, or server in [vpn_client] of -c FILE)"));
    };
    // Read before -U drops root's rights.
    if let Some(path) = &args.secret_file {
        args.secret = Some(config::read_secret_file(path).map_err(|e| CliError::Other(e.into()))?);
    }
    let tox = tox_config(&args.net)?;
    // Tox must reach its bootstrap nodes outside the tunnel.
    for node in &tox.bootstrap {
        for addr in &node.udp {
            if let Some(route) = route_covering(&args.route, addr.ip()) {
                return Err(usage(&format!(
                    "--route {route} holds the bootstrap node {}: Tox's own packets would enter the tunnel (routes \
                     that cover the bootstrap nodes or the server, such as 0.0.0.0/0, are not supported)",
                    addr.ip()
                )));
            }
        }
    }
    let process = Process::new(&args.process, privileges::VPN_CAPABILITIES)?;
    // Before `launch` drops root's rights (-U).
    let opened = open_device(&args.dev, vpn_client::NEEDS)?;
    let mut config = VpnClientConfig {
        identity: client_identity(&args.common),
        server,
        secret: args.secret.clone(),
        routes: args.route.clone(),
        mtu: args.mtu,
        device: args.dev.clone(),
        opened: Some(opened),
        connect_timeout: (args.connect_timeout > 0).then(|| Duration::from_secs(args.connect_timeout)),
        id_file: args.id_file.clone(),
        tox,
        status: place(&args.status),
        metrics: args.service.metrics,
        started: Started::default(),
    };
    launch(process, |cancel, started| {
        config.started = started;
        vpn_client::run(config, cancel)
    })
}

/// `tuntox vpn down`: SIGTERM to the `vpn up` on `--dev` (or the only
/// one), found through its status socket, then waits for it to end.
fn run_vpn_down(args: &VpnDownArgs) -> Result<(), CliError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    start(&args.common, DefaultLevel::Warn, false)?;
    let (sockets, place) = match &args.socket {
        Some(path) => (vec![path.clone()], path.display().to_string()),
        None => {
            let dir = status::default_dir();
            (status::sockets_in(&dir).unwrap_or_default(), dir.display().to_string())
        }
    };
    let running: Vec<(u32, String)> = sockets
        .iter()
        .filter_map(|path| status::query(path, STATUS_TIMEOUT).ok())
        .filter(|report| report.mode == "vpn client")
        .filter_map(|report| Some((report.pid, report.vpn?.device)))
        .filter(|(_, dev)| args.dev.as_ref().is_none_or(|want| want == dev))
        .collect();
    let (pid, dev) = match running.as_slice() {
        [one] => one.clone(),
        [] => {
            let which = args.dev.as_ref().map(|d| format!(" on {d}")).unwrap_or_default();
            return Err(anyhow::anyhow!("no `tuntox vpn up` running{which} (looked in {place})").into());
        }
        several => {
            let devs: Vec<&str> = several.iter().map(|(_, d)| d.as_str()).collect();
            return Err(usage(&format!("several `tuntox vpn up` run ({}): name one with --dev", devs.join(", "))));
        }
    };
    let process = Pid::from_raw(i32::try_from(pid).map_err(|_| anyhow::anyhow!("bad process ID {pid}"))?);
    kill(process, Signal::SIGTERM).map_err(|e| anyhow::anyhow!("cannot stop process {pid} ({dev}): {e}"))?;
    // Gone when signal 0 finds no process (or only a zombie of a parent
    // that has not reaped it: its /proc entry says so).
    let gone = || {
        kill(process, None).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
    };
    const POLL: Duration = Duration::from_millis(50);
    let mut polls = args.wait.saturating_mul(1000) / POLL.as_millis() as u64;
    while !gone() {
        if polls == 0 {
            return Err(anyhow::anyhow!("process {pid} ({dev}) did not stop within {} s of SIGTERM", args.wait).into());
        }
        polls -= 1;
        std::thread::sleep(POLL);
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "stopped tuntox vpn up on {dev} (process {pid})")
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// How long the launcher of `-z` waits for the background process to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What becomes of the process before the runtime starts: `-U`, `-z`, `-F`.
#[derive(Debug)]
struct Process {
    user: Option<Account>,
    /// Capabilities kept across `-U` (the VPN's).
    keep: &'static [privileges::Capability],
    daemonize: bool,
    pid_file: Option<PathBuf>,
}

impl Process {
    /// Finds the `-U` user and checks that we can become it, so that a
    /// hopeless `-U` fails before anything is set up.
    fn new(args: &ProcessArgs, keep: &'static [privileges::Capability]) -> Result<Process, CliError> {
        let user = args.user.as_deref().map(privileges::lookup).transpose()?;
        if let Some(account) = &user {
            privileges::plan(account, nix::unistd::getuid(), nix::unistd::geteuid())?;
        }
        Ok(Process { user, keep, daemonize: args.daemonize, pid_file: args.pid_file.clone() })
    }
}

/// Drops privileges, forks into the background, writes the PID file, then
/// runs the mode. In the background, the launcher returns as soon as the
/// mode reports its start (or its failure).
fn launch<F, Fut>(process: Process, f: F) -> Result<(), CliError>
where
    F: FnOnce(CancellationToken, Started) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // Root's rights end here, before the identity in -C is read or created
    // and before any socket is bound (see the privileges module); the VPN's
    // device was opened before.
    if let Some(account) = &process.user {
        privileges::switch_keeping(account, process.keep)?;
    }
    let mut readiness = None;
    if process.daemonize {
        match daemon::daemonize(START_TIMEOUT)? {
            Forked::Launcher(verdict) => return verdict.map_err(CliError::Background),
            Forked::Daemon(daemon) => readiness = Some(daemon),
        }
    }
    let result = (|| {
        let _pid_file = process.pid_file.as_deref().map(PidFile::create).transpose()?;
        run_async(Threads::One, f, &mut readiness)
    })();
    // Still waiting: the mode ended before it started.
    if let Some(readiness) = readiness {
        match &result {
            Err(err) => readiness.failed(&format!("{err:#}")),
            Ok(()) => readiness.failed("-z: the background process was stopped during start-up"),
        }
    }
    result
}

/// Opens `/dev/net/tun` and creates the VPN's device `name` (with
/// offload), before `-U` drops root's rights and before `-z` forks: the
/// descriptor is kept across both, and the mode configures the device
/// later with CAP_NET_ADMIN alone. `needs` ends the error message.
fn open_device(name: &str, needs: &str) -> Result<vpn::device::OpenedDevice, CliError> {
    let opened = vpn::device::Device::open(Some(name), true).map_err(|e| {
        let errno = match &e {
            vpn::device::DeviceError::Create { reason, .. } => reason.raw_os_error(),
            _ => None,
        };
        CliError::Other(match errno {
            Some(libc::EBUSY) => {
                anyhow::anyhow!("{e}: the device is in use (another `tuntox vpn up` or --vpn?); pick another name")
            }
            Some(libc::EINVAL) => anyhow::anyhow!("{e}: a device of that name exists and is not a TUN device"),
            Some(libc::EPERM | libc::EACCES) | None => anyhow::anyhow!("{e} ({needs})"),
            Some(_) => anyhow::anyhow!("{e}"),
        })
    })?;
    tracing::debug!(dev = opened.name(), offload = opened.offload(), "VPN device opened");
    Ok(opened)
}

/// `-z` changes to `/`: the paths the user gave are made absolute first,
/// against the directory tuntox was started in.
fn absolute_paths<'a>(paths: impl IntoIterator<Item = &'a mut Option<PathBuf>>) -> Result<(), CliError> {
    for path in paths.into_iter().flatten() {
        *path = std::path::absolute(&*path)
            .map_err(|e| anyhow::anyhow!("cannot make {} an absolute path: {e}", path.display()))?;
    }
    Ok(())
}

/// `tuntox ping -i TOXID`.
fn run_ping(args: PingArgs) -> Result<(), CliError> {
    start(&args.common, DefaultLevel::Warn, false)?;
    let Some(server) = args.peer.or(args.peer_arg) else {
        return Err(usage("tuntox ping needs the server's Tox ID (-i TOXID)"));
    };
    let config = ClientConfig {
        identity: client_identity(&args.common),
        server,
        secret: args.secret.clone(),
        id_file: None,
        mode: ClientMode::Ping { count: args.count },
        connect_timeout: Some(CONNECT_TIMEOUT),
        tox: tox_config(&args.net)?,
        status: Place::Off,
        metrics: None,
        started: Started::default(),
    };
    run_async(Threads::One, |cancel, _| client::run(config, cancel), &mut None)
}

/// `tuntox friends list|remove`: on a stopped server's directory, or on a
/// running server through its status socket.
fn run_friends(command: FriendsCommand) -> Result<(), CliError> {
    use crate::app::friends::{FriendsAt, unix_now};
    let target = match &command {
        FriendsCommand::List(args) => &args.target,
        FriendsCommand::Remove(args) => &args.target,
    };
    start(&target.common, DefaultLevel::Warn, false)?;
    let at = FriendsAt::find(&target.common.config_dir(), target.socket.as_deref())?;
    let mut text = String::new();
    match &command {
        FriendsCommand::List(args) => {
            let now = unix_now();
            for friend in at.list()? {
                if args.json {
                    text.push_str(&serde_json::to_string(&friend).map_err(|e| CliError::Other(e.into()))?);
                } else {
                    text.push_str(&friend.render(now));
                }
                text.push('\n');
            }
        }
        FriendsCommand::Remove(args) => {
            text = at.remove(args.key.public_key())?;
            text.push('\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// `tuntox netcheck`: the report on standard output; status 1 when
/// nothing answered.
fn run_netcheck(args: &NetcheckArgs) -> Result<(), CliError> {
    start(&args.common, DefaultLevel::Warn, false)?;
    let mut bootstrap = bootstrap_nodes(&args.join)?;
    if let Some(path) = &args.nodes_file {
        bootstrap.extend(read_nodes_file(path).map_err(|e| CliError::Other(e.into()))?);
    }
    if bootstrap.is_empty() {
        private_network_only("the built-in list of public bootstrap nodes (pass --bootstrap or -b)")?;
        bootstrap = builtin_nodes();
    }
    let mut relays = Vec::new();
    for spec in &args.relays {
        let node = spec.resolve().map_err(|e| usage(&format!("--relay {spec}: cannot resolve the host: {e}")))?;
        relays.extend(node.udp.iter().map(|addr| PackedNode::tcp(*addr, node.public_key)));
    }
    let portmap = !args.no_portmap && {
        if !in_named_namespace() {
            private_network_only(
                "asking the router about port mapping outside a network namespace of `ip netns` (pass --no-portmap)",
            )?;
        }
        true
    };
    let config =
        crate::app::netcheck::NetcheckConfig { bootstrap, relays, portmap, timeout: Duration::from_secs(args.timeout) };
    let mut report = None;
    let slot = &mut report;
    run_async(
        Threads::One,
        |cancel, _| async move {
            tokio::select! {
                done = crate::app::netcheck::run(&config) => *slot = Some(done?),
                () = cancel.cancelled() => {}
            }
            Ok(())
        },
        &mut None,
    )?;
    let Some(report) = report else { return Err(anyhow::anyhow!("netcheck was interrupted").into()) };
    let text = if args.json {
        let mut json = serde_json::to_string(&report).map_err(|e| CliError::Other(e.into()))?;
        json.push('\n');
        json
    } else {
        crate::app::netcheck::render(&report)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))?;
    if report.usable() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("neither UDP nor any TCP relay answered: Tox cannot work from here").into())
    }
}

/// `tuntox relay`: a bootstrap node and TCP relay, or `--print-key`.
fn run_relay(args: RelayArgs) -> Result<(), CliError> {
    let dir = args.common.config_dir();
    if args.print_key {
        start(&args.common, DefaultLevel::Warn, false)?;
        let (keys, _) = crate::app::relay::load_or_create_keys(&dir).map_err(|e| CliError::Other(e.into()))?;
        let mut stdout = std::io::stdout().lock();
        return writeln!(stdout, "{}", keys.public())
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")));
    }
    start(&args.common, DefaultLevel::Info, false)?;
    service_manager()?;
    let bootstrap = bootstrap_nodes(&args.join)?;
    let lan_discovery = lan_discovery(&args.join)?;
    let tcp_ports = if args.tcp_ports.is_empty() { vec![crate::app::relay::DEFAULT_PORT] } else { args.tcp_ports };
    let config = crate::app::relay::RelayConfig {
        config_dir: dir,
        udp_port: args.port,
        tcp_ports,
        bootstrap,
        lan_discovery,
        max_clients: args.max_clients as usize,
        bind_ip: None,
        status: place(&args.status),
        metrics: args.service.metrics,
    };
    run_async(Threads::PerCore, |cancel, _| crate::app::relay::run(config, cancel), &mut None)
}

/// `tuntox config check FILE`: the settings the file gives each mode it
/// configures, as TOML on standard output with secrets masked; an error
/// (file, line and column) when it cannot be used.
fn run_config_check(path: &Path) -> Result<(), CliError> {
    use clap::Parser as _;
    let other = |e: config::ConfigError| CliError::Other(e.into());
    let file = config::load(path).map_err(other)?;
    let defaults = |words: &[&str]| {
        Cli::try_parse_from(std::iter::once("tuntox").chain(words.iter().copied()))
            .map_err(|e| CliError::Other(anyhow::anyhow!("{e}")))
    };
    let never = |_: &str| false;
    let mut text = format!("# The settings {} gives (secrets masked).\n", path.display());
    let mut secret_files = Vec::new();
    let wants_forward =
        file.server.is_some() || file.is_client() || (file.vpn_client.is_none() && file.relay.is_none());
    if wants_forward {
        let mut args = defaults(&[])?.forward;
        config::apply_forward(path, &file, &never, &mut args).map_err(other)?;
        let mode = if file.is_client() { "tuntox -c FILE (a client)" } else { "tuntox -c FILE (the server)" };
        text.push_str(&format!("\n# {mode}\n{}", config::to_toml(&config::forward_file(&args))));
        secret_files.extend(args.secret_file);
    }
    if file.vpn_client.is_some() {
        let Some(Command::Vpn(VpnCommand::Up(mut args))) = defaults(&["vpn", "up"])?.command else {
            unreachable!("vpn up parses to vpn up")
        };
        config::apply_vpn_up(path, &file, &never, &mut args).map_err(other)?;
        if args.peer.is_none() {
            return Err(anyhow::anyhow!("{}: [vpn_client] needs server (the server's Tox ID)", path.display()).into());
        }
        text.push_str(&format!("\n# tuntox vpn up -c FILE\n{}", config::to_toml(&config::vpn_up_file(&args))));
        secret_files.extend(args.secret_file);
    }
    if file.relay.is_some() {
        let Some(Command::Relay(mut args)) = defaults(&["relay"])?.command else {
            unreachable!("relay parses to relay")
        };
        config::apply_relay(path, &file, &never, &mut args).map_err(other)?;
        text.push_str(&format!("\n# tuntox relay -c FILE\n{}", config::to_toml(&config::relay_file(&args))));
    }
    for secret_file in &secret_files {
        config::read_secret_file(secret_file).map_err(other)?;
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// Where a mode serves `tuntox status`.
fn place(args: &StatusSocketArgs) -> Place {
    args.status_socket.clone().map_or(Place::Default, Place::At)
}

/// How long `tuntox status` waits for a report.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// `tuntox status`: the report of the tuntox at `--socket`, or of every
/// one in our status directory, on standard output.
fn run_status(args: &StatusArgs) -> Result<(), CliError> {
    start(&args.common, DefaultLevel::Warn, false)?;
    let reports = match &args.socket {
        Some(path) => vec![status::query(path, STATUS_TIMEOUT).map_err(|e| CliError::Other(e.into()))?],
        None => {
            let dir = status::default_dir();
            let sockets = match status::sockets_in(&dir) {
                Ok(sockets) => sockets,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(anyhow::anyhow!("cannot list the status directory {}: {e}", dir.display()).into()),
            };
            let mut reports = Vec::new();
            for path in sockets {
                match status::query(&path, STATUS_TIMEOUT) {
                    Ok(report) => reports.push(report),
                    // A stale socket (left by a process that was killed), or
                    // one we may not read: said, and the others still shown.
                    Err(e) => eprintln!("tuntox: {e}"),
                }
            }
            if reports.is_empty() {
                return Err(anyhow::anyhow!(
                    "no running tuntox found in {} (for one serving elsewhere: tuntox status --socket PATH)",
                    dir.display()
                )
                .into());
            }
            reports
        }
    };
    let mut text = String::new();
    for (i, report) in reports.iter().enumerate() {
        if args.json {
            let json = serde_json::to_string(report).map_err(|e| CliError::Other(e.into()))?;
            text.push_str(&json);
            text.push('\n');
        } else {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&status::render(report));
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// How long `-W`, `-p` and `tuntox ping` wait for the server by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// A client keeps its identity in `-C DIR` when given, else uses a fresh one.
fn client_identity(common: &CommonArgs) -> ClientIdentity {
    match &common.config_dir {
        Some(dir) => ClientIdentity::Persistent(dir.clone()),
        None => ClientIdentity::Ephemeral,
    }
}

/// The command being run, for usage errors' pointer to its help.
static COMMAND: std::sync::RwLock<&'static str> = std::sync::RwLock::new("tuntox");

fn set_command(command: &'static str) {
    *COMMAND.write().unwrap_or_else(std::sync::PoisonError::into_inner) = command;
}

fn usage(message: &str) -> CliError {
    CliError::Usage(message.to_owned(), *COMMAND.read().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Set by the project's tests for every tuntox they start: a run that
/// would reach beyond the bootstrap nodes it was given is refused.
const PRIVATE_NETWORK_ONLY: &str = "TUNTOX_PRIVATE_NETWORK_ONLY";

/// Refuses `what` when [`PRIVATE_NETWORK_ONLY`] is set (to anything but
/// empty): a safety net against a test starting a node on the public network.
fn private_network_only(what: &str) -> Result<(), CliError> {
    match std::env::var_os(PRIVATE_NETWORK_ONLY) {
        Some(value) if !value.is_empty() => {
            Err(usage(&format!("{PRIVATE_NETWORK_ONLY} is set, so {what} is not allowed")))
        }
        _ => Ok(()),
    }
}

/// The `--bootstrap` nodes, resolved.
fn bootstrap_nodes(join: &JoinArgs) -> Result<Vec<BootstrapNode>, CliError> {
    join.bootstrap
        .iter()
        .map(|spec| spec.resolve().map_err(|e| usage(&format!("--bootstrap {spec}: cannot resolve the host: {e}"))))
        .collect()
}

/// Whether to use LAN discovery: not with `--no-lan`, and refused when
/// [`PRIVATE_NETWORK_ONLY`] is set.
fn lan_discovery(join: &JoinArgs) -> Result<bool, CliError> {
    if !join.no_lan {
        private_network_only("LAN discovery (pass --no-lan)")?;
    }
    Ok(!join.no_lan)
}

/// Whether to map our UDP port on the router: not with `--no-portmap` or
/// `--no-udp`. When [`PRIVATE_NETWORK_ONLY`] is set, refused unless we
/// run in a network namespace made with `ip netns` (as the tests' are),
/// whose only gateway is one the test built: elsewhere the gateway may be
/// a real router.
fn portmap(net: &NetArgs) -> Result<bool, CliError> {
    if net.no_portmap || net.no_udp {
        return Ok(false);
    }
    if !in_named_namespace() {
        private_network_only("router port mapping outside a network namespace of `ip netns` (pass --no-portmap)")?;
    }
    Ok(true)
}

/// Whether our network namespace is one of those `ip netns` names in
/// /run/netns.
fn in_named_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata("/proc/thread-self/ns/net") else { return false };
    let Ok(named) = std::fs::read_dir("/run/netns") else { return false };
    named
        .flatten()
        .filter_map(|entry| std::fs::metadata(entry.path()).ok())
        .any(|ns| ns.dev() == ours.dev() && ns.ino() == ours.ino())
}

/// The Tox settings from -u, -b, --bootstrap, --no-lan, --relay, --no-udp,
/// --no-portmap and --no-aegis.
fn tox_config(net: &NetArgs) -> Result<ToxConfig, CliError> {
    let mut bootstrap = bootstrap_nodes(&net.join)?;
    if let Some(path) = &net.nodes_file {
        bootstrap.extend(read_nodes_file(path).map_err(|e| CliError::Other(e.into()))?);
    }
    if bootstrap.is_empty() {
        private_network_only("the built-in list of public bootstrap nodes (pass --bootstrap or -b)")?;
        bootstrap = builtin_nodes();
    }
    let lan_discovery = lan_discovery(&net.join)?;
    let portmap = portmap(net)?;
    let mut tcp_relays = Vec::new();
    for spec in &net.relays {
        let node = spec.resolve().map_err(|e| usage(&format!("--relay {spec}: cannot resolve the host: {e}")))?;
        tcp_relays.extend(node.udp.iter().map(|addr| PackedNode::tcp(*addr, node.public_key)));
    }
    let mut udp = UdpConfig::default();
    if let Some(range) = net.udp_ports {
        udp.ports = range.first..=range.last;
    }
    Ok(ToxConfig {
        keys: KeyPair::generate(&mut SodiumRng),
        nospam: NoSpam::default(),
        udp,
        bootstrap,
        lan_discovery,
        friends: Vec::new(),
        udp_enabled: !net.no_udp,
        tcp_relays,
        tcp_server_ports: Vec::new(),
        aegis: !net.no_aegis && crate::crypto::aes_hardware(),
        portmap,
    })
}

/// How many threads a mode's runtime has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    /// One thread for everything (the Tox node, tunnels, the VPN): every
    /// packet crosses the process without waking another thread. Measured
    /// on two cores, a port forward spent 18 % less CPU per byte this way,
    /// with a third of the context switches, than with the node on a thread
    /// of its own beside a multi-threaded runtime (docs/BENCHMARKS.md).
    One,
    /// A worker per core (`tuntox relay`: each connection seals and opens
    /// its own frames, so many clients spread over the cores).
    PerCore,
}

/// Resolves at each SIGHUP, when it is caught; never otherwise.
async fn hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(hup) => {
            hup.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Runs `f` on a Tokio runtime until it ends or SIGINT/SIGTERM arrives.
/// When `f` reports its start, `readiness` (the launcher of `-z` waiting)
/// is told and taken.
fn run_async<F, Fut>(threads: Threads, f: F, readiness: &mut Option<Readiness>) -> Result<(), CliError>
where
    F: FnOnce(CancellationToken, Started) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot start the async runtime")))?;
    let cancel = CancellationToken::new();
    let result = runtime.block_on(async {
        // Caught from here on, before the mode starts: a signal that comes
        // as soon as it reports its start still stops it cleanly.
        use tokio::signal::unix::{SignalKind, signal};
        let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(int), Ok(term)) => (int, term),
            (Err(e), _) | (_, Err(e)) => return Err(anyhow::Error::new(e).context("cannot catch SIGINT and SIGTERM")),
        };
        // SIGHUP reopens the log file; without one it keeps its default
        // action (ssh ends a ProxyCommand, -W, with it).
        let mut hup = if logging::has_log_file() {
            Some(signal(SignalKind::hangup()).map_err(|e| anyhow::Error::new(e).context("cannot catch SIGHUP"))?)
        } else {
            None
        };
        let signals = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = int.recv() => tracing::info!("interrupted; stopping"),
                    _ = term.recv() => tracing::info!("terminated; stopping"),
                    // logrotate has moved the log file away.
                    () = hangup(&mut hup) => {
                        logging::reopen();
                        continue;
                    }
                }
                break;
            }
            crate::app::notify::stopping();
            signals.cancel();
        });
        // Pings from this runtime: a runtime that hangs stops them, and
        // systemd restarts the service (WatchdogSec=).
        if let Some(every) = crate::app::notify::watchdog_interval() {
            let stop = cancel.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => crate::app::notify::watchdog(),
                    }
                }
            });
        }
        let (started, ready) = Started::channel();
        let work = f(cancel, started);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            Ok(()) = ready => {
                if let Some(readiness) = readiness.take() {
                    tracing::info!("running in the background");
                    readiness.ready();
                }
                work.await
            }
        }
    });
    // Standard input's reader thread may be blocked in read(2): do not wait
    // for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map_err(CliError::Other)
}
