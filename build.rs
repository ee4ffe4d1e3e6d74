//! Build script: `tuntox --version` names the git commit it was built from.
//!
//! Sets `TUNTOX_VERSION` to the package version, followed by ` (commit
//! ABCDEF123456)` when the source is a git checkout (`git` runs and
//! `HEAD` resolves), or when `TUNTOX_GIT_COMMIT` is set (a source tarball
//! that knows its commit). Without either, the version alone. The script
//! runs again when `HEAD` moves: its file, the branch's ref and
//! `packed-refs`, wherever git keeps them (a worktree keeps them apart).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TUNTOX_GIT_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("TUNTOX_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| git_commit(&dir));
    match commit {
        Some(commit) => println!("cargo:rustc-env=TUNTOX_VERSION={version} (commit {commit})"),
        None => println!("cargo:rustc-env=TUNTOX_VERSION={version}"),
    }
}

/// `git` in `dir`, its output trimmed; `None` when it fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The commit `HEAD` names, abbreviated, and the files to watch for it.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) else { continue };
        let path = dir.join(path);
        // Only files that exist: a missing one would run the script (and
        // rebuild the crate) every time.
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
