//! Loopback ports for servers a test starts.
//!
//! The ports come from outside the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`). A port found with `bind(…:0)` is an ephemeral
//! one, and between the moment it is found free and the moment the test's server binds it,
//! any outgoing connection on the machine (a flood test's 400 clients, a proxy's upstream
//! pool) may be given it as its local port: the server's bind then fails with `EADDRINUSE`,
//! as it did once in CI. Nothing the kernel hands out automatically comes from below that
//! range, so a port found free there stays free until a test binds it. Within one process
//! the ports are handed out in turn from a per-process starting point, so two tests running
//! at once are not given the same one.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The lowest port handed out: above the registered ports most services use by default.
const LOWEST: u16 = 10_000;

/// A TCP port on 127.0.0.1 that is free and outside the ephemeral range (see the module
/// documentation): bind it soon, as another test process could pick it too.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// `127.0.0.1:PORT` with a port as [`free_port`] finds it.
pub fn free_addr() -> SocketAddr {
    let (lo, hi) = candidate_range();
    let span = u32::from(hi - lo) + 1;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // One starting point per process (pid and time), so consecutive test binaries and two
    // suites run side by side start in different places.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        seed() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let Ok(port) = u16::try_from(u32::from(lo) + offset) else {
            continue;
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // Refused: nothing listens there (on 127.0.0.1 or 0.0.0.0). The check connects
        // rather than binds: a listener bound to check and closed again stays open in any
        // child another test thread forks meanwhile (until that child execs), and the
        // server's bind then fails with EADDRINUSE.
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return addr,
            _ => continue,
        }
    }
    panic!("no free TCP port on 127.0.0.1 in {lo}-{hi} (outside the ephemeral range)")
}

/// The ports below the ephemeral range, or above it when the range starts too low to leave
/// room (a tuned `ip_local_port_range`).
fn candidate_range() -> (u16, u16) {
    let (eph_lo, eph_hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    if eph_lo > LOWEST + 1_000 {
        (LOWEST, eph_lo - 1)
    } else if eph_hi < u16::MAX - 1_000 {
        (eph_hi + 1, u16::MAX)
    } else {
        panic!(
            "the ephemeral port range {eph_lo}-{eph_hi} leaves no room for test servers; \
             narrow /proc/sys/net/ipv4/ip_local_port_range"
        )
    }
}

fn seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    // Truncation is the point: any 32 bits of the hash will do.
    #[allow(clippy::cast_possible_truncation)]
    let s = h.finish() as u32;
    s
}
