#!/usr/bin/env bash
# The SQL gate against PostgreSQL directly and against PgBouncer (transaction mode),
# side by side in one run: rows/s of a large SELECT (psql) and statements/s of point
# SELECTs at 16 connections (pgbench -S). Writes its section of BENCHMARKS.md.
#
#   bash benches/sql_gate.sh            # 3 interleaved rounds, 1,000,000 rows
#   bash benches/sql_gate.sh --quick    # 1 short round, 100,000 rows, debug build (CI: it must not rot)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

apt_install pgbouncer postgresql-client openssl
start_local_postgres >/dev/null
ensure_venv
# Figures come from a release build; the quick mode only proves the bench still
# runs (and the gate still answers correctly), so the debug build does.
if [ "${1:-}" = "--quick" ]; then
  cargo build --locked -q -p entraflow-cli
  bin="$PWD/target/debug/entraflow"
else
  cargo build --release --locked -q -p entraflow-cli
  bin="$PWD/target/release/entraflow"
fi
ENTRAFLOW_BIN="$bin" PG_DIR="$PG_DIR" .venv/bin/python benches/sql_gate.py "$@"
