"""The main job (`entraflow demo`) end to end, smaller: the audit log must show who
read and wrote what for the run, and project B's attempt must be a permission error
naming the missing role — never a network error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from conftest import BIN, REPO


def test_demo_trains_denies_and_audits(tmp_path):
    data_dir = tmp_path / "demo"
    env = {**os.environ, "VIRTUAL_ENV": str(REPO / ".venv")}
    env.pop("SSL_CERT_FILE", None)
    env.pop("REQUESTS_CA_BUNDLE", None)
    # The SQL side too, when scripts/test.sh started PostgreSQL (it always does).
    backend = os.environ.get("ENTRAFLOW_TEST_POSTGRES_URL")
    sql = ["--sql-backend", backend] if backend else []
    result = subprocess.run(
        [BIN, "--data-dir", str(data_dir), "demo", "--epochs", "12", "--token-lifetime", "3", "--shards", "4",
         "--limit", "600",
         "--python", sys.executable, *sql],
        capture_output=True, text=True, env=env, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    run_id = re.search(r"done: run (\S+) trained", result.stdout).group(1)

    query = subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "query", "--run-id", run_id, "-o", "json"],
                           capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in query.stdout.splitlines() if line.strip()]
    assert events, "the run left no audit events"
    assert all(e.get("run_id") == run_id for e in events)

    def by(decision: str, action_suffix: str, resource_part: str):
        return [e for e in events if e.get("decision") == decision and e.get("action", "").endswith(action_suffix)
                and resource_part in e.get("resource", "")]

    shard_reads = by("allow", "blobs/read", "/containers/project-a")
    assert any("digits/train-" in e["resource"] for e in shard_reads), "no shard was read"
    assert sum(e.get("bytes", 0) for e in shard_reads) > 0
    assert by("allow", "blobs/write", "models/"), "the model was not written through the gate"
    denied = by("deny", "blobs/read", "/containers/project-a")
    assert len(denied) >= 1, "project B's attempt is not in the audit log"
    readers = {e["principal"]["oid"] for e in shard_reads}
    intruders = {e["principal"]["oid"] for e in denied}
    assert readers.isdisjoint(intruders), "the denied principal must be project B's, not A's"

    # The refresh count is the audit log's, and training outlives several tokens.
    [trainer] = readers
    tokens, refreshes = map(int, re.search(
        r"holds (\d+) access token\(s\) issued to project-a-trainer during [\d.]+ s of training: (\d+) refresh",
        result.stdout).groups())
    issued = subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "query", "--log", "entraflow/authority",
                             "--principal", trainer, "-o", "json"], capture_output=True, text=True, check=True)
    assert tokens == sum(json.loads(line)["event_type"] == "token.issued" for line in issued.stdout.splitlines()
                         if line.strip())
    assert refreshes >= 3, f"training saw {refreshes} token refreshes; it should outlive several tokens"
    # TensorFlow's start-up chatter stays out of the demo's output.
    noise = [line for line in output.splitlines()
             if re.match(r"^[IWE]\d{4} |^\S+\.cc:\d+\]|.*oneDNN custom operations|absl::InitializeLog", line)]
    assert not noise, noise[:5]

    assert "permission denied" in result.stderr and "Storage Blob Data Reader" in result.stderr
    assert "network" not in re.search(r"permission denied.*", result.stderr).group(0).lower()
    if backend:
        # The shard list went through the SQL gate: the stager wrote it, the trainer read
        # it, and project B was refused by PostgreSQL's own GRANTs, naming the table.
        statements = [e for e in events if e.get("event_type") == "sql.statement"]
        writers = {e["principal"]["oid"] for e in statements if e.get("statement", "").startswith("INSERT INTO demo.shards")}
        readers_sql = {e["principal"]["oid"] for e in statements if "FROM demo.shards" in e.get("statement", "")}
        assert writers and readers & readers_sql, "the manifest was not written and read through the SQL gate"
        assert "permission denied for table shards" in result.stderr
        assert intruders & readers_sql, "project B's refused query is not in the audit log"
        assert "SQL   database" in result.stdout, "the security team's summary shows no SQL access"
        summary = json.loads(subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "summary", "--run-id", run_id,
                                             "-o", "json"], capture_output=True, text=True, check=True).stdout)
        [intruder] = [s for s in summary if s["principal"] in intruders]
        assert intruder["denials"] >= 2, f"PostgreSQL's refusal is a denial beside the gate's: {intruder}"
    # Least privilege from the log: the suggestion replays the run with no denial
    # and no unused data action, and is narrower than the demo's own assignments.
    suggested = subprocess.run([BIN, "--data-dir", str(data_dir), "role", "suggest", "--run-id", run_id, "--check",
                                "-o", "json"], capture_output=True, text=True)
    assert suggested.returncode == 0, suggested.stdout[-3000:] + suggested.stderr
    advice = json.loads(suggested.stdout)
    assert advice["check"]["replayed"] == advice["requests"] > 0
    assert advice["check"]["denials"] == [] and advice["check"]["unused"] == [], advice["check"]
    assert advice["comparedWithCurrent"]["widerInSuggestion"] == [], advice["comparedWithCurrent"]
    assert advice["comparedWithCurrent"]["onlyCurrent"], "the suggestion is no narrower than what the demo granted"
    [for_trainer] = [s for s in advice["suggestions"] if s["principalId"] == trainer and "/containers/" in s["scope"]]
    assert "digits/" in for_trainer["condition"], for_trainer
    # And role lint points at what the trainer was granted but did not use.
    lint = subprocess.run([BIN, "--data-dir", str(data_dir), "role", "lint", "-o", "json"],
                          capture_output=True, text=True)
    wider = [f for f in json.loads(lint.stdout) if f["rule"] == "wider-than-used" and f["principalId"] == trainer]
    assert wider and "blobs/move/action" in wider[0]["message"], lint.stdout[-3000:]

    run_dir = data_dir / "runs" / run_id
    report = run_dir / "report.md"
    assert report.exists() and "Storage Blob Data Reader" in report.read_text()
    verify = subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "verify", "-o", "json"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    chains = json.loads(verify.stdout)["chains"]

    # The model's lineage: its inputs are exactly the shards the staging step wrote,
    # as the stager's own audit records name them (and as many as it said it staged);
    # whatever else it lists the trainer itself wrote in this run (its checkpoints).
    def az(resource: str) -> str:
        account = resource.split("/storageAccounts/")[1].split("/")[0]
        container, blob = resource.split("/containers/")[1].split("/blobs/", 1)
        return f"az://{account}/{container}/{blob}"

    def written_by(oid: str, prefix: str) -> set[tuple[str, str]]:
        return {(az(e["resource"]), e["etag"]) for e in events
                if e.get("event_type") == "blob.write" and e.get("decision") == "allow" and e.get("etag")
                and "/blobs/" in e["resource"] and e["principal"].get("oid") == oid
                and az(e["resource"]).startswith(prefix)}

    shard_writers = {e["principal"]["oid"] for e in events
                     if e.get("event_type") == "blob.write" and "/blobs/digits/" in e.get("resource", "")}
    [stager] = shard_writers
    [account] = {e["resource"].split("/storageAccounts/")[1].split("/")[0] for e in shard_reads}
    data = f"az://{account}/project-a/digits/"
    staged = written_by(stager, data)
    staged_count = int(re.search(r"staged \d+ examples in (\d+) shards", result.stdout).group(1))
    assert len(staged) == staged_count == 4, staged
    model_dir = f"az://{account}/project-a/models/{run_id}/"
    lineage = subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "lineage", f"{model_dir}model.keras",
                              "-o", "json"], capture_output=True, text=True)
    assert lineage.returncode == 0, lineage.stdout + lineage.stderr
    traced = json.loads(lineage.stdout)["lineage"]
    assert traced["principal"]["oid"] == trainer and traced["run_id"] == run_id
    reads = {(r["blob"], r["etag"]) for r in traced["reads"]}
    own = written_by(trainer, model_dir)
    assert reads - own == staged, (sorted(reads - own), sorted(staged))
    assert all(blob.startswith(model_dir) for blob, _ in reads & own)

    # The demo's proof bundle verifies with the data directory moved away (no
    # database, only the verifier key), and fails once one event in it is altered.
    moved = tmp_path / "moved"
    data_dir.rename(moved)
    bundle_path = moved / "runs" / run_id / "lineage-bundle.json"
    key = moved / "audit-key.pub"

    def verify_bundle(path):
        return subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "verify", "--bundle", str(path),
                               "--key", str(key)], capture_output=True, text=True)

    offline = verify_bundle(bundle_path)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert not data_dir.exists()
    bundle = json.loads(bundle_path.read_text())
    assert {(r["blob"], r["etag"]) for r in bundle["lineage"]["reads"]} == reads
    [altered] = [e for e in bundle["events"] if e["role"] == "read"][:1]
    altered["record"]["etag"] = '"0x8D0000000000000"'
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    refused = verify_bundle(tampered)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"#{altered['index']} of chain" in refused.stdout, refused.stdout
    moved.rename(data_dir)

    # report.html: self-contained, principals by name, every denial with its resource
    # and what would have allowed it, the lineage, the suggestion, the checkpoints.
    html = (run_dir / "report.html").read_text()
    assert "Chart.js v" in html and "<script src=" not in html, "Chart.js must be inlined"
    for kind in ("curve", "counts", "bytes"):
        assert f'data-chart="{kind}"' in html, kind
    for name in ("project-a-trainer", "project-b-trainer", "platform-data-stager"):
        assert f'<span class="pname">{name}</span>' in html, name
    denials = html[html.index('id="denials"'):html.index('id="accesses"')]
    assert "Storage Blob Data Reader" in denials and "project-a/" in denials
    if backend:
        assert "PostgreSQL GRANT SELECT ON demo.shards" in denials, denials[:3000]
    section = html[html.index('id="lineage"'):html.index('id="suggestion"')]
    for blob, etag in staged:
        assert blob in section and etag.replace('"', "&quot;") in section, blob
    assert "Storage Blob Data Reader" in section and "project-a-trainer" in section
    suggestion = html[html.index('id="suggestion"'):html.index('id="checkpoints"')]
    assert for_trainer["role"]["roleName"] in suggestion and "project-a-trainer" in suggestion, suggestion[:2000]
    signed = html[html.index('id="checkpoints"'):]
    for chain in chains:
        assert f"<code>{chain['log_id']}</code>" in signed, chain
    # Every chain has a checkpoint taken at the end of the run that covers all the
    # run's records on it, and the log is consistent with each.
    notes = {}
    for path in (run_dir / "checkpoints").glob("*.checkpoint"):
        origin, size = path.read_text().splitlines()[:2]
        notes[origin] = (path, int(size))
    assert set(notes) == {c["log_id"] for c in chains}, notes
    for e in events:
        assert e["seq"] < notes[e["log"]][1], f"{e['log']} #{e['seq']} is not in the run's checkpoint"
    against = subprocess.run([BIN, "--data-dir", str(data_dir), "audit", "verify",
                              *[arg for path, _ in notes.values() for arg in ("--checkpoint", str(path))]],
                             capture_output=True, text=True)
    assert against.returncode == 0, against.stdout + against.stderr
    # Opened from disk with no server to ask, Chart.js draws every chart (it sizes
    # each canvas it renders into).
    chromium = shutil.which("chromium")
    if chromium or os.environ.get("ENTRAFLOW_REQUIRE_BROWSER"):
        assert chromium, "chromium is required (scripts/test.sh installs it)"
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
                              (run_dir / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
        canvases = re.findall(r'<canvas id="([^"]+)" data-chart="[^"]+"[^>]*>', dom.stdout)
        assert {"training", "run-counts", "run-bytes"} <= set(canvases), dom.stderr[-2000:]
        drawn = re.findall(r'<canvas id="([^"]+)" data-chart="[^"]+"[^>]*style="display: block;', dom.stdout)
        assert set(drawn) == set(canvases), (canvases, drawn)
    md = report.read_text()
    assert "## Model lineage" in md and all(blob in md for blob, _ in staged)
    assert "Least privilege" in md and for_trainer["role"]["roleName"] in md
    for text in (html, md):
        assert not [p.pattern for p in SECRET_PATTERNS if p.search(text)], "a secret or token in the report"


SECRET_PATTERNS = [
    re.compile(r"AccountKey=", re.I),
    re.compile(r"SharedAccessSignature|[?&]sig=", re.I),
    re.compile(r"client_secret\s*=", re.I),
    re.compile(r"AZURE_CLIENT_SECRET"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),  # a JWT
    re.compile(r"DefaultEndpointsProtocol="),
    re.compile(r"password\s*=", re.I),
]


def test_examples_hold_no_secret():
    files = [p for p in (REPO / "examples").rglob("*") if p.is_file()]
    assert any(p.name == "train.py" for p in files)
    for path in files:
        text = path.read_text(errors="replace")
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path} matches {pattern.pattern}"
