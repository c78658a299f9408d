//! `--state-key-file`: the key that seals CA keys in a shared store is refused when other users
//! may read or write it, or when it is not a regular file, with a message naming the file and
//! saying `chmod 600 FILE`; a 0600 key is accepted. The state URL points at a port nothing
//! listens on: the key is checked before any connection, so no etcd is needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mesh-control");

/// `mesh-control ca status` with the key file `key`: (success, stderr).
fn ca_status(key: &Path) -> (bool, String) {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let out = Command::new(BIN)
        .args(["ca", "status", "--state", "etcd://127.0.0.1:1/keytest"])
        .arg("--state-key-file")
        .arg(key)
        .env_remove("MESH_CONTROL_STATE_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn state_key_file_must_be_private_and_regular() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state.key");
    let hex_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    std::fs::write(&key, hex_key).unwrap();
    let shown = key.display().to_string();

    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (ok, err) = ca_status(&key);
        assert!(!ok, "a key with mode {mode:o} was used");
        assert!(
            err.contains(&shown) && err.contains(&format!("chmod 600 {shown}")),
            "mode {mode:o}: {err}"
        );
        assert!(!err.contains(hex_key), "the key leaked: {err}");
    }

    // 0600: the key is accepted and the command gets as far as the (dead) store.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, err) = ca_status(&key);
    assert!(!ok, "nothing listens on the store port");
    assert!(!err.contains("chmod"), "a 0600 key was refused: {err}");
    assert!(!err.contains("state key"), "a 0600 key was refused: {err}");

    // A directory is not a key file, whatever its mode.
    let d = dir.path().join("keydir");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (ok, err) = ca_status(&d);
    assert!(!ok);
    let shown = d.display().to_string();
    assert!(
        err.contains(&shown) && err.contains("a directory, not a regular file"),
        "{err}"
    );
}
