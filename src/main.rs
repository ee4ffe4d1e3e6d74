//! The `tuntox` binary: everything lives in the library's `cli::run`.

fn main() -> std::process::ExitCode {
    tuntox::cli::run(std::env::args_os())
}
