//! The atomic write: modes, unique temporary names under concurrency, refusal of special files,
//! in-place writes of user-named streams, and clean failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use distro_hostio::{write_atomic, write_output, StagedFile, WriteError, PRIVATE, PUBLIC};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(st.success());
}

/// The mode is exactly the one asked, whatever the umask and whatever the file had before:
/// 0644 for public artifacts, 0600 for secrets, 0755 for executables.
#[test]
fn mode_is_exactly_the_one_asked() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub/dir/file");
    write_atomic(&p, b"one", PUBLIC).unwrap();
    assert_eq!(mode(&p), 0o644);
    write_atomic(&p, b"two", PRIVATE).unwrap();
    assert_eq!(mode(&p), 0o600, "a rewrite narrows to the new mode");
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    write_atomic(&p, b"three", 0o755).unwrap();
    assert_eq!(mode(&p), 0o755);
    assert_eq!(
        entries(p.parent().unwrap()),
        ["file"],
        "no temporary file left"
    );
}

/// A staged secret is never readable by others, not even before it is renamed into place.
#[test]
fn staged_secret_is_never_wider_than_its_mode() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("key.pem");
    let mut s = StagedFile::create(&p, PRIVATE).unwrap();
    s.write_all(b"secret").unwrap();
    assert_eq!(mode(s.temp_path()) & 0o077, 0, "temp file is owner-only");
    assert!(!p.exists(), "not visible before commit");
    s.commit().unwrap();
    assert_eq!(mode(&p), 0o600);
}

/// Many threads writing the same destination at once each get their own temporary file: every
/// write succeeds, the result is one complete write (never a mix), and nothing is left behind.
#[test]
fn concurrent_writers_get_unique_temp_names() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("index.json");
    let writers = 16;
    let payload = |i: usize| vec![b'a' + i as u8; 64 * 1024];
    std::thread::scope(|s| {
        for i in 0..writers {
            let p = &p;
            s.spawn(move || {
                for _ in 0..20 {
                    write_atomic(p, &payload(i), PUBLIC).unwrap();
                }
            });
        }
    });
    let got = std::fs::read(&p).unwrap();
    assert!(
        (0..writers).any(|i| got == payload(i)),
        "content is one whole write"
    );
    assert_eq!(entries(d.path()), ["index.json"], "no temporary file left");
}

/// Two staged files for one destination at once have different temporary paths.
#[test]
fn two_staged_files_for_one_target_do_not_collide() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    let a = StagedFile::create(&p, PUBLIC).unwrap();
    let b = StagedFile::create(&p, PUBLIC).unwrap();
    assert_ne!(a.temp_path(), b.temp_path());
    assert_eq!(a.temp_path().parent(), Some(d.path()), "same directory");
}

/// A staged file dropped before its commit is removed and the destination keeps its content.
#[test]
fn a_dropped_staged_file_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    std::fs::write(&p, b"old").unwrap();
    {
        let mut s = StagedFile::create(&p, PUBLIC).unwrap();
        s.write_all(b"new, never committed").unwrap();
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert_eq!(entries(d.path()), ["x"]);
}

/// A FIFO, a directory or a device at the destination is refused with an error naming the path
/// and what is there; the FIFO stays a FIFO. A symbolic link to a FIFO is replaced itself.
#[test]
fn special_destinations_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let err = write_atomic(&fifo, b"x", PUBLIC).unwrap_err();
    assert!(matches!(err, WriteError::Special { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("a FIFO") && msg.contains(&fifo.display().to_string()),
        "{msg}"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let msg = write_atomic(&dir, b"x", PUBLIC).unwrap_err().to_string();
    assert!(msg.contains("a directory"), "{msg}");

    let msg = write_atomic(Path::new("/dev/null"), b"x", PUBLIC)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("a character device"), "{msg}");
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    let link = d.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    write_atomic(&link, b"x", PUBLIC).unwrap();
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_file(),
        "the link was replaced"
    );
    assert!(
        std::fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "not written through"
    );
    assert_eq!(
        entries(d.path()),
        ["dir", "fifo", "link"],
        "no temporary file left"
    );
}

/// A symbolic link to a regular file is replaced itself; the file it pointed to is untouched.
#[test]
fn a_link_to_a_regular_file_is_replaced_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target");
    std::fs::write(&target, b"keep").unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    write_atomic(&link, b"new", PUBLIC).unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(std::fs::read(&link).unwrap(), b"new");
}

/// A user-named FIFO or character device (`-o /dev/stdout`) is written in place and stays what
/// it was; a regular file is replaced atomically.
#[test]
fn user_named_streams_are_written_in_place() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap());
    write_output(&fifo, b"data", PUBLIC).unwrap();
    assert_eq!(reader.join().unwrap(), b"data");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    write_output(Path::new("/dev/null"), b"gone", PUBLIC).unwrap();
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    let f = d.path().join("out.json");
    write_output(&f, b"{}", PUBLIC).unwrap();
    assert_eq!(mode(&f), 0o644);
}

/// A directory that cannot be created fails with an error naming it, and nothing is written.
#[test]
fn failure_names_the_path() {
    let d = tempfile::tempdir().unwrap();
    let blocker = d.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let err = write_atomic(&blocker.join("sub/below"), b"x", PUBLIC).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&blocker.display().to_string()), "{msg}");
    assert!(matches!(err, WriteError::Io { .. }), "{msg}");
    assert_eq!(entries(d.path()), ["file"], "nothing written");
}

/// Content streamed through `Write` arrives whole.
#[test]
fn staged_file_streams() {
    use std::io::Write as _;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("blob");
    let mut s = StagedFile::create(&p, PUBLIC).unwrap();
    for _ in 0..100 {
        s.write_all(&[7u8; 1000]).unwrap();
    }
    s.flush().unwrap();
    s.commit().unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), vec![7u8; 100_000]);
}

/// An exclusive create writes an absent file whole with exactly its mode, and leaves a taken
/// name (a file, or anything else there) as it was; no temporary file is left either way.
#[test]
fn create_new_never_replaces() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("used/token");
    assert!(distro_hostio::create_new(&p, b"first", PRIVATE).unwrap());
    assert_eq!(std::fs::read(&p).unwrap(), b"first");
    assert_eq!(mode(&p), 0o600);
    assert!(!distro_hostio::create_new(&p, b"second", PUBLIC).unwrap());
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b"first",
        "a taken name is untouched"
    );
    assert_eq!(mode(&p), 0o600);
    let fifo = d.path().join("used/fifo");
    mkfifo(&fifo);
    assert!(!distro_hostio::create_new(&fifo, b"x", PUBLIC).unwrap());
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(entries(&d.path().join("used")), ["fifo", "token"]);
}

/// Of many threads creating one absent name at once exactly one wins, and the file holds that
/// winner's complete content.
#[test]
fn create_new_has_one_winner() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("claim");
    let payload = |i: usize| vec![b'a' + i as u8; 64 * 1024];
    let wins: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let p = &p;
                s.spawn(move || distro_hostio::create_new(p, &payload(i), PUBLIC).unwrap())
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| h.join().unwrap().then_some(i))
            .collect()
    });
    assert_eq!(wins.len(), 1, "winners: {wins:?}");
    assert_eq!(std::fs::read(&p).unwrap(), payload(wins[0]));
    assert_eq!(entries(d.path()), ["claim"], "no temporary file left");
}
