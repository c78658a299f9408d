//! A 3-member etcd cluster (Debian `etcd-server` 3.4) on 127.0.0.1 ports, started by a test (or
//! the control-plane benchmark) in a temporary directory and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How to install etcd and etcdctl.
pub const INSTALL: &str = "apt-get install etcd-server etcd-client (scripts/install-deps.sh)";

/// Whether etcd and etcdctl are here (a failure under CI=true, a loud SKIP elsewhere).
pub fn have_etcd(test: &str) -> bool {
    crate::require(test, "etcd", INSTALL) && crate::require(test, "etcdctl", INSTALL)
}

/// One etcd member.
pub struct Member {
    /// Member name (`m0`, `m1`, `m2`).
    pub name: String,
    /// Client port on 127.0.0.1.
    pub client: u16,
    /// Peer port on 127.0.0.1.
    pub peer: u16,
    /// Data directory.
    pub data: PathBuf,
    /// Log file (appended across restarts).
    pub log: PathBuf,
    /// The process, while it runs.
    pub child: Option<Child>,
}

/// A 3-member etcd cluster on loopback.
pub struct Cluster {
    /// The three members.
    pub members: Vec<Member>,
    /// `--initial-cluster` of every member.
    pub initial: String,
    /// `--initial-cluster-token`, unique per cluster.
    pub token: String,
}

impl Cluster {
    /// Starts three members with data and logs in `dir` and waits until all are healthy.
    pub fn start(dir: &Path) -> Cluster {
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                data: dir.join(format!("etcd-{i}")),
                log: dir.join(format!("etcd-{i}.log")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            members,
            initial,
            token: format!("mesh-test-{}", free_port()),
        };
        for i in 0..3 {
            c.start_member(i);
        }
        c.wait_healthy(3, Duration::from_secs(30));
        c
    }

    /// Starts (or restarts) member `i`.
    pub fn start_member(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", m.log.display()));
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-token",
                &self.token,
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting etcd ({INSTALL}): {e}"));
        self.members[i].child = Some(child);
    }

    /// Kills member `i` (SIGKILL) and waits for it.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Member `i`'s client address, `127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client)
    }

    /// Every member's client address, comma-separated (the replicas' view of the cluster).
    pub fn endpoints(&self) -> String {
        (0..3)
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl (v3 API, 3 s command timeout) against every member: (success, stdout and
    /// stderr; `endpoint health` reports on stderr).
    pub fn etcdctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints(), "--command-timeout", "3s"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running etcdctl ({INSTALL}): {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Waits until `n` members answer `endpoint health`.
    pub fn wait_healthy(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, out) = self.etcdctl(&["endpoint", "health"]);
            let healthy = out.matches("is healthy").count();
            if healthy >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd: {healthy} of {n} members healthy: {out}\n{}",
                std::fs::read_to_string(&self.members[0].log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The keys under `/<prefix>/<sub>`, without the prefix.
    pub fn keys(&self, prefix: &str, sub: &str) -> Vec<String> {
        let (ok, out) = self.etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/{prefix}/{sub}"),
        ]);
        assert!(ok, "{out}");
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.trim_start_matches(&format!("/{prefix}/")).to_string())
            .collect()
    }

    /// The value of `key` (a quorum read).
    pub fn value(&self, key: &str) -> String {
        let (ok, out) = self.etcdctl(&["get", "--print-value-only", key]);
        assert!(ok, "{out}");
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
