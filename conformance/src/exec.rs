//! Running outside tools (`ip`, `tc`, `iptables`, `curl`, `openssl`, `runc`, `umoci`, the
//! released binaries) through the one runner, [`distro_hostio::Cmd`]: every command says why it
//! runs, and its failure shows the command, its exit status and the tail of its stderr. This
//! module adds only what is the suite's own: running a command inside a host's namespace.

use distro_hostio::Cmd;

/// `ip netns exec NS program`, run for `why`.
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>, why: impl Into<String>) -> Cmd {
    let mut c = Cmd::new("ip", why);
    c.args(["netns", "exec", ns]);
    c.arg(program);
    c
}
