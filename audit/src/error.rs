//! Errors of the audit; each names the input, image or file involved and says what to do.

use std::path::PathBuf;

/// Everything that can stop an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The input names nothing that can be audited.
    #[error("cannot audit `{input}`: {reason}")]
    Input {
        /// The input as given.
        input: String,
        /// Why, and what to pass instead.
        reason: String,
    },
    /// Opening or reading the image failed.
    #[error(transparent)]
    Image(#[from] distro_images::Error),
    /// Verification failed, and `--unverified` was not given: no report is made about input
    /// that does not verify.
    #[error("refusing to report on `{subject}`: it does not verify with key {keyid}:\n  {}\nfix the image (sign and attest it with `distro sign` / `distro attest`), pass the right --key, or pass --unverified to report anyway (the report then says it is unverified)", failures.join("\n  "))]
    Unverified {
        /// What was audited.
        subject: String,
        /// Fingerprint of the key.
        keyid: String,
        /// Every failed check, `image: check: detail`.
        failures: Vec<String>,
    },
    /// A template failed to render (a bug: the templates are built in).
    #[error("rendering the {format} report: {source}")]
    Render {
        /// `html` or `md`.
        format: &'static str,
        /// The template engine's error.
        source: minijinja::Error,
    },
    /// Writing the report failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
