//! Logging through `tracing`, to standard error or (with `-S` or `-z`) to
//! syslog (see [`super::syslog`]).
//!
//! Levels follow C tuntox: info by default (error for `-W`, whose standard
//! output is the tunnel), `-q` errors only, `-d` debug, `-dd` trace for
//! tuntox's own crates, `-ddd` trace for everything. `RUST_LOG` overrides.
//! Notices (target [`NOTICE`](crate::app::identity::NOTICE): a new identity
//! made in `-C`) show at every level except `-q`.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use super::args::CommonArgs;
use super::syslog::Syslog;

/// Whether log events go to syslog rather than standard error.
static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The default level of a mode, before `-d`/`-q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultLevel {
    /// Info: servers, `-L`, `-D`.
    Info,
    /// Warnings only: commands whose output matters (`id`).
    Warn,
    /// Errors only: `-W`, which owns standard output.
    Error,
}

/// The filter directives for the given flags.
pub fn directives(common: &CommonArgs, default: DefaultLevel) -> String {
    let ours = |level: &str| format!("warn,tuntox={level},tunnel={level},vpn={level}");
    if common.quiet {
        return "error".into();
    }
    // Notices (a new identity made, say) show at every level but -q's.
    let notice = format!("{}=info", crate::app::identity::NOTICE);
    match common.debug {
        0 => match default {
            DefaultLevel::Info => ours("info"),
            DefaultLevel::Warn => format!("warn,{notice}"),
            DefaultLevel::Error => format!("error,{notice}"),
        },
        1 => ours("debug"),
        2 => ours("trace"),
        _ => "trace".into(),
    }
}

fn filter(common: &CommonArgs, default: DefaultLevel) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(common, default)))
}

/// Installs the global subscriber, writing to standard error.
pub fn init(common: &CommonArgs, default: DefaultLevel) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(common, default))
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the global subscriber, writing to syslog. Syslog stamps the
/// time itself, so the lines carry none.
pub fn init_syslog(common: &CommonArgs, default: DefaultLevel, syslog: Syslog) {
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter(common, default))
        .with_ansi(false)
        .without_time()
        .with_writer(syslog)
        .try_init();
    if installed.is_ok() {
        TO_SYSLOG.store(true, Ordering::Relaxed);
        // Standard error may be /dev/null (-z): panics go to syslog too.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("{info}");
            default_hook(info);
        }));
    }
}

/// Whether [`init_syslog`] installed the subscriber.
pub fn to_syslog() -> bool {
    TO_SYSLOG.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn common(debug: u8, quiet: bool) -> CommonArgs {
        CommonArgs { config_dir: None, debug, quiet, syslog: false }
    }

    #[test]
    fn levels_follow_the_flags() {
        assert_eq!(directives(&common(0, false), DefaultLevel::Info), "warn,tuntox=info,tunnel=info,vpn=info");
        assert_eq!(directives(&common(0, false), DefaultLevel::Error), "error,tuntox::notice=info");
        assert_eq!(directives(&common(0, false), DefaultLevel::Warn), "warn,tuntox::notice=info");
        assert_eq!(directives(&common(0, true), DefaultLevel::Info), "error");
        assert_eq!(directives(&common(1, false), DefaultLevel::Error), "warn,tuntox=debug,tunnel=debug,vpn=debug");
        assert_eq!(directives(&common(2, false), DefaultLevel::Info), "warn,tuntox=trace,tunnel=trace,vpn=trace");
        assert_eq!(directives(&common(3, false), DefaultLevel::Info), "trace");
        for level in [DefaultLevel::Info, DefaultLevel::Warn, DefaultLevel::Error] {
            for debug in 0..4 {
                assert!(EnvFilter::try_new(directives(&common(debug, false), level)).is_ok());
            }
        }
    }
}
