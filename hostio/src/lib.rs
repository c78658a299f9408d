//! What the distro's crates do to the host, done one way everywhere:
//!
//! - [`cmd`]: the one subprocess runner. Every command says why it runs; a failure shows the
//!   command line, its exit status and a bounded tail of its stderr, and git runs with one
//!   fixed, configuration-free setup ([`Cmd::git`]); background processes start through it too
//!   ([`Cmd::spawn_logged`]).
//! - [`atomic`]: the one atomic write: a uniquely named temporary file in the destination's
//!   directory, created with the final mode's owner bits and never wider than asked, fsynced,
//!   renamed into place, and the directory fsynced; FIFOs, devices, sockets and directories at
//!   the destination are refused (or, for a user-named output, written in place); an exclusive
//!   create ([`create_new`]) links the complete file into place only if the name is free.
//! - [`read`]: the one careful read of a file put on the host by someone else: regular files
//!   only (a FIFO does not stall it), bounded, and for private keys owner-only (`chmod 600`).
//! - [`digest`]: the one sha256 helper (AWS-LC), over bytes or streamed from a reader or file,
//!   as lower-case hex or in OCI notation (`sha256:<hex>`).
//!
//! Libraries map [`CmdError`] and [`WriteError`] into their own error enums with `#[from]`, so a
//! message reads the same whichever crate ran the command or wrote the file.
#![forbid(unsafe_code)]

pub mod atomic;
pub mod cmd;
pub mod digest;
pub mod read;

pub use atomic::{create_new, write_atomic, write_output, StagedFile, WriteError, PRIVATE, PUBLIC};
pub use cmd::{Cmd, CmdError};
pub use digest::{sha256_file, sha256_hex, sha256_oci, sha256_reader, Sha256};
pub use read::{open_regular, read_bounded, read_regular, Access, ReadError, Symlinks};
