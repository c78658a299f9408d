//! A fuzzing harness that runs on stable Rust, as ordinary tests.
//!
//! `cargo-fuzz` and libFuzzer need nightly (sanitizer coverage), which the build machines do not
//! have. This crate gives each parser of outside input a target that `cargo test --workspace`
//! runs for a fixed time: it starts from a corpus kept in the repository (`fuzz/corpus/<target>/`:
//! the real files the project ships and its test fixtures, plus seeds a test makes at run time,
//! such as envelopes signed with a fresh key), mutates them the way libFuzzer's default mutators
//! do (bit flips, byte edits, chunk deletion, duplication and splicing between seeds, dictionary
//! tokens, interesting numbers), and checks every input:
//!
//! - **no panic** (a failed property assertion in the target is a panic too);
//! - **no hang**: every input has a time limit ([`Options::input_timeout`]), watched from
//!   another thread;
//! - **bounded memory** where the parser promises it: the most bytes live on the target's
//!   thread during one input ([`Options::max_memory`], measured by [`meter`]).
//!
//! Without coverage instrumentation the guidance is the parser's own answer: an input whose
//! outcome (the target's return value, e.g. the error message with numbers and quoted input
//! removed) was not seen before joins the working corpus, so inputs that get past one check are
//! mutated further to reach the next.
//!
//! A failing input is written to `target/fuzz-artifacts/<target>/` (or `$FUZZ_ARTIFACTS`), a
//! smaller one that fails the same way next to it, and the test fails naming both files and the
//! seed that reproduces the run. Copy such a file into the target's corpus folder to keep it as a
//! regression input: every corpus file runs first, unmutated, on every run.
//!
//! Environment: `FUZZ_SECONDS` (per target, default 4), `FUZZ_SEED` (default: fixed per target,
//! so `cargo test` is reproducible; a number reruns a printed seed; `random` explores from the
//! clock, as `scripts/fuzz-explore.sh` does), `FUZZ_INPUT_TIMEOUT_MS` (default 5000),
//! `FUZZ_ARTIFACTS`.
#![allow(clippy::print_stderr)] // the harness reports on stderr, as the test harness does

pub mod meter;
mod mutate;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use mutate::Rng;

/// Installs the global allocator that [`meter`] reads, in every binary that links this crate.
#[global_allocator]
static ALLOCATOR: meter::Meter = meter::Meter;

/// How one target runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target's name: its corpus folder and its artifact folder.
    pub name: &'static str,
    /// Seeds made at run time, in addition to the corpus folder's files.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens the mutator inserts (keywords, punctuation, field names of the format).
    pub dictionary: Vec<Vec<u8>>,
    /// Longest input tried.
    pub max_len: usize,
    /// Most bytes that may be live on the target's thread while it handles one input.
    pub max_memory: usize,
    /// Longest one input may take.
    pub input_timeout: Duration,
    /// How long to fuzz after the corpus ran.
    pub duration: Duration,
}

impl Options {
    /// Defaults for the target `name`: inputs up to 64 KiB, 256 MiB of memory per input, the
    /// time budget and per-input limit from the environment.
    pub fn new(name: &'static str) -> Self {
        let env_u64 = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(d)
        };
        Options {
            name,
            seeds: Vec::new(),
            dictionary: Vec::new(),
            max_len: 64 << 10,
            max_memory: 256 << 20,
            input_timeout: Duration::from_millis(env_u64("FUZZ_INPUT_TIMEOUT_MS", 5000)),
            duration: Duration::from_secs(env_u64("FUZZ_SECONDS", 4)),
        }
    }

    /// Adds run-time seeds.
    pub fn seeds<I: IntoIterator<Item = Vec<u8>>>(mut self, seeds: I) -> Self {
        self.seeds.extend(seeds);
        self
    }

    /// Adds dictionary tokens.
    pub fn dictionary(mut self, tokens: &[&str]) -> Self {
        self.dictionary
            .extend(tokens.iter().map(|t| t.as_bytes().to_vec()));
        self
    }

    /// Sets the longest input.
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }

    /// Sets the memory bound per input.
    pub fn max_memory(mut self, n: usize) -> Self {
        self.max_memory = n;
        self
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Inputs run (corpus and mutated).
    pub inputs: u64,
    /// Corpus files and run-time seeds.
    pub seeds: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Size of the working corpus at the end.
    pub corpus: usize,
}

/// How an input failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Crash,
    Hang,
    Memory,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::Hang => "hang",
            Kind::Memory => "oom",
        }
    }
}

/// A failing input and what happened.
struct Failure {
    kind: Kind,
    input: Vec<u8>,
    message: String,
}

/// What the thread running the inputs tells the one watching it.
enum Msg {
    /// One input ran.
    Ran,
    /// Every seed ran; mutation starts.
    SeedsDone,
    /// An input failed; the thread has stopped.
    Failed(Failure),
}

/// The folder of the target's corpus in the repository.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// Where failing inputs are written.
pub fn artifacts_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("FUZZ_ARTIFACTS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("fuzz-artifacts"))
        })
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("fuzz-artifacts")
        });
    base.join(name)
}

/// The files of a corpus folder, in name order (a missing folder is an empty corpus).
pub fn read_corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// How much of an outcome counts: error messages differ in their fixed first words; what
/// follows often quotes the input, which would make every input look new.
const OUTCOME_CHARS: usize = 60;

/// An outcome with the parts that vary with the input (numbers, quoted text) removed, so that
/// "line 3" and "line 4" of the same error count as one outcome.
pub fn outcome_class(outcome: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in outcome.chars().take(OUTCOME_CHARS) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '`' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            None if c.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            None => out.push(c),
        }
    }
    out
}

thread_local! {
    /// Where the last panic on this thread happened (set by the hook, read by the runner).
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// Whether this thread is running a fuzz input now.
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that stays quiet while a thread runs a fuzz input (its panic is reported once,
/// with the input, by the runner) and leaves every other panic to the previous hook.
fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(std::cell::Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(at));
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    let at = LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_default();
    format!("{text}{at}")
}

/// Runs `input` once on this thread: its outcome, or how it failed (panic, memory).
fn run_one<F>(target: &F, input: &[u8], max_memory: usize) -> Result<String, (Kind, String)>
where
    F: Fn(&[u8]) -> String,
{
    IN_TARGET.with(|t| t.set(true));
    let base = meter::start();
    let result = catch_unwind(AssertUnwindSafe(|| target(input)));
    let peak = meter::peak_since(base);
    IN_TARGET.with(|t| t.set(false));
    match result {
        Err(payload) => Err((Kind::Crash, panic_message(&*payload))),
        Ok(_) if peak > max_memory => Err((
            Kind::Memory,
            format!(
                "{peak} bytes were live at once while parsing a {}-byte input, more than the {max_memory} allowed",
                input.len()
            ),
        )),
        Ok(outcome) => Ok(outcome),
    }
}

/// The seed of a run: `FUZZ_SEED` when it is a number; a fresh one from the clock when it is
/// `random` (exploration: `scripts/fuzz-explore.sh`); otherwise one fixed per target, so that
/// the test suite is reproducible: the same inputs run in CI as on a developer's machine, and
/// a failure there is a regression, not a new find of a luckier seed.
fn run_seed(name: &str) -> u64 {
    match std::env::var("FUZZ_SEED").ok().as_deref().map(str::trim) {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Some(n) if n.parse::<u64>().is_ok() => n.parse::<u64>().unwrap_or(1),
        Some(other) if !other.is_empty() => {
            panic!("FUZZ_SEED=`{other}`: give a number (the seed a failure printed) or `random`")
        }
        // FNV-1a of the target's name.
        _ => name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }),
    }
}

/// Fuzzes `target` with `opts`; panics (failing the test) with the saved input on the first
/// crash, hang or memory overrun. `target` returns a description of the outcome (the error, or
/// what was parsed) that guides the mutation; it asserts its properties by panicking.
pub fn fuzz<F>(opts: Options, target: F) -> Summary
where
    F: Fn(&[u8]) -> String + Send + Sync + 'static,
{
    install_panic_hook();
    let seed = run_seed(opts.name);
    let mut initial: Vec<Vec<u8>> = read_corpus(&corpus_dir(opts.name))
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    initial.extend(opts.seeds.iter().cloned());
    assert!(
        !initial.is_empty(),
        "fuzz target `{}` has no seeds: add files to {}",
        opts.name,
        corpus_dir(opts.name).display()
    );
    let target = Arc::new(target);
    // The input being run, so that a hang can be saved by the thread that noticed it.
    let current: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<Msg>();
    let worker = {
        let (target, current, opts) = (Arc::clone(&target), Arc::clone(&current), opts.clone());
        std::thread::Builder::new()
            .name(format!("fuzz-{}", opts.name))
            .spawn(move || worker_loop(&*target, &opts, seed, initial, &current, &tx))
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => panic!("fuzz target `{}`: cannot start its thread: {e}", opts.name),
    };
    // Each input sends one message; silence longer than the time limit is a hang. The seeds
    // also pay for what a parser sets up once (a compiled regex, a loaded table): each gets a
    // minute.
    let mut limit = opts.input_timeout.max(SEED_TIMEOUT);
    let summary = loop {
        match rx.recv_timeout(limit) {
            Ok(Msg::Ran) => {}
            Ok(Msg::SeedsDone) => limit = opts.input_timeout,
            Ok(Msg::Failed(f)) => {
                let _ = worker.join();
                report(&opts, seed, &*target, f);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                report(
                    &opts,
                    seed,
                    &*target,
                    Failure {
                        kind: Kind::Hang,
                        message: format!(
                            "one input ran longer than {} ms (FUZZ_INPUT_TIMEOUT_MS)",
                            limit.as_millis()
                        ),
                        input,
                    },
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break worker.join().ok().flatten(),
        }
    };
    let summary = summary.unwrap_or_else(|| {
        panic!(
            "fuzz target `{}`: its thread ended without a summary",
            opts.name
        )
    });
    eprintln!(
        "fuzz target `{}`: {} inputs in {} s ({} seeds, {} distinct outcomes, corpus {}), FUZZ_SEED={seed}",
        opts.name,
        summary.inputs,
        opts.duration.as_secs(),
        summary.seeds,
        summary.outcomes,
        summary.corpus
    );
    summary
}

/// Time limit of each seed.
const SEED_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest working corpus kept; once full, a new outcome replaces a random mutated input.
const MAX_CORPUS: usize = 2048;

fn worker_loop<F>(
    target: &F,
    opts: &Options,
    seed: u64,
    initial: Vec<Vec<u8>>,
    current: &Mutex<Vec<u8>>,
    tx: &mpsc::Sender<Msg>,
) -> Option<Summary>
where
    F: Fn(&[u8]) -> String,
{
    let mut rng = Rng::new(seed);
    let mut seen: HashSet<String> = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut inputs = 0u64;
    // Runs one input; `Some(new outcome?)` when it passed, `None` when it failed (reported).
    let mut run = |input: &[u8]| -> Option<bool> {
        if let Ok(mut c) = current.lock() {
            c.clear();
            c.extend_from_slice(input);
        }
        inputs += 1;
        match run_one(target, input, opts.max_memory) {
            Ok(outcome) => {
                let new = seen.insert(outcome_class(&outcome));
                tx.send(Msg::Ran).ok().map(|()| new)
            }
            Err((kind, message)) => {
                let _ = tx.send(Msg::Failed(Failure {
                    kind,
                    input: input.to_vec(),
                    message,
                }));
                None
            }
        }
    };
    for input in &initial {
        run(input)?;
        corpus.push(input.clone());
    }
    tx.send(Msg::SeedsDone).ok()?;
    let mutator = mutate::Mutator {
        dictionary: &opts.dictionary,
        max_len: opts.max_len,
    };
    let end = Instant::now() + opts.duration;
    while Instant::now() < end {
        let input = mutator.mutate(&mut rng, &corpus);
        if run(&input)? {
            if corpus.len() < MAX_CORPUS {
                corpus.push(input);
            } else {
                // Full: a new outcome replaces a mutated input (the seeds stay).
                let at = initial.len() + rng.below(corpus.len() - initial.len());
                if let Some(slot) = corpus.get_mut(at) {
                    *slot = input;
                }
            }
        }
    }
    Some(Summary {
        inputs,
        seeds: initial.len(),
        outcomes: seen.len(),
        corpus: corpus.len(),
    })
}

/// Writes the failing input (and a smaller one failing the same way), then fails the test.
fn report<F>(opts: &Options, seed: u64, target: &F, f: Failure) -> !
where
    F: Fn(&[u8]) -> String,
{
    let dir = artifacts_dir(opts.name);
    let save = |prefix: &str, data: &[u8]| -> String {
        let path = dir.join(format!("{prefix}-{:016x}", fnv1a(data)));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, data)) {
            Ok(()) => path.display().to_string(),
            Err(e) => format!("(could not be saved to {}: {e})", path.display()),
        }
    };
    let saved = save(f.kind.prefix(), &f.input);
    let mut text = format!(
        "fuzz target `{}` found a {} ({}): {}\n  input ({} bytes) saved to {saved}\n  rerun with FUZZ_SEED={seed}",
        opts.name,
        match f.kind {
            Kind::Crash => "panic",
            Kind::Hang => "hang",
            Kind::Memory => "memory overrun",
        },
        f.kind.prefix(),
        f.message,
        f.input.len(),
    );
    // A hung input cannot be shrunk here: the thread running it is still stuck.
    if f.kind != Kind::Hang {
        let small = shrink(target, &f.input, f.kind, opts.max_memory);
        if small.len() < f.input.len() {
            text.push_str(&format!(
                "\n  a {}-byte input failing the same way saved to {}",
                small.len(),
                save(&format!("{}-min", f.kind.prefix()), &small)
            ));
        }
    }
    text.push_str(&format!(
        "\n  keep it as a regression input: copy it into {}",
        corpus_dir(opts.name).display()
    ));
    panic!("{text}");
}

/// Removes chunks of `input` while it still fails the same way, for at most two seconds.
fn shrink<F>(target: &F, input: &[u8], kind: Kind, max_memory: usize) -> Vec<u8>
where
    F: Fn(&[u8]) -> String,
{
    let end = Instant::now() + Duration::from_secs(2);
    let fails = |b: &[u8]| matches!(run_one(target, b, max_memory), Err((k, _)) if k == kind);
    let mut best = input.to_vec();
    let mut chunk = best.len() / 2;
    while chunk > 0 && Instant::now() < end {
        let mut at = 0;
        while at < best.len() && Instant::now() < end {
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[(at + chunk).min(best.len())..]);
            if fails(&candidate) {
                best = candidate;
            } else {
                at += chunk;
            }
        }
        chunk /= 2;
    }
    best
}

/// FNV-1a, to name artifact files after their content.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
