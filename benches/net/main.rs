//! Network benchmarks: real processes and our Tox nodes in private network
//! namespaces, timed against references measured in the same run.
//!
//! Run through `scripts/bench SUBCOMMAND`, which installs what is needed
//! and calls `cargo bench --bench net -- SUBCOMMAND`, so everything is
//! built with optimisations. Each subcommand prints a table; the figures
//! and their reading are kept in docs/BENCHMARKS.md. Performance targets
//! live here, never in timed tests.
//!
//! To add a subcommand: a module with `pub fn run()` (or `run(&[String])`
//! when it takes arguments), one line in [`SUBCOMMANDS`], and one line in
//! `scripts/bench`'s list.

// Benchmarks print their tables on stdout.
#![allow(clippy::print_stdout)]

#[path = "../../tests/support/mod.rs"]
mod support;

mod forward;
mod measure;
mod nat;
mod relay;
mod tcp;
mod tox;
mod vpn;
mod wan;

/// A subcommand's entry point.
enum Run {
    /// Takes no arguments.
    Plain(fn()),
    /// Takes the arguments after its name.
    Args(fn(&[String])),
}

/// Name, one-line description, entry point.
const SUBCOMMANDS: &[(&str, &str, Run)] = &[
    ("tox", "custom packets between two of our nodes and between two libtoxcore 0.2.18 peers", Run::Plain(tox::run)),
    ("forward", "-L port forwarding: plain loopback, ssh -L and tuntox -L", Run::Plain(forward::run)),
    ("vpn", "IP through a veth pair, tuntox's VPN and boringtun: iperf3 and ping", Run::Plain(vpn::run)),
    (
        "nat",
        "tuntox and libtoxcore peers behind home-router NATs: path, time to direct, first byte",
        Run::Plain(nat::run),
    ),
    (
        "relay",
        "tuntox -L through a TCP relay (tox-bootstrapd): ten exchanges of 200 MiB each way, then one that moves to direct UDP and back",
        Run::Plain(relay::run),
    ),
    (
        "wan",
        "-L forwarding across an emulated link: tuntox -L, ssh -L over CUBIC and BBR [PROFILE...]",
        Run::Args(wan::run),
    ),
];

fn usage() -> ! {
    eprintln!("usage: cargo bench --bench net -- SUBCOMMAND [ARGS]\n\nsubcommands:");
    for (name, about, _) in SUBCOMMANDS {
        eprintln!("  {name:<10} {about}");
    }
    std::process::exit(2);
}

fn main() {
    // `cargo bench` adds `--bench`; anything else is ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some((name, rest)) = args.split_first() else { usage() };
    let Some((_, _, run)) = SUBCOMMANDS.iter().find(|(n, ..)| n == name) else { usage() };
    if matches!(run, Run::Plain(_)) && !rest.is_empty() {
        usage();
    }
    measure::print_context();
    match run {
        Run::Plain(run) => run(),
        Run::Args(run) => run(rest),
    }
}
