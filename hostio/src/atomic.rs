//! The one atomic write.
//!
//! A reader of the destination sees the old content or the new, never part of either, and a
//! crash leaves one of the two on disk:
//!
//! 1. the destination is checked: a FIFO, device, socket or directory there is refused, since
//!    renaming over it would replace it (a symbolic link is replaced itself, never written through) ([`write_output`] instead writes
//!    a user-named FIFO or character device, such as `/dev/stdout`, in place);
//! 2. a temporary file with a name no other writer can pick (`.<name>.<pid>.<counter>.<nanos>.tmp`,
//!    created with `O_EXCL`, so never through a link planted at that name) is made in the same
//!    directory, with at most the owner's read and write bits of the final mode, never more;
//! 3. the content is written and the file fsynced, its mode set to exactly the one asked
//!    (independent of the umask), the file renamed over the destination and the directory
//!    fsynced, so the rename itself is durable.
//!
//! On any failure the temporary file is removed and the destination is as it was.
//! [`StagedFile`] exposes steps 2 and 3 separately, for writers that must place several files
//! together (a key pair) or stream their content. [`create_new`] (and
//! [`StagedFile::commit_new`]) replace step 3's rename with a hard link, for an exclusive
//! create: of several writers of an absent name exactly one wins, and nothing is replaced.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of a published artifact (SBOM, image, public key, evidence): readable by everyone.
pub const PUBLIC: u32 = 0o644;
/// Mode of a secret (private key, token): the owner alone.
pub const PRIVATE: u32 = 0o600;

/// Longest part of the destination's name kept in a temporary name (NAME_MAX is 255).
const NAME_KEPT: usize = 200;
/// Attempts at a fresh temporary name before giving up.
const NAME_ATTEMPTS: u32 = 64;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An atomic write that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("creating directory", "renaming into place", ...).
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The destination is not a regular file, and replacing it would replace a device, pipe,
    /// socket or directory.
    #[error("refusing to write {}: it is {kind}, not a regular file; give the path of a regular file (or remove what is there)", path.display())]
    Special {
        /// The destination.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device", "a directory", ...).
        kind: String,
    },
}

impl WriteError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        WriteError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            WriteError::Io { path, .. } | WriteError::Special { path, .. } => path,
        }
    }
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        let kind = match &e {
            WriteError::Io { source, .. } => source.kind(),
            WriteError::Special { .. } => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, e)
    }
}

/// Writes `bytes` to `path` atomically with exactly `mode` (e.g. [`PUBLIC`], [`PRIVATE`]),
/// creating its directory if needed. Refuses a destination that is not a regular file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut staged = StagedFile::create(path, mode)?;
    staged.write_all(bytes)?;
    staged.commit()
}

/// Writes `bytes` to `path` with exactly `mode` unless something is already there (see
/// [`StagedFile::commit_new`]): `Ok(true)` when this call created it, `Ok(false)` when the name
/// was taken. The content appears whole or not at all.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, WriteError> {
    let mut staged = StagedFile::create_unchecked(path, mode)?;
    staged.write_all(bytes)?;
    staged.commit_new()
}

/// Writes a file the user named (`-o PATH`): a FIFO or character device there (`/dev/stdout`,
/// `/dev/null`, a pipe) is written in place, since it is a stream and not a file to replace;
/// anything else is [`write_atomic`].
pub fn write_output(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    use std::os::unix::fs::FileTypeExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let ft = meta.file_type();
        if ft.is_fifo() || ft.is_char_device() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| WriteError::io("opening", path, e))?;
            return f
                .write_all(bytes)
                .and_then(|()| f.flush())
                .map_err(|e| WriteError::io("writing", path, e));
        }
    }
    write_atomic(path, bytes, mode)
}

/// What a non-regular file is, for messages; `None` for a regular file.
pub(crate) fn special_kind(ft: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_symlink() {
        Some("a symbolic link")
    } else {
        Some("not a regular file")
    }
}

/// Refuses a destination that a rename would wrongly replace. A symbolic link, whatever it points
/// to, is replaced itself (rename never writes through it), so the device or file it points to
/// is untouched: a damaged layout blob that is a link to `/dev/zero` becomes a regular file.
fn check_destination(path: &Path) -> Result<(), WriteError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(WriteError::io("inspecting", path, e)),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(());
    }
    match special_kind(ft) {
        None => Ok(()),
        Some(kind) => Err(WriteError::Special {
            path: path.to_path_buf(),
            kind: kind.to_string(),
        }),
    }
}

/// The directory a destination's temporary file goes in.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary name beside `target` that this process has not used and, through the pid, no
/// other live process can be using.
fn temp_name(target: &Path) -> std::ffi::OsString {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cut = name.len().min(NAME_KEPT);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        ".{}.{}.{}.{nanos:x}.tmp",
        &name[..cut],
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
    .into()
}

/// A file being written beside its destination, not yet visible there: [`StagedFile::commit`]
/// renames it into place; dropping it uncommitted removes it.
#[derive(Debug)]
pub struct StagedFile {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    mode: u32,
}

impl StagedFile {
    /// Checks the destination (see [`write_atomic`]), creates its directory and a fresh
    /// temporary file beside it.
    pub fn create(target: &Path, mode: u32) -> Result<Self, WriteError> {
        check_destination(target)?;
        Self::create_unchecked(target, mode)
    }

    /// [`StagedFile::create`] without the check of what is at the destination, for
    /// [`create_new`], which never replaces anything there.
    fn create_unchecked(target: &Path, mode: u32) -> Result<Self, WriteError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = parent_dir(target);
        std::fs::create_dir_all(dir).map_err(|e| WriteError::io("creating directory", dir, e))?;
        let mut attempts = 0;
        loop {
            let tmp = dir.join(temp_name(target));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode & 0o600)
                .open(&tmp)
            {
                Ok(file) => {
                    return Ok(StagedFile {
                        target: target.to_path_buf(),
                        tmp,
                        file: Some(file),
                        mode,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    attempts += 1;
                    if attempts >= NAME_ATTEMPTS {
                        return Err(WriteError::io("creating a temporary file", &tmp, e));
                    }
                }
                Err(e) => return Err(WriteError::io("creating a temporary file", &tmp, e)),
            }
        }
    }

    /// The destination.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file's path (for messages; it disappears on commit or drop).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let tmp = self.tmp.clone();
        self.file_mut()?
            .write_all(bytes)
            .map_err(|e| WriteError::io("writing", &tmp, e))
    }

    fn file_mut(&mut self) -> Result<&mut File, WriteError> {
        self.file.as_mut().ok_or_else(|| {
            WriteError::io(
                "writing",
                &self.tmp,
                std::io::Error::other("the staged file was already committed"),
            )
        })
    }

    /// Syncs the content and sets the exact mode: the temporary file is complete.
    fn seal(&mut self) -> Result<(), WriteError> {
        use std::os::unix::fs::PermissionsExt as _;
        let file = self.file.take().ok_or_else(|| {
            WriteError::io(
                "committing",
                &self.tmp,
                std::io::Error::other("already committed"),
            )
        })?;
        file.sync_all()
            .map_err(|e| WriteError::io("syncing", &self.tmp, e))?;
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| WriteError::io("setting the mode of", &self.tmp, e))
    }

    /// Syncs the content, sets the exact mode, renames the file over the destination and
    /// syncs the directory.
    pub fn commit(mut self) -> Result<(), WriteError> {
        self.seal()?;
        // Checked again: something may have appeared at the destination meanwhile.
        check_destination(&self.target)?;
        std::fs::rename(&self.tmp, &self.target)
            .map_err(|e| WriteError::io("renaming into place", &self.target, e))?;
        // Renamed: nothing left to remove on drop.
        self.tmp = PathBuf::new();
        sync_dir(parent_dir(&self.target))
    }

    /// Like [`StagedFile::commit`], but only if nothing is at the destination: the complete
    /// file is hard-linked there (`link(2)` fails when the name exists, whatever it is), so of
    /// several creators, in this process or others, exactly one wins and readers never see
    /// partial content. `Ok(false)` when the name was taken; the destination is then untouched.
    pub fn commit_new(mut self) -> Result<bool, WriteError> {
        self.seal()?;
        let linked = std::fs::hard_link(&self.tmp, &self.target);
        // Linked or not, the temporary name goes (on drop; done here so the directory sync
        // below covers it).
        let _ = std::fs::remove_file(&self.tmp);
        self.tmp = PathBuf::new();
        match linked {
            Ok(()) => sync_dir(parent_dir(&self.target)).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(WriteError::io("linking into place", &self.target, e)),
        }
    }
}

impl Write for StagedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file_mut().map_err(std::io::Error::from)?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file_mut().map_err(std::io::Error::from)?.flush()
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            // Best effort: the destination is untouched either way.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Makes a rename in `dir` durable. File systems that cannot sync a directory say so with
/// EINVAL; there is nothing more to do on them.
fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    let d = File::open(dir).map_err(|e| WriteError::io("opening directory", dir, e))?;
    match d.sync_all() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(WriteError::io("syncing directory", dir, e)),
    }
}
