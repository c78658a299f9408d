#!/usr/bin/env bash
# Control-plane benchmark: N simulated proxies (default 1000) bootstrap with service-account
# tokens, hold mTLS long-polls on a real `mesh-control`, then one configuration change is made.
# Reports (stdout, one JSON object) the time until every proxy has the change (goal: < 5 s on
# 2 cores) and the control plane's resident memory (idle, all connected, peak).
#
#   bench/control/run.sh [--proxies N] [--concurrency N]
set -euo pipefail
cd "$(dirname "$0")/../.."
# Each proxy holds one connection on each side: raise the open-file limit for both processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "building mesh-control and the bench client (release) ..." >&2
cargo build --release -p mesh-control --bin mesh-control --example bench-control >&2
exec target/release/examples/bench-control --bin target/release/mesh-control "$@"
