"""examples/s of a tf.data TFRecord pipeline through the entraflow plugin and the gate,
against the same pipeline over the same files on local disk, in the same process.

Starts its own authority and gate (the real `entraflow` binary) in a temporary data
directory, so it needs only a build:

    cargo build -p entraflow-cli -p entraflow-tfplugin
    .venv/bin/python crates/tfplugin/benches/tf_pipeline.py [--shards 16] [--records 20000] [--rounds 5]

Prints one JSON line with both rates and their ratio (plugin / local).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "python"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import Authority, Server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--records", type=int, default=20000, help="records per shard")
    ap.add_argument("--record-bytes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--parallel-reads", type=int, default=4)
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="entraflow-bench-"))
    authority = Authority(data_dir)
    gate = Server(data_dir, ["gate", "serve", "--port", "0"], "gate.env")
    try:
        run(args, data_dir, authority, gate)
    finally:
        gate.stop()
        authority.stop()


def run(args, data_dir: Path, authority: Authority, gate: Server) -> None:
    endpoint = gate.env["ENTRAFLOW_BLOB_ENDPOINT"].rstrip("/")
    account = endpoint.rsplit("/", 1)[1]
    app = authority.new_app("bench")
    secret = authority.new_secret(app["appId"])
    authority.cli("role", "assignment", "create", "--assignee", app["spObjectId"],
                  "--role", "Storage Blob Data Contributor", "--scope", gate.env["ENTRAFLOW_STORAGE_SCOPE"])
    os.environ.update({
        "SSL_CERT_FILE": authority.ca,
        "AZURE_TENANT_ID": authority.tenant,
        "AZURE_CLIENT_ID": app["appId"],
        "AZURE_CLIENT_SECRET": secret,
        "AZURE_AUTHORITY_HOST": authority.host,
        "ENTRAFLOW_BLOB_ENDPOINT": endpoint,
        "ENTRAFLOW_RUN_ID": "bench-" + uuid.uuid4().hex[:8],
    })
    time.sleep(1.2)  # the gate re-reads role assignments every 500 ms

    import numpy as np
    import tensorflow as tf

    plugin = os.environ.get("ENTRAFLOW_TFPLUGIN", str(REPO / "target" / "debug" / "libentraflow_tfplugin.so"))
    tf.experimental.register_filesystem_plugin(plugin)
    container = "bench-" + uuid.uuid4().hex[:8]
    from azure.identity import ClientSecretCredential
    from azure.storage.blob import BlobServiceClient
    cred = ClientSecretCredential(authority.tenant, app["appId"], secret, authority=authority.host,
                                  disable_instance_discovery=True, connection_verify=authority.ca)
    BlobServiceClient(endpoint, credential=cred, connection_verify=authority.ca).create_container(container)

    local_dir = data_dir / "local"
    local_dir.mkdir()
    rng = np.random.default_rng(0)
    local, remote = [], []
    for s in range(args.shards):
        path = local_dir / f"shard-{s:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as w:
            for i in range(args.records):
                feat = {
                    "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[rng.bytes(args.record_bytes)])),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10])),
                }
                w.write(tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString())
        target = f"az://{account}/{container}/train/shard-{s:05d}.tfrecord"
        tf.io.gfile.copy(str(path), target)  # written through the plugin (Put Block + Put Block List)
        local.append(str(path))
        remote.append(target)
    total_bytes = sum(os.path.getsize(p) for p in local)

    def gate_cpu() -> float:
        fields = Path(f"/proc/{gate.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def own_cpu() -> float:
        t = os.times()
        return t.user + t.system

    cpu = {"local": [0.0, 0.0], "plugin": [0.0, 0.0]}  # [this process, gate] CPU seconds

    def measured(kind: str, files) -> float:
        c0, g0 = own_cpu(), gate_cpu()
        r = rate(files)
        cpu[kind][0] += own_cpu() - c0
        cpu[kind][1] += gate_cpu() - g0
        return r

    def rate(files) -> float:
        spec = {"x": tf.io.FixedLenFeature([], tf.string), "y": tf.io.FixedLenFeature([], tf.int64)}
        ds = (tf.data.TFRecordDataset(files, num_parallel_reads=args.parallel_reads)
              .batch(256).map(lambda r: tf.io.parse_example(r, spec), num_parallel_calls=tf.data.AUTOTUNE)
              .prefetch(tf.data.AUTOTUNE))
        n, t = 0, time.perf_counter()
        for batch in ds:
            n += int(batch["y"].shape[0])
        elapsed = time.perf_counter() - t
        assert n == args.shards * args.records, n
        return n / elapsed

    rate(local)  # warm the page cache and TensorFlow's graph caches
    local_rates, plugin_rates = [], []
    for _ in range(args.rounds):
        local_rates.append(measured("local", local))
        plugin_rates.append(measured("plugin", tf.io.gfile.glob(f"az://{account}/{container}/train/shard-*.tfrecord")))
    # Rounds alternate local/plugin so load from elsewhere hits both alike; best-of
    # and median are both reported because a shared machine makes single rounds noisy.
    local_rate, plugin_rate = max(local_rates), max(plugin_rates)
    print(json.dumps({
        "examples": args.shards * args.records,
        "bytes": total_bytes,
        "local_examples_per_s": round(local_rate),
        "plugin_examples_per_s": round(plugin_rate),
        "ratio": round(plugin_rate / local_rate, 3),
        "ratio_median": round(statistics.median(plugin_rates) / statistics.median(local_rates), 3),
        "load_average": os.getloadavg()[0],
        # CPU seconds per round: the pipeline's process, and the gate serving it.
        "cpu_per_round_local": round(cpu["local"][0] / args.rounds, 2),
        "cpu_per_round_plugin": round(cpu["plugin"][0] / args.rounds, 2),
        "cpu_per_round_gate": round(cpu["plugin"][1] / args.rounds, 2),
        "local_rounds": [round(r) for r in local_rates],
        "plugin_rounds": [round(r) for r in plugin_rates],
        "read_ahead": os.environ.get("ENTRAFLOW_READ_AHEAD", str(8 << 20)),
        "read_concurrency": os.environ.get("ENTRAFLOW_READ_CONCURRENCY", "4"),
    }))


if __name__ == "__main__":
    main()
