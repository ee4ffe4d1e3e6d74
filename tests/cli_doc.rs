//! docs/cli.md is generated from the clap definition; this test keeps it in
//! step. Regenerate with `TUNTOX_BLESS=1 cargo test --test cli_doc`.

use clap::CommandFactory;
use tuntox::cli::args::Cli;

fn render(cmd: &mut clap::Command, path: &str, out: &mut String) {
    let mut cmd = cmd.clone().term_width(100).bin_name(path);
    out.push_str(&format!("## `{path}`\n\n```text\n"));
    out.push_str(cmd.render_long_help().to_string().trim_end());
    out.push_str("\n```\n\n");
    for sub in cmd.get_subcommands_mut() {
        let name = format!("{path} {}", sub.get_name());
        render(sub, &name, out);
    }
}

fn generate() -> String {
    let mut out = String::from(
        "# Command line reference\n\n\
         Generated from the program's own definition (`src/cli/args.rs`) by\n\
         `TUNTOX_BLESS=1 cargo test --test cli_doc`; the test fails when this file\n\
         and the program disagree.\n\n",
    );
    render(&mut Cli::command(), "tuntox", &mut out);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn docs_cli_md_matches_the_program() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let expected = generate();
    if std::env::var_os("TUNTOX_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/cli.md is out of date: run `TUNTOX_BLESS=1 cargo test --test cli_doc` and commit it"
    );
}
