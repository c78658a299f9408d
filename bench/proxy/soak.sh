#!/usr/bin/env bash
# bench/proxy/soak.sh: a bounded memory soak of mesh-proxy on loopback. Shows whether RSS stays
# flat under repeated rounds of mixed load and abuse (the memory-creep report of issue 16).
#
#   soak client -> proxy A (outbound, plaintext in) -> mTLS -> proxy B (inbound, detect) -> upstream
#
# Each round: keep-alive requests through A (allowed, denied, normalised and refused paths),
# a connection flood against B (stalled TLS handshakes, past its connection limit) and against
# A (stalled headers), malformed request lines, oversized headers and protocol-evasion request
# lines against A and B, and TLS garbage against B. After each round it waits for the proxies to
# settle and prints their VmRSS (from /proc/PID/status); at the end the growth from round 2
# (after warm-up) to the last round, as a ratio and in KiB, and the least-squares trend.
# The load is mixed: GETs of allowed, denied, normalised and refused paths and POSTs with 1 KiB
# and 64 KiB bodies, over keep-alive connections. It runs rounds for DURATION seconds (10
# minutes), or exactly ROUNDS rounds when that is set.
#
# Usage: bench/proxy/soak.sh [--format table|json]
#   json: one JSON document on stdout at the end (rounds, growth, trend, resident breakdown);
#   the per-round table goes to stderr as it runs.
# Needs: cargo, openssl, python3. Knobs (environment): DURATION (600 s), ROUNDS (unset),
# FLOOD (400 connections per flood), REQUESTS (2000 per round), MALFORMED (200 per round), PROXY
# (a mesh-proxy binary; by default a release build of this tree), PROXY_THREADS (2),
# MAX_GROWTH_KIB (unset: report only; set: exit 1 when the growth from round 2 to the last round
# is larger).
set -euo pipefail

FORMAT=table
while [ $# -gt 0 ]; do
    case "$1" in
        --format) FORMAT=${2:-}; shift 2 || { echo "soak: --format needs table or json" >&2; exit 2; } ;;
        --format=*) FORMAT=${1#--format=}; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "soak: unknown argument $1 (use --format table|json)" >&2; exit 2 ;;
    esac
done
case "$FORMAT" in table|json) ;; *) echo "soak: --format $FORMAT: use table or json" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-600}
ROUNDS=${ROUNDS:-0}
FLOOD=${FLOOD:-400}
REQUESTS=${REQUESTS:-2000}
MALFORMED=${MALFORMED:-200}
PROXY_THREADS=${PROXY_THREADS:-2}
TD=soak.mesh

log() { echo "soak: $*" >&2; }
die() { echo "soak: error: $*" >&2; exit 1; }

for tool in openssl python3; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install $tool)"
done

if [ -z "${PROXY:-}" ]; then
    command -v cargo >/dev/null || die "cargo not found (or set PROXY=/path/to/mesh-proxy)"
    log "building mesh-proxy in release mode (the binary under test)"
    (cd "$ROOT" && cargo build --release -q -p mesh-proxy) || die "cargo build --release -p mesh-proxy failed"
    PROXY=${CARGO_TARGET_DIR:-$ROOT/target}/release/mesh-proxy
fi
[ -x "$PROXY" ] || die "$PROXY is not an executable mesh-proxy"
# The proxies start from the work directory: a relative PROXY would name nothing there.
PROXY=$(realpath "$PROXY")

WORK=$(mktemp -d /tmp/proxy-soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "making a P-256 CA and two SVIDs with openssl"
cd "$WORK"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=soak CA" -days 2 -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for who in a b; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$who.sec1" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$who.sec1" -out "$who.key"
    openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://%s/ns/soak/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' "$TD" "$who" > "$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$who.ext" -out "$who.crt" 2>/dev/null
done

read -r UP B_IN A_OUT A_ADM B_ADM < <(python3 -c '
import socket
socks=[socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

# The upstream application: keep-alive HTTP/1.1, answers 200 to everything.
python3 - "$UP" <<'EOF' &
import sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        got = len(self.rfile.read(n)) if n else 0
        body = f"got {got}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PIDS+=($!)

LIMITS='"limits": {"max_connections": 256, "header_read_timeout_ms": 500, "handshake_timeout_ms": 500, "max_header_bytes": 16384}'
MESH_COMMON='"trust_bundle_pem": "", "mtls_mode": "STRICT"'
cat > b.json <<EOF
{"admin": "127.0.0.1:$B_ADM", "access_log": false, $LIMITS,
 "inbound": {"listen": "127.0.0.1:$B_IN", "app": "127.0.0.1:$UP", "protocol": "detect"},
 "identity": {"cert_chain": "$WORK/b.crt", "key": "$WORK/b.key", "trust_bundle": "$WORK/ca.crt"},
 "mesh": {"identity": "spiffe://$TD/ns/soak/sa/b", $MESH_COMMON,
   "inbound": {"authorization": [{"name": "no-secret", "action": "DENY", "sources": [], "methods": [], "paths": ["/secret"]}]},
   "services": [], "routes": []}}
EOF
cat > a.json <<EOF
{"admin": "127.0.0.1:$A_ADM", "access_log": false, $LIMITS,
 "outbound": [{"service": "b", "listen": "127.0.0.1:$A_OUT"}],
 "identity": {"cert_chain": "$WORK/a.crt", "key": "$WORK/a.key", "trust_bundle": "$WORK/ca.crt"},
 "mesh": {"identity": "spiffe://$TD/ns/soak/sa/a", $MESH_COMMON, "inbound": {"authorization": []},
   "services": [{"name": "b", "protocol": "http", "endpoints": [{"address": "127.0.0.1:$B_IN", "identity": "spiffe://$TD/ns/soak/sa/b"}]}],
   "routes": []}}
EOF
"$PROXY" run --config b.json --threads "$PROXY_THREADS" 2>b.err >/dev/null & B_PID=$!; PIDS+=($B_PID)
"$PROXY" run --config a.json --threads "$PROXY_THREADS" 2>a.err >/dev/null & A_PID=$!; PIDS+=($A_PID)

if [ "$ROUNDS" -gt 0 ]; then
    log "running $ROUNDS rounds against $PROXY (pids A=$A_PID B=$B_PID)"
else
    log "running rounds for $DURATION s against $PROXY (pids A=$A_PID B=$B_PID)"
fi
python3 - "$A_OUT" "$B_IN" "$A_ADM" "$B_ADM" "$A_PID" "$B_PID" "$ROUNDS" "$FLOOD" "$REQUESTS" "$MALFORMED" "${MAX_GROWTH_KIB:-}" "$DURATION" "$FORMAT" <<'EOF'
import json, os, socket, sys, threading, time, urllib.request
a_out, b_in, a_adm, b_adm, a_pid, b_pid, rounds, flood, requests, malformed = map(int, sys.argv[1:11])
max_growth = int(sys.argv[11]) if sys.argv[11] else None
duration, fmt = int(sys.argv[12]), sys.argv[13]
# The table is the progress: on stdout for --format table, on stderr when stdout is the JSON.
table = sys.stdout if fmt == "table" else sys.stderr
A, B = ("127.0.0.1", a_out), ("127.0.0.1", b_in)

def ready(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
                return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"soak: proxy with admin port {port} not ready after 30 s")

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

def series(port):
    # Metric label cardinality: a growing count would be a leak by design.
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(1 for l in text.splitlines() if l and not l.startswith("#"))

def exchange(addr, data, wait=2.0):
    try:
        s = socket.create_connection(addr, timeout=wait)
        s.sendall(data)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        try: s.close()
        except Exception: pass

PATHS = [b"/ok", b"/secret", b"/x/../ok", b"//ok", b"/%73ecret", b"/a%2Fb", b"/%zz"]
# Every ninth request is a POST, alternately with a 1 KiB and a 64 KiB body.
BODIES = [b"x" * 1024, b"y" * 65536]
def load(n):
    s, i = None, 0
    while i < n:
        try:
            if s is None:
                s = socket.create_connection(A, timeout=5)
            if i % 9 == 8:
                body = BODIES[(i // 9) % 2]
                s.sendall(b"POST /upload HTTP/1.1\r\nhost: b\r\ncontent-length: "
                          + str(len(body)).encode() + b"\r\n\r\n" + body)
            else:
                p = PATHS[i % len(PATHS)]
                s.sendall(b"GET " + p + b" HTTP/1.1\r\nhost: b\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            clen = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
            while len(body) < clen:
                body += s.recv(65536)
            if b"connection: close" in head.lower():
                s.close(); s = None
        except (OSError, IndexError, ValueError):
            if s: s.close()
            s = None
        i += 1
    if s: s.close()

def flood_round(addr, prefix, n):
    held = []
    for _ in range(n):
        try:
            c = socket.create_connection(addr, timeout=2)
            c.sendall(prefix)
            held.append(c)
        except OSError:
            pass
    time.sleep(0.3)
    for c in held:
        c.close()

BAD = [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET\t/secret HTTP/1.1\r\nhost: b\r\n\r\n",
    b"get /secret HTTP/1.1\r\nhost: b\r\n\r\n",
    b"GET /secret HTTP/1.1\nhost: b\n\n",
    b"GET /secret\r\n",
    b"GET / HTTP/1.1\r\nhost: b\r\nx-big: " + b"a" * 100000 + b"\r\n\r\n",
    b"\x16\x03\x01\x00\x40" + bytes((i * 37) % 256 for i in range(64)),
    b"\xff" * 300,
]
def abuse(n):
    for i in range(n):
        exchange(A if i % 2 else B, BAD[i % len(BAD)], wait=1.0)

ready(a_adm); ready(b_adm)
print(f"{'round':>5} {'A VmRSS KiB':>12} {'B VmRSS KiB':>12} {'A/B threads':>12} {'A/B series':>11} {'A/B fds':>9} {'secs':>5} {'elapsed':>7}", file=table, flush=True)
rows = []
# Round 0: idle, before any load (the proxies have answered /ready only).
idle = {"A": rss_kib(a_pid), "B": rss_kib(b_pid)}
print(f"{0:>5} {idle['A']:>12} {idle['B']:>12} {'(idle)':>12}", file=table, flush=True)
start = time.time()
r = 0
while (r < rounds) if rounds > 0 else (time.time() - start < duration):
    r += 1
    t0 = time.time()
    workers = [threading.Thread(target=load, args=(requests // 8,)) for _ in range(8)]
    workers += [threading.Thread(target=flood_round, args=(B, b"\x16\x03\x01", flood)),
                threading.Thread(target=flood_round, args=(A, b"GET / HTTP/1.1\r\nhost: b\r\n", flood)),
                threading.Thread(target=abuse, args=(malformed,))]
    for w in workers: w.start()
    for w in workers: w.join()
    time.sleep(1.0)  # stalled connections time out (500 ms) and are freed
    a, b = rss_kib(a_pid), rss_kib(b_pid)
    if a == 0 or b == 0:
        sys.exit(f"soak: a proxy died in round {r}")
    row = {"round": r, "rss_kib": [a, b], "threads": [threads(a_pid), threads(b_pid)],
           "metric_series": [series(a_adm), series(b_adm)], "fds": [fds(a_pid), fds(b_pid)],
           "secs": round(time.time() - t0, 1), "elapsed_secs": round(time.time() - start)}
    rows.append(row)
    t, m, d = ("/".join(map(str, row[k])) for k in ("threads", "metric_series", "fds"))
    print(f"{r:>5} {a:>12} {b:>12} {t:>12} {m:>11} {d:>9} {row['secs']:>5.1f} {row['elapsed_secs']:>7}", file=table, flush=True)

def breakdown(pid):
    # Where the resident memory is: the main heap (brk), other anonymous mappings (glibc's
    # per-thread malloc arenas, thread stacks, large mmap'd allocations) and file-backed pages
    # (the binary itself). Growth in "anon" with flat series counts is allocator fragmentation.
    kinds, cur = {"heap": 0, "anon": 0, "file": 0}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else ""
                cur = "heap" if name == "[heap]" else ("file" if name.startswith("/") else "anon")
            elif parts[0] == "Rss:" and cur:
                kinds[cur] += int(parts[1])
    return kinds

report = {"idle_rss_kib": idle, "rounds": rows, "duration_secs": round(time.time() - start),
          "resident_kib": {"A": breakdown(a_pid), "B": breakdown(b_pid)}}
out = []
for who in ("A", "B"):
    out.append(f"{who} resident: " + " ".join(f"{k} {v} KiB" for k, v in report["resident_kib"][who].items()))
worst = None
if len(rows) >= 2:
    (a2, b2), (an, bn) = rows[1]["rss_kib"], rows[-1]["rss_kib"]
    report["growth_from_round_2_kib"] = {"A": an - a2, "B": bn - b2}
    report["growth_from_round_2_ratio"] = {"A": round(an / a2, 3), "B": round(bn / b2, 3)}
    out.append(f"growth from round 2 to round {len(rows)}: A {an / a2:.3f}x ({an - a2:+d} KiB), "
               f"B {bn / b2:.3f}x ({bn - b2:+d} KiB)")
    worst = max(an - a2, bn - b2)
# The trend: least-squares slope of RSS against time over rounds 2 to the last, in KiB per
# minute; whether it has levelled off (a leak keeps its slope), and one round's noise does not
# move it as it moves the end points.
if len(rows) >= 4:  # three points or more after the warm-up round
    pts = rows[1:]
    xs = [p["elapsed_secs"] / 60 for p in pts]
    mx = sum(xs) / len(xs)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx > 0:
        trend = {}
        for i, who in enumerate(("A", "B")):
            ys = [p["rss_kib"][i] for p in pts]
            my = sum(ys) / len(ys)
            trend[who] = round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx, 1)
        report["trend_kib_per_minute"] = trend
        out.append(f"trend (least squares, round 2 to {len(rows)}): A {trend['A']:+.1f} KiB/min, "
                   f"B {trend['B']:+.1f} KiB/min")
for line in out:
    print(line, file=table)
if fmt == "json":
    print(json.dumps(report, indent=2))
if max_growth is not None and worst is not None and worst > max_growth:
    sys.exit(f"soak: RSS grew by {worst} KiB after warm-up (bound MAX_GROWTH_KIB={max_growth})")
EOF
