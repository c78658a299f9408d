//! The local state directory: the embedded default, for one control-plane process.
//!
//! Every file is written atomically (temporary file in the same directory, fsync, rename, fsync
//! of the directory), so a crash leaves either the old or the new content. One file per token
//! and per certificate keeps writers from different processes (`token create` and the server)
//! from racing. A conditional write of an absent key is an exclusive link of the fully written
//! temporary file (`link(2)` fails if the name exists), so of two concurrent creators, in this
//! process or another, exactly one wins; a conditional replace compares the content under a
//! lock of this process.

use std::fs;
use std::io::Write;
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
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    Rev(u64::from_be_bytes(b))
}

/// Writes `data` to a new temporary file beside `path` (mode 0600 or 0644 from its creation
/// on), fsynced; returns its path.
fn write_temp(path: &Path, data: &[u8], private: bool) -> Result<PathBuf, StateError> {
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
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    Ok(tmp)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes `data` to `path` atomically; `private` files get mode 0600 from their creation on.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), StateError> {
    let tmp = write_temp(path, data, private)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    sync_dir(path);
    Ok(())
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
        write_atomic(&self.path(key), data, private)
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
            None => {
                // Exclusive create of fully written content: link(2) fails if the name exists.
                let tmp = write_temp(&path, data, private)?;
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        sync_dir(&path);
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(io_err(&path)(e)),
                }
            }
            Some(rev) => {
                let _guard = self.cas.lock().unwrap_or_else(|p| p.into_inner());
                match self.get(key)? {
                    Some(e) if e.rev == rev => {
                        write_atomic(&path, data, private)?;
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
