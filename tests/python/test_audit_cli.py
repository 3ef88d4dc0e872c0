"""`entraflow audit` as the security team uses it, on events the gate really wrote."""

from __future__ import annotations

import json
import os
import uuid

from azure.storage.blob import BlobServiceClient

from entraflow.identity import ClientSecretCredential
from helpers import allowed_soon


def test_export_verify_and_detect_tampering(authority, gate, tmp_path):
    app = authority.new_app("audit-cli")
    gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
    cred = ClientSecretCredential(authority.tenant, app["appId"], authority.new_secret(app["appId"]),
                                  authority=authority.host)
    service = BlobServiceClient(gate.endpoint, credential=cred, connection_verify=authority.ca)
    container = f"audit-{uuid.uuid4().hex[:8]}"
    # The gate picks up the CLI's role assignment within 500 ms.
    allowed_soon(lambda: service.create_container(container), "the new Contributor creates a container")
    service.get_blob_client(container, "a.bin").upload_blob(os.urandom(1000))
    service.get_blob_client(container, "a.bin").download_blob().readall()

    first = authority.cli("audit", "verify", check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    # Without an exported checkpoint, verify says plainly what it cannot see.
    assert "cannot detect: without an exported checkpoint" in first.stdout, first.stdout
    checkpoint = tmp_path / "head.checkpoint"
    authority.cli("audit", "checkpoint", "--log", "entraflow/gate", "--out", str(checkpoint))
    assert checkpoint.read_text().strip()

    summary = authority.cli("audit", "summary").stdout
    assert app["spObjectId"] in summary and f"{container}/" in summary

    export = tmp_path / "audit.jsonl"
    authority.cli("audit", "export", "--out", str(export))
    assert authority.cli("audit", "verify", "--from-jsonl", str(export)).returncode == 0

    lines = export.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if container in line and '"allow"' in line)
    record = json.loads(lines[index])
    record["decision"] = "deny"  # rewrite history: an allowed read becomes a denial
    lines[index] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    result = authority.cli("audit", "verify", "--from-jsonl", str(tampered), check=False)
    assert result.returncode != 0, result.stdout
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    result = authority.cli("audit", "verify", "--from-jsonl", str(truncated), "--checkpoint", str(checkpoint),
                           check=False)
    assert result.returncode != 0, result.stdout
