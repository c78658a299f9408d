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

/// A progress or status line on stderr (suppressed by `--quiet`); above the progress bar while
/// one is shown.
#[allow(clippy::print_stderr)]
pub fn status(quiet: bool, text: &str) {
    if quiet {
        return;
    }
    match BAR.lock().ok().and_then(|b| b.clone()) {
        Some(bar) => bar.println(text),
        None => eprintln!("{text}"),
    }
}

/// The progress bar being shown, if any: [`status`] prints above it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// One progress display for a whole run (every line × every stage): a bar on a terminal, plain
/// `[release LINE] STAGE` lines when stderr is not a terminal or `CI` is set, nothing with
/// `--quiet`.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Progress {
    /// A display for `total` steps.
    pub fn new(total: u64, quiet: bool) -> Progress {
        use std::io::IsTerminal as _;
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let bar = (!quiet && !ci && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        if let Ok(mut b) = BAR.lock() {
            b.clone_from(&bar);
        }
        Progress { bar, quiet }
    }

    /// Whether a bar is shown (then nothing else should write raw output to stderr).
    pub fn has_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// A stage of a line starts.
    pub fn start(&self, line: &str, stage: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("line {line}: {stage}")),
            None => status(self.quiet, &format!("[release {line}] {stage}")),
        }
    }

    /// A stage of a line is done (or was found done, `skipped`), after `ms` milliseconds.
    pub fn done(&self, line: &str, stage: &str, skipped: bool, ms: u64) {
        let what = if skipped {
            "unchanged, nothing to do".to_string()
        } else {
            format!("done in {:.1} s", ms as f64 / 1000.0)
        };
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  line {line}: {stage}: {what}"));
                bar.inc(1);
            }
            None => status(self.quiet, &format!("[release {line}] {stage}: {what}")),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Ok(mut b) = BAR.lock() {
            *b = None;
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Exit code of a policy refusal: the command worked, and the policy said no (a FIPS policy the
/// module does not meet, a line past its end of life, a licence, crate, source or advisory the
/// policy denies, an image that does not verify).
pub const EXIT_REFUSED: u8 = 3;

/// A policy refusal, as opposed to an error: carried in an [`anyhow::Error`]'s chain and mapped
/// to exit code [`EXIT_REFUSED`] by [`report_error`].
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Whether an error is a policy refusal: a [`Refusal`] anywhere in its chain, or a library error
/// that is one (a FIPS module the distribution's policy does not accept, a component that is
/// not in FIPS mode).
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<Refusal>()
            || matches!(
                c.downcast_ref::<distro_build::BuildError>(),
                Some(
                    distro_build::BuildError::FipsPolicy { .. }
                        | distro_build::BuildError::NotFips { .. }
                )
            )
    })
}

/// Renders an error with its chain of causes and maps it to an exit code: 3 for a policy
/// refusal ([`is_refusal`]), else 1. (Bad usage is clap's 2.)
#[allow(clippy::print_stderr)]
pub fn report_error(e: &anyhow::Error) -> ExitCode {
    let refused = is_refusal(e);
    eprintln!("{}: {e}", if refused { "refused" } else { "error" });
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if refused {
        ExitCode::from(EXIT_REFUSED)
    } else {
        ExitCode::FAILURE
    }
}
