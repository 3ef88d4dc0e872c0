# Shared by scripts/test.sh and scripts/demo.sh: idempotent installs for a fresh machine.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The Python venv in .venv with the pinned requirements; reinstalled when they change.
ensure_venv() {
  local req=tests/python/requirements.txt stamp=.venv/.requirements.sha256
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
  fi
}

# Builds the Rust extension and installs the `entraflow` Python package into .venv
# (editable: the Python sources are used in place).
install_python_package() {
  (cd python && VIRTUAL_ENV="$PWD/../.venv" ../.venv/bin/maturin develop --quiet)
}

# Starts a throwaway PostgreSQL on a free loopback port (the tests, the demo, the
# SQL benchmark), and exports ENTRAFLOW_TEST_POSTGRES_URL. Uses Debian's server; installs it if absent.
start_local_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    apt_install postgresql
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  local run_as=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
    run_as=(runuser -u postgres --)
  fi
  PG_DIR=$(mktemp -d /tmp/entraflow-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${run_as[@]}" "$bindir/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null
  "${run_as[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=on" start >/dev/null
  PG_STOP=("${run_as[@]}" "$bindir/pg_ctl" -D "$PG_DIR/data" -m fast stop)
  trap 'stop_local_postgres' EXIT
  export ENTRAFLOW_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export ENTRAFLOW_REQUIRE_POSTGRES=1
  echo "PostgreSQL on 127.0.0.1:$port"
}

stop_local_postgres() {
  [ -n "${PG_STOP+x}" ] && "${PG_STOP[@]}" >/dev/null 2>&1 || true
  [ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
}
