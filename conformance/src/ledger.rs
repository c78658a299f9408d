//! What a run created, written down before it is created, so it can be removed afterwards —
//! after success, after a failed scenario, on SIGINT/SIGTERM, and by the next run when this one
//! crashed.
//!
//! One ledger file per run under the state directory (`/run/distro-conformance` by default),
//! one line per resource: `netns NAME`, `pid PID STARTTIME`, `runc ROOT ID`, `dir PATH`. The
//! first line, `owner PID STARTTIME`, lets a later run tell a live concurrent run (left alone)
//! from a dead one (cleaned up). Processes are identified by pid *and* start time, so a reused
//! pid is never killed.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use distro_hostio::Cmd;

/// The ledger of one run.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

/// Ledgers of runs in this process, for the signal handler.
static ACTIVE: Mutex<Vec<Arc<Ledger>>> = Mutex::new(Vec::new());

/// A ledger problem.
#[derive(Debug, thiserror::Error)]
#[error("conformance state file {path}: {source} (is the state directory writable? it needs root)")]
pub struct LedgerError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// The start time of a process (field 22 of /proc/PID/stat), if it runs (zombies do not).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it is the text between the first '(' and the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // A zombie has exited; only its parent's wait() is missing.
    if rest.starts_with('Z') || rest.starts_with('X') {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Ledger {
    /// Creates the ledger of run `run_id` in `state_dir`.
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Arc<Ledger>, LedgerError> {
        let path = state_dir.join(format!("{run_id}.ledger"));
        let err = |source| LedgerError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(err)?;
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        let me = std::process::id();
        writeln!(f, "owner {me} {}", start_time(me).unwrap_or(0)).map_err(err)?;
        f.sync_data().map_err(err)?;
        let l = Arc::new(Ledger {
            path: path.clone(),
            file: Mutex::new(Some(f)),
        });
        if let Ok(mut a) = ACTIVE.lock() {
            a.push(l.clone());
        }
        Ok(l)
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&self, line: &str) -> Result<(), LedgerError> {
        let err = |source| LedgerError {
            path: self.path.clone(),
            source,
        };
        let mut g = self
            .file
            .lock()
            .map_err(|_| err(std::io::Error::other("ledger lock poisoned")))?;
        let Some(f) = g.as_mut() else {
            return Err(err(std::io::Error::other("ledger already cleaned up")));
        };
        writeln!(f, "{line}").map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Records a network namespace about to be created.
    pub fn netns(&self, name: &str) -> Result<(), LedgerError> {
        self.record(&format!("netns {name}"))
    }

    /// Records a started process.
    pub fn pid(&self, pid: u32) -> Result<(), LedgerError> {
        self.record(&format!("pid {pid} {}", start_time(pid).unwrap_or(0)))
    }

    /// Records a runc container about to be created.
    pub fn runc(&self, root: &Path, id: &str) -> Result<(), LedgerError> {
        self.record(&format!("runc {} {id}", root.display()))
    }

    /// Records a directory about to be created.
    pub fn dir(&self, path: &Path) -> Result<(), LedgerError> {
        self.record(&format!("dir {}", path.display()))
    }

    /// Removes everything recorded, then the ledger itself. Idempotent; returns what could not
    /// be removed.
    pub fn cleanup(&self) -> Vec<String> {
        let problems = match self.file.lock() {
            Ok(mut g) => {
                *g = None;
                clean_file(&self.path)
            }
            Err(_) => vec!["ledger lock poisoned".into()],
        };
        if let Ok(mut a) = ACTIVE.lock() {
            a.retain(|l| l.path != self.path);
        }
        problems
    }
}

/// Removes what the ledger at `path` lists, then the file. Returns problems.
fn clean_file(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    // Containers first (their processes live in the namespaces), then processes, namespaces and
    // directories.
    for l in &lines {
        if let ["runc", root, id] = l[..] {
            let _ = Cmd::new("runc", "stop a conformance container")
                .args(["--root", root, "kill", id, "KILL"])
                .output();
            if let Err(e) = Cmd::new("runc", "remove a conformance container")
                .args(["--root", root, "delete", "--force", id])
                .run()
            {
                // Already gone is what was wanted; runc says so on stderr, which the message ends with.
                let msg = e.to_string();
                if !msg.contains("not exist") {
                    problems.push(msg);
                }
            }
        }
    }
    for l in &lines {
        if let ["pid", pid, start] = l[..] {
            let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
                continue;
            };
            if start_time(pid) == Some(start) {
                let _ = Cmd::new("kill", "stop a conformance process")
                    .args(["-KILL", &pid.to_string()])
                    .output();
                for _ in 0..50 {
                    if start_time(pid) != Some(start) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
    // Processes started in a namespace but not yet recorded when the run was killed (the window
    // between spawn and the ledger line): whatever still runs in our namespaces is ours.
    for l in &lines {
        if let ["netns", name] = l[..] {
            if !Path::new("/run/netns").join(name).exists() {
                continue;
            }
            let Ok(out) = Cmd::new("ip", "find processes left in a conformance namespace")
                .args(["netns", "pids", name])
                .output()
            else {
                continue;
            };
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Cmd::new("kill", "stop a process left in a conformance namespace")
                    .args(["-KILL", pid])
                    .output();
            }
        }
    }
    for l in &lines {
        if let ["netns", name] = l[..] {
            if Path::new("/run/netns").join(name).exists() {
                if let Err(e) = Cmd::new("ip", "remove a conformance network namespace")
                    .args(["netns", "delete", name])
                    .run()
                {
                    problems.push(e.to_string());
                }
            }
        }
    }
    for l in &lines {
        if l.first() == Some(&"dir") && l.len() >= 2 {
            let p = PathBuf::from(l[1..].join(" "));
            if p.exists() {
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    problems.push(format!("removing {}: {e}", p.display()));
                }
            }
        }
    }
    if problems.is_empty() {
        let _ = std::fs::remove_file(path);
    }
    problems
}

/// Cleans up after earlier runs in `state_dir` whose owner process is gone (a crash, a
/// SIGKILL). Returns (ledgers cleaned, problems).
pub fn clean_leftovers(state_dir: &Path) -> (usize, Vec<String>) {
    let Ok(rd) = std::fs::read_dir(state_dir) else {
        return (0, Vec::new());
    };
    let mut cleaned = 0;
    let mut problems = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "ledger") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let owner_alive =
            text.lines().next().is_some_and(
                |first| match first.split(' ').collect::<Vec<_>>()[..] {
                    ["owner", pid, start] => match (pid.parse::<u32>(), start.parse::<u64>()) {
                        (Ok(pid), Ok(start)) => start_time(pid) == Some(start),
                        _ => false,
                    },
                    _ => false,
                },
            );
        if owner_alive {
            continue;
        }
        problems.extend(clean_file(&p));
        cleaned += 1;
    }
    (cleaned, problems)
}

/// Installs SIGINT/SIGTERM handlers (once per process) that clean up every active ledger and
/// exit with 128 + the signal number, so an interrupted run leaves nothing behind.
pub fn install_signal_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                let code = tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                };
                let active: Vec<Arc<Ledger>> = ACTIVE.lock().map(|a| a.clone()).unwrap_or_default();
                for l in active {
                    for p in l.cleanup() {
                        tracing::warn!("cleanup after signal: {p}");
                    }
                }
                tracing::warn!("interrupted: everything this run created was removed");
                std::process::exit(code);
            });
        });
    });
}
