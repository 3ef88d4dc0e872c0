#!/usr/bin/env bash
# The main job on the embedded defaults, on a fresh machine: builds entraflow,
# installs the Python environment (TensorFlow, the entraflow package), then runs
# `entraflow demo`: an identity-enforced TensorFlow training run, end to end.
# Arguments are passed to `entraflow demo` (see `entraflow demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "Build"
cargo build --locked -p entraflow-cli

step "Python environment (TensorFlow and the entraflow package)"
ensure_venv
install_python_package

step "Demo"
export VIRTUAL_ENV="$PWD/.venv"
exec target/debug/entraflow --data-dir "${ENTRAFLOW_DATA_DIR:-$HOME/.entraflow}" demo "$@"
