//! The local state directory: the embedded default, for one control-plane process.
//!
//! Every file is written with the one atomic write ([`distro_hostio::write_atomic`]: temporary
//! file in the same directory, fsync, rename, fsync of the directory), so a crash leaves either
//! the old or the new content. One file per token
//! and per certificate keeps writers from different processes (`token create` and the server)
//! from racing. A conditional write of an absent key is [`distro_hostio::create_new`], an
//! exclusive link of the fully written temporary file (`link(2)` fails if the name exists), so
//! of two concurrent creators, in this process or another, exactly one wins; a conditional replace compares the content under a
//! lock of this process.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Entry, Health, Rev, StateBackend, StateError};

/// Makes an [`StateError::Io`] naming `path`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The revision of a file: the first 8 bytes of the SHA-256 of its content.
fn rev_of(data: &[u8]) -> Rev {
    let hex = distro_hostio::sha256_hex(data);
    // Invariant: a sha256 hex digest is 64 hex digits, so its first 16 parse as a u64.
    Rev(hex
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0))
}

/// The mode of a state file: 0600 for secrets (keys, tokens), 0644 otherwise.
fn mode(private: bool) -> u32 {
    if private {
        distro_hostio::PRIVATE
    } else {
        distro_hostio::PUBLIC
    }
}

/// An atomic write's failure as a [`StateError::Io`] naming the file.
fn write_err(e: distro_hostio::WriteError) -> StateError {
    use distro_hostio::WriteError;
    match e {
        WriteError::Io {
            action,
            path,
            source,
        } => StateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(source.kind(), format!("{action}: {source}")),
        },
        WriteError::Special { path, kind } => StateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("it is {kind}, not a regular file; remove it"),
            ),
        },
    }
}

/// A state directory.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// Serialises conditional replaces within this process.
    cas: Mutex<()>,
}

impl LocalDir {
    /// The state directory at `root` (created when missing, mode 0700).
    pub fn open(root: &Path) -> Result<Self, StateError> {
        for sub in ["", "ca", "tokens", "used", "issued"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        }
        Ok(LocalDir {
            root: root.to_path_buf(),
            cas: Mutex::new(()),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

impl StateBackend for LocalDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn locate(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(data) => Ok(Some(Entry {
                rev: rev_of(&data),
                data,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn put(&self, key: &str, data: &[u8], private: bool) -> Result<(), StateError> {
        distro_hostio::write_atomic(&self.path(key), data, mode(private)).map_err(write_err)
    }

    fn put_if(
        &self,
        key: &str,
        expected: Option<Rev>,
        data: &[u8],
        private: bool,
    ) -> Result<bool, StateError> {
        let path = self.path(key);
        match expected {
            None => distro_hostio::create_new(&path, data, mode(private)).map_err(write_err),
            Some(rev) => {
                let _guard = self.cas.lock().unwrap_or_else(|p| p.into_inner());
                match self.get(key)? {
                    Some(e) if e.rev == rev => {
                        distro_hostio::write_atomic(&path, data, mode(private))
                            .map_err(write_err)?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    fn delete(&self, key: &str) -> Result<(), StateError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((d, s)) => (self.root.join(d), s),
            None => (self.root.clone(), prefix),
        };
        let base = prefix.rsplit_once('/').map(|(d, _)| format!("{d}/"));
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            // Temporary files of writes in progress are not keys.
            if name.starts_with('.') || !name.starts_with(start) {
                continue;
            }
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.push(format!("{}{name}", base.as_deref().unwrap_or("")));
            }
        }
        out.sort();
        Ok(out)
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    fn health(&self) -> Health {
        let probe = fs::metadata(&self.root);
        Health {
            backend: "local",
            reachable: probe.is_ok(),
            error: probe.err().map(|e| format!("{}: {e}", self.root.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    /// Writes replace content; private files are 0600 and the others 0644, whichever way they
    /// were written; no temporary file is left.
    #[test]
    fn private_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = LocalDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        d.put("ca/key.pem", b"one", true)
            .unwrap_or_else(|e| panic!("{e}"));
        d.put("ca/key.pem", b"two", true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fs::read(dir.path().join("ca/key.pem")).unwrap_or_default(),
            b"two"
        );
        assert_eq!(file_mode(&dir.path().join("ca/key.pem")), 0o600);
        d.put("ca/cert.pem", b"cert", false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file_mode(&dir.path().join("ca/cert.pem")), 0o644);
        assert!(d.put_if("tokens/t", None, b"secret", true).unwrap_or(false));
        assert_eq!(file_mode(&dir.path().join("tokens/t")), 0o600);
        let r = d.get("tokens/t").ok().flatten().map(|e| e.rev);
        assert!(d.put_if("tokens/t", r, b"rotated", true).unwrap_or(false));
        assert_eq!(file_mode(&dir.path().join("tokens/t")), 0o600);
        let leftovers: Vec<String> = ["ca", "tokens"]
            .iter()
            .flat_map(|sub| fs::read_dir(dir.path().join(sub)).into_iter().flatten())
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
    }

    /// A write that cannot be done names the file.
    #[test]
    fn a_failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = LocalDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dir.path().join("ca/key.pem")).unwrap_or_else(|e| panic!("{e}"));
        let err = d.put("ca/key.pem", b"k", true).err().map(|e| e.to_string());
        let want = dir.path().join("ca/key.pem").display().to_string();
        assert!(
            err.as_deref()
                .is_some_and(|m| m.contains(&want) && m.contains("directory")),
            "{err:?}"
        );
    }

    /// Of many threads creating one absent key, exactly one wins, and its content is whole.
    #[test]
    fn exclusive_create_has_one_winner() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = std::sync::Arc::new(LocalDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        let wins: usize = (0..16)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    d.put_if("used/t", None, format!("writer {i}").as_bytes(), false)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap_or(false)))
            .sum();
        assert_eq!(wins, 1);
        let got = d.get("used/t").unwrap_or_else(|e| panic!("{e}"));
        assert!(got.is_some_and(|e| e.data.starts_with(b"writer ")));
        assert_eq!(d.list("used/").unwrap_or_default(), vec!["used/t"]);
    }

    /// A replace conditioned on a stale revision writes nothing.
    #[test]
    fn stale_revision_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = LocalDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        d.put("config.json", b"1", false)
            .unwrap_or_else(|e| panic!("{e}"));
        let r1 = d.get("config.json").ok().flatten().map(|e| e.rev);
        assert!(d.put_if("config.json", r1, b"2", false).unwrap_or(false));
        assert!(!d.put_if("config.json", r1, b"3", false).unwrap_or(true));
        let now = d.get("config.json").ok().flatten().map(|e| e.data);
        assert_eq!(now.as_deref(), Some(&b"2"[..]));
    }
}
