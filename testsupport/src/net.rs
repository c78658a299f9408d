//! Loopback ports for servers a test starts.

use std::net::{SocketAddr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago (the listener that found it is closed
/// again, so another process may take it: bind it soon).
pub fn free_port() -> u16 {
    free_addr().port()
}

/// `127.0.0.1:PORT` with a port that was free a moment ago (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("binding a free port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("reading the free port's address: {e}"))
}
