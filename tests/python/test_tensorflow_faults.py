"""The authority goes down while a TensorFlow job reads through the plugin: no read
fails while the job's token is valid; after it expires, reads fail with
UNAUTHENTICATED naming the authority; when the authority is back on the same
address, the same job reads again without restarting anything. Results go to
RELIABILITY.md."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

from conftest import BIN, Server
from helpers import Report, allowed_soon
from test_tensorflow import PLUGIN, RECORDS_PER_SHARD, shard_bytes

LIFETIME = 20

JOB = """
import json, os, sys, time
import tensorflow as tf
tf.experimental.register_filesystem_plugin(os.environ["ENTRAFLOW_TFPLUGIN"])
stop = os.environ["STOP_FILE"]
while not os.path.exists(stop):
    try:
        n = sum(1 for _ in tf.data.TFRecordDataset([os.environ["SHARD"]]))
        print(json.dumps({"t": time.time(), "ok": n}), flush=True)
    except tf.errors.OpError as e:
        print(json.dumps({"t": time.time(), "error": type(e).__name__, "message": e.message[:300]}), flush=True)
    time.sleep(0.5)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_authority_outage_during_training(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    port, imds = free_port(), free_port()
    authority_args = ["authority", "serve", "--port", str(port), "--imds-port", str(imds)]
    authority = Server(data, authority_args, "env")
    gate = Server(data, ["gate", "serve", "--port", "0"], "gate.env")
    job = None
    try:
        def cli(*args: str) -> dict:
            out = subprocess.run([BIN, "--data-dir", str(data), *args, "-o", "json"], capture_output=True, text=True,
                                 check=True)
            return json.loads(out.stdout) if out.stdout.strip() else {}

        cli("authority", "tenant", "update", "--token-lifetime", str(LIFETIME))
        app = cli("ad", "app", "create", "--display-name", "outage-trainer")
        sp = cli("ad", "sp", "create", "--id", app["appId"])
        secret = cli("ad", "app", "credential", "reset", "--id", app["appId"])["password"]
        cli("role", "assignment", "create", "--assignee", sp["id"], "--role", "Storage Blob Data Contributor",
            "--scope", gate.env["ENTRAFLOW_STORAGE_SCOPE"])
        env = authority.env
        endpoint = gate.env["ENTRAFLOW_BLOB_ENDPOINT"]
        cred = ClientSecretCredential(env["AZURE_TENANT_ID"], app["appId"], secret,
                                      authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
                                      connection_verify=env["SSL_CERT_FILE"])
        service = BlobServiceClient(endpoint, credential=cred, connection_verify=env["SSL_CERT_FILE"])
        container = allowed_soon(lambda: service.create_container("outage"), "create the container")
        container.upload_blob("shard.tfrecord", shard_bytes(0))

        stop = tmp_path / "stop"
        job_env = {**os.environ, "AZURE_TENANT_ID": env["AZURE_TENANT_ID"], "AZURE_CLIENT_ID": app["appId"],
                   "AZURE_CLIENT_SECRET": secret, "AZURE_AUTHORITY_HOST": env["AZURE_AUTHORITY_HOST"],
                   "SSL_CERT_FILE": env["SSL_CERT_FILE"], "ENTRAFLOW_BLOB_ENDPOINT": endpoint,
                   "ENTRAFLOW_TFPLUGIN": PLUGIN, "TF_CPP_MIN_LOG_LEVEL": "2", "STOP_FILE": str(stop),
                   "SHARD": f"az://{endpoint.rsplit('/', 1)[1]}/outage/shard.tfrecord"}
        job = subprocess.Popen([sys.executable, "-c", textwrap.dedent(JOB)], env=job_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        lines: list[dict] = []
        threading.Thread(target=lambda: [lines.append(json.loads(l)) for l in job.stdout], daemon=True).start()

        def wait_for(predicate, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if predicate():
                    return True
                time.sleep(0.2)
            return False

        assert wait_for(lambda: sum("ok" in l for l in lines) >= 3, 90), f"the job never read: {lines[-3:]}"
        authority.stop()
        down_at = time.time()
        # Reads keep working while the token is valid, then fail with a clear error.
        failed = wait_for(lambda: any("error" in l and l["t"] > down_at for l in lines), LIFETIME + 30)
        during = [l for l in lines if l["t"] > down_at]
        first_error = next((l for l in during if "error" in l), None)
        ok_while_valid = [l for l in during if first_error is None or l["t"] < first_error["t"]]
        report = Report("reliability", "Authority outage during TensorFlow training")
        report.check("reads while the job's token is still valid", "every read succeeds",
                     f"{len(ok_while_valid)} reads, {sum('error' in l for l in ok_while_valid)} failed",
                     len(ok_while_valid) >= 3 and all("ok" in l for l in ok_while_valid))
        report.check("reads after the token expired", "UnauthenticatedError naming the authority",
                     "no error" if first_error is None else f"{first_error['error']}: {first_error['message'][:160]}",
                     failed and first_error["error"] == "UnauthenticatedError"
                     and env["AZURE_AUTHORITY_HOST"] in first_error["message"])
        # The authority comes back on the same address: the same job recovers.
        authority = Server(data, authority_args, "env")
        back_at = time.time()
        recovered = wait_for(lambda: any("ok" in l and l["t"] > back_at for l in lines), 30)
        took = next((l["t"] - back_at for l in lines if "ok" in l and l["t"] > back_at), None)
        report.check("the authority is back: the same job, nothing restarted", "reads succeed within 30 s",
                     "still failing" if took is None else f"reading again after {took:.1f} s",
                     recovered and all(l.get("ok") == RECORDS_PER_SHARD for l in lines if "ok" in l))
        stop.touch()
        job.wait(timeout=60)
        report.finish()
    finally:
        if job and job.poll() is None:
            job.kill()
        gate.stop()
        authority.stop()
