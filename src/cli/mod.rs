//! The command line: parsing, logging, and dispatch to the engines.
//!
//! Exit codes: 0 success, 1 a runtime failure (the message says what), 2 a
//! usage error or a mode that is not implemented yet. Errors are one line on
//! standard error, prefixed `tuntox:`. Standard output carries only what a
//! command promises (the Tox ID for `id`, the byte stream for `-W`).

pub mod args;
pub mod logging;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use self::args::{Cli, Command, CommonArgs, ForwardArgs, NetArgs, PeerId, PingArgs, RelayArgs};
use self::logging::DefaultLevel;
use crate::app::bootstrap::{builtin_nodes, read_nodes_file};
use crate::app::client::{self, ClientConfig, ClientIdentity, ClientMode};
use crate::app::identity::Identity;
use crate::app::server::{self, ServerConfig};
use crate::crypto::{KeyPair, SodiumRng};
use crate::driver::tox::ToxConfig;
use crate::driver::udp::UdpConfig;
use crate::wire::tox_id::NoSpam;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The mode or flag exists in the interface but its engine does not yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// Flags that parse but do not fit together.
    #[error("{0} (see tuntox --help)")]
    Usage(String),
    /// Anything else, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::NotImplemented(_) | Self::Usage(_) => ExitCode::from(2),
            Self::Other(_) => ExitCode::from(1),
        }
    }
}

/// Parses `args` (the first is the program name) and runs the command.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return report_usage_error(&err),
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tuntox: {err:#}");
            err.exit_code()
        }
    }
}

/// Help and version go to standard output with status 0; a usage error is
/// one line on standard error with status 2.
fn report_usage_error(err: &clap::Error) -> ExitCode {
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
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("tuntox: {first} (see tuntox --help)");
    ExitCode::from(2)
}

fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Some(Command::Id(args)) => {
            start(&args.common, DefaultLevel::Warn)?;
            print_id(&args.common)
        }
        Some(Command::Vpn(_)) => Err(CliError::NotImplemented("the VPN (tuntox vpn)")),
        Some(Command::Relay(args)) => run_relay(args),
        Some(Command::Status(_)) => Err(CliError::NotImplemented("tuntox status")),
        Some(Command::Ping(args)) => run_ping(args),
        None => run_forward(cli.forward),
    }
}

/// Sets up logging for a mode, refusing flags whose engine is missing.
fn start(common: &CommonArgs, default: DefaultLevel) -> Result<(), CliError> {
    if common.syslog {
        return Err(CliError::NotImplemented("logging to syslog (-S)"));
    }
    logging::init(common, default);
    Ok(())
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
fn run_forward(args: ForwardArgs) -> Result<(), CliError> {
    let client = !args.local.is_empty() || args.stdio.is_some() || !args.dynamic.is_empty() || args.ping;
    let default = if args.stdio.is_some() { DefaultLevel::Error } else { DefaultLevel::Info };
    refuse_missing(&args)?;
    start(&args.common, default)?;
    let tox = tox_config(&args.net)?;
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
        let config = ClientConfig {
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
            offline_wait: OFFLINE_WAIT,
            tox,
        };
        run_async(|cancel| client::run(config, cancel))
    } else {
        let config = ServerConfig {
            config_dir: args.common.config_dir(),
            secret: args.secret.clone(),
            allowed: args.peers.iter().map(|p| *p.public_key()).collect(),
            id_file: args.id_file.clone(),
            rules: args.rules.clone(),
            tox,
        };
        run_async(|cancel| server::run(config, cancel))
    }
}

/// `tuntox ping TOXID`.
fn run_ping(args: PingArgs) -> Result<(), CliError> {
    start(&args.common, DefaultLevel::Warn)?;
    let config = ClientConfig {
        identity: client_identity(&args.common),
        server: args.peer,
        secret: args.secret.clone(),
        id_file: None,
        mode: ClientMode::Ping { count: args.count },
        connect_timeout: Some(CONNECT_TIMEOUT),
        offline_wait: OFFLINE_WAIT,
        tox: tox_config(&args.net)?,
    };
    run_async(|cancel| client::run(config, cancel))
}

/// `tuntox relay`: a bootstrap node and TCP relay, or `--print-key`.
fn run_relay(args: RelayArgs) -> Result<(), CliError> {
    let dir = args.common.config_dir();
    if args.print_key {
        start(&args.common, DefaultLevel::Warn)?;
        let (keys, _) = crate::app::relay::load_or_create_keys(&dir).map_err(|e| CliError::Other(e.into()))?;
        let mut stdout = std::io::stdout().lock();
        return writeln!(stdout, "{}", keys.public())
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")));
    }
    start(&args.common, DefaultLevel::Info)?;
    let mut bootstrap = Vec::new();
    for spec in &args.bootstrap {
        let node = spec.resolve().map_err(|e| usage(&format!("--bootstrap {spec}: cannot resolve the host: {e}")))?;
        bootstrap.push(node);
    }
    let tcp_ports = if args.tcp_ports.is_empty() { vec![crate::app::relay::DEFAULT_PORT] } else { args.tcp_ports };
    let config = crate::app::relay::RelayConfig {
        config_dir: dir,
        udp_port: args.port,
        tcp_ports,
        bootstrap,
        lan_discovery: !args.no_lan,
        max_clients: args.max_clients as usize,
        bind_ip: None,
    };
    run_async(|cancel| crate::app::relay::run(config, cancel))
}

/// How long a connection made while the client starts waits for the server.
const OFFLINE_WAIT: Duration = Duration::from_secs(30);

/// How long `-W`, `-p` and `tuntox ping` wait for the server by default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// A client keeps its identity in `-C DIR` when given, else uses a fresh one.
fn client_identity(common: &CommonArgs) -> ClientIdentity {
    match &common.config_dir {
        Some(dir) => ClientIdentity::Persistent(dir.clone()),
        None => ClientIdentity::Ephemeral,
    }
}

fn usage(message: &str) -> CliError {
    CliError::Usage(message.to_owned())
}

/// Flags the interface knows whose engine is not there yet.
fn refuse_missing(args: &ForwardArgs) -> Result<(), CliError> {
    if args.tcp_relay_port.is_some_and(|port| port != 0) {
        return Err(CliError::NotImplemented("the TCP relay (-t PORT; -t 0 is accepted)"));
    }
    if args.daemonize {
        return Err(CliError::NotImplemented("running in the background (-z)"));
    }
    if args.pid_file.is_some() {
        return Err(CliError::NotImplemented("the PID file (-F)"));
    }
    if args.user.is_some() {
        return Err(CliError::NotImplemented("dropping privileges (-U)"));
    }
    Ok(())
}

/// The Tox settings from -u, -b, --bootstrap and --no-lan.
fn tox_config(net: &NetArgs) -> Result<ToxConfig, CliError> {
    let mut bootstrap = Vec::new();
    for spec in &net.bootstrap {
        let node = spec.resolve().map_err(|e| usage(&format!("--bootstrap {spec}: cannot resolve the host: {e}")))?;
        bootstrap.push(node);
    }
    if let Some(path) = &net.nodes_file {
        bootstrap.extend(read_nodes_file(path).map_err(|e| CliError::Other(e.into()))?);
    }
    if bootstrap.is_empty() {
        bootstrap = builtin_nodes();
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
        lan_discovery: !net.no_lan,
        friends: Vec::new(),
    })
}

/// Runs `f` on a Tokio runtime until it ends or SIGINT/SIGTERM arrives.
fn run_async<F, Fut>(f: F) -> Result<(), CliError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot start the async runtime")))?;
    let cancel = CancellationToken::new();
    let result = runtime.block_on(async {
        let signals = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => tracing::info!("interrupted; stopping"),
                _ = term.recv() => tracing::info!("terminated; stopping"),
            }
            signals.cancel();
        });
        f(cancel).await
    });
    // Standard input's reader thread may be blocked in read(2): do not wait
    // for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map_err(CliError::Other)
}
