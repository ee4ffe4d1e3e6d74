//! What is shipped besides the binary: the systemd units pass `systemd-analyze
//! verify`, and `scripts/package` builds a .deb (from the test build's
//! binary) that holds the binary, the units, the man pages, the
//! completions and the examples, whose binary runs once unpacked into a
//! temporary root, and whose postinst makes the `tuntox` system user.
//!
//! Needs `systemd-analyze` (Debian's systemd package; no running systemd)
//! and dpkg-deb; `scripts/test` installs them. It never skips: a missing
//! tool fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e} (scripts/test installs what the tests need)"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const UNITS: [&str; 3] = ["tuntox.service", "tuntox-vpn@.service", "tuntox-relay.service"];

/// The units as installed, with /usr/bin/tuntox replaced by the binary
/// under test (verify checks that the program exists) and the template
/// given an instance name (a template cannot be verified as such).
fn staged_units(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|name| {
            let unit = std::fs::read_to_string(root().join("contrib/systemd").join(name)).unwrap();
            assert!(unit.contains("ExecStart=/usr/bin/tuntox "), "{name}");
            let staged = dir.join(name.replace("@.", "@office."));
            std::fs::write(&staged, unit.replace("/usr/bin/tuntox", env!("CARGO_BIN_EXE_tuntox"))).unwrap();
            staged
        })
        .collect()
}

/// `systemd-analyze verify` on `units`: its status and everything it said.
fn verify(units: &[PathBuf]) -> (bool, String) {
    // Documentation= pages are checked below against man/, not with man(1).
    let out = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).args(units));
    (out.status.success(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = staged_units(dir.path());
    let (ok, said) = verify(&units);
    assert!(ok && said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // The check sees mistakes: verify warns (and still exits 0) on a bad
    // value, fails on a missing program.
    let bad = dir.path().join("bad.service");
    std::fs::write(&bad, "[Service]\nType=notifyy\nExecStart=/nonexistent/tuntox\n").unwrap();
    let (ok, said) = verify(&[bad]);
    assert!(!ok && said.contains("notifyy") && said.contains("/nonexistent/tuntox"), "{ok} {said}");

    for name in UNITS {
        let unit = std::fs::read_to_string(root().join("contrib/systemd").join(name)).unwrap();
        let lines: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
        // Readiness and hardening every unit has.
        for needed in ["Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "User=tuntox", "DynamicUser=yes"] {
            assert!(lines.contains(&needed), "{name} lacks {needed}");
        }
        assert!(lines.iter().any(|l| l.starts_with("StateDirectory=")), "{name}");
        let bounding = lines.iter().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).unwrap();
        let expected = match name {
            "tuntox.service" => "",
            "tuntox-vpn@.service" => "CAP_NET_ADMIN",
            _ => "CAP_NET_BIND_SERVICE",
        };
        assert_eq!(bounding, expected, "{name}");
        // Each man page a unit points to exists.
        for line in lines.iter().filter_map(|l| l.strip_prefix("Documentation=")) {
            for doc in line.split_whitespace().filter_map(|d| d.strip_prefix("man:")) {
                let page = doc.replace("(1)", ".1");
                assert!(root().join("man").join(&page).is_file(), "{name}: no man/{page}");
            }
        }
    }
}

#[test]
fn the_package_holds_what_a_service_needs_and_runs() {
    let out_dir = tempfile::tempdir().unwrap();
    let built = run(Command::new(root().join("scripts/package"))
        .args(["--fast", "--binary", env!("CARGO_BIN_EXE_tuntox"), "--out"])
        .arg(out_dir.path()));
    assert!(built.status.success(), "scripts/package: {}", text(&built.stderr));
    let deb = PathBuf::from(text(&built.stdout).trim());
    assert!(deb.starts_with(out_dir.path()) && deb.is_file(), "{deb:?}");

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(listing.status.success(), "{}", text(&listing.stderr));
    let files: Vec<String> = text(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect();
    let mut expected: Vec<String> = [
        "/usr/bin/tuntox",
        "/usr/lib/systemd/system/tuntox.service",
        "/usr/lib/systemd/system/tuntox-vpn@.service",
        "/usr/lib/systemd/system/tuntox-relay.service",
        "/usr/share/man/man1/tuntox.1.gz",
        "/usr/share/man/man1/tuntox-vpn-up.1.gz",
        "/usr/share/bash-completion/completions/tuntox",
        "/usr/share/zsh/vendor-completions/_tuntox",
        "/usr/share/fish/vendor_completions.d/tuntox.fish",
        "/usr/share/doc/tuntox/copyright",
        "/usr/share/doc/tuntox/examples/tuntox.env",
        "/usr/share/doc/tuntox/examples/relay.env",
        "/usr/share/doc/tuntox/examples/vpn-office.env",
        "/usr/share/doc/tuntox/examples/tuntox.rules",
    ]
    .map(String::from)
    .to_vec();
    // Every man page and every example config of the source tree.
    for (dir, target) in [("man", "/usr/share/man/man1"), ("docs/examples", "/usr/share/doc/tuntox/examples")] {
        for entry in std::fs::read_dir(root().join(dir)).into_iter().flatten().flatten() {
            let name = entry.file_name().into_string().unwrap();
            match dir {
                "man" => expected.push(format!("{target}/{name}.gz")),
                _ if name.ends_with(".toml") => expected.push(format!("{target}/{name}")),
                _ => {}
            }
        }
    }
    for path in &expected {
        assert!(files.contains(path), "the package lacks {path}:\n{}", text(&listing.stdout));
    }

    // Unpacked into a temporary root, its binary runs.
    let unpacked = tempfile::tempdir().unwrap();
    let x = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(unpacked.path()));
    assert!(x.status.success(), "{}", text(&x.stderr));
    let version = run(Command::new(unpacked.path().join("usr/bin/tuntox")).arg("--version"));
    assert!(version.status.success());
    let version = text(&version.stdout);
    assert!(version.starts_with(&format!("tuntox {}", env!("CARGO_PKG_VERSION"))), "{version}");
    let ours = run(Command::new(env!("CARGO_BIN_EXE_tuntox")).arg("--version"));
    assert_eq!(version, text(&ours.stdout), "the packaged binary is the one built");
    // The completion scripts are the binary's own, and bash reads them.
    let bash = unpacked.path().join("usr/share/bash-completion/completions/tuntox");
    assert!(run(Command::new("bash").arg("-n").arg(&bash)).status.success());

    // The control fields, and a postinst that makes the system user.
    let field = |name: &str| text(&run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name)).stdout);
    assert_eq!(field("Package").trim(), "tuntox");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let control = tempfile::tempdir().unwrap();
    let e = run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(control.path()));
    assert!(e.status.success(), "{}", text(&e.stderr));
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(postinst.contains("useradd --system") && postinst.contains(" tuntox\n"), "{postinst}");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(run(Command::new("sh").arg("-n").arg(control.path().join(script))).status.success(), "{script}");
    }
}
