#!/usr/bin/env bash
# Model lineage on a run of 100,000 audit events: `entraflow audit lineage`, the same
# with --bundle (proofs for every event, and the checkpoint it has to sign first),
# and `audit verify --bundle`. Each is the whole command, process start to exit, the
# median of 3 rounds; the load average is recorded with each round. Also checks
# that the lineage found every read and that a tampered bundle fails. Writes its
# section of BENCHMARKS.md.
#
#   bash benches/lineage.sh            # 100,000 events, release build, 3 rounds
#   bash benches/lineage.sh --quick    # 10,000 events, debug build, 1 round (CI: it must not rot)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1
if [ "$quick" = 1 ]; then
  events=10000; shards=100; rounds=1; profile=debug
  cargo build --locked -q -p entraflow-cli --bin entraflow -p entraflow-audit --example lineage_run
else
  events=100000; shards=1000; rounds=3; profile=release
  cargo build --locked -q --release -p entraflow-cli --bin entraflow -p entraflow-audit --example lineage_run
fi
target="${CARGO_TARGET_DIR:-$PWD/target}/$profile"
bin="$target/entraflow"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ms() { python3 -c 'import sys,time; print(int(time.time()*1000))'; }
# Runs one command, quietly, and prints how long it took in milliseconds.
timed() {
  local start end
  start=$(ms)
  "$@" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err" >&2; return 1; }
  end=$(ms)
  echo $((end - start))
}

results=()
for round in $(seq "$rounds"); do
  data="$work/run-$round"
  info=$("$target/examples/lineage_run" "$data" "$events" "$shards")
  model=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["model"])' "$info")
  load=$(cut -d' ' -f1 /proc/loadavg)
  t_lineage=$(timed "$bin" --data-dir "$data" audit lineage "$model" -o json)
  # What the lineage found must be what the generator wrote.
  python3 - "$info" "$work/out" <<'EOF'
import json, sys
info = json.loads(sys.argv[1])
found = json.load(open(sys.argv[2]))
lineage = found["lineage"]
requests = sum(r["requests"] for r in lineage["reads"])
assert requests == info["read_requests"], (requests, info)
assert len(lineage["reads"]) == info["blob_versions"], (len(lineage["reads"]), info)
EOF
  t_bundle=$(timed "$bin" --data-dir "$data" audit lineage "$model" --bundle "$data/bundle.json" -o json)
  bundle_events=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bundle"]["events"])' "$work/out")
  bundle_bytes=$(stat -c %s "$data/bundle.json")
  t_verify=$(timed "$bin" --data-dir "$data" audit verify --bundle "$data/bundle.json")
  # One field of one event changed: verification must fail and name the event.
  python3 - "$data/bundle.json" "$data/tampered.json" <<'EOF'
import sys
text = open(sys.argv[1]).read()
i = text.index('"bytes":262144', len(text) // 2)
open(sys.argv[2], "w").write(text[:i] + '"bytes":262145' + text[i + len('"bytes":262144'):])
EOF
  if "$bin" --data-dir "$data" audit verify --bundle "$data/tampered.json" >"$work/out" 2>&1; then
    echo "a tampered bundle verified" >&2; exit 1
  fi
  grep -q "^first: event .* of the bundle (read event" "$work/out" || { cat "$work/out" >&2; exit 1; }
  echo "round $round (load $load): lineage ${t_lineage} ms, lineage + bundle ${t_bundle} ms ($bundle_events events, $bundle_bytes bytes), verify ${t_verify} ms"
  results+=("$round $load $t_lineage $t_bundle $t_verify $bundle_events $bundle_bytes")
  rm -rf "$data"
done

if [ "$quick" = 1 ]; then
  echo "lineage bench (quick): checks passed"
  exit 0
fi

commit=$(git rev-parse --short HEAD)
python3 - "$commit" "$events" "${results[@]}" <<'EOF'
import datetime, pathlib, statistics, sys
commit, events, rows = sys.argv[1], int(sys.argv[2]), [r.split() for r in sys.argv[3:]]
BEGIN = "<!-- lineage:begin (written by benches/lineage.sh; do not edit by hand) -->"
END = "<!-- lineage:end -->"
med = lambda k: statistics.median(float(r[k]) for r in rows)
lines = [
    BEGIN,
    "## Model lineage with proofs (issue 16)",
    "",
    f"`bash benches/lineage.sh` at commit `{commit}`, {datetime.date.today()}, release build, "
    f"{len(rows)} rounds on this machine's 2 cores. Each round writes a fresh SQLite audit log "
    f"(`crates/audit/examples/lineage_run.rs`): a run of {events:,} gate events of one trainer (Get Blob "
    "reads of 1,000 shards, one in ten streamed with a completion record, then the model's Put Block "
    "List), other principals' reads interleaved, grants on `entraflow/admin`, and no checkpoint after "
    "the model's write. Times are whole commands, process start to exit. Goal: each under 1 s.",
    "",
    "| round | load (1 min) | `audit lineage` ms | `audit lineage --bundle` ms | `audit verify --bundle` ms | bundle events | bundle MB |",
    "|---|---|---|---|---|---|---|",
]
for r in rows:
    lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {int(r[5]):,} | {int(r[6]) / 1e6:.0f} |")
lines.append(f"| median | {med(1):.2f} | {med(2):.0f} | {med(3):.0f} | {med(4):.0f} | | |")
lines += [
    "",
    "`--bundle` includes signing a checkpoint (the model's write was not covered), reading the chain's "
    "leaf hashes once and building its tree, a proof for every event, and writing the file.",
    END,
]
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
section = "\n".join(lines)
if BEGIN in text:
    head, rest = text.split(BEGIN, 1)
    text = head + section + rest.split(END, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
path.write_text(text)
print("wrote BENCHMARKS.md")
EOF
