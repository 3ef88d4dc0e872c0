"""TensorFlow over az:// through the entraflow plugin (a Rust cdylib) and the real gate.

The plugin is the library the build produces (target/debug/libentraflow_tfplugin.so,
or $ENTRAFLOW_TFPLUGIN). It takes its identity from the variables azure-identity reads
(here a service principal's secret) and its endpoint from ENTRAFLOW_BLOB_ENDPOINT;
the gate authorizes every request with Azure RBAC. Test data is written with
azure-storage-blob (a client entraflow did not write) and read back with TensorFlow,
and the other way round.

TensorFlow registers a filesystem once per process, with the identity of that
process: tests that need another identity (no role, short-lived tokens) run a small
TensorFlow job in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

from conftest import BIN, REPO, Server
from helpers import allowed_soon

PLUGIN = os.environ.get("ENTRAFLOW_TFPLUGIN", str(REPO / "target" / "debug" / "libentraflow_tfplugin.so"))
SHARDS = 4
RECORDS_PER_SHARD = 500


def register_plugin() -> str:
    """Registers the plugin as `az`, or as ENTRAFLOW_TF_SCHEME (`azent`) when
    tensorflow-io already holds `az`. Returns the scheme."""
    scheme = os.environ.get("ENTRAFLOW_TF_SCHEME", "az")
    try:
        tf.experimental.register_filesystem_plugin(PLUGIN)
    except tf.errors.OpError as e:
        if "already" not in str(e).lower() or scheme != "az":
            raise
        os.environ["ENTRAFLOW_TF_SCHEME"] = scheme = "azent"
        tf.experimental.register_filesystem_plugin(PLUGIN)
    return scheme


def example(i: int) -> bytes:
    features = {
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(i % 7), float(i % 11)])),
        "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_bytes(shard: int) -> bytes:
    """A TFRecord file, framed by TensorFlow's own writer on local disk."""
    path = f"/tmp/entraflow-tf-{uuid.uuid4().hex}.tfrecord"
    with tf.io.TFRecordWriter(path) as w:
        for k in range(RECORDS_PER_SHARD):
            w.write(example(shard * RECORDS_PER_SHARD + k))
    data = open(path, "rb").read()
    os.unlink(path)
    return data


def parse(record):
    f = tf.io.parse_single_example(
        record,
        {
            "x": tf.io.FixedLenFeature([2], tf.float32),
            "y": tf.io.FixedLenFeature([1], tf.int64),
            "i": tf.io.FixedLenFeature([1], tf.int64),
        },
    )
    return f["x"], f["y"]


class Identity:
    def __init__(self, authority, name: str):
        app = authority.new_app(name)
        self.app_id = app["appId"]
        self.oid = app["spObjectId"]
        self.secret = authority.new_secret(self.app_id)
        self.tenant = authority.tenant
        self.host = authority.host

    def env(self) -> dict[str, str]:
        return {
            "AZURE_TENANT_ID": self.tenant,
            "AZURE_CLIENT_ID": self.app_id,
            "AZURE_CLIENT_SECRET": self.secret,
            "AZURE_AUTHORITY_HOST": self.host,
        }

    def credential(self) -> ClientSecretCredential:
        return ClientSecretCredential(self.tenant, self.app_id, self.secret, authority=self.host, disable_instance_discovery=True)


class Storage:
    """A container with TFRecord shards behind a gate, a trainer who may read and
    write it, and a principal with no role."""

    def __init__(self, authority, endpoint: str, account_scope: str, data_dir: Path,
                 trainer: Identity | None = None, stranger: Identity | None = None):
        self.endpoint = endpoint.rstrip("/")
        self.account = self.endpoint.rsplit("/", 1)[1]
        self.account_scope = account_scope
        self.container = "tf-" + uuid.uuid4().hex[:10]
        self.trainer = trainer or Identity(authority, "tf-trainer")
        self.stranger = stranger or Identity(authority, "tf-no-role")
        subprocess.run(
            [BIN, "--data-dir", str(data_dir), "role", "assignment", "create",
             # A gate's own role store may hold no directory: az's no-lookup form.
             "--assignee-object-id", self.trainer.oid, "--assignee-principal-type", "ServicePrincipal",
             "--role", "Storage Blob Data Contributor", "--scope", account_scope],
            check=True, capture_output=True,
        )
        self.service = BlobServiceClient(self.endpoint, credential=self.trainer.credential())
        self.blobs = allowed_soon(lambda: self.service.create_container(self.container), "create the container")
        for shard in range(SHARDS):
            self.blobs.upload_blob(f"train/shard-{shard:05d}.tfrecord", shard_bytes(shard))
        self.blobs.upload_blob("train/README", b"not a shard")

    def url(self, scheme: str, name: str = "") -> str:
        return f"{scheme}://{self.account}/{self.container}" + (f"/{name}" if name else "")

    def job_env(self, identity: Identity, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **identity.env(),
            "ENTRAFLOW_BLOB_ENDPOINT": self.endpoint,
            "ENTRAFLOW_TFPLUGIN": PLUGIN,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **extra,
        }


@pytest.fixture(scope="module")
def storage(authority, gate) -> Storage:
    return Storage(authority, gate.endpoint, gate.scope, authority.data_dir)


@pytest.fixture
def strict_gate(authority, tmp_path):
    """A gate of its own with no clock-skew allowance, so that a token really stops
    working when it expires. It shares the authority's CA (one SSL_CERT_FILE trusts
    both) and env file (so it trusts the authority), but has its own RBAC store,
    blobs and audit log."""
    data_dir = tmp_path / "strict-gate"
    data_dir.mkdir()
    for name in ("ca.pem", "ca-key.pem", "env"):
        shutil.copy2(authority.data_dir / name, data_dir / name)
    server = Server(data_dir, ["gate", "serve", "--port", "0", "--clock-skew", "0"], "gate.env")
    yield server
    server.stop()


RUN_ID = "pytest-tf-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def az(storage):
    """The plugin registered in this process, as the trainer; returns the scheme.
    The plugin reads its environment at first use, so it keeps this identity for
    the rest of the process; the variables themselves are undone after the module."""
    mp = pytest.MonkeyPatch()
    for name, value in {**storage.trainer.env(), "ENTRAFLOW_BLOB_ENDPOINT": storage.endpoint,
                        "ENTRAFLOW_RUN_ID": RUN_ID}.items():
        mp.setenv(name, value)
    yield register_plugin()
    mp.undo()


def run_job(script: str, env: dict[str, str], timeout: int = 300) -> dict:
    """Runs a TensorFlow job in a fresh interpreter; it prints one JSON line last."""
    prelude = textwrap.dedent(
        """
        import json, os, sys, time
        import tensorflow as tf
        tf.experimental.register_filesystem_plugin(os.environ["ENTRAFLOW_TFPLUGIN"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, f"job failed:\n{out.stdout}\n{out.stderr[-4000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tfrecord_dataset_over_a_glob_with_parallel_reads(storage, az):
    files = tf.io.gfile.glob(storage.url(az, "train/shard-*.tfrecord"))
    assert files == [storage.url(az, f"train/shard-{s:05d}.tfrecord") for s in range(SHARDS)]
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=4).map(parse)
    ids = sorted(
        int(tf.io.parse_single_example(r, {"i": tf.io.FixedLenFeature([1], tf.int64)})["i"][0])
        for r in tf.data.TFRecordDataset(files, num_parallel_reads=4)
    )
    assert ids == list(range(SHARDS * RECORDS_PER_SHARD))
    x, y = next(iter(ds.batch(8)))
    assert x.shape == (8, 2) and y.shape == (8, 1)


def test_gfile_read_stat_exists_list_rename_remove(storage, az):
    shard = storage.url(az, "train/shard-00000.tfrecord")
    assert tf.io.gfile.exists(shard)
    assert not tf.io.gfile.exists(storage.url(az, "train/nope"))
    size = len(storage.blobs.download_blob("train/shard-00000.tfrecord").readall())
    st = tf.io.gfile.stat(shard)
    assert st.length == size and not st.is_directory and st.mtime_nsec > 0
    assert tf.io.gfile.isdir(storage.url(az, "train"))
    assert sorted(tf.io.gfile.listdir(storage.url(az, "train"))) == sorted(
        [f"shard-{s:05d}.tfrecord" for s in range(SHARDS)] + ["README"]
    )
    with tf.io.gfile.GFile(storage.url(az, "train/README"), "rb") as f:
        assert f.read() == b"not a shard"

    # Written by TensorFlow, read by azure-storage-blob; renamed; removed.
    src, dst = storage.url(az, "scratch/a.txt"), storage.url(az, "scratch/b.txt")
    with tf.io.gfile.GFile(src, "w") as f:
        f.write("hello from tensorflow")
    assert storage.blobs.download_blob("scratch/a.txt").readall() == b"hello from tensorflow"
    tf.io.gfile.rename(src, dst)
    assert not tf.io.gfile.exists(src)
    assert tf.io.gfile.GFile(dst).read() == "hello from tensorflow"
    tf.io.gfile.copy(dst, src)
    assert tf.io.gfile.GFile(src).read() == "hello from tensorflow"
    tf.io.gfile.remove(src)
    tf.io.gfile.rmtree(storage.url(az, "scratch"))
    assert not tf.io.gfile.exists(dst)
    with pytest.raises(tf.errors.NotFoundError):
        tf.io.gfile.GFile(storage.url(az, "train/missing")).read()


def test_makedirs_then_isdir_and_an_empty_directory_listing(storage, az):
    d = storage.url(az, "made/by/makedirs")
    tf.io.gfile.makedirs(d)
    assert tf.io.gfile.isdir(d) and tf.io.gfile.isdir(storage.url(az, "made"))
    assert tf.io.gfile.listdir(d) == []
    assert "by" in tf.io.gfile.listdir(storage.url(az, "made"))


def test_a_large_file_round_trips_through_blocks_and_read_ahead(storage, az):
    # 20 MiB: three Put Block calls and a Put Block List; read back with 8 MiB read-ahead.
    data = np.random.default_rng(7).integers(0, 256, size=20 << 20, dtype=np.uint8).tobytes()
    path = storage.url(az, "big/blob.bin")
    with tf.io.gfile.GFile(path, "wb") as f:
        for i in range(0, len(data), 3 << 20):
            f.write(data[i:i + (3 << 20)])
    assert storage.blobs.get_blob_client("big/blob.bin").get_blob_properties().size == len(data)
    with tf.io.gfile.GFile(path, "rb") as f:
        assert f.read() == data
    with tf.io.gfile.GFile(path, "rb") as f:  # random access: an exact ranged GET
        f.seek(12345678)
        assert f.read(100) == data[12345678:12345778]


def test_keras_model_save_and_load(storage, az):
    model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(4, activation="relu"), tf.keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=1, verbose=0)
    path = storage.url(az, "models/m.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    x = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_saved_model_save_and_load(storage, az):
    class Scale(tf.Module):
        def __init__(self):
            self.w = tf.Variable(2.5)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return self.w * x

    path = storage.url(az, "saved/scale")
    tf.saved_model.save(Scale(), path)
    assert tf.io.gfile.exists(path + "/saved_model.pb")
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded(tf.constant([2.0])).numpy(), [5.0])


def test_checkpoint_manager_save_and_restore(storage, az):
    v = tf.Variable(3.0)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(v=v, step=step)
    directory = storage.url(az, "ckpt")
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    for i in range(3):
        step.assign(i)
        v.assign(10.0 + i)
        manager.save()
    assert len(manager.checkpoints) == 2
    v.assign(0.0)
    step.assign(-1)
    restored = tf.train.Checkpoint(v=v, step=step)
    restored.restore(tf.train.latest_checkpoint(directory)).assert_consumed()
    assert float(v.numpy()) == 12.0 and int(step.numpy()) == 2
    # max_to_keep deleted the oldest checkpoint's files.
    names = tf.io.gfile.listdir(directory)
    assert "checkpoint" in names and not any(n.startswith("ckpt-1.") for n in names), names


def test_every_request_carries_the_run_id(authority, storage, az):
    with tf.io.gfile.GFile(storage.url(az, "audited/run.txt"), "w") as f:
        f.write("audited")
    assert tf.io.gfile.GFile(storage.url(az, "audited/run.txt")).read() == "audited"
    export = authority.data_dir / f"tf-audit-{uuid.uuid4().hex[:6]}.jsonl"
    authority.cli("audit", "export", "--out", str(export))
    resource = f"/containers/{storage.container}/blobs/audited/run.txt"
    mine = [e for e in map(json.loads, export.read_text().splitlines()) if e.get("resource", "").endswith(resource)]
    assert {e["action"].rsplit("/", 1)[1] for e in mine} >= {"read", "write"}, mine
    assert all(e["run_id"] == RUN_ID for e in mine), mine


def test_a_principal_without_a_role_gets_permission_denied_naming_the_role_quickly(storage):
    result = run_job(
        """
        f = tf.io.gfile.GFile(os.environ["SHARD"], "rb")
        t = time.monotonic()
        try:
            f.read()
            print(json.dumps({"error": None}))
        except tf.errors.OpError as e:
            print(json.dumps({"error": type(e).__name__, "message": e.message, "seconds": time.monotonic() - t}))
        """,
        storage.job_env(storage.stranger, SHARD=storage.url("az", "train/shard-00001.tfrecord")),
    )
    assert result["error"] == "PermissionDeniedError", result
    assert "Storage Blob Data Reader" in result["message"], result["message"]
    assert storage.stranger.oid in result["message"]
    # No retry storm: a 403 is final. (The token request is inside this too.)
    assert result["seconds"] < 1.0, result


def test_tokens_of_a_few_seconds_never_fail_a_minute_of_training(authority, storage, strict_gate):
    storage = Storage(authority, strict_gate.env["ENTRAFLOW_BLOB_ENDPOINT"], strict_gate.env["ENTRAFLOW_STORAGE_SCOPE"],
                      strict_gate.data_dir, trainer=storage.trainer, stranger=storage.stranger)
    before = authority.json("authority", "tenant", "show")["tokenLifetime"]
    authority.cli("authority", "tenant", "update", "--token-lifetime", "5")
    try:
        # The setting is live: a fresh token lives five seconds.
        token = storage.stranger.credential().get_token("https://storage.azure.com/.default")
        assert token.expires_on - time.time() <= 6
        result = run_job(
            """
            files = tf.io.gfile.glob(os.environ["GLOB"])
            def parse(r):
                f = tf.io.parse_single_example(r, {"x": tf.io.FixedLenFeature([2], tf.float32), "y": tf.io.FixedLenFeature([1], tf.int64)})
                return f["x"], tf.cast(f["y"], tf.float32)
            model = tf.keras.Sequential([tf.keras.Input(shape=(2,)), tf.keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse")
            start, epochs, examples = time.monotonic(), 0, 0
            while time.monotonic() - start < 60:
                ds = tf.data.TFRecordDataset(files, num_parallel_reads=2).map(parse).batch(100)
                h = model.fit(ds, epochs=1, verbose=0)
                epochs += 1
                examples += sum(1 for _ in tf.data.TFRecordDataset(files))
                time.sleep(1)
            print(json.dumps({"epochs": epochs, "examples": examples, "seconds": time.monotonic() - start}))
            """,
            storage.job_env(storage.trainer, GLOB=storage.url("az", "train/shard-*.tfrecord")),
        )
    finally:
        authority.cli("authority", "tenant", "update", "--token-lifetime", f"{before['min']}-{before['max']}")
    assert result["seconds"] >= 60
    assert result["examples"] == result["epochs"] * SHARDS * RECORDS_PER_SHARD
    # Enough epochs that many 5-second tokens were used.
    assert result["epochs"] >= 10, result
