//! Builds a C program from `tests/` against Debian's libraries, once per
//! test binary run, into cargo's per-target temporary directory.
//!
//! These programs are independent references (libsodium, libtoxcore) that
//! our code is checked against. Nothing here installs packages: the
//! README's test command (`scripts/test`) does. A missing compiler or library
//! fails the test with a message naming what to install; it never skips.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Compiles `tests/<source>` with `gcc -O2` and the flags of the pkg-config
/// packages `pkgs`, and returns the path of the executable. Concurrent tests
/// of one binary share the result; separate test binaries write to separate
/// temporary names and rename, so they never see a half-written file.
pub fn build_c_program(source: &str, pkgs: &[&str]) -> PathBuf {
    build_c_program_with(source, pkgs, &[])
}

/// As [`build_c_program`], with `extra` arguments to gcc before the
/// pkg-config flags (for instance a static archive to link).
pub fn build_c_program_with(source: &str, pkgs: &[&str], extra: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(source) {
        return path.clone();
    }

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("tests").join(source);
    assert!(src.exists(), "missing C source {}", src.display());
    let stem = Path::new(source).file_stem().and_then(|s| s.to_str()).unwrap_or("cprog").to_owned();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cbuild");
    std::fs::create_dir_all(&out_dir).expect("create the C build directory");
    let out = out_dir.join(&stem);
    let tmp = out_dir.join(format!("{stem}.{}.tmp", std::process::id()));

    let mut flags = Vec::new();
    for pkg in pkgs {
        let output = Command::new("pkg-config")
            .args(["--cflags", "--libs", pkg])
            .output()
            .unwrap_or_else(|e| panic!("cannot run pkg-config ({e}); install pkg-config (scripts/test does)"));
        assert!(
            output.status.success(),
            "pkg-config does not know '{pkg}': install its Debian -dev package (scripts/test does): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        flags.extend(String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned));
    }

    let output = Command::new("gcc")
        .args(["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(extra)
        .args(&flags)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}); install gcc (scripts/test does)"));
    assert!(output.status.success(), "gcc failed on {}:\n{}", src.display(), String::from_utf8_lossy(&output.stderr));
    std::fs::rename(&tmp, &out).expect("move the built program into place");
    built.insert(source.to_owned(), out.clone());
    out
}
