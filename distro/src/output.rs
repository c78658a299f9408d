//! The one place the binary writes to stdout and stderr.

use std::process::ExitCode;

/// Output format of reports on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}

/// `--format` as given: [`Format`]'s values, plus the audit report's `html` and `md` (hidden
/// from the global help: only `distro audit` takes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// For people.
    Text,
    /// One JSON document.
    Json,
    /// One self-contained HTML file (`distro audit`).
    #[value(hide = true)]
    Html,
    /// Markdown (`distro audit`).
    #[value(hide = true)]
    Md,
}

impl FormatArg {
    /// The format of every other subcommand's reports; `None` for `html` and `md`.
    pub fn common(self) -> Option<Format> {
        match self {
            FormatArg::Text => Some(Format::Text),
            FormatArg::Json => Some(Format::Json),
            FormatArg::Html | FormatArg::Md => None,
        }
    }
}

/// Logs go to stderr; `RUST_LOG` refines the level.
pub fn init_logging(quiet: bool) {
    let default = if quiet { "error" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Writes a report to stdout.
#[allow(clippy::print_stdout)]
pub fn data(text: &str) {
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// Writes a JSON document to stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    data(&serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A progress or status line on stderr (suppressed by `--quiet`).
#[allow(clippy::print_stderr)]
pub fn status(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("{text}");
    }
}

/// Renders an error with its chain of causes and maps it to an exit code.
#[allow(clippy::print_stderr)]
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    ExitCode::FAILURE
}
