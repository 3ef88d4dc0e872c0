#!/usr/bin/env bash
# The main job on the embedded defaults, on a fresh machine: builds entraflow,
# installs the Python environment (TensorFlow, the entraflow package) and starts a
# throwaway PostgreSQL, then runs `entraflow demo`: an identity-enforced TensorFlow
# training run, end to end, with its shard manifest behind the SQL gate.
# Arguments are passed to `entraflow demo` (see `entraflow demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "Build"
cargo build --locked -p entraflow-cli

step "Python environment (TensorFlow and the entraflow package)"
ensure_venv
install_python_package

step "PostgreSQL for the shard manifest (Debian's server, a throwaway cluster on loopback)"
start_local_postgres

step "Demo"
export VIRTUAL_ENV="$PWD/.venv"
# Not exec: the EXIT trap stops PostgreSQL when the demo ends.
target/debug/entraflow --data-dir "${ENTRAFLOW_DATA_DIR:-$HOME/.entraflow}" demo \
  --sql-backend "$ENTRAFLOW_TEST_POSTGRES_URL" "$@"
