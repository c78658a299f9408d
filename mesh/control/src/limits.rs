//! Connection limits of the API listener: a global cap and a cap per peer IP address.
//!
//! Every accepted TCP connection asks [`ConnLimits::admit`] for a [`ConnGuard`] before any TLS
//! work is done; a connection over either cap is closed at once (and counted by the caller), so
//! a flood of idle or slow clients holds at most `max_total` descriptors, and one address cannot
//! take the slots every other proxy needs. The guard gives its slot back when dropped, whatever
//! way the connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Which cap refused a connection (the `limit` label of the refusal metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `--max-connections`.
    Global,
    /// `--max-connections-per-peer`.
    PerPeer,
}

impl LimitHit {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            LimitHit::Global => "global",
            LimitHit::PerPeer => "per_peer",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The caps and the live counts.
pub struct ConnLimits {
    max_total: usize,
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it frees its slot.
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Caps of `max_total` connections in all and `max_per_peer` from one address.
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            max_total,
            max_per_peer,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `ip`, or says which cap it would exceed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, LimitHit> {
        let ip = ip.to_canonical();
        // A poisoned lock means a panic while counting; refusing is the safe answer.
        let mut c = self.counts.lock().map_err(|_| LimitHit::Global)?;
        if c.total >= self.max_total {
            return Err(LimitHit::Global);
        }
        let n = c.per_peer.entry(ip).or_insert(0);
        if *n >= self.max_per_peer {
            return Err(LimitHit::PerPeer);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limits.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_peer.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_peer.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-peer cap refuses the extra connection of one address but not another's; the
    /// global cap refuses everyone; dropping a guard frees its slot and forgets idle peers.
    #[test]
    fn caps_per_peer_and_global_and_release_on_drop() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = l.admit(a).ok();
        let a2 = l.admit(a).ok();
        assert!(a1.is_some() && a2.is_some());
        assert_eq!(l.admit(a).err(), Some(LimitHit::PerPeer));
        let b1 = l.admit(b).ok();
        assert!(b1.is_some());
        assert_eq!(l.admit(b).err(), Some(LimitHit::Global));
        assert_eq!(l.open(), 3);
        drop(a1);
        assert!(l.admit(a).is_ok(), "a slot freed by drop is reusable");
        drop((a2, b1));
        assert_eq!(l.open(), 0);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(a);
        let _g1 = l.admit(mapped).ok();
        let _g2 = l.admit(a).ok();
        assert_eq!(
            l.admit(a).err(),
            Some(LimitHit::PerPeer),
            "an IPv4-mapped address counts as the IPv4 address"
        );
        assert!(l.counts.lock().map(|c| c.per_peer.len()).unwrap_or(0) == 1);
    }
}
