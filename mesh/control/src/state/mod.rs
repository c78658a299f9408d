//! The control plane's state: everything that must survive a restart, behind one interface
//! ([`StateBackend`]) with two implementations.
//!
//! - [`local::LocalDir`] (the default, `--state-dir DIR`): one process, files in a directory.
//! - [`etcd::Etcd`] (`--state etcd://HOST:PORT[,HOST:PORT...]/PREFIX`): several replicas over a
//!   shared etcd cluster; once-only transitions are etcd transactions, changes are watched.
//!   `etcds://` reaches the members over TLS on the FIPS provider ([`etcd_tls`]).
//!
//! Both hold the same keys (for the local directory, the key is the path inside it):
//!
//! ```text
//! ca/state.json          CA generations: active one, older ones still trusted until a time
//! ca/<gen>.cert.pem      CA certificate (plus its chain to an organisation's root, BYO CA)
//! ca/<gen>.key.pem       CA private key, PKCS#8: mode 0600 on disk, sealed (AES-256-GCM) in etcd
//! ca/<gen>.roots.pem     the roots workloads trust for this generation
//! bundle.pem             the current trust bundle (to hand to workloads out of band)
//! tokens/<id>.json       join tokens: identity, expiry, SHA-256 of the secret
//! used/<id>              join tokens already used (replays are refused)
//! issued/<serial>.json   every issued certificate (serial, identity, validity)
//! config.json            last good mesh configuration, its digest and version
//! ```
//!
//! A transition that must happen once (a token used, a serial recorded, a CA generation made,
//! a configuration version published) is a conditional write, [`State::put_if`]: it succeeds
//! only if the key is still at the revision the writer read (or still absent), so of two
//! writers, in one process or in two replicas, exactly one wins.

pub mod etcd;
pub mod etcd_tls;
pub mod local;
pub mod seal;

use std::sync::Arc;

/// An error of the state store; always names the key or file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error(
        "{path}: {source} (check that the state directory exists and is writable by this user)"
    )]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key holds something unexpected.
    #[error("{path}: {why} (the state is damaged; restore it from backup)")]
    Corrupt {
        /// The file or key.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The store cannot be reached, or cannot commit a write (etcd without quorum).
    #[error("state store {store}: {why}")]
    Unavailable {
        /// The store (endpoints and prefix).
        store: String,
        /// What failed, and what to do.
        why: String,
    },
    /// A sealed value cannot be sealed or opened (no key, or the wrong one).
    #[error("{path}: {why}")]
    Sealed {
        /// The key.
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
}

impl StateError {
    /// The API refusal reason for this error: [`REASON_UNAVAILABLE`] when the store could not
    /// answer (the request may be retried), `internal` otherwise.
    pub fn reason(&self) -> &'static str {
        match self {
            StateError::Unavailable { .. } => REASON_UNAVAILABLE,
            _ => mesh_core::api::reason::INTERNAL,
        }
    }
}

/// The revision a value was read at: an etcd `mod_revision`, or for the local directory a
/// fingerprint of the file's content. Only compared for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rev(pub u64);

/// A value and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value (opened, when it was sealed).
    pub data: Vec<u8>,
    /// Its revision.
    pub rev: Rev,
}

/// Whether the store is usable now, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// `local` or `etcd`.
    pub backend: &'static str,
    /// Whether a read that needs the store's quorum succeeded.
    pub reachable: bool,
    /// Why not, when it is not.
    pub error: Option<String>,
}

/// The answer of [`StateBackend::get_async`].
pub type GetFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Entry>, StateError>> + Send>>;

/// Where the control plane keeps its state.
pub trait StateBackend: Send + Sync {
    /// The store, for messages: the directory, or `etcd://endpoints/prefix`.
    fn describe(&self) -> String;
    /// Where one key lives, for messages (a path, or an etcd key).
    fn locate(&self, key: &str) -> String;
    /// Reads a key; `Ok(None)` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Entry>, StateError>;
    /// [`get`](Self::get) as a future: a store that waits on the network answers it without
    /// holding a thread (every API request reads its client's record; 10,000 of them at once
    /// must not need 10,000 threads). A local store reads at once.
    fn get_async(self: Arc<Self>, key: String) -> GetFuture {
        Box::pin(std::future::ready(self.get(&key)))
    }
    /// Writes a key unconditionally; `private` values are kept from other users (mode 0600)
    /// or sealed (etcd).
    fn put(&self, key: &str, data: &[u8], private: bool) -> Result<(), StateError>;
    /// Writes a key only if it is still at `expected` (`None`: still absent). `Ok(false)` when
    /// another writer changed it first; nothing is written then.
    fn put_if(
        &self,
        key: &str,
        expected: Option<Rev>,
        data: &[u8],
        private: bool,
    ) -> Result<bool, StateError>;
    /// Removes a key (no error when it does not exist).
    fn delete(&self, key: &str) -> Result<(), StateError>;
    /// The keys under `prefix` (e.g. `issued/`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StateError>;
    /// How many keys are under `prefix`.
    fn count(&self, prefix: &str) -> Result<usize, StateError> {
        self.list(prefix).map(|l| l.len())
    }
    /// Changes made by anyone to `ca/state.json` or `config.json` (the counter moves), when the
    /// store can tell; `None` for a store that is checked on a timer instead.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
    /// Whether the store is usable now.
    fn health(&self) -> Health;
    /// Whether a call waits on the network (etcd: a round trip to a member) rather than on a
    /// local disk: the server then runs it where it does not hold up other connections.
    fn waits_on_network(&self) -> bool {
        false
    }
}

/// The state of one control plane (or one replica): a handle on its backend.
#[derive(Clone)]
pub struct State {
    backend: Arc<dyn StateBackend>,
    /// How long each write (put, conditional put, delete) took, committed or refused; shared
    /// by the clones.
    write_latency: Arc<crate::metrics::Histogram>,
}

/// The refusal reason of an API request that needed a write the store could not commit (etcd
/// without quorum, or unreachable); answered 503, the request may be retried later.
pub const REASON_UNAVAILABLE: &str = "store_unavailable";

/// Key of `ca/<name>`.
pub fn ca_key(name: &str) -> String {
    format!("ca/{name}")
}

/// Key of the current trust bundle.
pub const BUNDLE: &str = "bundle.pem";
/// Key of the last good configuration.
pub const CONFIG: &str = "config.json";
/// Key of the CA state.
pub const CA_STATE: &str = "ca/state.json";

/// Key of join token `id`.
pub fn token_key(id: &str) -> String {
    format!("tokens/{id}.json")
}

/// Key marking join token `id` used.
pub fn used_key(id: &str) -> String {
    format!("used/{id}")
}

/// Key of the record of certificate `serial_hex`.
pub fn issued_key(serial_hex: &str) -> String {
    format!("issued/{serial_hex}.json")
}

impl State {
    /// A handle on `backend`.
    pub fn new(backend: Arc<dyn StateBackend>) -> Self {
        State {
            backend,
            write_latency: Arc::default(),
        }
    }

    /// The local state directory at `root` (created when missing, mode 0700).
    pub fn open_dir(root: &std::path::Path) -> Result<Self, StateError> {
        Ok(State::new(Arc::new(local::LocalDir::open(root)?)))
    }

    /// The backend.
    pub fn backend(&self) -> &dyn StateBackend {
        self.backend.as_ref()
    }

    /// The store, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Where `key` lives, for messages.
    pub fn locate(&self, key: &str) -> String {
        self.backend.locate(key)
    }

    /// Reads a key.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        self.backend.get(key)
    }

    /// Reads a key as UTF-8 text; an absent key is an error naming it.
    pub fn get_text(&self, key: &str) -> Result<String, StateError> {
        match self.backend.get(key)? {
            Some(e) => String::from_utf8(e.data).map_err(|_| StateError::Corrupt {
                path: self.locate(key),
                why: "not UTF-8 text".into(),
            }),
            None => Err(StateError::Corrupt {
                path: self.locate(key),
                why: "missing".into(),
            }),
        }
    }

    /// Writes a key unconditionally.
    pub fn put(&self, key: &str, data: &[u8], private: bool) -> Result<(), StateError> {
        self.timed(|| self.backend.put(key, data, private))
    }

    /// Runs one write, recording how long it took.
    fn timed<T>(&self, write: impl FnOnce() -> T) -> T {
        let t = std::time::Instant::now();
        let out = write();
        self.write_latency.observe(t.elapsed().as_secs_f64());
        out
    }

    /// Appends the store's write-latency histogram (`mesh_control_store_write_seconds`) to a
    /// metrics exposition.
    pub fn render_metrics(&self, s: &mut String) {
        self.write_latency.render(
            s,
            "mesh_control_store_write_seconds",
            "Time one write to the state store took (local directory: fsynced file; etcd: committed transaction), whether committed or refused.",
        );
    }

    /// Writes a key only if it is still at `expected` (see [`StateBackend::put_if`]).
    pub fn put_if(
        &self,
        key: &str,
        expected: Option<Rev>,
        data: &[u8],
        private: bool,
    ) -> Result<bool, StateError> {
        self.timed(|| self.backend.put_if(key, expected, data, private))
    }

    /// Removes a key.
    pub fn delete(&self, key: &str) -> Result<(), StateError> {
        self.timed(|| self.backend.delete(key))
    }

    /// Reads a JSON value and its revision; `Ok(None)` when absent.
    pub fn read_json_rev<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Rev)>, StateError> {
        let entry = self.backend.get(key)?;
        self.parse_json(key, entry)
    }

    /// Reads a JSON value; `Ok(None)` when absent.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        Ok(self.read_json_rev(key)?.map(|(v, _)| v))
    }

    /// [`read_json`](Self::read_json) without holding a thread while a network store answers.
    pub async fn read_json_async<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        let entry = self.backend.clone().get_async(key.to_string()).await?;
        Ok(self.parse_json(key, entry)?.map(|(v, _)| v))
    }

    /// The JSON value of an entry read at `key`, and its revision.
    fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        entry: Option<Entry>,
    ) -> Result<Option<(T, Rev)>, StateError> {
        match entry {
            None => Ok(None),
            Some(e) => serde_json::from_slice(&e.data)
                .map(|v| Some((v, e.rev)))
                .map_err(|err| StateError::Corrupt {
                    path: self.locate(key),
                    why: err.to_string(),
                }),
        }
    }

    /// Writes a value as pretty JSON.
    pub fn write_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let data = self.to_json(key, value)?;
        self.put(key, &data, false)
    }

    /// Writes a value as pretty JSON only if the key is still at `expected`.
    pub fn write_json_if<T: serde::Serialize>(
        &self,
        key: &str,
        expected: Option<Rev>,
        value: &T,
    ) -> Result<bool, StateError> {
        let data = self.to_json(key, value)?;
        self.put_if(key, expected, &data, false)
    }

    fn to_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            path: self.locate(key),
            why: e.to_string(),
        })
    }

    /// Number of issued certificates on record.
    pub fn issued_count(&self) -> usize {
        self.backend.count("issued/").unwrap_or(0)
    }

    /// Changes to the CA state or the configuration, when the store reports them.
    pub fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.backend.changes()
    }

    /// Whether the store is usable now.
    pub fn health(&self) -> Health {
        self.backend.health()
    }

    /// See [`StateBackend::waits_on_network`].
    pub fn waits_on_network(&self) -> bool {
        self.backend.waits_on_network()
    }
}

/// Opens the state named on the command line: `--state-dir DIR`, or `--state URL` (a
/// directory path, `etcd://...` or `etcds://...`), with the operator key that seals CA keys in
/// etcd and, for `etcds://`, the TLS configuration ([`etcd_tls::EtcdTls::for_url`]).
pub fn open(
    state_dir: Option<&std::path::Path>,
    url: Option<&str>,
    seal_key: Option<seal::SealKey>,
    tls: Option<etcd_tls::EtcdTls>,
) -> Result<State, StateError> {
    match (state_dir, url) {
        (Some(dir), None) => State::open_dir(dir),
        (None, Some(u)) if u.starts_with(etcd::PLAIN_SCHEME) || u.starts_with(etcd::TLS_SCHEME) => {
            Ok(State::new(Arc::new(etcd::Etcd::connect(u, seal_key, tls)?)))
        }
        (None, Some(u)) if u.contains("://") => Err(StateError::Unavailable {
            store: u.to_string(),
            why: "unknown state URL scheme; use etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS) or a directory path".into(),
        }),
        (None, Some(u)) => State::open_dir(std::path::Path::new(u)),
        _ => Err(StateError::Unavailable {
            store: String::new(),
            why: "give exactly one of --state-dir DIR or --state etcd://HOST:PORT/PREFIX".into(),
        }),
    }
}
