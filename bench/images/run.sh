#!/usr/bin/env bash
# Benchmark: push a release's images to a local registry with `distro push --release` and, in the
# same run, with `skopeo copy` (one per image) of the same OCI layouts to the same registry (fresh repositories each round,
# so every blob is really uploaded); then time `distro verify` online and offline.
#
# Usage: bench/images/run.sh [OUT_DIR [LINE]]
#   OUT_DIR  a `distro build` output (default: out/ in the repository); when it has no
#            <LINE>/build.json, a fixture release with two 24 MiB binaries is made instead.
#   env DISTRO  the distro binary (default: target/release/distro, else target/debug/distro)
#   env ROUNDS  rounds per tool (default 3); the median is reported.
# Needs: docker-registry, skopeo, python3 (for a free port and the fixture).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-$ROOT/out}
LINE=${2:-0.1}
ROUNDS=${ROUNDS:-3}
DISTRO=${DISTRO:-}
if [ -z "$DISTRO" ]; then
  if [ -x target/release/distro ]; then DISTRO=$ROOT/target/release/distro; else DISTRO=$ROOT/target/debug/distro; fi
fi
[ -x "$DISTRO" ] || { echo "build the CLI first: cargo build -p distro (or set DISTRO)" >&2; exit 1; }
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

WORK=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

if [ ! -f "$OUT/$LINE/build.json" ]; then
  echo "no $OUT/$LINE/build.json: making a fixture release (2 x 24 MiB binaries)" >&2
  OUT=$WORK/out
  mkdir -p "$OUT/$LINE/bin"
  python3 - "$OUT/$LINE" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
comps = []
for name in ("mesh-proxy", "mesh-control"):
    data = os.urandom(12 << 20) + bytes(12 << 20)  # half incompressible, half zeros
    open(f"{d}/bin/{name}", "wb").write(data)
    comps.append({"name": name, "package": name, "binary": f"bin/{name}", "sha256": hashlib.sha256(data).hexdigest(),
                  "fips": {"mode": True, "module_version": "AWS-LC FIPS 3.0.0", "cmvp_certificate": 5314, "cmvp_status": "validated"},
                  "evidence": f"evidence/{name}.fips.json", "provenance": f"provenance/{name}.intoto.json"})
json.dump({"schema_version": "1", "distribution": "fips-mesh", "line": "0.1",
           "source": {"repository": "https://example.invalid/fips-mesh-distro", "ref": "HEAD", "commit": "0" * 40, "source_date_epoch": 1764288000},
           "cargo_lock_sha256": "00", "patches": [], "components": comps}, open(f"{d}/build.json", "w"))
PY
fi

echo "assembling images from $OUT/$LINE" >&2
"$DISTRO" --quiet image --out "$OUT" --line "$LINE" --format json > "$WORK/images.json"
mapfile -t REFS < <(python3 -c 'import json,sys; [print(i["reference"]) for i in json.load(open(sys.argv[1]))]' "$WORK/images.json")
TOTAL=$(python3 -c 'import json,sys; print(sum(i["size"] for i in json.load(open(sys.argv[1]))))' "$WORK/images.json")

# A fresh registry (new storage, new port) per round: skopeo remembers where it has seen a blob
# (its blob-info cache) and would otherwise mount it from an earlier round's repository instead
# of uploading it, which is not the work being compared.
start_registry() {
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; }
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/registry-$PORT"
  cat > "$WORK/registry-$PORT.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry-$PORT
http:
  addr: 127.0.0.1:$PORT
YML
  docker-registry serve "$WORK/registry-$PORT.yml" >"$WORK/registry-$PORT.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
}

now() { date +%s.%N; }
# push_all TOOL ROUND: push every image into fresh repositories; prints seconds.
push_all() {
  local tool=$1 round=$2 start end ref name tag
  start=$(now)
  case $tool in
    # One session for the whole release (as the release pipeline runs it).
    distro) "$DISTRO" --quiet push --release "$OUT/$LINE" --to "127.0.0.1:$PORT/bench-$round/distro" --plain-http >/dev/null ;;
    # skopeo has no multi-image copy from OCI layouts: one copy per image.
    skopeo)
      for ref in "${REFS[@]}"; do
        tag=${ref##*:}; name=$(basename "$(dirname "${ref#oci:}")")
        skopeo copy --quiet --dest-tls-verify=false "$ref" "docker://127.0.0.1:$PORT/bench-$round/skopeo/$name:$tag" >/dev/null
      done ;;
  esac
  end=$(now)
  python3 -c "print(f'{$end - $start:.3f}')"
}

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.3f}")' "$@"; }

declare -a D S
for r in $(seq "$ROUNDS"); do
  start_registry
  # Alternate the order so neither tool always runs on a warmer cache.
  if (( r % 2 )); then D+=("$(push_all distro "$r")"); S+=("$(push_all skopeo "$r")");
  else S+=("$(push_all skopeo "$r")"); D+=("$(push_all distro "$r")"); fi
done
DM=$(median "${D[@]}"); SM=$(median "${S[@]}")

# Sign and attest the first image in the registry, then time verify online and offline.
KEYS=$WORK/keys; mkdir -p "$KEYS"
"$DISTRO" --quiet keygen --private "$KEYS/k.key" --public "$KEYS/k.pub" >/dev/null
FIRST=${REFS[0]}; tag=${FIRST##*:}; name=$(basename "$(dirname "${FIRST#oci:}")")
REMOTE=127.0.0.1:$PORT/bench-$ROUNDS/distro/$name:$tag
"$DISTRO" --quiet sign "$REMOTE" --key "$KEYS/k.key" --plain-http >/dev/null
POLICY=$WORK/policy.toml
if [ -f "$OUT/$LINE/evidence/$name.fips.json" ]; then
  : > "$POLICY"
  "$DISTRO" --quiet attest "$REMOTE" --key "$KEYS/k.key" --plain-http --build-dir "$OUT/$LINE" --component "$name" >/dev/null
else
  printf 'require_fips = false\nrequire_sbom = false\nrequire_provenance = false\nrequire_vex = false\n' > "$POLICY"
fi
t0=$(now); "$DISTRO" --quiet verify "$REMOTE" --key "$KEYS/k.pub" --plain-http --policy "$POLICY" >/dev/null || true; t1=$(now)
"$DISTRO" --quiet pull "$REMOTE" --key "$KEYS/k.pub" --plain-http --policy "$POLICY" --out "oci:$WORK/pulled:$tag" >/dev/null || true
t2=$(now); "$DISTRO" --quiet verify "oci:$WORK/pulled:$tag" --key "$KEYS/k.pub" --policy "$POLICY" >/dev/null || true; t3=$(now)

python3 - "$DM" "$SM" "$TOTAL" "${#REFS[@]}" "$ROUNDS" "$t0" "$t1" "$t2" "$t3" "$DISTRO" <<'PY'
import sys
dm, sm, total, n, rounds = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, t1, t2, t3 = map(float, sys.argv[6:10])
mib = total / (1 << 20)
print(f"images: {n}, compressed size {mib:.1f} MiB, {rounds} rounds (median), binary {sys.argv[10]}")
print(f"{'push':<28}{'seconds':>10}{'MiB/s':>10}")
print(f"{'distro push':<28}{dm:>10.3f}{mib/dm:>10.1f}")
print(f"{'skopeo copy':<28}{sm:>10.3f}{mib/sm:>10.1f}")
print(f"ratio distro/skopeo: {dm/sm:.2f} (goal: <= 1.00)")
print(f"{'distro verify (online)':<28}{t1-t0:>10.3f}")
print(f"{'distro verify (offline)':<28}{t3-t2:>10.3f}")
PY
