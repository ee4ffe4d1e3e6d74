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

use clap::Parser;

use self::args::{Cli, Command, CommonArgs, ForwardArgs};
use self::logging::DefaultLevel;
use crate::app::identity::Identity;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The mode or flag exists in the interface but its engine does not yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),
    /// Anything else, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::NotImplemented(_) => ExitCode::from(2),
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
        Some(Command::Relay(_)) => Err(CliError::NotImplemented("the relay node (tuntox relay)")),
        Some(Command::Status(_)) => Err(CliError::NotImplemented("tuntox status")),
        Some(Command::Ping(_)) => Err(CliError::NotImplemented("tuntox ping")),
        None => run_forward(&cli.forward),
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
    let (identity, _) = Identity::load_or_create(&common.config_dir).map_err(|e| CliError::Other(e.into()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", identity.tox_id())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot write to standard output")))
}

/// C tuntox's modes: server, or client with -L, -W, -D or -p.
fn run_forward(args: &ForwardArgs) -> Result<(), CliError> {
    let client = !args.local.is_empty() || args.stdio.is_some() || !args.dynamic.is_empty() || args.ping;
    let default = if args.stdio.is_some() { DefaultLevel::Error } else { DefaultLevel::Info };
    start(&args.common, default)?;
    if client {
        Err(CliError::NotImplemented("client mode (-L, -W, -D, -p)"))
    } else {
        Err(CliError::NotImplemented("server mode"))
    }
}
