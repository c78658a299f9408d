#!/usr/bin/env bash
# A full local release of the built-in distribution (or of --config PATH): starts a local OCI
# registry on 127.0.0.1 (Debian's docker-registry, storage under out/registry) unless one is
# already listening there, then runs `distro release` against it for every line (`--all`,
# unless --line is given): build with FIPS evidence, SBOMs, VEX, images, push by digest, sign,
# attest, verify, tag.
#
#   scripts/release-local.sh [distro release options...]
#
# Environment: PORT (default 5000), DISTRO (a built distro binary; default: cargo run --release).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-5000}
out=$PWD/out
mkdir -p "$out/registry"

if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  cat > "$out/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $out/registry/data
  delete:
    enabled: false
http:
  addr: 127.0.0.1:$port
YAML
  echo "[release-local] starting docker-registry on 127.0.0.1:$port (storage $out/registry/data)" >&2
  nohup docker-registry serve "$out/registry/config.yml" > "$out/registry/registry.log" 2>&1 &
  echo $! > "$out/registry/registry.pid"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  echo "[release-local] stop it with: kill \$(cat $out/registry/registry.pid)" >&2
fi

if [ -n "${DISTRO:-}" ]; then
  run=("$DISTRO")
else
  run=(cargo run --locked --release --quiet -p distro --)
fi
lines=(--all)
for a in "$@"; do
  case "$a" in --line|--line=*|--all) lines=() ;; esac
done
exec "${run[@]}" release --out "$out" --to "127.0.0.1:$port/fips-mesh" --plain-http \
  --key "$out/release.key" --public-key "$out/release.pub" "${lines[@]}" "$@"
