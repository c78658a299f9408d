//! The careful read: FIFOs, devices, directories and (when asked) symbolic links are refused,
//! naming what the file is, without blocking; no more than the limit is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use distro_hostio::{open_regular, read_bounded, read_regular, Access, Symlinks};

/// `read_bounded` refuses FIFOs, devices, directories and (with [`Symlinks::Refuse`]) symbolic
/// links, naming what the file is, and reads no more than its limit.
#[test]
fn read_bounded_refuses_special_files_and_long_ones() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = read_bounded(&fifo, Symlinks::Follow, 10).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    let err = read_bounded(Path::new("/dev/zero"), Symlinks::Follow, 10).unwrap_err();
    assert!(err.to_string().contains("character device"), "{err}");
    let link = t.path().join("link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = read_bounded(&link, Symlinks::Refuse, 10).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = read_bounded(&link, Symlinks::Follow, 10).unwrap_err();
    assert!(err.to_string().contains("character device"), "{err}");
    assert!(read_bounded(t.path(), Symlinks::Follow, 10)
        .unwrap_err()
        .to_string()
        .contains("directory"));
    let f = t.path().join("f");
    std::fs::write(&f, b"0123456789").unwrap();
    assert_eq!(
        read_bounded(&f, Symlinks::Refuse, 10).unwrap(),
        b"0123456789"
    );
    let err = read_bounded(&f, Symlinks::Refuse, 9).unwrap_err();
    assert!(err.to_string().contains("more than the 9 bytes"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

/// A missing file keeps `NotFound` (callers treat an absent blob as absent, not as damage);
/// `open_regular` gives the size of what it opened.
#[test]
fn missing_files_stay_not_found_and_sizes_are_given() {
    let t = tempfile::tempdir().unwrap();
    let err = open_regular(&t.path().join("absent"), Symlinks::Refuse).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let f = t.path().join("f");
    std::fs::write(&f, b"abc").unwrap();
    assert_eq!(open_regular(&f, Symlinks::Refuse).unwrap().1, 3);
}

/// `read_regular` names the file in every refusal, follows a link to a regular file, and
/// refuses the device behind a link.
#[test]
fn read_regular_names_the_file_and_follows_links_to_files() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("distro.toml");
    std::fs::write(&f, b"x = 1\n").unwrap();
    let link = t.path().join("link.toml");
    std::os::unix::fs::symlink(&f, &link).unwrap();
    assert_eq!(read_regular(&link, 64, Access::Any).unwrap(), b"x = 1\n");
    let dev = t.path().join("dev.toml");
    std::os::unix::fs::symlink("/dev/zero", &dev).unwrap();
    let err = read_regular(&dev, 64, Access::Any).unwrap_err().to_string();
    assert!(
        err.contains(&dev.display().to_string()) && err.contains("character device"),
        "{err}"
    );
    let absent = t.path().join("absent.toml");
    let err = read_regular(&absent, 64, Access::Any)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&absent.display().to_string()), "{err}");
}
