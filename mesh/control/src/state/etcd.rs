//! The etcd backend: several control-plane replicas over one etcd cluster (v3 API).
//!
//! `--state etcd://HOST:PORT[,HOST:PORT...]/PREFIX` keeps every key under `/PREFIX/`;
//! `etcds://` instead of `etcd://` speaks TLS to every member, on the FIPS provider
//! ([`super::etcd_tls`]); one URL is all plain or all TLS. A write
//! that must happen once is a transaction comparing the key's `mod_revision` (or, for a key
//! that must still be absent, its `create_revision == 0`) before the put, so of replicas racing
//! on one key exactly one commits. Reads are linearizable while the quorum answers; when it
//! does not (for a second), they are answered from the member's own copy (serializable), so a
//! replica keeps authenticating its proxies and serving the last state while etcd has lost
//! quorum; every write needs the quorum and is refused with a reason that says so. A watch on the prefix tells the replica about CA and configuration
//! changes made by any other replica, without polling.
//!
//! CA private keys are sealed ([`super::seal`]) with the operator's key before they are sent;
//! the store never holds them in the clear.
//!
//! etcd-client is async (tokio, tonic); the rest of the control plane calls the store from
//! synchronous code, so the backend runs its own small runtime on a thread of its own and
//! waits for each answer, with a deadline.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::watch;

use super::etcd_tls::{self, EtcdTls};
use super::seal::{self, SealKey};
use super::{ca_key, Entry, GetFuture, Health, Rev, StateBackend, StateError, CA_STATE, CONFIG};

/// What an operation started on the backend's runtime ended with (`Err`: its time ran out).
type Outcome<T> = Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>;

/// How long one store operation may take before it is reported as unavailable.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// An etcd cluster and the prefix this control plane keeps its keys under.
pub struct Etcd {
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    endpoints: Vec<String>,
    /// Whether the members are reached over TLS (`etcds://`).
    tls: bool,
    /// The last TLS failure after a handshake, for `etcds://`.
    tls_note: etcd_tls::TlsNote,
    prefix: String,
    seal: Option<SealKey>,
    changes: watch::Receiver<u64>,
    last_error: Arc<Mutex<Option<String>>>,
    /// When a quorum read last failed: for a short while reads go straight to the member.
    quorum_failed_at: Mutex<Option<std::time::Instant>>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The scheme of a plain etcd state URL.
pub const PLAIN_SCHEME: &str = "etcd://";
/// The scheme of an etcd state URL whose members are reached over TLS.
pub const TLS_SCHEME: &str = "etcds://";

/// A parsed state URL.
#[derive(Debug, PartialEq, Eq)]
pub struct StateUrl {
    /// Whether every member is reached over TLS (`etcds://`).
    pub tls: bool,
    /// `http://HOST:PORT` or `https://HOST:PORT`, one per member.
    pub endpoints: Vec<String>,
    /// The key prefix, `/PREFIX/`.
    pub prefix: String,
}

/// Parses `etcd://h1:p1,h2:p2/prefix` (or `etcds://...`, TLS to every member) into endpoints
/// and the key prefix (`/prefix/`).
///
/// It fails closed on anything a URL parser could read another way: a member is a DNS name
/// (letters, digits, `-` and `.`, not ending in a numeric label), a dotted-quad IPv4 address
/// (no leading zeros), or an IPv6 address in brackets, then `:` and a port of 1 to 65535 in
/// plain digits (no sign, no leading zero); no user information, query, fragment or percent
/// escapes, and no member twice. The prefix is one or more `/`-separated segments of letters,
/// digits, `.`, `_` and `-` (not `.` or `..`).
pub fn parse_url(url: &str) -> Result<StateUrl, String> {
    const FORM: &str = "use etcd://HOST:PORT[,HOST:PORT...]/PREFIX";
    let (tls, rest) = if let Some(r) = url.strip_prefix(PLAIN_SCHEME) {
        (false, r)
    } else if let Some(r) = url.strip_prefix(TLS_SCHEME) {
        (true, r)
    } else {
        return Err(
            "an etcd state URL starts with etcd:// (plain) or etcds:// (TLS to every member)"
                .to_string(),
        );
    };
    if rest.contains("://") {
        return Err(format!(
            "{url}: give every member as HOST:PORT; the URL's scheme applies to all of them \
             (etcd:// plain, etcds:// TLS), so plain and TLS members cannot be mixed"
        ));
    }
    let (hosts, prefix) = rest
        .split_once('/')
        .ok_or_else(|| format!("no key prefix: {FORM}"))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Err(format!("empty key prefix: {FORM}"));
    }
    for seg in prefix.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(format!(
                "key prefix {prefix:?}: segments are letters, digits, '.', '_' and '-', \
                 separated by single '/' (not '.' or '..'); {FORM}"
            ));
        }
    }
    let mut endpoints = Vec::new();
    for h in hosts.split(',') {
        if h.contains("://") {
            return Err(format!(
                "endpoint {h:?}: give HOST:PORT only; the URL's scheme applies to every member \
                 (etcd:// plain, etcds:// TLS), so plain and TLS members cannot be mixed"
            ));
        }
        if !is_member(h) {
            return Err(format!(
                "endpoint {h:?} is not HOST:PORT (a DNS name, an IPv4 address or a bracketed \
                 IPv6 address, and a port of 1 to 65535); {FORM}"
            ));
        }
        let endpoint = format!("{}://{h}", if tls { "https" } else { "http" });
        if endpoints.contains(&endpoint) {
            return Err(format!("endpoint {h:?} is given twice"));
        }
        endpoints.push(endpoint);
    }
    Ok(StateUrl {
        tls,
        endpoints,
        prefix: format!("/{prefix}/"),
    })
}

/// `HOST:PORT` as [`parse_url`] accepts it.
fn is_member(h: &str) -> bool {
    let Some((host, port)) = h.rsplit_once(':') else {
        return false;
    };
    // Digits only (u16's parser takes a `+`), no leading zero (so not 0 either), in range.
    let port_ok = !port.starts_with('0')
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok();
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else if host
        .rsplit('.')
        .next()
        .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
    {
        // A name ending in digits is an IPv4 address or nothing: URL parsers read `12` or
        // `1.2.3` as IPv4 addresses (0.0.0.12), and a DNS name never has a numeric last label.
        host.parse::<std::net::Ipv4Addr>().is_ok()
    } else {
        host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    port_ok && host_ok
}

/// How long a quorum read may take before the member's own copy is read instead.
const QUORUM_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a request failed before it was sent: the connection to the member could not be made
/// (TCP, or the TLS handshake of `etcds://`).
fn is_connect_error(e: &etcd_client::Error) -> bool {
    let m = e.to_string();
    m.contains("tcp connect error")
        || m.contains("Connection refused")
        || m.contains("connection refused")
        || m.contains(etcd_tls::CONNECT_ERROR_MARK)
}

/// Whether a failure is the TLS handshake's (the quorum is then not the question).
fn is_tls_error(m: &str) -> bool {
    m.contains("TLS handshake failed")
}

fn key_is_watched(key: &[u8], prefix: &str) -> bool {
    let k = key.strip_prefix(prefix.as_bytes()).unwrap_or(key);
    k == CA_STATE.as_bytes() || k == CONFIG.as_bytes()
}

fn is_private_key(key: &str) -> bool {
    key.starts_with(&ca_key("")) && key.ends_with(".key.pem")
}

impl Etcd {
    /// Connects to the cluster named by `url` and starts watching the prefix. An `etcds://`
    /// URL needs `tls` (and a plain one refuses it).
    pub fn connect(
        url: &str,
        seal: Option<SealKey>,
        tls: Option<EtcdTls>,
    ) -> Result<Self, StateError> {
        let unavailable = |why: String| StateError::Unavailable {
            store: url.to_string(),
            why,
        };
        let StateUrl {
            tls: want_tls,
            endpoints,
            prefix,
        } = parse_url(url).map_err(unavailable)?;
        let tls = match (want_tls, tls) {
            (true, Some(t)) => Some(t),
            (false, None) => None,
            (true, None) => {
                return Err(unavailable(
                    "etcds:// needs --state-ca FILE (the CA of etcd's server certificate)".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(unavailable(
                    "TLS files are given but the URL is etcd:// (plain); use etcds://".into(),
                ))
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the etcd client runtime: {e}")))?;
        let opts = ConnectOptions::new()
            .with_connect_timeout(OP_TIMEOUT)
            .with_timeout(OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let eps = endpoints.clone();
        let tls_note = etcd_tls::TlsNote::default();
        let note = tls_note.clone();
        let client = rt
            .block_on(async move {
                let connect = async move {
                    match tls {
                        None => Client::connect(eps, Some(opts)).await,
                        Some(t) => {
                            let channel = tls_channel(&eps, t, note)?;
                            Client::from_channel(channel, Some(opts)).await
                        }
                    }
                };
                tokio::time::timeout(OP_TIMEOUT, connect).await
            })
            .map_err(|_| unavailable(format!("no answer within {OP_TIMEOUT:?}")))?
            .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        let (tx, changes) = watch::channel(0u64);
        rt.spawn(watch_task(client.clone(), prefix.clone(), tx));
        Ok(Etcd {
            rt: Some(rt),
            client,
            endpoints,
            tls: want_tls,
            tls_note,
            prefix,
            seal,
            changes,
            last_error: Arc::new(Mutex::new(None)),
            quorum_failed_at: Mutex::new(None),
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn unavailable(&self, why: impl Into<String>) -> StateError {
        let why = why.into();
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why.clone());
        }
        StateError::Unavailable {
            store: self.describe(),
            why,
        }
    }

    /// Runs the operation `op` makes on the backend's runtime and waits for it, at most
    /// [`OP_TIMEOUT`] in all. A request that could not even be sent (the member the balancer
    /// picked is down: a connect error) is sent again, to another member; a request that was
    /// sent is never repeated, so a transaction is not applied twice.
    fn block<T, F, M>(&self, what: &str, op: M) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        M: FnMut() -> F + Send + 'static,
    {
        self.block_within(what, OP_TIMEOUT, op)
    }

    /// [`block`](Self::block) with a deadline of `limit`.
    fn block_within<T, F, M>(&self, what: &str, limit: Duration, op: M) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        M: FnMut() -> F + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let outcome = self
            .start(limit, op, move |o| {
                let _ = tx.send(o);
            })
            .and_then(|()| rx.recv().ok());
        self.finish(what, limit, outcome)
    }

    /// [`block_within`](Self::block_within) without holding a thread while it waits: the
    /// request runs on the backend's runtime and the caller's task awaits the answer.
    async fn within<T, F, M>(&self, what: &str, limit: Duration, op: M) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        M: FnMut() -> F + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let outcome = match self.start(limit, op, move |o| {
            let _ = tx.send(o);
        }) {
            Some(()) => rx.await.ok(),
            None => None,
        };
        self.finish(what, limit, outcome)
    }

    /// Starts `op` on the backend's runtime, retrying connect errors, and hands its outcome
    /// (`Err` when `limit` passed first) to `send`; `None` when the client has stopped.
    fn start<T, F, M>(
        &self,
        limit: Duration,
        mut op: M,
        send: impl FnOnce(Outcome<T>) + Send + 'static,
    ) -> Option<()>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        M: FnMut() -> F + Send + 'static,
    {
        let rt = self.rt.as_ref()?;
        rt.spawn(async move {
            let attempts = async {
                let mut n = 0u64;
                loop {
                    match op().await {
                        Err(e) if n < 20 && is_connect_error(&e) => {
                            n += 1;
                            tokio::time::sleep(Duration::from_millis(25 * n.min(4))).await;
                        }
                        other => return other,
                    }
                }
            };
            send(tokio::time::timeout(limit, attempts).await);
        });
        Some(())
    }

    /// The result of an operation [`start`](Self::start)ed, as the store's error when it
    /// failed (`None`: no answer came, the client stopped).
    fn finish<T>(
        &self,
        what: &str,
        limit: Duration,
        outcome: Option<Outcome<T>>,
    ) -> Result<T, StateError> {
        let out = match outcome {
            Some(Ok(Ok(v))) => Ok(v),
            Some(Ok(Err(e))) => {
                let mut m = e.to_string();
                let recent = self
                    .tls_note
                    .lock()
                    .ok()
                    .and_then(|n| n.clone())
                    .filter(|(at, _)| at.elapsed() < 2 * OP_TIMEOUT);
                if let Some((_, note)) = recent {
                    m = format!("{m}; {note}");
                }
                Err(self.unavailable(if is_tls_error(&m) {
                    format!("{what} failed: {m}")
                } else {
                    format!("{what} failed: {m} (is a quorum of etcd members up?)")
                }))
            }
            Some(Err(_)) => Err(self.unavailable(format!(
                "{what}: no answer within {limit:?} (etcd has no quorum, or no member is reachable); writes are refused until it recovers"
            ))),
            None => Err(self.unavailable("client stopped")),
        };
        if out.is_ok() {
            if let Ok(mut e) = self.last_error.lock() {
                *e = None;
            }
            if let Ok(mut n) = self.tls_note.lock() {
                *n = None;
            }
        }
        out
    }

    /// Whether a read goes to the quorum first: not for a short while after a quorum read
    /// failed (reads then go straight to the member's own copy).
    fn quorum_reads(&self) -> bool {
        self.quorum_failed_at
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
    }

    fn quorum_read_failed(&self) {
        if let Ok(mut t) = self.quorum_failed_at.lock() {
            *t = Some(std::time::Instant::now());
        }
    }

    /// A get with `opts`, made by the client when called.
    fn getter(
        &self,
        k: String,
        opts: GetOptions,
    ) -> impl FnMut() -> std::pin::Pin<
        Box<dyn Future<Output = Result<etcd_client::GetResponse, etcd_client::Error>> + Send>,
    > + Send
           + 'static {
        let c = self.client.clone();
        move || {
            let (mut c, k, o) = (c.clone(), k.clone(), opts.clone());
            Box::pin(async move { c.get(k, Some(o)).await })
        }
    }

    /// Reads with `opts`: linearizable (sees every committed write) while the quorum answers;
    /// when it does not, from the member's own copy (serializable), so the last state keeps
    /// being served while etcd has lost its quorum.
    fn read(
        &self,
        what: &str,
        k: String,
        opts: GetOptions,
    ) -> Result<etcd_client::GetResponse, StateError> {
        if self.quorum_reads() {
            match self.block_within(
                what,
                QUORUM_READ_TIMEOUT,
                self.getter(k.clone(), opts.clone()),
            ) {
                Ok(resp) => return Ok(resp),
                Err(_) => self.quorum_read_failed(),
            }
        }
        self.block(what, self.getter(k, opts.with_serializable()))
    }

    /// [`read`](Self::read), awaited rather than blocking a thread.
    async fn read_async(
        &self,
        what: &str,
        k: String,
        opts: GetOptions,
    ) -> Result<etcd_client::GetResponse, StateError> {
        if self.quorum_reads() {
            let getter = self.getter(k.clone(), opts.clone());
            match self.within(what, QUORUM_READ_TIMEOUT, getter).await {
                Ok(resp) => return Ok(resp),
                Err(_) => self.quorum_read_failed(),
            }
        }
        let getter = self.getter(k, opts.with_serializable());
        self.within(what, OP_TIMEOUT, getter).await
    }

    /// The entry a get of `key` answered.
    fn entry(
        &self,
        key: &str,
        resp: &etcd_client::GetResponse,
    ) -> Result<Option<Entry>, StateError> {
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => {
                let rev = Rev(u64::try_from(kv.mod_revision()).unwrap_or(0));
                let data = self.decode(key, kv.value().to_vec())?;
                Ok(Some(Entry { data, rev }))
            }
        }
    }

    fn encode(&self, key: &str, data: &[u8], private: bool) -> Result<Vec<u8>, StateError> {
        if !(private || is_private_key(key)) {
            return Ok(data.to_vec());
        }
        match &self.seal {
            Some(k) => k.seal(key, data),
            None => Err(StateError::Sealed {
                path: self.locate(key),
                why: format!(
                    "a CA private key is stored in etcd only sealed with the operator's key: pass --state-key-file FILE or set {} (64 hex digits, e.g. from `openssl rand -hex 32`)",
                    seal::ENV
                ),
            }),
        }
    }

    fn decode(&self, key: &str, data: Vec<u8>) -> Result<Vec<u8>, StateError> {
        if !seal::is_sealed(&data) {
            if is_private_key(key) {
                return Err(StateError::Sealed {
                    path: self.locate(key),
                    why: "a CA private key is stored unsealed; refusing to use it (import it again with the state key set)".into(),
                });
            }
            return Ok(data);
        }
        match &self.seal {
            Some(k) => k.open(key, &data),
            None => Err(StateError::Sealed {
                path: self.locate(key),
                why: format!(
                    "sealed with the operator's key, which is not given: pass --state-key-file FILE or set {}",
                    seal::ENV
                ),
            }),
        }
    }
}

/// One lazy HTTP/2 channel per member, each connecting with the TLS [`etcd_tls::Connector`],
/// balanced (power of two choices on pending requests) as etcd-client balances plain members.
/// Must run inside the backend's runtime (the channels spawn their workers on it).
fn tls_channel(
    endpoints: &[String],
    tls: EtcdTls,
    note: etcd_tls::TlsNote,
) -> Result<etcd_client::Channel, etcd_client::Error> {
    use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
    let mut channels = Vec::new();
    for e in endpoints {
        let endpoint = tonic::transport::Endpoint::from_shared(e.clone())
            .map_err(|err| etcd_client::Error::InvalidArgs(format!("{e}: {err}")))?
            .connect_timeout(OP_TIMEOUT)
            .timeout(OP_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        channels.push(
            endpoint
                .connect_with_connector_lazy(etcd_tls::Connector::new(tls.clone(), note.clone())),
        );
    }
    let discover = PendingRequestsDiscover::new(
        tower::discover::ServiceList::new(channels),
        CompleteOnResponse::default(),
    );
    let balance = tower::balance::p2c::Balance::new(discover);
    let buffered = tower::buffer::Buffer::new(balance, 1024);
    Ok(etcd_client::Channel::Custom(
        tower::util::BoxCloneSyncService::new(buffered),
    ))
}

async fn watch_task(mut client: Client, prefix: String, tx: watch::Sender<u64>) {
    loop {
        let opts = WatchOptions::new().with_prefix();
        if let Ok(mut stream) = client.watch(prefix.clone(), Some(opts)).await {
            // Anything may have changed while the watch was down.
            tx.send_modify(|n| *n += 1);
            while let Ok(Some(resp)) = stream.message().await {
                let relevant = resp
                    .events()
                    .iter()
                    .any(|ev| ev.kv().is_some_and(|kv| key_is_watched(kv.key(), &prefix)));
                if relevant {
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl StateBackend for Etcd {
    fn describe(&self) -> String {
        let hosts: Vec<&str> = self
            .endpoints
            .iter()
            .map(|e| e.split_once("://").map_or(e.as_str(), |(_, h)| h))
            .collect();
        format!(
            "{}{}{}",
            if self.tls { TLS_SCHEME } else { PLAIN_SCHEME },
            hosts.join(","),
            self.prefix.trim_end_matches('/')
        )
    }

    fn locate(&self, key: &str) -> String {
        format!("{} key {}", self.describe(), self.full(key))
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        let k = self.full(key);
        let resp = self.read(&format!("get {k}"), k.clone(), GetOptions::new())?;
        self.entry(key, &resp)
    }

    fn get_async(self: Arc<Self>, key: String) -> GetFuture {
        Box::pin(async move {
            let k = self.full(&key);
            let resp = self
                .read_async(&format!("get {k}"), k.clone(), GetOptions::new())
                .await?;
            self.entry(&key, &resp)
        })
    }

    fn put(&self, key: &str, data: &[u8], private: bool) -> Result<(), StateError> {
        let value = self.encode(key, data, private)?;
        let c = self.client.clone();
        let k = self.full(key);
        self.block(&format!("put {k}"), move || {
            let (mut c, k, v) = (c.clone(), k.clone(), value.clone());
            async move { c.put(k, v, None).await }
        })?;
        Ok(())
    }

    fn put_if(
        &self,
        key: &str,
        expected: Option<Rev>,
        data: &[u8],
        private: bool,
    ) -> Result<bool, StateError> {
        let value = self.encode(key, data, private)?;
        let c = self.client.clone();
        let k = self.full(key);
        let cmp = match expected {
            None => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
            Some(Rev(r)) => Compare::mod_revision(
                k.clone(),
                CompareOp::Equal,
                i64::try_from(r).unwrap_or(i64::MAX),
            ),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::put(k.clone(), value, None)]);
        let resp = self.block(&format!("transaction on {k}"), move || {
            let (mut c, t) = (c.clone(), txn.clone());
            async move { c.txn(t).await }
        })?;
        Ok(resp.succeeded())
    }

    fn delete(&self, key: &str) -> Result<(), StateError> {
        let c = self.client.clone();
        let k = self.full(key);
        self.block(&format!("delete {k}"), move || {
            let (mut c, k) = (c.clone(), k.clone());
            async move { c.delete(k, None).await }
        })?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let k = self.full(prefix);
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let resp = self.read(&format!("list {k}"), k.clone(), opts)?;
        let mut out: Vec<String> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                kv.key()
                    .strip_prefix(self.prefix.as_bytes())
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn count(&self, prefix: &str) -> Result<usize, StateError> {
        let k = self.full(prefix);
        let opts = GetOptions::new().with_prefix().with_count_only();
        let resp = self.read(&format!("count {k}"), k.clone(), opts)?;
        Ok(usize::try_from(resp.count()).unwrap_or(0))
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn waits_on_network(&self) -> bool {
        true
    }

    fn health(&self) -> Health {
        // A linearizable read needs the quorum: it is what a write would need too.
        let c = self.client.clone();
        let k = self.full(CA_STATE);
        let probe = self.block("quorum read", move || {
            let (mut c, k) = (c.clone(), k.clone());
            async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
        });
        Health {
            backend: "etcd",
            reachable: probe.is_ok(),
            error: probe.err().map(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// State URLs give endpoints and a prefix, or an error that shows the right form.
    #[test]
    fn urls_parse_or_say_the_form() {
        let u = parse_url("etcd://127.0.0.1:2379,127.0.0.1:2380/mesh/prod")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
        );
        assert_eq!(u.prefix, "/mesh/prod/");
        assert!(!u.tls);
        let u = parse_url("etcds://etcd-0.example:2379,[::1]:2379/mesh")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u.endpoints,
            ["https://etcd-0.example:2379", "https://[::1]:2379"]
        );
        assert!(u.tls);
        for bad in [
            "etcds://127.0.0.1:2379,http://127.0.0.1:2380/x",
            "etcd://https://127.0.0.1:2379/x",
            "etcds://127.0.0.1:2379",
            "etcd://127.0.0.1:2379",
            "etcd://127.0.0.1:2379/",
            "etcd://127.0.0.1/x",
            "etcd://:2379/x",
            "http://127.0.0.1:2379/x",
            // What a URL parser would read another way: user information, a fragment or
            // query in the host, a signed or zero port, an unbracketed IPv6 address, percent
            // escapes, a member twice.
            "etcd://user@127.0.0.1:2379/x",
            "etcd://h#:2379/x",
            "etcd://h?:2379/x",
            "etcd://h:+2379/x",
            "etcd://h:0/x",
            "etcd://h:65536/x",
            "etcd://::1:2379/x",
            "etcd://h%41:2379/x",
            "etcd://h:2379,h:2379/x",
            "etcd://h:2379/a//b",
            "etcd://h:2379/a/../b",
            "etcd://h:2379/a?b",
            "etcd://12:2379/x",
            "etcd://1.2.3:2379/x",
            "etcd://010.0.0.1:2379/x",
            "etcd://h:02379/x",
        ] {
            let e = parse_url(bad).err().unwrap_or_default();
            assert!(
                e.contains("HOST:PORT") || e.contains("etcd://") || e.contains("twice"),
                "{bad}: {e}"
            );
        }
    }

    /// Only the CA state and the configuration wake the replicas; key files count as private.
    #[test]
    fn watched_and_private_keys() {
        assert!(key_is_watched(b"/p/ca/state.json", "/p/"));
        assert!(key_is_watched(b"/p/config.json", "/p/"));
        assert!(!key_is_watched(b"/p/issued/ab.json", "/p/"));
        assert!(is_private_key("ca/3.key.pem"));
        assert!(!is_private_key("ca/3.cert.pem"));
    }
}
