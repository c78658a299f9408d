//! A distribution definition that is not a regular file is refused at once, naming the file:
//! reading `/dev/zero` would never end and opening a FIFO would block until a writer came.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `load` on another thread and fails the test if it has not returned within 5 s (the bug
/// was a FIFO blocking for as long as no writer came).
fn load_quickly(path: &Path) -> Result<distro_config::Distribution, distro_config::ConfigError> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        // The receiver may be gone when the test already failed on the timeout.
        let _ = tx.send(distro_config::load(&p));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("loading {} did not return within 5 s", path.display()))
}

/// A `distro.toml` that is a FIFO fails at once (no blocking open), naming the file.
#[test]
fn distro_toml_fifo_fails_fast_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("distro.toml");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo (coreutils) failed");
    let err = load_quickly(&fifo).unwrap_err().to_string();
    assert!(err.contains(&fifo.display().to_string()), "{err}");
    assert!(err.contains("FIFO"), "{err}");
}

/// A `distro.toml` that is a symbolic link to `/dev/zero` fails at once (nothing is read),
/// naming the file.
#[test]
fn distro_toml_symlink_to_dev_zero_fails_fast_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let link = d.path().join("distro.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = load_quickly(&link).unwrap_err().to_string();
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert!(err.contains("device"), "{err}");
}

/// A `distro.toml` larger than the 1 MiB limit is refused without being parsed, and a
/// symbolic link to the real definition still loads.
#[test]
fn distro_toml_over_the_size_limit_is_refused_and_links_to_files_load() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(distro_config::MAX_CONFIG_BYTES + 1).unwrap();
    let err = load_quickly(&big).unwrap_err().to_string();
    assert!(
        err.contains(&big.display().to_string()) && err.contains("more than"),
        "{err}"
    );

    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../distro/distro.toml");
    let link = d.path().join("distro.toml");
    std::os::unix::fs::symlink(real.canonicalize().unwrap(), &link).unwrap();
    let dist = load_quickly(&link).unwrap();
    assert!(dist.component("mesh-proxy").is_some());
}
