//! The one careful read of a file someone else put on the host: opened with `O_NONBLOCK` (a FIFO
//! does not stall the open), its type and mode checked with `fstat` on the open descriptor (no
//! window between the check and the read), and at most `limit` bytes read.

use std::io::Read as _;
use std::path::Path;

/// Who may have access to the file besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any mode (public inputs: configuration, certificates, bundles).
    Any,
    /// No group or other bits (`mode & 0o077 == 0`): private keys.
    OwnerOnly,
}

/// Why a file could not be read; the message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct ReadError {
    /// The file, as given.
    pub path: String,
    /// What is wrong with it, and what to do.
    pub why: String,
}

/// Reads `path` whole: refused when it is not a regular file (after following symlinks), when
/// it is larger than `limit` bytes, or, with [`Access::OwnerOnly`], when other users may read or
/// write it (the message says `chmod 600 FILE`).
pub fn read_regular(path: &Path, limit: u64, access: Access) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let name = path.display().to_string();
    let bad = |why: String| ReadError {
        path: name.clone(),
        why,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(format!("cannot open it: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| bad(format!("cannot read its metadata: {e}")))?;
    if let Some(kind) = crate::atomic::special_kind(meta.file_type()) {
        return Err(bad(format!(
            "it is {kind}, not a regular file; refusing to read it: put the content in a file"
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if access == Access::OwnerOnly && mode & 0o077 != 0 {
        return Err(bad(format!(
            "other users may read or write it (mode {mode:04o}); refusing to use a private key \
             there: run `chmod 600 {name}`"
        )));
    }
    if meta.len() > limit {
        return Err(bad(format!(
            "it is {} bytes, more than the {limit} bytes expected",
            meta.len()
        )));
    }
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if out.len() as u64 > limit {
        return Err(bad(format!("it grew past {limit} bytes while being read")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn owner_only_refuses_group_or_other_bits_and_names_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, b"secret").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_regular(&p, 1024, Access::OwnerOnly)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("chmod 600") && e.contains(&format!("{mode:04o}")),
                "{e}"
            );
            assert!(!e.contains("secret"), "{e}");
            assert_eq!(read_regular(&p, 1024, Access::Any).unwrap(), b"secret");
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_regular(&p, 1024, Access::OwnerOnly).unwrap(),
            b"secret"
        );
    }

    #[test]
    fn special_files_and_oversize_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path(), 1024, Access::Any)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = read_regular(&fifo, 1024, Access::Any)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a FIFO"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let e = read_regular(&big, 1024, Access::Any)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2048 bytes"), "{e}");
    }
}
