#!/usr/bin/env bash
# Runs every test of entraflow on a fresh machine: installs what the tests need
# (Debian's PostgreSQL, a Python venv with pinned real clients), builds the
# workspace, runs the Rust tests, then the Python tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "PostgreSQL for the shared audit store"
start_local_postgres

step "A real browser for the console's tests (Debian's Chromium, its driver, NSS tools for the CA)"
apt_install chromium chromium-driver libnss3-tools
export ENTRAFLOW_REQUIRE_BROWSER=1

step "Python environment (pinned real clients) and the entraflow package"
ensure_venv
install_python_package

# The attack and fault suites write their cases here; SECURITY.md and
# RELIABILITY.md are generated from them at the end.
rm -rf target/reports

step "Build"
cargo build --workspace --all-targets --locked

step "Rust tests"
cargo nextest run --workspace --locked --no-fail-fast

step "Python tests against the real binary"
ENTRAFLOW_BIN="$PWD/target/debug/entraflow" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider

step "Kubernetes manifests: every overlay renders, validates against the schemas, and has the structure it claims"
ENTRAFLOW_BIN="$PWD/target/debug/entraflow" bash deploy/validate.sh

step "The SQL gate's benchmark still runs (quick mode: correctness checked, figures not asserted)"
bash benches/sql_gate.sh --quick

step "The lineage benchmark still runs (quick mode: 10,000 events, debug build; the lineage and a tampered bundle checked, times not asserted)"
bash benches/lineage.sh --quick

step "Peer benchmark driver, quick mode (one short round each: the checks, not the speed)"
ENTRAFLOW_BIN="$PWD/target/debug/entraflow" bash benches/peers.sh --quick

step "SECURITY.md and RELIABILITY.md from the suites' cases"
python3 scripts/reports.py
