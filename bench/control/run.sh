#!/usr/bin/env bash
# Control-plane benchmark: N simulated proxies (default 1000) bootstrap with service-account
# tokens, hold mTLS long-polls on a real `mesh-control`, then one configuration change is made.
# It runs twice in the same run, as its own peer: one control plane over a local state
# directory, then R replicas (default 3) over a 3-member etcd cluster on loopback, the proxies
# spread over the replicas. Reports (stdout, one JSON object) both runs and the replicated/single
# ratios: the time until every proxy has the change (goal: < 1 s p99 at 10,000 proxies on 2
# cores), the bootstrap request latency, the store's write latency, each replica's resident
# memory (per connected proxy: goal <= 20 KiB) and CPU, and a restart of the whole control plane
# that every proxy reconnects from with mesh-proxy's jittered backoff.
#
#   bench/control/run.sh [--proxies N] [--concurrency N] [--replicas R]
set -euo pipefail
cd "$(dirname "$0")/../.."
proxies=1000 concurrency=16 replicas=3
while [ $# -gt 0 ]; do
  case "$1" in
    --proxies) proxies=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --replicas) replicas=$2; shift 2 ;;
    *) echo "unknown argument $1; use --proxies N --concurrency N --replicas R" >&2; exit 2 ;;
  esac
done
[ "$replicas" -ge 2 ] || { echo "--replicas must be at least 2 (the single control plane always runs)" >&2; exit 2; }
for tool in etcd etcdctl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
# Each proxy holds one connection in the bench client and one in a control plane (each process
# has its own limit): raise the open-file limit as far as allowed.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((proxies + 512)) ]; then
  echo "the open-file limit $(ulimit -n) is below the $((proxies + 512)) this run needs per process; raise the hard limit or use fewer --proxies" >&2
  exit 1
fi
target=${CARGO_TARGET_DIR:-target}
echo "building mesh-control and the bench client (release) ..." >&2
cargo build --release -p mesh-control --bin mesh-control --example bench-control >&2
bench() {
  local t0=$SECONDS
  "$target/release/examples/bench-control" --bin "$target/release/mesh-control" \
    --proxies "$proxies" --concurrency "$concurrency" --replicas "$1"
  echo "[bench/control] $1 replica(s): $((SECONDS - t0)) s" >&2
}
single=$(bench 1)
replicated=$(bench "$replicas")
python3 - "$single" "$replicated" <<'PY'
import json, sys
s, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def ratio(a, b):
    return round(a / b, 3) if b else None
mean = lambda xs: sum(xs) / len(xs) if xs else 0
def store_mean(run):
    w = run["store_writes"]
    n = sum(x["count"] for x in w)
    return sum(x["mean_ms"] * x["count"] for x in w) / n if n else 0
out = {
    "single": s,
    "replicated": r,
    "ratios_replicated_over_single": {
        "propagation_p99": ratio(r["propagation_ms"]["p99"], s["propagation_ms"]["p99"]),
        "bootstrap_request_p99": ratio(r["bootstrap_request_ms"]["p99"], s["bootstrap_request_ms"]["p99"]),
        "store_write_mean": ratio(store_mean(r), store_mean(s)),
        "rss_connected_per_replica": ratio(mean(r["control_plane_rss_kib"]["connected"]), mean(s["control_plane_rss_kib"]["connected"])),
        "push_cpu_seconds": ratio(r["control_plane_cpu_seconds"]["push"], s["control_plane_cpu_seconds"]["push"]),
        "reconnect_p99": ratio(r["reconnect"]["reconnected_ms_after_restart_began"]["p99"], s["reconnect"]["reconnected_ms_after_restart_began"]["p99"]),
    },
}
print(json.dumps(out))
print(
    f"propagation p99: single {s['propagation_ms']['p99']:.0f} ms, {r['replicas']} replicas {r['propagation_ms']['p99']:.0f} ms; "
    f"store write mean: {store_mean(s):.1f} ms (local) vs {store_mean(r):.1f} ms (etcd); "
    f"RSS per replica connected: {mean(s['control_plane_rss_kib']['connected']):.0f} KiB vs {mean(r['control_plane_rss_kib']['connected']):.0f} KiB "
    f"({mean(s['control_plane_rss_kib_per_proxy']):.1f} vs {mean(r['control_plane_rss_kib_per_proxy']):.1f} KiB per proxy; goal <= 20); "
    f"push CPU: {s['control_plane_cpu_seconds']['push']:.2f} vs {r['control_plane_cpu_seconds']['push']:.2f} s; "
    f"restart, all proxies back (p99): {s['reconnect']['reconnected_ms_after_restart_began']['p99']:.0f} vs {r['reconnect']['reconnected_ms_after_restart_began']['p99']:.0f} ms, "
    f"peak attempts in 10 ms: {s['reconnect']['peak_attempts_per_10ms_once_up']} vs {r['reconnect']['peak_attempts_per_10ms_once_up']}",
    file=sys.stderr,
)
PY
