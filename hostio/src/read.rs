//! The one careful read of a file someone else put on the host: opened with `O_NONBLOCK` (a FIFO
//! does not stall the open) and, when asked, `O_NOFOLLOW`; its type and mode checked with
//! `fstat` on the open descriptor (no window between the check and the read); at most `limit`
//! bytes read, and a file that grows while being read is seen to.
//!
//! Three levels, one implementation: [`open_regular`] (an open file and its size, for streaming),
//! [`read_bounded`] (its bytes, up to a limit) and [`read_regular`] (the same with an optional
//! owner-only check, the error naming the file). The first two return `std::io::Error`s whose
//! message says what the file is, for callers whose own errors name the path.

use std::fs::File;
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

/// Whether a symbolic link in the last component of the path is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow it (a `distro.toml` or a policy may be a link to a regular file).
    Follow,
    /// Refuse it (`O_NOFOLLOW`): a layout's blobs are content-addressed regular files.
    Refuse,
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

/// Opens `path` for reading only if it is a regular file, and returns it with its size.
///
/// FIFOs, devices (`/dev/zero`), sockets and directories are refused (`InvalidInput`) with a
/// message that says what the file is; with [`Symlinks::Refuse`] so is a symbolic link. A
/// missing file keeps its `NotFound` kind.
pub fn open_regular(path: &Path, symlinks: Symlinks) -> std::io::Result<(File, u64)> {
    open_checked(path, symlinks).map(|(f, meta)| (f, meta.len()))
}

/// [`open_regular`], returning the descriptor's metadata (one `fstat` for type, size and mode).
fn open_checked(path: &Path, symlinks: Symlinks) -> std::io::Result<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if symlinks == Symlinks::Refuse && e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it is a symbolic link; refusing to follow it (it must be a regular file)",
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if let Some(kind) = crate::atomic::special_kind(meta.file_type()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file; refusing to read it"),
        ));
    }
    Ok((f, meta))
}

/// Reads a regular file ([`open_regular`]) of at most `limit` bytes: a larger one is refused
/// (`InvalidData`) before anything is read, and one that grows while being read is cut at
/// `limit + 1` bytes and refused.
pub fn read_bounded(path: &Path, symlinks: Symlinks, limit: u64) -> std::io::Result<Vec<u8>> {
    let (f, len) = open_regular(path, symlinks)?;
    read_open(f, len, limit)
}

fn read_open(f: File, len: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let too_big = |n: u64, when: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is {n} bytes{when}, more than the {limit} bytes expected; refusing to read it"
            ),
        )
    };
    if len > limit {
        return Err(too_big(len, ""));
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_big(data.len() as u64, " (it grew while being read)"));
    }
    Ok(data)
}

/// Reads `path` whole (following symbolic links): refused when it is not a regular file, when
/// it is larger than `limit` bytes, or, with [`Access::OwnerOnly`], when other users may read or
/// write it (the message says `chmod 600 FILE`). The error names the file.
pub fn read_regular(path: &Path, limit: u64, access: Access) -> Result<Vec<u8>, ReadError> {
    use std::os::unix::fs::PermissionsExt as _;
    let name = path.display().to_string();
    let bad = |why: String| ReadError {
        path: name.clone(),
        why,
    };
    let (f, meta) = open_checked(path, Symlinks::Follow).map_err(|e| bad(e.to_string()))?;
    if access == Access::OwnerOnly {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "other users may read or write it (mode {mode:04o}); refusing to use a private \
                 key there: run `chmod 600 {name}`"
            )));
        }
    }
    read_open(f, meta.len(), limit).map_err(|e| bad(e.to_string()))
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
