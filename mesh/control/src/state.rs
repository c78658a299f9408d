//! The control plane's state directory: everything that must survive a restart.
//!
//! ```text
//! <state>/ca/state.json          CA generations: active one, older ones still trusted until a time
//! <state>/ca/<gen>.cert.pem      CA certificate (plus its chain to an organisation's root, BYO CA)
//! <state>/ca/<gen>.key.pem       CA private key, PKCS#8, mode 0600, never logged
//! <state>/bundle.pem             the current trust bundle (to hand to workloads out of band)
//! <state>/tokens/<id>.json       join tokens: identity, expiry, SHA-256 of the secret
//! <state>/used/<id>              join tokens already used (replays are refused)
//! <state>/issued/<serial>.json   every issued certificate (serial, identity, validity)
//! <state>/config.json            last good mesh configuration, its digest and version
//! ```
//!
//! Every file is written atomically (temporary file in the same directory, fsync, rename), so a
//! crash leaves either the old or the new content. One file per token and per certificate keeps
//! writers from different processes (`token create` and the server) from racing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An error touching the state directory; always names the path.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error(
        "{path}: {source} (check that the state directory exists and is writable by this user)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds something unexpected.
    #[error("{path}: {why} (the state directory is damaged; restore it from backup)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Makes an [`StateError::Io`] naming `path`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically; `private` files get mode 0600 from their creation on.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let mut rnd = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut rnd);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(rnd)));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let data = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    write_atomic(path, &data, false)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.to_path_buf(),
                why: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
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
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ca/<name>`.
    pub fn ca(&self, name: &str) -> PathBuf {
        self.root.join("ca").join(name)
    }

    /// `bundle.pem`.
    pub fn bundle(&self) -> PathBuf {
        self.root.join("bundle.pem")
    }

    /// `tokens/<id>.json`.
    pub fn token(&self, id: &str) -> PathBuf {
        self.root.join("tokens").join(format!("{id}.json"))
    }

    /// `used/<id>`.
    pub fn used(&self, id: &str) -> PathBuf {
        self.root.join("used").join(id)
    }

    /// `issued/<serial>.json`.
    pub fn issued(&self, serial_hex: &str) -> PathBuf {
        self.root.join("issued").join(format!("{serial_hex}.json"))
    }

    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }

    /// Number of issued certificates on record.
    pub fn issued_count(&self) -> usize {
        fs::read_dir(self.root.join("issued"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Atomic writes replace content and private files are 0600.
    #[test]
    fn atomic_private_write() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("k.pem");
        write_atomic(&p, b"one", true).unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&p, b"two", true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read(&p).unwrap_or_default(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 1, "temporary files left behind");
    }
}
